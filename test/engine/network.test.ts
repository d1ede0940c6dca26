/**
 * Networking end to end with the real docker CLI: the default bridge, user
 * networks (subnet, gateway, --ip, internal), isolation, published ports
 * (127.0.0.1, the gateway address, -P, conflicts), connect/disconnect of a
 * running container, a berthd restart, name resolution on user networks,
 * and teardown leaving no link, netns mount or iptables rule of the engine.
 * Traffic goes only to loopback and to the test's own containers.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { api, cleanupEngine, docker, dockerOk, engineDirs, instanceTag, startEngine } from './_engine.js';
import type { EngineProcess } from './_engine.js';

const dirs = engineDirs();
const sock = dirs.socket;
const tag = instanceTag(dirs.execRoot);
let engine: EngineProcess | undefined;

before(async () => {
  engine = await startEngine(dirs);
});
after(async () => {
  await cleanupEngine(engine, dirs);
});

const PORT_BASE = 20000 + Math.floor(Math.random() * 20000);

/** An HTTP GET over a raw TCP connection from the host; the body. */
/** GET over a published port; retried for a while (the server may still be starting, the machine loaded). */
async function httpGet(host: string, port: number, path: string, ms = 15_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const body = await httpGetOnce(host, port, path);
      if (body !== '' || Date.now() > deadline) return body;
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

function httpGetOnce(host: string, port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    const chunks: Buffer[] = [];
    s.setTimeout(3000, () => s.destroy(new Error(`timed out talking to ${host}:${port}`)));
    s.once('connect', () => s.write(`GET ${path} HTTP/1.0\r\n\r\n`));
    s.on('data', (b: Buffer) => chunks.push(b));
    s.once('error', reject);
    s.once('close', () => {
      const text = Buffer.concat(chunks).toString();
      const i = text.indexOf('\r\n\r\n');
      resolve(i < 0 ? '' : text.slice(i + 4));
    });
  });
}

/** A web server container answering /hostname (its short ID). */
function web(name: string, args: readonly string[] = []): string {
  return dockerOk(sock, ['run', '-d', '--name', name, ...args, 'busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']).trim();
}

/** Fetch http://ip:port/hostname from inside a throwaway container (busybox nc). */
function fetchFrom(args: readonly string[], ip: string, port = 80): { code: number; body: string } {
  const r = docker(sock, ['run', '--rm', ...args, 'busybox', 'sh', '-c',
    `printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${ip} ${port}`], { timeoutMs: 30_000 });
  const i = r.stdout.indexOf('\r\n\r\n');
  return { code: r.code, body: i < 0 ? '' : r.stdout.slice(i + 4) };
}

function inspect<T>(name: string, format: string): T {
  return JSON.parse(dockerOk(sock, ['inspect', '--format', `{{json ${format}}}`, name])) as T;
}

interface EndpointView { IPAddress: string; Gateway: string; IPPrefixLen: number; MacAddress: string; NetworkID: string; EndpointID: string }

test('the default bridge gives an address and containers reach each other by IP', () => {
  const id = web('web-a');
  const ns = inspect<{ IPAddress: string; Gateway: string; IPPrefixLen: number; SandboxKey: string; Networks: Record<string, EndpointView> }>('web-a', '.NetworkSettings');
  assert.match(ns.IPAddress, /^\d+\.\d+\.\d+\.\d+$/);
  assert.equal(ns.Networks['bridge']?.IPAddress, ns.IPAddress);
  assert.match(ns.Networks['bridge']?.MacAddress ?? '', /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  assert.ok(existsSync(ns.SandboxKey), 'the netns bind mount exists');
  const r = fetchFrom([], ns.IPAddress);
  assert.equal(r.code, 0);
  assert.equal(r.body.trim(), id.slice(0, 12));
  // The container's route out is via the gateway, which is on the engine's bridge.
  const routes = dockerOk(sock, ['exec', 'web-a', 'ip', 'route']);
  assert.match(routes, new RegExp(`default via ${ns.Gateway.replace(/\./g, '\\.')} dev eth0`));
  const hosts = dockerOk(sock, ['exec', 'web-a', 'cat', '/etc/hosts']);
  assert.match(hosts, new RegExp(`^${ns.IPAddress.replace(/\./g, '\\.')}\\s`, 'm'));
  dockerOk(sock, ['rm', '-f', 'web-a']);
});

test('user networks: subnet, gateway, ip-range, --ip by connect, inspect, isolation between networks', () => {
  dockerOk(sock, ['network', 'create', '--subnet', '10.231.5.0/24', '--gateway', '10.231.5.254', '--ip-range', '10.231.5.128/25', '--label', 'team=a', 'na']);
  dockerOk(sock, ['network', 'create', '--subnet', '10.231.6.0/24', 'nb']);
  try {
    const dup = docker(sock, ['network', 'create', 'na']);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /network with name na already exists/);
    const overlap = docker(sock, ['network', 'create', '--subnet', '10.231.5.0/25', 'nc']);
    assert.notEqual(overlap.code, 0);
    assert.match(overlap.stderr, /Pool overlaps with other one on this address space/);

    web('web-na', ['--network', 'na']);
    const ep = inspect<Record<string, EndpointView>>('web-na', '.NetworkSettings.Networks')['na'];
    assert.equal(ep?.IPAddress, '10.231.5.128', 'the first address of the ip-range');
    assert.equal(ep?.Gateway, '10.231.5.254');
    assert.equal(ep?.IPPrefixLen, 24);
    const net = JSON.parse(dockerOk(sock, ['network', 'inspect', 'na'])) as [{ Id: string; IPAM: { Config: { Subnet: string; Gateway: string; IPRange: string }[] }; Containers: Record<string, { Name: string; IPv4Address: string; MacAddress: string }>; Labels: Record<string, string> }];
    assert.deepEqual(net[0].IPAM.Config[0], { Subnet: '10.231.5.0/24', Gateway: '10.231.5.254', IPRange: '10.231.5.128/25' });
    assert.equal(net[0].Labels['team'], 'a');
    const members = Object.values(net[0].Containers);
    assert.equal(members.length, 1);
    assert.equal(members[0]?.Name, 'web-na');
    assert.equal(members[0]?.IPv4Address, '10.231.5.128/24');
    assert.equal(ep?.NetworkID, net[0].Id);

    assert.match(dockerOk(sock, ['network', 'ls', '--filter', 'label=team=a', '--format', '{{.Name}}']), /^na$/m);
    assert.doesNotMatch(dockerOk(sock, ['network', 'ls', '--filter', 'type=custom', '--format', '{{.Name}}']), /^bridge$/m);
    assert.match(dockerOk(sock, ['network', 'ls', '--filter', 'type=builtin', '--format', '{{.Name}}']), /^host$/m);

    // Same network: reachable (by address and, through the embedded DNS server, by name).
    const same = fetchFrom(['--network', 'na'], '10.231.5.128');
    assert.equal(same.code, 0);
    assert.notEqual(same.body.trim(), '');
    const byName = fetchFrom(['--network', 'na'], 'web-na');
    assert.equal(byName.body.trim(), same.body.trim(), 'the container name resolves on its network');
    // Another network and the default bridge: cut off.
    assert.equal(fetchFrom(['--network', 'nb'], '10.231.5.128').body, '');
    assert.equal(fetchFrom([], '10.231.5.128').body, '');

    const inUse = docker(sock, ['network', 'rm', 'na']);
    assert.notEqual(inUse.code, 0);
    assert.match(inUse.stderr, /has active endpoints/);
    const builtin = docker(sock, ['network', 'rm', 'bridge']);
    assert.match(builtin.stderr, /pre-defined network and cannot be removed/);

    // A fixed address by connect (the container is first on another network).
    web('web-nb', ['--network', 'nb']);
    dockerOk(sock, ['network', 'connect', '--ip', '10.231.5.77', '--alias', 'second', 'na', 'web-nb']);
    const eps = inspect<Record<string, EndpointView>>('web-nb', '.NetworkSettings.Networks');
    assert.equal(eps['na']?.IPAddress, '10.231.5.77');
    assert.match(dockerOk(sock, ['exec', 'web-nb', 'ip', '-4', 'addr', 'show', 'eth1']), /inet 10\.231\.5\.77\/24/);
    assert.equal(fetchFrom(['--network', 'na'], '10.231.5.77').code, 0);
    assert.notEqual(fetchFrom(['--network', 'na'], 'second').body, '', 'the alias resolves');
    dockerOk(sock, ['network', 'disconnect', 'na', 'web-nb']);
    assert.equal(inspect<Record<string, unknown>>('web-nb', '.NetworkSettings.Networks')['na'], undefined);
    assert.notEqual(docker(sock, ['exec', 'web-nb', 'ip', 'link', 'show', 'eth1']).code, 0, 'eth1 is gone');
    assert.equal(fetchFrom(['--network', 'na'], '10.231.5.77').body, '');
    // The address is free again.
    dockerOk(sock, ['network', 'connect', '--ip', '10.231.5.77', 'na', 'web-nb']);
    dockerOk(sock, ['network', 'disconnect', 'na', 'web-nb']);
  } finally {
    docker(sock, ['rm', '-f', 'web-na', 'web-nb']);
    docker(sock, ['network', 'rm', 'na', 'nb']);
  }
  assert.doesNotMatch(dockerOk(sock, ['network', 'ls', '--format', '{{.Name}}']), /^n[ab]$/m);
});

test('an internal network has no way out', () => {
  dockerOk(sock, ['network', 'create', '--internal', 'ni']);
  try {
    web('web-ni', ['--network', 'ni']);
    const routes = dockerOk(sock, ['exec', 'web-ni', 'ip', 'route']);
    assert.doesNotMatch(routes, /default/);
    const subnet = (JSON.parse(dockerOk(sock, ['network', 'inspect', 'ni'])) as [{ IPAM: { Config: { Subnet: string }[] } }])[0].IPAM.Config[0]?.Subnet ?? '';
    const rules = execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' });
    assert.doesNotMatch(rules, new RegExp(`-s ${subnet.replace(/\./g, '\\.')} ! -o .*MASQUERADE`), 'no masquerade for the internal subnet');
    // Not even a route-less hop: the default bridge's containers are unreachable.
    web('web-def');
    const ip = inspect<string>('web-def', '.NetworkSettings.IPAddress');
    assert.equal(fetchFrom(['--network', 'ni'], ip).body, '');
  } finally {
    docker(sock, ['rm', '-f', 'web-ni', 'web-def']);
    docker(sock, ['network', 'rm', 'ni']);
  }
});

test('published ports: 127.0.0.1, the gateway address, -P, docker port, conflicts', async () => {
  const port = PORT_BASE;
  const id = web('pub', ['-p', `${port}:80`, '-p', `127.0.0.1:${port + 1}:80`]);
  try {
    const gw = inspect<string>('pub', '.NetworkSettings.Gateway');
    assert.equal((await httpGet('127.0.0.1', port, '/hostname')).trim(), id.slice(0, 12));
    assert.equal((await httpGet(gw, port, '/hostname')).trim(), id.slice(0, 12));
    assert.equal((await httpGet('127.0.0.1', port + 1, '/hostname')).trim(), id.slice(0, 12));
    // Hairpin: another container through the gateway address.
    assert.equal(fetchFrom([], gw, port).body.trim(), id.slice(0, 12));
    const ports = inspect<Record<string, { HostIp: string; HostPort: string }[] | null>>('pub', '.NetworkSettings.Ports');
    assert.deepEqual(ports['80/tcp'], [{ HostIp: '0.0.0.0', HostPort: String(port) }, { HostIp: '127.0.0.1', HostPort: String(port + 1) }]);
    assert.match(dockerOk(sock, ['port', 'pub', '80']), new RegExp(`0\\.0\\.0\\.0:${port}`));

    const clash = docker(sock, ['run', '-d', '--name', 'clash', '-p', `${port}:80`, 'busybox', 'httpd', '-f', '-p', '80']);
    assert.notEqual(clash.code, 0);
    assert.match(clash.stderr, new RegExp(`Bind for 0\\.0\\.0\\.0:${port} failed: port is already allocated`));
    docker(sock, ['rm', '-f', 'clash']);

    const pid = dockerOk(sock, ['run', '-d', '--name', 'puball', '--expose', '80', '--expose', '81/udp', '-P', 'busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']).trim();
    const all = inspect<Record<string, { HostIp: string; HostPort: string }[] | null>>('puball', '.NetworkSettings.Ports');
    const hp = Number(all['80/tcp']?.[0]?.HostPort);
    assert.ok(hp > 1024, `ephemeral port ${hp}`);
    assert.ok(Number(all['81/udp']?.[0]?.HostPort) > 1024);
    assert.equal((await httpGet('127.0.0.1', hp, '/hostname')).trim(), pid.slice(0, 12));
    const out = dockerOk(sock, ['port', 'puball']);
    assert.match(out, new RegExp(`^80/tcp -> 0\\.0\\.0\\.0:${hp}$`, 'm'));
    assert.match(out, /^81\/udp -> 0\.0\.0\.0:\d+$/m);
  } finally {
    docker(sock, ['rm', '-f', 'pub', 'puball']);
  }
  // The DNAT rules went with the containers.
  assert.doesNotMatch(execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' }), new RegExp(`BERTH-${tag}-DNAT .*--dport ${port}\\b`));
});

test('a berthd restart keeps a running container reachable', async () => {
  const port = PORT_BASE + 10;
  const id = web('survivor', ['-p', `${port}:80`]);
  const ip = inspect<string>('survivor', '.NetworkSettings.IPAddress');
  assert.ok(engine !== undefined);
  await engine.stop();
  assert.equal((await httpGet('127.0.0.1', port, '/hostname')).trim(), id.slice(0, 12), 'reachable while berthd is down');
  engine = await startEngine(dirs);
  assert.equal(inspect<string>('survivor', '.NetworkSettings.IPAddress'), ip);
  assert.equal((await httpGet('127.0.0.1', port, '/hostname')).trim(), id.slice(0, 12));
  assert.equal(fetchFrom([], ip).body.trim(), id.slice(0, 12));
  // Its lease is kept: a new container gets another address.
  web('newcomer');
  assert.notEqual(inspect<string>('newcomer', '.NetworkSettings.IPAddress'), ip);
  dockerOk(sock, ['rm', '-f', 'survivor', 'newcomer']);
});

/** What of this engine is in the kernel: its links, veths on its bridges, netns mounts, iptables rules. */
function traces(bridges: readonly string[] = []): { links: string[]; mounts: string[]; rules: string[]; netns: string[] } {
  const links = (JSON.parse(execFileSync('ip', ['-j', 'link'], { encoding: 'utf8' })) as { ifname: string; master?: string }[]);
  const ours = new Set([`berth-${tag}`, ...bridges]);
  const mine = links.filter((l) => ours.has(l.ifname) || (l.master !== undefined && ours.has(l.master))).map((l) => l.ifname);
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith(`${dirs.execRoot}/netns`));
  const rules = execFileSync('iptables-save', { encoding: 'utf8' }).split('\n').filter((l) => l.includes(tag));
  const nsDir = `${dirs.execRoot}/netns`;
  return { links: mine, mounts, rules, netns: existsSync(nsDir) ? readdirSync(nsDir) : [] };
}

test('teardown leaves no link, netns mount, iptables rule or lease of the engine', async () => {
  const before = traces();
  dockerOk(sock, ['network', 'create', 'nt']);
  const bridgeOf = `br-${dockerOk(sock, ['network', 'inspect', '--format', '{{.Id}}', 'nt']).trim().slice(0, 12)}`;
  web('t1', ['--network', 'nt', '-p', `${PORT_BASE + 20}:80`]);
  web('t2');
  dockerOk(sock, ['network', 'connect', 'nt', 't2']);
  const during = traces([bridgeOf]);
  assert.ok(during.mounts.length >= 2, 'two netns mounts while running');
  assert.ok(during.links.length > before.links.length, 'veths on the bridges');
  assert.ok(existsSync(`/sys/class/net/${bridgeOf}`));
  dockerOk(sock, ['stop', '-t', '0', 't1']);
  assert.equal(traces([bridgeOf]).mounts.length, during.mounts.length - 1, 'a stopped container gives back its netns');
  dockerOk(sock, ['rm', '-f', 't1', 't2']);
  dockerOk(sock, ['network', 'rm', 'nt']);
  assert.equal(existsSync(`/sys/class/net/${bridgeOf}`), false, 'the network\'s bridge is gone');
  assert.deepEqual(traces([bridgeOf]), before);
  const net = JSON.parse(dockerOk(sock, ['network', 'inspect', 'bridge'])) as [{ Containers: Record<string, unknown> }];
  assert.deepEqual(net[0].Containers, {}, 'no lease left on the default bridge');
  // With nothing attached, stopping the engine takes its default bridge and rules too.
  assert.ok(engine !== undefined);
  await engine.stop();
  assert.deepEqual(traces(), { links: [], mounts: [], rules: [], netns: [] });
  engine = await startEngine(dirs);
  assert.match(dockerOk(sock, ['network', 'ls', '--format', '{{.Name}}']), /^bridge$/m);
});

test('concurrent starts and removals: distinct leases, Docker MACs, only published ports touch the rules, nothing left', async () => {
  const before = traces();
  const rulesBefore = before.rules;
  const names = Array.from({ length: 8 }, (_, i) => `conc-${i}`);
  const port = PORT_BASE + 30;
  try {
    for (const [i, name] of names.entries()) {
      dockerOk(sock, ['create', '--name', name, ...(i === 0 ? ['-p', `${port}:80`] : []), 'busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']);
    }
    const started = await Promise.all(names.map((n) => api(sock, 'POST', `/containers/${n}/start`)));
    assert.deepEqual(started.map((r) => r.status), names.map(() => 204), started.map((r) => r.body).join(' '));
    const eps = names.map((n) => inspect<{ IPAddress: string; MacAddress: string }>(n, '.NetworkSettings.Networks.bridge'));
    assert.equal(new Set(eps.map((e) => e.IPAddress)).size, names.length, 'one address each');
    for (const e of eps) {
      const mac = `02:42:${e.IPAddress.split('.').map((b) => Number(b).toString(16).padStart(2, '0')).join(':')}`;
      assert.equal(e.MacAddress, mac);
    }
    assert.equal(dockerOk(sock, ['exec', names[1] ?? '', 'cat', '/sys/class/net/eth0/address']).trim(), eps[1]?.MacAddress);
    // The only rule that changed is the published port's DNAT.
    const added = traces().rules.filter((l) => !rulesBefore.includes(l));
    assert.equal(added.length, 1, added.join('\n'));
    assert.match(added[0] ?? '', new RegExp(`^-A BERTH-${tag}-DNAT -p tcp -m tcp --dport ${port} -j DNAT --to-destination ${(eps[0]?.IPAddress ?? '').replace(/\./g, '\\.')}:80$`));
    assert.equal(fetchFrom([], eps[names.length - 1]?.IPAddress ?? '').body.trim(), dockerOk(sock, ['inspect', '--format', '{{.Id}}', names[names.length - 1] ?? '']).trim().slice(0, 12));
  } finally {
    dockerOk(sock, ['rm', '-f', ...names]);
  }
  assert.deepEqual(traces(), before);
  const net = JSON.parse(dockerOk(sock, ['network', 'inspect', 'bridge'])) as [{ Containers: Record<string, unknown> }];
  assert.deepEqual(net[0].Containers, {}, 'no lease left');
});
