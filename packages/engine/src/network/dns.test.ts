import test from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DnsServer, DnsType, Rcode, addressRecord, decodeMessage, decodeName, dnsMessage, encodeMessage, encodeName, ptrRecord,
  resolvConfNameservers, reverseAddress,
} from './dns.js';
import type { DnsMessage } from './dns.js';

const BUSYBOX = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'native', 'out', 'rootfs', 'bin', 'busybox');

// ---------------------------------------------------------------------------
// codec

test('codec: a query and an answer survive encode and decode', () => {
  const q = dnsMessage({ id: 0xbeef, rd: true, questions: [{ name: 'web.example', type: DnsType.A, class: 1 }] });
  const back = decodeMessage(encodeMessage(q));
  assert.equal(back.id, 0xbeef);
  assert.equal(back.rd, true);
  assert.equal(back.qr, false);
  assert.deepEqual(back.questions, q.questions);
  const a = dnsMessage({
    id: 7, qr: true, aa: true, ra: true, rcode: Rcode.NXDOMAIN, questions: q.questions,
    answers: [addressRecord('web.example', '10.1.2.3', 600), addressRecord('web.example', 'fd00::1:2', 60), ptrRecord('3.2.1.10.in-addr.arpa', 'web', 5)],
  });
  const d = decodeMessage(encodeMessage(a));
  assert.equal(d.qr && d.aa && d.ra, true);
  assert.equal(d.rcode, Rcode.NXDOMAIN);
  assert.deepEqual(d.answers.map((r) => [r.name, r.type, r.ttl, r.value]), [
    ['web.example', DnsType.A, 600, '10.1.2.3'],
    ['web.example', DnsType.AAAA, 60, 'fd00::1:2'],
    ['3.2.1.10.in-addr.arpa', DnsType.PTR, 5, 'web'],
  ]);
});

test('codec: header flag bits sit where RFC 1035 puts them', () => {
  const b = encodeMessage(dnsMessage({ id: 1, qr: true, opcode: 2, aa: true, tc: true, rd: true, ra: true, rcode: 5 }));
  assert.equal(b.readUInt16BE(2), 0x8000 | (2 << 11) | 0x400 | 0x200 | 0x100 | 0x80 | 5);
  assert.equal(b.length, 12);
});

test('codec: compressed names are followed; pointer loops and bad labels are rejected', () => {
  // header, question "a.example", answer named by a pointer to offset 12, CNAME data "www" + pointer
  const header = Buffer.from([0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
  const qname = encodeName('a.example');
  const qtail = Buffer.from([0, 5, 0, 1]);
  const rdata = Buffer.concat([Buffer.from([3]), Buffer.from('www'), Buffer.from([0xc0, 14])]);
  const rr = Buffer.concat([Buffer.from([0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 30, 0, rdata.length]), rdata]);
  const msg = Buffer.concat([header, qname, qtail, rr]);
  const m = decodeMessage(msg);
  assert.equal(m.answers[0]?.name, 'a.example');
  assert.equal(m.answers[0]?.value, 'www.example');
  assert.equal(decodeName(msg, 12 + qname.length + 4).next, 12 + qname.length + 4 + 2);
  const loop = Buffer.concat([header.subarray(0, 4), Buffer.from([0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
  assert.throws(() => decodeMessage(loop), /compression pointer/);
  assert.throws(() => decodeMessage(Buffer.alloc(5)), /12-byte header/);
  assert.throws(() => encodeName(`${'x'.repeat(64)}.example`), /1 to 63 bytes/);
  const cut = Buffer.concat([header.subarray(0, 4), Buffer.from([0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([7, 0x61])]);
  assert.throws(() => decodeMessage(cut), /runs past the end/);
});

test('codec: EDNS OPT records decode with their payload size', () => {
  const q = dnsMessage({ id: 3, questions: [{ name: 'x', type: 1, class: 1 }], additionals: [{ name: '', type: DnsType.OPT, class: 1232, ttl: 0, data: Buffer.alloc(0) }] });
  const d = decodeMessage(encodeMessage(q));
  assert.equal(d.additionals[0]?.type, DnsType.OPT);
  assert.equal(d.additionals[0]?.class, 1232);
  assert.equal(d.additionals[0]?.name, '');
});

test('reverse names and resolv.conf', () => {
  assert.equal(reverseAddress('4.3.2.10.in-addr.arpa.'), '10.2.3.4');
  assert.equal(reverseAddress('4.3.2.in-addr.arpa'), undefined);
  const nib = '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa';
  assert.equal(reverseAddress(nib), 'fd00::1');
  assert.deepEqual(resolvConfNameservers('# x\nnameserver 10.0.0.1\nnameserver  ::1\nnameserver bogus\nsearch a\n'), ['10.0.0.1', '::1']);
});

// ---------------------------------------------------------------------------
// a server on loopback, a fake upstream of our own, a client of our own

interface Upstream {
  readonly port: number;
  readonly queries: string[];
  close(): Promise<void>;
}

/** A resolver on 127.0.0.1: example.test, NXDOMAIN for missing.test, 60 addresses for big.test. */
async function fakeUpstream(): Promise<Upstream> {
  const queries: string[] = [];
  const respond = (raw: Buffer, tcp: boolean): Buffer => {
    const q = decodeMessage(raw);
    const question = q.questions[0];
    const name = question?.name.toLowerCase() ?? '';
    queries.push(`${tcp ? 'tcp' : 'udp'} ${name}`);
    const base = { id: q.id, qr: true, rd: q.rd, ra: true, questions: q.questions };
    if (name === 'example.test') return encodeMessage(dnsMessage({ ...base, answers: [addressRecord(question?.name ?? '', '192.0.2.10', 30)] }));
    if (name === 'big.test') {
      const answers = Array.from({ length: 60 }, (_, i) => addressRecord(question?.name ?? '', `198.51.100.${i + 1}`, 30));
      if (!tcp) return encodeMessage(dnsMessage({ ...base, tc: true }));
      return encodeMessage(dnsMessage({ ...base, answers }));
    }
    return encodeMessage(dnsMessage({ ...base, rcode: Rcode.NXDOMAIN }));
  };
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  const port = udp.address().port;
  udp.on('message', (m, rinfo) => udp.send(respond(m, false), rinfo.port, rinfo.address));
  const socks = new Set<net.Socket>();
  const tcp = net.createServer((s) => {
    socks.add(s);
    s.on('close', () => socks.delete(s));
    let buf = Buffer.alloc(0);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const r = respond(buf.subarray(2, 2 + buf.readUInt16BE(0)), true);
        const h = Buffer.alloc(2);
        h.writeUInt16BE(r.length);
        s.end(Buffer.concat([h, r]));
      }
    });
  });
  await new Promise<void>((r) => tcp.listen(port, '127.0.0.1', r));
  return {
    port,
    queries,
    close: async () => {
      for (const s of socks) s.destroy();
      await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
    },
  };
}

function query(name: string, type: number, edns?: number): Buffer {
  return encodeMessage(dnsMessage({
    id: Math.floor(Math.random() * 0xffff), rd: true, questions: [{ name, type, class: 1 }],
    ...(edns !== undefined ? { additionals: [{ name: '', type: DnsType.OPT, class: edns, ttl: 0, data: Buffer.alloc(0) }] } : {}),
  }));
}

async function udpAsk(port: number, name: string, type: number = DnsType.A, edns?: number): Promise<{ msg: DnsMessage; size: number }> {
  const sock = dgram.createSocket('udp4');
  try {
    const q = query(name, type, edns);
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no udp answer for ${name}`)), 10_000);
      sock.once('message', (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      sock.send(q, port, '127.0.0.1');
    });
    const msg = decodeMessage(reply);
    assert.equal(msg.id, q.readUInt16BE(0));
    return { msg, size: reply.length };
  } finally {
    sock.close();
  }
}

async function tcpAsk(port: number, names: readonly string[], type: number = DnsType.A): Promise<DnsMessage[]> {
  const sock = net.connect(port, '127.0.0.1');
  try {
    const frames = names.map((n) => {
      const q = query(n, type);
      const h = Buffer.alloc(2);
      h.writeUInt16BE(q.length);
      return Buffer.concat([h, q]);
    });
    sock.write(Buffer.concat(frames));
    const out: DnsMessage[] = [];
    let buf = Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no tcp answer')), 10_000);
      sock.on('error', reject);
      sock.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          out.push(decodeMessage(buf.subarray(2, 2 + buf.readUInt16BE(0))));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        if (out.length === names.length) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    return out;
  } finally {
    sock.destroy();
  }
}

interface Fixture {
  readonly server: DnsServer;
  readonly port: number;
  readonly upstream: Upstream;
  readonly names: Map<string, string[]>;
}

async function fixture(t: TestContext): Promise<Fixture> {
  const upstream = await fakeUpstream();
  t.after(() => upstream.close());
  const names = new Map<string, string[]>([
    ['web', ['10.89.0.2']],
    ['db', ['10.89.0.3', 'fd89::3']],
    ['many', Array.from({ length: 40 }, (_, i) => `10.89.1.${i + 1}`)],
  ]);
  const server = new DnsServer({
    listen: [{ address: '127.0.0.1', port: 0, networkId: 'net1', networkName: 'mynet' }],
    lookup: (name, networkId) => (networkId === 'net1' ? names.get(name) : undefined),
    reverse: (ip, networkId) => (networkId === 'net1' ? [...names.entries()].find(([, a]) => a.includes(ip))?.[0] : undefined),
    upstream: [`127.0.0.1:${upstream.port}`],
    timeoutMs: 500,
  });
  t.after(() => server.close());
  await server.start();
  const port = server.listeners()[0]?.boundPort ?? 0;
  assert.ok(port > 0);
  return { server, port, upstream, names };
}

test('server: local names answer A and AAAA, case-insensitive, with or without dot, as name.<network>', async (t) => {
  const f = await fixture(t);
  for (const name of ['web', 'WEB', 'web.', 'web.mynet', 'Web.MyNet.']) {
    const { msg } = await udpAsk(f.port, name);
    assert.equal(msg.rcode, Rcode.NOERROR, name);
    assert.equal(msg.aa, true);
    assert.deepEqual(msg.answers.map((a) => a.value), ['10.89.0.2'], name);
    assert.equal(msg.answers[0]?.name, name.replace(/\.$/, ''));
  }
  assert.deepEqual((await udpAsk(f.port, 'db', DnsType.AAAA)).msg.answers.map((a) => a.value), ['fd89::3']);
  // known name without an address of that family: NOERROR with no answer, not forwarded
  const none = await udpAsk(f.port, 'web', DnsType.AAAA);
  assert.equal(none.msg.rcode, Rcode.NOERROR);
  assert.equal(none.msg.answers.length, 0);
  const ptr = await udpAsk(f.port, '3.0.89.10.in-addr.arpa', DnsType.PTR);
  assert.deepEqual(ptr.msg.answers.map((a) => a.value), ['db']);
  assert.deepEqual(f.upstream.queries, []);
});

test('server: answers follow the lookup as names come and go', async (t) => {
  const f = await fixture(t);
  f.names.set('late', ['10.89.0.9']);
  assert.deepEqual((await udpAsk(f.port, 'late')).msg.answers.map((a) => a.value), ['10.89.0.9']);
  f.names.set('late', ['10.89.0.10']);
  assert.deepEqual((await udpAsk(f.port, 'late')).msg.answers.map((a) => a.value), ['10.89.0.10']);
  f.names.delete('late');
  const gone = await udpAsk(f.port, 'late');
  assert.equal(gone.msg.rcode, Rcode.NXDOMAIN);
  assert.deepEqual(f.upstream.queries, ['udp late']);
});

test('server: other names are forwarded; NXDOMAIN passes through; truncated upstream answers are fetched over TCP', async (t) => {
  const f = await fixture(t);
  const ok = await udpAsk(f.port, 'example.test');
  assert.equal(ok.msg.rcode, Rcode.NOERROR);
  assert.deepEqual(ok.msg.answers.map((a) => a.value), ['192.0.2.10']);
  const nx = await udpAsk(f.port, 'missing.test');
  assert.equal(nx.msg.rcode, Rcode.NXDOMAIN);
  // 60 addresses: over TCP upstream; too big for plain UDP, so TC to the client
  const big = await udpAsk(f.port, 'big.test');
  assert.equal(big.msg.tc, true);
  assert.ok(big.size <= 512);
  assert.equal(big.msg.answers.length, 0);
  const bigEdns = await udpAsk(f.port, 'big.test', DnsType.A, 4096);
  assert.equal(bigEdns.msg.tc, false);
  assert.equal(bigEdns.msg.answers.length, 60);
  const [bigTcp] = await tcpAsk(f.port, ['big.test']);
  assert.equal(bigTcp?.answers.length, 60);
  assert.deepEqual(f.upstream.queries, ['udp example.test', 'udp missing.test', 'udp big.test', 'tcp big.test', 'udp big.test', 'tcp big.test', 'udp big.test', 'tcp big.test']);
});

test('server: local answers over 512 bytes set TC without EDNS; TCP answers in order', async (t) => {
  const f = await fixture(t);
  const plain = await udpAsk(f.port, 'many');
  assert.equal(plain.msg.tc, true);
  assert.ok(plain.size <= 512);
  const edns = await udpAsk(f.port, 'many', DnsType.A, 1232);
  assert.equal(edns.msg.tc, false);
  assert.equal(edns.msg.answers.length, 40);
  assert.equal(edns.msg.additionals[0]?.type, DnsType.OPT);
  const replies = await tcpAsk(f.port, ['many', 'web', 'example.test', 'nope.test']);
  assert.deepEqual(replies.map((r) => [r.questions[0]?.name, r.rcode, r.answers.length]), [
    ['many', Rcode.NOERROR, 40], ['web', Rcode.NOERROR, 1], ['example.test', Rcode.NOERROR, 1], ['nope.test', Rcode.NXDOMAIN, 0],
  ]);
});

test('server: SERVFAIL when no upstream answers; FORMERR for garbage; removeListener stops answering', async (t) => {
  const silent = dgram.createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => silent.close(() => r())));
  let asked = 0;
  silent.on('message', () => asked++);
  const server = new DnsServer({
    listen: [{ address: '127.0.0.1', port: 0, networkId: 'n' }],
    lookup: () => undefined,
    upstream: [`127.0.0.1:${silent.address().port}`],
    timeoutMs: 200,
    attempts: 2,
  });
  t.after(() => server.close());
  await server.start();
  const port = server.listeners()[0]?.boundPort ?? 0;
  const r = await udpAsk(port, 'anything.test');
  assert.equal(r.msg.rcode, Rcode.SERVFAIL);
  assert.equal(asked, 2);
  const bad = dgram.createSocket('udp4');
  try {
    const reply = await new Promise<Buffer>((resolve) => {
      bad.once('message', (m) => resolve(m));
      bad.send(Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f]), port, '127.0.0.1');
    });
    const m = decodeMessage(reply);
    assert.equal(m.id, 0x1234);
    assert.equal(m.rcode, Rcode.FORMERR);
  } finally {
    bad.close();
  }
  await server.removeListener('127.0.0.1', port);
  assert.deepEqual(server.listeners(), []);
  await assert.rejects(() => new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => {
      c.destroy();
      resolve(undefined);
    });
    c.on('error', reject);
  }), /ECONNREFUSED/);
});

test('server: busybox nslookup resolves local and forwarded names (port 53 on a loopback address)', async (t) => {
  if (!existsSync(BUSYBOX)) {
    t.skip(`no busybox at ${BUSYBOX}: run make -C native`);
    return;
  }
  if (process.getuid?.() !== 0) {
    t.skip('binding port 53 needs root');
    return;
  }
  const upstream = await fakeUpstream();
  t.after(() => upstream.close());
  const addr = `127.53.${Math.floor(Math.random() * 250) + 1}.${Math.floor(Math.random() * 250) + 1}`;
  const names = new Map<string, string[]>([['web', ['10.89.0.2']]]);
  const server = new DnsServer({
    listen: [{ address: addr, port: 53, networkId: 'n', networkName: 'mynet' }],
    lookup: (n) => names.get(n),
    upstream: [`127.0.0.1:${upstream.port}`],
    timeoutMs: 500,
  });
  t.after(() => server.close());
  await server.start();
  // asynchronous: the server answers from this process
  const look = (name: string): Promise<{ code: number | null; out: string }> =>
    new Promise((resolve, reject) => {
      const c = spawn(BUSYBOX, ['nslookup', '-type=a', name, addr], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => c.kill('SIGKILL'), 20_000);
      c.on('error', reject);
      c.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, out });
      });
    });
  const web = await look('web');
  assert.equal(web.code, 0, web.out);
  assert.match(web.out, /Address:\s+10\.89\.0\.2/);
  const qualified = await look('web.mynet');
  assert.match(qualified.out, /Address:\s+10\.89\.0\.2/);
  const fwd = await look('example.test');
  assert.equal(fwd.code, 0, fwd.out);
  assert.match(fwd.out, /Address:\s+192\.0\.2\.10/);
  const nx = await look('missing.test');
  assert.notEqual(nx.code, 0);
  assert.match(nx.out, /NXDOMAIN/);
});
