// The embedded DNS server seen from a container: a berth-runc container in a test
// network namespace, joined to the host by a veth pair, resolves names through the
// server listening on the host end (port 53), as containers on user-defined networks do.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RUNTIMES, RuntimeKit, describeResult } from '../lib/index.js';
import { REPO_ROOT } from './_engine.js';
import type * as Dns from '../../packages/engine/dist/network/dns.js';

/** The engine's dns module, loaded from its build output. */
async function dnsModule(): Promise<typeof Dns> {
  return (await import(pathToFileURL(join(REPO_ROOT, 'packages', 'engine', 'dist', 'network', 'dns.js')).href)) as typeof Dns;
}

function ip(args: readonly string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** A /30 in 10.213.0.0/16 that no route or address here uses. */
function freeSubnet(): string {
  const used = `${ip(['-4', 'route', 'show', 'table', 'all'])}\n${ip(['-4', 'addr'])}`;
  for (let i = 0; i < 100; i++) {
    const base = `10.213.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 64) * 4}`;
    const prefix = base.split('.').slice(0, 3).join('.');
    if (!used.includes(`${prefix}.`)) return base;
  }
  throw new Error('no free /30 in 10.213.0.0/16');
}

test('a container whose resolv.conf names the server resolves local names; others are forwarded', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root: network namespaces and veth pairs');
    return;
  }
  const rt = RUNTIMES.find((r) => r.name === 'berth-runc');
  if (rt === undefined || rt.missing !== undefined) {
    t.skip(`berth-runc is not available: ${rt?.missing ?? 'not listed'}`);
    return;
  }
  const { DnsServer } = await dnsModule();
  const tag = randomBytes(3).toString('hex');
  const netns = `bdns-${tag}`;
  const hostIf = `bdh${tag}`;
  const peerIf = `bdp${tag}`;
  const base = freeSubnet();
  const octets = base.split('.').map(Number);
  const at = (n: number): string => [...octets.slice(0, 3), (octets[3] as number) + n].join('.');
  const gateway = at(1);
  const containerIp = at(2);

  ip(['netns', 'add', netns]);
  t.after(() => {
    spawnSync('ip', ['link', 'del', hostIf]);
    spawnSync('ip', ['netns', 'del', netns]);
  });
  ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', peerIf]);
  ip(['link', 'set', peerIf, 'netns', netns]);
  ip(['addr', 'add', `${gateway}/30`, 'dev', hostIf]);
  ip(['link', 'set', hostIf, 'up']);
  ip(['-n', netns, 'addr', 'add', `${containerIp}/30`, 'dev', peerIf]);
  ip(['-n', netns, 'link', 'set', peerIf, 'up']);
  ip(['-n', netns, 'link', 'set', 'lo', 'up']);

  // an upstream of our own on loopback: the server runs on the host, so loopback resolvers are fine
  const upstream = new DnsServer({
    listen: [{ address: '127.0.0.1', port: 0, networkId: 'upstream' }],
    lookup: (name) => (name === 'outside.test' ? ['192.0.2.77'] : undefined),
    upstream: [],
  });
  t.after(() => upstream.close());
  await upstream.start();
  const upstreamPort = upstream.listeners()[0]?.boundPort ?? 0;

  const names = new Map<string, string[]>([['web', ['10.213.255.9']]]);
  const server = new DnsServer({
    listen: [{ address: gateway, port: 53, networkId: 'net-a', networkName: 'front' }],
    lookup: (name, networkId) => (networkId === 'net-a' ? names.get(name) : undefined),
    upstream: [`127.0.0.1:${upstreamPort}`],
    timeoutMs: 1000,
  });
  t.after(() => server.close());
  await server.start();

  const kit = RuntimeKit.open(t, rt);
  const bundle = await kit.bundle({
    mutate: (c, b) => {
      c.process.args = ['sh', '-c', 'nslookup -type=a web; echo ==; nslookup -type=a web.front; echo ==; nslookup -type=a outside.test; echo ==; nslookup -type=a gone'];
      c.linux.namespaces = c.linux.namespaces.map((n) => (n.type === 'network' ? { type: 'network', path: `/run/netns/${netns}` } : n));
      writeFileSync(join(b.rootfs, 'etc', 'resolv.conf'), `nameserver ${gateway}\noptions timeout:2 attempts:1\n`);
    },
  });
  const r = await kit.run(bundle, { timeoutMs: 60_000 });
  assert.equal(r.code !== 0 && !r.stdout.includes('=='), false, describeResult(r));
  const [web, qualified, outside, gone] = r.stdout.split('==\n');
  assert.match(web ?? '', new RegExp(`Server:\\s+${gateway.replace(/\./g, '\\.')}`), r.stdout);
  assert.match(web ?? '', /Name:\s+web\s+Address:\s+10\.213\.255\.9/, r.stdout);
  assert.match(qualified ?? '', /Address:\s+10\.213\.255\.9/, r.stdout);
  assert.match(outside ?? '', /Address:\s+192\.0\.2\.77/, r.stdout);
  // a name nobody knows: the upstream's failure comes through
  assert.match(gone ?? '', /NXDOMAIN|can't find/, r.stdout);
});
