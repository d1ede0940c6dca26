/**
 * The embedded DNS server of user-defined networks, as Docker's: it listens on a
 * network's gateway address (UDP and TCP, port 53), answers A/AAAA (and PTR) queries
 * for the names the lookup callback knows on the network the query came in on
 * (container names, aliases, service names, `name.<network>`), and forwards every
 * other query to the host's resolvers (UDP with retries, TCP when truncated).
 *
 * Local names are looked up on every query, never cached, so answers follow
 * containers as they come and go.
 *
 * The message codec (RFC 1035 header, questions, resource records; compressed names
 * are read, names are written uncompressed; EDNS OPT records pass through) is at the
 * top of the file.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { invalid, unavailable } from '@berth/base';
import type { Logger } from '@berth/base';

// ---------------------------------------------------------------------------
// codec

export const DnsType = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 } as const;
export const DnsClass = { IN: 1 } as const;
export const Rcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export interface DnsQuestion {
  /** Without the trailing dot, as written in the message (case kept). */
  readonly name: string;
  readonly type: number;
  readonly class: number;
}

export interface DnsRecord {
  readonly name: string;
  readonly type: number;
  /** For OPT records: the sender's UDP payload size. */
  readonly class: number;
  /** For OPT records: extended rcode, version and flags. */
  readonly ttl: number;
  /** The record data as sent; names inside it must be uncompressed when encoding. */
  readonly data: Buffer;
  /** Decoded data: the address of A/AAAA, the name of PTR/CNAME/NS. */
  readonly value?: string;
}

export interface DnsMessage {
  readonly id: number;
  readonly qr: boolean;
  readonly opcode: number;
  readonly aa: boolean;
  readonly tc: boolean;
  readonly rd: boolean;
  readonly ra: boolean;
  readonly rcode: number;
  readonly questions: readonly DnsQuestion[];
  readonly answers: readonly DnsRecord[];
  readonly authorities: readonly DnsRecord[];
  readonly additionals: readonly DnsRecord[];
}

/** A message with defaults for every field not given. */
export function dnsMessage(m: Partial<DnsMessage>): DnsMessage {
  return {
    id: 0, qr: false, opcode: 0, aa: false, tc: false, rd: false, ra: false, rcode: 0,
    questions: [], answers: [], authorities: [], additionals: [],
    ...m,
  };
}

/** A name in wire format, uncompressed. */
export function encodeName(name: string): Buffer {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  const parts: Buffer[] = [];
  let total = 1;
  if (trimmed !== '') {
    for (const label of trimmed.split('.')) {
      const b = Buffer.from(label, 'utf8');
      if (b.length === 0 || b.length > 63) throw invalid(`dns name ${JSON.stringify(name)}: label ${JSON.stringify(label)} must be 1 to 63 bytes`);
      parts.push(Buffer.from([b.length]), b);
      total += 1 + b.length;
    }
  }
  if (total > 255) throw invalid(`dns name ${JSON.stringify(name)} is longer than 255 bytes`);
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function encodeRecord(r: DnsRecord): Buffer {
  const head = Buffer.alloc(10);
  head.writeUInt16BE(r.type, 0);
  head.writeUInt16BE(r.class, 2);
  head.writeUInt32BE(r.ttl >>> 0, 4);
  head.writeUInt16BE(r.data.length, 8);
  return Buffer.concat([encodeName(r.name), head, r.data]);
}

export function encodeMessage(m: DnsMessage): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(m.id & 0xffff, 0);
  const flags =
    (m.qr ? 0x8000 : 0) | ((m.opcode & 0xf) << 11) | (m.aa ? 0x400 : 0) | (m.tc ? 0x200 : 0) | (m.rd ? 0x100 : 0) | (m.ra ? 0x80 : 0) | (m.rcode & 0xf);
  h.writeUInt16BE(flags, 2);
  h.writeUInt16BE(m.questions.length, 4);
  h.writeUInt16BE(m.answers.length, 6);
  h.writeUInt16BE(m.authorities.length, 8);
  h.writeUInt16BE(m.additionals.length, 10);
  const parts = [h];
  for (const q of m.questions) {
    const t = Buffer.alloc(4);
    t.writeUInt16BE(q.type, 0);
    t.writeUInt16BE(q.class, 2);
    parts.push(encodeName(q.name), t);
  }
  for (const r of [...m.answers, ...m.authorities, ...m.additionals]) parts.push(encodeRecord(r));
  return Buffer.concat(parts);
}

/** Reads a possibly compressed name at `offset`; returns it and the offset after it. */
export function decodeName(buf: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  let jumps = 0;
  let length = 0;
  for (;;) {
    if (pos >= buf.length) throw invalid(`dns message: name at offset ${offset} runs past the end`);
    const len = buf[pos] as number;
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) throw invalid(`dns message: compression pointer at offset ${pos} runs past the end`);
      const target = ((len & 0x3f) << 8) | (buf[pos + 1] as number);
      if (next < 0) next = pos + 2;
      if (++jumps > 64 || target >= pos) throw invalid(`dns message: bad compression pointer at offset ${pos}`);
      pos = target;
      continue;
    }
    if ((len & 0xc0) !== 0) throw invalid(`dns message: unknown label type 0x${len.toString(16)} at offset ${pos}`);
    if (len === 0) {
      pos++;
      break;
    }
    if (pos + 1 + len > buf.length) throw invalid(`dns message: label at offset ${pos} runs past the end`);
    length += len + 1;
    if (length > 255) throw invalid(`dns message: name at offset ${offset} is longer than 255 bytes`);
    labels.push(buf.toString('utf8', pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
  return { name: labels.join('.'), next: next < 0 ? pos : next };
}

function ipv6String(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  // the longest run of zero groups becomes ::
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

function decodeRecords(buf: Buffer, offset: number, count: number, out: DnsRecord[]): number {
  let pos = offset;
  for (let i = 0; i < count; i++) {
    const { name, next } = decodeName(buf, pos);
    if (next + 10 > buf.length) throw invalid(`dns message: record ${JSON.stringify(name)} runs past the end`);
    const type = buf.readUInt16BE(next);
    const cls = buf.readUInt16BE(next + 2);
    const ttl = buf.readUInt32BE(next + 4);
    const len = buf.readUInt16BE(next + 8);
    const start = next + 10;
    if (start + len > buf.length) throw invalid(`dns message: data of record ${JSON.stringify(name)} runs past the end`);
    const data = buf.subarray(start, start + len);
    let value: string | undefined;
    if (type === DnsType.A && len === 4) value = [...data].join('.');
    else if (type === DnsType.AAAA && len === 16) value = ipv6String(data);
    else if (type === DnsType.PTR || type === DnsType.CNAME || type === DnsType.NS) value = decodeName(buf, start).name;
    out.push({ name, type, class: cls, ttl, data: Buffer.from(data), ...(value !== undefined ? { value } : {}) });
    pos = start + len;
  }
  return pos;
}

export function decodeMessage(buf: Buffer): DnsMessage {
  if (buf.length < 12) throw invalid(`dns message: ${buf.length} bytes is shorter than the 12-byte header`);
  const flags = buf.readUInt16BE(2);
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  const questions: DnsQuestion[] = [];
  let pos = 12;
  for (let i = 0; i < qd; i++) {
    const { name, next } = decodeName(buf, pos);
    if (next + 4 > buf.length) throw invalid(`dns message: question ${JSON.stringify(name)} runs past the end`);
    questions.push({ name, type: buf.readUInt16BE(next), class: buf.readUInt16BE(next + 2) });
    pos = next + 4;
  }
  const answers: DnsRecord[] = [];
  const authorities: DnsRecord[] = [];
  const additionals: DnsRecord[] = [];
  pos = decodeRecords(buf, pos, an, answers);
  pos = decodeRecords(buf, pos, ns, authorities);
  decodeRecords(buf, pos, ar, additionals);
  return {
    id: buf.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x400) !== 0,
    tc: (flags & 0x200) !== 0,
    rd: (flags & 0x100) !== 0,
    ra: (flags & 0x80) !== 0,
    rcode: flags & 0xf,
    questions,
    answers,
    authorities,
    additionals,
  };
}

/** An A or AAAA record for an address (the type follows the address family). */
export function addressRecord(name: string, address: string, ttl: number): DnsRecord {
  if (net.isIPv4(address)) return { name, type: DnsType.A, class: DnsClass.IN, ttl, data: Buffer.from(address.split('.').map(Number)), value: address };
  if (net.isIPv6(address)) return { name, type: DnsType.AAAA, class: DnsClass.IN, ttl, data: ipv6Bytes(address), value: address };
  throw invalid(`dns record for ${name}: ${JSON.stringify(address)} is not an IP address`);
}

export function ptrRecord(name: string, target: string, ttl: number): DnsRecord {
  return { name, type: DnsType.PTR, class: DnsClass.IN, ttl, data: encodeName(target), value: target };
}

function ipv6Bytes(address: string): Buffer {
  let a = address;
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  // an embedded IPv4 tail becomes two groups
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (v4 !== null) {
    const o = (v4[1] as string).split('.').map(Number);
    a = `${a.slice(0, v4.index)}${(((o[0] as number) << 8) | (o[1] as number)).toString(16)}:${(((o[2] as number) << 8) | (o[3] as number)).toString(16)}`;
  }
  const [head = '', tail] = a.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** The address a reverse name (`4.3.2.1.in-addr.arpa`, nibbles `.ip6.arpa`) stands for. */
export function reverseAddress(name: string): string | undefined {
  const n = name.toLowerCase().replace(/\.$/, '');
  if (n.endsWith('.in-addr.arpa')) {
    const parts = n.slice(0, -'.in-addr.arpa'.length).split('.');
    if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return undefined;
    return parts.reverse().map(Number).join('.');
  }
  if (n.endsWith('.ip6.arpa')) {
    const nib = n.slice(0, -'.ip6.arpa'.length).split('.');
    if (nib.length !== 32 || !nib.every((x) => /^[0-9a-f]$/.test(x))) return undefined;
    const hex = nib.reverse().join('');
    const b = Buffer.from(hex, 'hex');
    return ipv6String(b);
  }
  return undefined;
}

/** The upstream resolvers named in a resolv.conf text (`nameserver` lines). */
export function resolvConfNameservers(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m !== null && net.isIP((m[1] as string).split('%')[0] as string) !== 0) out.push(m[1] as string);
  }
  return out;
}

// ---------------------------------------------------------------------------
// server

export interface DnsListen {
  readonly address: string;
  /** 53 on a network's gateway; 0 picks a free port (the same one for UDP and TCP). */
  readonly port: number;
  readonly networkId: string;
  /** The network's name: `name.<networkName>` resolves as `name` on this network. */
  readonly networkName?: string;
}

/** The addresses of a known name, or undefined when the network does not know it. */
export type DnsLookup = (name: string, networkId: string) => readonly string[] | undefined;
/** The name for an address on the network, or undefined. */
export type DnsReverse = (ip: string, networkId: string) => string | undefined;

export interface DnsServerOptions {
  readonly listen?: readonly DnsListen[];
  readonly lookup: DnsLookup;
  readonly reverse?: DnsReverse;
  /** Resolvers for other names: `ip`, `ip:port` or `[ipv6]:port`. */
  readonly upstream: readonly string[];
  readonly log?: Logger;
  /** Milliseconds to wait for one upstream answer (default 2000). */
  readonly timeoutMs?: number;
  /** Rounds over the upstream list over UDP (default 2). */
  readonly attempts?: number;
}

interface Upstream {
  readonly host: string;
  readonly port: number;
}

interface Bound {
  readonly listen: DnsListen;
  readonly port: number;
  readonly udp: dgram.Socket;
  readonly tcp: net.Server;
  readonly conns: Set<net.Socket>;
}

/** TTL of local answers, as Docker's embedded server uses. */
const LOCAL_TTL = 600;
const MAX_UDP_PLAIN = 512;
const OUR_UDP_SIZE = 4096;
const TCP_IDLE_MS = 10_000;

function parseUpstream(s: string): Upstream {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6 !== null) return { host: v6[1] as string, port: v6[2] !== undefined ? Number(v6[2]) : 53 };
  if (net.isIP(s) !== 0) return { host: s, port: 53 };
  const m = /^([^:]+):(\d+)$/.exec(s);
  if (m !== null && net.isIPv4(m[1] as string)) return { host: m[1] as string, port: Number(m[2]) };
  throw invalid(`dns upstream ${JSON.stringify(s)}: expected an IP address, ip:port or [ipv6]:port`);
}

const keyOf = (address: string, port: number): string => `${net.isIPv6(address) ? `[${address}]` : address}:${port}`;

/** Normalised for lookup: lower case, no trailing dot. */
const normalise = (name: string): string => name.toLowerCase().replace(/\.$/, '');

export class DnsServer {
  private readonly bound = new Map<string, Bound>();
  private readonly pending: DnsListen[];
  private readonly upstream: Upstream[];
  private closed = false;

  constructor(private readonly opts: DnsServerOptions) {
    this.pending = [...(opts.listen ?? [])];
    this.upstream = opts.upstream.map(parseUpstream);
  }

  /** Binds every listener given to the constructor. */
  async start(): Promise<void> {
    const list = this.pending.splice(0);
    for (const l of list) await this.addListener(l);
  }

  /** The bound listeners with their actual ports. */
  listeners(): Array<DnsListen & { boundPort: number }> {
    return [...this.bound.values()].map((b) => ({ ...b.listen, boundPort: b.port }));
  }

  /** Starts answering on one more address (UDP and TCP); resolves to the port bound. */
  async addListener(l: DnsListen): Promise<number> {
    if (this.closed) throw unavailable('dns server is closed');
    if (net.isIP(l.address) === 0) throw invalid(`dns listen address ${JSON.stringify(l.address)} is not an IP address`);
    if (l.port !== 0 && this.bound.has(keyOf(l.address, l.port))) throw invalid(`dns server already listens on ${keyOf(l.address, l.port)}`);
    const udp = dgram.createSocket({ type: net.isIPv6(l.address) ? 'udp6' : 'udp4' });
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ address: l.address, port: l.port, exclusive: true }, () => {
          udp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      udp.close();
      throw unavailable(`dns server: binding udp ${keyOf(l.address, l.port)}: ${(err as Error).message}`, err);
    }
    const port = udp.address().port;
    const conns = new Set<net.Socket>();
    const tcp = net.createServer((sock) => this.serveTcp(sock, l, conns));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: l.address, port, exclusive: true }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      udp.close();
      throw unavailable(`dns server: binding tcp ${keyOf(l.address, port)}: ${(err as Error).message}`, err);
    }
    udp.on('error', (err) => this.opts.log?.warn('dns: udp socket error', { address: l.address, port, error: err.message }));
    tcp.on('error', (err) => this.opts.log?.warn('dns: tcp listener error', { address: l.address, port, error: err.message }));
    udp.on('message', (msg, rinfo) => {
      this.answer(msg, l, 'udp').then(
        (reply) => {
          if (reply !== undefined) udp.send(reply, rinfo.port, rinfo.address);
        },
        (err: unknown) => this.opts.log?.warn('dns: query failed', { from: rinfo.address, error: String(err) }),
      );
    });
    this.bound.set(keyOf(l.address, port), { listen: l, port, udp, tcp, conns });
    this.opts.log?.debug('dns: listening', { address: l.address, port, network: l.networkId });
    return port;
  }

  /** Stops answering on an address (the port bound, when 0 was asked). */
  async removeListener(address: string, port: number): Promise<void> {
    const key = keyOf(address, port);
    const b = this.bound.get(key);
    if (b === undefined) return;
    this.bound.delete(key);
    await this.unbind(b);
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.bound.values()];
    this.bound.clear();
    await Promise.all(all.map((b) => this.unbind(b)));
  }

  private async unbind(b: Bound): Promise<void> {
    for (const c of b.conns) c.destroy();
    await Promise.all([
      new Promise<void>((resolve) => b.udp.close(() => resolve())),
      new Promise<void>((resolve) => b.tcp.close(() => resolve())),
    ]);
  }

  private serveTcp(sock: net.Socket, l: DnsListen, conns: Set<net.Socket>): void {
    conns.add(sock);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on('close', () => conns.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = Buffer.alloc(0);
    let chain = Promise.resolve();
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        // answers go back in the order the queries came
        chain = chain.then(async () => {
          const reply = await this.answer(Buffer.from(msg), l, 'tcp').catch((err: unknown) => {
            this.opts.log?.warn('dns: query failed', { error: String(err) });
            return undefined;
          });
          if (reply === undefined || sock.destroyed) return;
          const head = Buffer.alloc(2);
          head.writeUInt16BE(reply.length);
          sock.write(Buffer.concat([head, reply]));
        });
      }
    });
  }

  /** The reply to one query, or undefined when it is not worth one. */
  async answer(raw: Buffer, l: DnsListen, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    let q: DnsMessage;
    try {
      q = decodeMessage(raw);
    } catch {
      if (raw.length < 12 || (raw.readUInt16BE(2) & 0x8000) !== 0) return undefined;
      return encodeMessage(dnsMessage({ id: raw.readUInt16BE(0), qr: true, rd: (raw.readUInt16BE(2) & 0x100) !== 0, ra: true, rcode: Rcode.FORMERR }));
    }
    if (q.qr) return undefined;
    const opt = q.additionals.find((r) => r.type === DnsType.OPT);
    const limit = transport === 'tcp' ? 0xffff : opt !== undefined ? Math.max(MAX_UDP_PLAIN, opt.class) : MAX_UDP_PLAIN;
    const optReply: DnsRecord[] = opt !== undefined ? [{ name: '', type: DnsType.OPT, class: OUR_UDP_SIZE, ttl: 0, data: Buffer.alloc(0) }] : [];
    const reply = (rcode: number, answers: DnsRecord[] = [], aa = false): Buffer =>
      fit(dnsMessage({ id: q.id, qr: true, opcode: q.opcode, aa, rd: q.rd, ra: true, rcode, questions: q.questions, answers, additionals: optReply }), limit);
    if (q.opcode !== 0) return reply(Rcode.NOTIMP);
    const question = q.questions[0];
    if (q.questions.length !== 1 || question === undefined) return reply(Rcode.FORMERR);
    if (question.class !== DnsClass.IN && question.class !== 255) return this.forward(raw, q, limit);

    const name = normalise(question.name);
    if (question.type === DnsType.PTR) {
      const ip = reverseAddress(name);
      const target = ip !== undefined ? this.opts.reverse?.(ip, l.networkId) : undefined;
      if (target !== undefined) return reply(Rcode.NOERROR, [ptrRecord(question.name, target, LOCAL_TTL)], true);
      return this.forward(raw, q, limit);
    }
    const addrs = this.local(name, l);
    if (addrs === undefined) return this.forward(raw, q, limit);
    const want = question.type === DnsType.A ? 4 : question.type === DnsType.AAAA ? 6 : question.type === DnsType.ANY ? 0 : -1;
    const answers = want < 0 ? [] : addrs.filter((a) => want === 0 || net.isIP(a) === want).map((a) => addressRecord(question.name, a, LOCAL_TTL));
    return reply(Rcode.NOERROR, answers, true);
  }

  /** The addresses of a local name on the listener's network (also as `name.<network>`). */
  private local(name: string, l: DnsListen): readonly string[] | undefined {
    if (name === '') return undefined;
    const direct = this.opts.lookup(name, l.networkId);
    if (direct !== undefined) return direct;
    const suffix = l.networkName !== undefined && l.networkName !== '' ? `.${l.networkName.toLowerCase()}` : undefined;
    if (suffix !== undefined && name.endsWith(suffix) && name.length > suffix.length) {
      return this.opts.lookup(name.slice(0, -suffix.length), l.networkId);
    }
    return undefined;
  }

  /** Sends the query on to the upstream resolvers; SERVFAIL when none answers. */
  private async forward(raw: Buffer, q: DnsMessage, limit: number): Promise<Buffer> {
    const servers = this.upstream.filter((u) => !this.isSelf(u));
    const servfail = (): Buffer =>
      fit(dnsMessage({ id: q.id, qr: true, rd: q.rd, ra: true, rcode: Rcode.SERVFAIL, questions: q.questions }), limit);
    if (servers.length === 0) return servfail();
    const timeout = this.opts.timeoutMs ?? 2000;
    const attempts = this.opts.attempts ?? 2;
    for (let round = 0; round < attempts; round++) {
      for (const u of servers) {
        const id = randomInt(0, 0x10000);
        const out = Buffer.from(raw);
        out.writeUInt16BE(id, 0);
        let res = await udpExchange(u, out, id, q, timeout).catch((err: unknown) => {
          this.opts.log?.debug('dns: upstream did not answer over udp', { upstream: `${u.host}:${u.port}`, error: String(err) });
          return undefined;
        });
        if (res !== undefined && (res.readUInt16BE(2) & 0x200) !== 0) {
          res = await tcpExchange(u, out, id, q, timeout).catch((err: unknown) => {
            this.opts.log?.debug('dns: upstream did not answer over tcp', { upstream: `${u.host}:${u.port}`, error: String(err) });
            return undefined;
          });
        }
        if (res === undefined) continue;
        const rcode = res.readUInt16BE(2) & 0xf;
        // a resolver that fails or refuses: ask the next one
        if ((rcode === Rcode.SERVFAIL || rcode === Rcode.REFUSED) && servers.length > 1) continue;
        const back = Buffer.from(res);
        back.writeUInt16BE(q.id, 0);
        if (back.length <= limit) return back;
        return truncated(back, q, limit);
      }
    }
    this.opts.log?.debug('dns: no upstream answered', { name: q.questions[0]?.name });
    return servfail();
  }

  private isSelf(u: Upstream): boolean {
    return this.bound.has(keyOf(u.host, u.port));
  }
}

/** The message, or its header and question with TC set when it is bigger than `limit`. */
function fit(m: DnsMessage, limit: number): Buffer {
  const b = encodeMessage(m);
  if (b.length <= limit) return b;
  return encodeMessage({ ...m, tc: true, answers: [], authorities: [] });
}

/** A forwarded answer too big for the client's UDP: header and question, TC set (OPT kept). */
function truncated(res: Buffer, q: DnsMessage, limit: number): Buffer {
  let m: DnsMessage;
  try {
    m = decodeMessage(res);
  } catch {
    return encodeMessage(dnsMessage({ id: q.id, qr: true, tc: true, rd: q.rd, ra: true, rcode: Rcode.SERVFAIL, questions: q.questions }));
  }
  const opt = m.additionals.filter((r) => r.type === DnsType.OPT);
  return fit({ ...m, tc: true, answers: [], authorities: [], additionals: opt }, limit);
}

/** Whether an upstream answer belongs to the query sent. */
function matches(res: Buffer, id: number, q: DnsMessage): boolean {
  if (res.length < 12 || res.readUInt16BE(0) !== id || (res.readUInt16BE(2) & 0x8000) === 0) return false;
  try {
    const m = decodeMessage(res.subarray(0, res.length));
    const a = m.questions[0];
    const b = q.questions[0];
    // some resolvers drop the question from error answers
    if (a === undefined) return m.rcode !== Rcode.NOERROR;
    return b !== undefined && normalise(a.name) === normalise(b.name) && a.type === b.type;
  } catch {
    return false;
  }
}

function udpExchange(u: Upstream, query: Buffer, id: number, q: DnsMessage, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: net.isIPv6(u.host) ? 'udp6' : 'udp4' });
    const done = (err: Error | undefined, res?: Buffer): void => {
      clearTimeout(timer);
      sock.close();
      if (err !== undefined) reject(err);
      else resolve(res as Buffer);
    };
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(err));
    sock.on('message', (msg, rinfo) => {
      if (rinfo.port !== u.port || normaliseIp(rinfo.address) !== normaliseIp(u.host)) return;
      if (!matches(msg, id, q)) return;
      done(undefined, msg);
    });
    sock.send(query, u.port, u.host, (err) => {
      if (err) done(err);
    });
  });
}

function tcpExchange(u: Upstream, query: Buffer, id: number, q: DnsMessage, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: u.host, port: u.port });
    let buf = Buffer.alloc(0);
    let settled = false;
    const done = (err: Error | undefined, res?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err !== undefined) reject(err);
      else resolve(res as Buffer);
    };
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(err));
    sock.on('close', () => done(new Error('connection closed before an answer')));
    sock.on('connect', () => {
      const head = Buffer.alloc(2);
      head.writeUInt16BE(query.length);
      sock.write(Buffer.concat([head, query]));
    });
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      const msg = Buffer.from(buf.subarray(2, 2 + len));
      if (!matches(msg, id, q)) done(new Error('answer does not match the query'));
      else done(undefined, msg);
    });
  });
}

function normaliseIp(ip: string): string {
  const s = ip.toLowerCase().replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
  return net.isIPv6(s) ? ipv6String(ipv6Bytes(s)) : s;
}
