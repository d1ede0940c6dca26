// Benchmark: the network of containers, berthd vs a real dockerd (Debian's docker.io 20.10), both
// driven by the same docker CLI on the same busybox image (saved from berthd, loaded into dockerd).
// - `docker run --rm busybox true` on the default bridge network vs `--network none` (and on a
//   user-defined network): the difference is what setting up a container's network costs;
// - BENCH_NET_COUNT (default 200) `docker run -d` one after the other on one user-defined network,
//   `docker network inspect` with all of them attached, a ping and a TCP exchange by name between
//   two of them, then their removal;
// - what each engine leaves on the host once stopped: bridges, veths, iptables rules and chains,
//   network namespaces; the benchmark then removes what dockerd keeps by design (its DOCKER chains
//   and rules) and checks that the host is as it was.
// dockerd runs here with iptables and its bridge driver on, on a bridge of its own made by the
// benchmark (`-b`), so the host's docker0 (if any) is never touched. Medians of BENCH_N (default 9).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fmt, stats } from './lib.js';
import { IMAGE, dockerOk, dockerRun, missingEngine, mountsUnder, pidsOf, scrub, scrubOnSignal, shareImage, startBerthd, startDockerd, stopEngine, timed } from './_engines.js';

const N = Number(process.env.BENCH_N ?? 9);
const COUNT = Number(process.env.BENCH_NET_COUNT ?? 200);
const SYSCTLS = ['/proc/sys/net/ipv4/ip_forward', '/proc/sys/net/bridge/bridge-nf-call-iptables', '/proc/sys/net/bridge/bridge-nf-call-ip6tables'];

// ---- host commands ----

function sh(cmd, args, { check = true } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120_000 });
  if (r.error) throw r.error;
  if (check && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${String(r.stderr).trim().slice(0, 400)}`);
  return r.stdout;
}

// ---- links, routes, iptables ----

const linkExists = (name) => existsSync(`/sys/class/net/${name}`);

function links() {
  return JSON.parse(sh('ip', ['-j', '-d', 'link', 'show']));
}

function vethsOn(bridge) {
  return links().filter((l) => l.master === bridge).map((l) => l.ifname);
}

function parseCidr(s) {
  const [ip, len] = s.split('/');
  const base = ip.split('.').reduce((a, b) => a * 256 + Number(b), 0);
  const size = 2 ** (32 - Number(len ?? 32));
  return { base: base - (base % size), size };
}

/** Routed IPv4 networks of the host (default route excluded). */
function routedNets() {
  return JSON.parse(sh('ip', ['-j', '-4', 'route', 'show', 'table', 'all']))
    .map((r) => r.dst).filter((d) => d !== undefined && d !== 'default' && /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(d)).map(parseCidr);
}

/** Free subnets of 10.77.0.0/16 (outside the engines' own pools): one /24 and two /22. */
function pickSubnets() {
  const taken = routedNets();
  const free = (c) => !taken.some((t) => t.base < c.base + c.size && c.base < t.base + t.size);
  const out = [];
  for (let third = 0; third < 256 && out.length < 3; third += 4) {
    const cidr = out.length === 0 ? `10.77.${third}.0/24` : `10.77.${third}.0/22`;
    if (free(parseCidr(cidr))) out.push(cidr);
  }
  if (out.length < 3) throw new Error('no free subnets in 10.77.0.0/16 for the benchmark');
  return out;
}

/** iptables-save, as [{ table, chains: Map(name -> policy), rules: string[] ('-A ...') }]. */
function iptablesSave() {
  const tables = [];
  let cur;
  for (const line of sh('iptables-save', []).split('\n')) {
    if (line.startsWith('*')) { cur = { table: line.slice(1), chains: new Map(), rules: [] }; tables.push(cur); }
    else if (line.startsWith(':') && cur) { const [name, policy] = line.slice(1).split(' '); cur.chains.set(name, policy); }
    else if (line.startsWith('-A ') && cur) cur.rules.push(line);
  }
  return tables;
}

/** Shell-like words of an iptables-save rule (double quotes kept together). */
function words(rule) {
  const out = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m; (m = re.exec(rule)) !== null;) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]);
  return out;
}

/** Rules and chains matching `owned` (a rule line or a chain name). */
function ipState(owned) {
  const rules = [];
  const chains = [];
  for (const t of iptablesSave()) {
    for (const r of t.rules) if (owned(r)) rules.push(`${t.table}: ${r}`);
    for (const c of t.chains.keys()) if (owned(c)) chains.push(`${t.table}: ${c}`);
  }
  return { rules, chains };
}

/** Deletes the matching rules of the built-in chains, then flushes and deletes the matching chains. */
function removeIp(owned) {
  const builtin = new Set(['INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING']);
  const tables = iptablesSave();
  for (const t of tables) {
    for (const r of t.rules) {
      const w = words(r);
      if (owned(r) && builtin.has(w[1]) && !owned(w[1])) sh('iptables', ['-t', t.table, '-D', ...w.slice(1)], { check: false });
    }
  }
  for (const t of tables) {
    const mine = [...t.chains.keys()].filter((c) => owned(c) && !builtin.has(c));
    for (const c of mine) sh('iptables', ['-t', t.table, '-F', c], { check: false });
    for (const c of mine) sh('iptables', ['-t', t.table, '-X', c], { check: false });
  }
}

function policies() {
  return Object.fromEntries(iptablesSave().flatMap((t) => [...t.chains].filter(([, p]) => p !== '-').map(([c, p]) => [`${t.table}/${c}`, p])));
}

function readSysctls() {
  return Object.fromEntries(SYSCTLS.filter((p) => existsSync(p)).map((p) => [p, readFileSync(p, 'utf8').trim()]));
}

// ---- measuring ----

/** fn(engine, variant) for every engine and variant, N times, orders alternating; stats per engine and variant. */
function sample(engines, variants, fn, n = N) {
  for (const e of engines) for (const v of variants) fn(e, v); // warm-up
  const xs = new Map(engines.flatMap((e) => variants.map((v) => [`${e.name}|${v}`, []])));
  for (let i = 0; i < n; i++) {
    const eo = i % 2 ? [...engines].reverse() : engines;
    const vo = Math.floor(i / 2) % 2 ? [...variants].reverse() : variants;
    for (const e of eo) for (const v of vo) xs.get(`${e.name}|${v}`).push(fn(e, v));
  }
  return (e, v) => stats(xs.get(`${e}|${v}`));
}

function printChecks(checks, log = console.log) {
  log('\n| check | result | detail |');
  log('|---|---|---|');
  for (const c of checks) log(`| ${c.what} | ${c.ok ? 'ok' : c.bad} | ${c.detail} |`);
}

export async function run() {
  const missing = missingEngine();
  if (missing !== undefined) { console.log(`\n## network: skipped (${missing} is not installed)`); return; }
  const preDocker = iptablesSave().flatMap((t) => [...t.chains.keys()].filter((c) => c.startsWith('DOCKER')));
  if (preDocker.length > 0) {
    console.log(`\n## network: skipped (the host already has DOCKER iptables chains: ${preDocker.join(', ')}; they could not be told apart from this run's)`);
    return;
  }

  const suffix = randomBytes(3).toString('hex');
  const names = { dBridge: `bdb-${suffix}`, dNet: `bdn-${suffix}`, bNet: `bbn-${suffix}` };
  const [dBip, bSubnet, dSubnet] = pickSubnets();
  const NETWORK = `bench-net-${suffix}`;
  const before = { sysctls: readSysctls(), policies: policies(), links: new Set(links().map((l) => l.ifname)) };
  const dirs = [mkdtempSync('/tmp/bn-b-'), mkdtempSync('/tmp/bn-d-')];
  const engines = [];
  const unguard = scrubOnSignal(dirs);
  let berthTag = '';
  let done = false;
  const dockerOwned = (s) => s.includes('DOCKER') || s.includes(names.dBridge) || s.includes(names.dNet)
    || s.includes(` ${dBip} `) || s.includes(` ${dSubnet} `);
  const berthOwned = (s) => berthTag !== '' && (s.includes(`BERTH-${berthTag}-`) || s.includes(`berth:${berthTag}`) || s.includes(`berth-${berthTag}`) || s.includes(names.bNet));
  const rows = [];
  const facts = [];
  const checks = [];
  const check = (what, ok, detail = '', bad = 'FAIL') => checks.push({ what, ok, detail, bad });
  try {
    const t0 = Date.now();
    // dockerd's default bridge, made here: `-b` wants an existing bridge with its address.
    sh('ip', ['link', 'add', 'name', names.dBridge, 'type', 'bridge']);
    const p = parseCidr(dBip);
    const gw = [24, 16, 8, 0].map((s) => ((p.base + 1) >>> s) & 255).join('.');
    sh('ip', ['addr', 'add', `${gw}/24`, 'dev', names.dBridge]);
    sh('ip', ['link', 'set', 'dev', names.dBridge, 'up']);

    const berth = await startBerthd(dirs[0]);
    // berthd names its default bridge and its iptables chains after a hash of its exec root.
    berthTag = createHash('sha256').update(berth.exec).digest('hex').slice(0, 6);
    engines.push(berth);
    const dockerd = await startDockerd(dirs[1], ['-b', names.dBridge, '--iptables=true', '--ip6tables=false', '--ip-masq=true', '--ipv6=false']);
    engines.push(dockerd);
    const [b, d] = engines;

    const id = shareImage(engines, join(dirs[0], 'busybox.tar'));
    console.log(`\n## network: berthd vs dockerd ${dockerOk(d, ['version', '--format', '{{.Server.Version}}']).trim()} (iptables on, bridge ${names.dBridge} ${dBip}), docker CLI ${dockerOk(d, ['version', '--format', '{{.Client.Version}}']).trim()}`);
    console.log(`image ${IMAGE} ${id.slice(0, 19)} in both; medians of ${N} runs, engines and variants alternating; ${COUNT} containers on one network (set up in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);

    // What a container sees on each network mode (facts to read the times with).
    const hostNet = readlinkSync('/proc/self/ns/net');
    for (const e of engines) {
      for (const mode of ['bridge', 'none']) {
        const out = dockerOk(e, ['run', '--rm', '--network', mode, IMAGE, 'sh', '-c', 'readlink /proc/self/ns/net; ip -o -4 addr show | while read n i f a r; do echo "$i=$a"; done']).trim().split('\n');
        const [ns, ...addrs] = out;
        facts.push(`${e.name} --network ${mode}: ${ns === hostNet ? 'host namespace' : 'own namespace'}, ${addrs.join(' ')}`);
        if (ns === hostNet) throw new Error(`${e.name}: a --network ${mode} container ran in the host's network namespace`);
      }
    }

    // ---- per-container network setup ----
    for (const [e, name, subnet] of [[b, names.bNet, bSubnet], [d, names.dNet, dSubnet]]) {
      dockerOk(e, ['network', 'create', '--driver', 'bridge', '--subnet', subnet, '-o', `com.docker.network.bridge.name=${name}`, NETWORK]);
      if (!linkExists(name)) throw new Error(`${e.name}: network ${NETWORK} made no bridge ${name}`);
    }
    const version = sample(engines, ['-'], (e) => timed(e, ['version']).ms);
    const modes = ['default', 'none', NETWORK];
    const runs = sample(engines, modes, (e, m) => timed(e, ['run', '--rm', ...(m === 'default' ? [] : ['--network', m]), IMAGE, 'true']).ms);
    const row = (name, bs, ds) => rows.push({ name, b: bs, d: ds });
    row('docker version (CLI baseline)', version('berthd', '-'), version('dockerd', '-'));
    row('docker run --rm busybox true (default bridge network)', runs('berthd', 'default'), runs('dockerd', 'default'));
    row('docker run --rm --network none busybox true', runs('berthd', 'none'), runs('dockerd', 'none'));
    row('docker run --rm --network <user-defined> busybox true', runs('berthd', NETWORK), runs('dockerd', NETWORK));
    const diff = (eng, m) => runs(eng, m).median - runs(eng, 'none').median;
    rows.push({ name: 'network setup per container: default - none', b: { median: diff('berthd', 'default') }, d: { median: diff('dockerd', 'default') } });
    rows.push({ name: 'network setup per container: user-defined - none', b: { median: diff('berthd', NETWORK) }, d: { median: diff('dockerd', NETWORK) } });

    // ---- COUNT containers on one network ----
    const many = Object.fromEntries(engines.map((e) => [e.name, []]));
    for (let i = 0; i < COUNT; i++) {
      for (const e of i % 2 ? [...engines].reverse() : engines) {
        many[e.name].push(timed(e, ['run', '-d', '--network', NETWORK, '--name', `bn-${i}`, IMAGE, 'sleep', '3600']).ms);
      }
    }
    const sum = (xs) => xs.reduce((s, x) => s + x, 0);
    const one = (x) => ({ median: x });
    rows.push({ name: `${COUNT} x docker run -d on one network, sequential (total s)`, b: one(sum(many.berthd) / 1000), d: one(sum(many.dockerd) / 1000), unit: 's' });
    row(`  per docker run -d (all ${COUNT})`, stats(many.berthd), stats(many.dockerd));
    const tenth = Math.max(1, Math.floor(COUNT / 10));
    row(`  per docker run -d, first ${tenth}`, stats(many.berthd.slice(0, tenth)), stats(many.dockerd.slice(0, tenth)));
    row(`  per docker run -d, last ${tenth}`, stats(many.berthd.slice(-tenth)), stats(many.dockerd.slice(-tenth)));

    for (const [e, br] of [[b, names.bNet], [d, names.dNet]]) {
      const running = dockerOk(e, ['ps', '-q', '--filter', `network=${NETWORK}`]).split('\n').filter((s) => s !== '').length;
      const veths = vethsOn(br).length;
      const attached = Object.keys(JSON.parse(dockerOk(e, ['network', 'inspect', NETWORK]))[0]?.Containers ?? {}).length;
      check(`${e.name}: ${COUNT} running on ${NETWORK}, ${COUNT} veths on ${br}, ${COUNT} in network inspect`,
        running === COUNT && veths === COUNT && attached === COUNT, `running ${running}, veths ${veths}, inspect ${attached}`);
    }
    const inspect = sample(engines, ['-'], (e) => timed(e, ['network', 'inspect', NETWORK]).ms);
    row(`docker network inspect (${COUNT} attached)`, inspect('berthd', '-'), inspect('dockerd', '-'));
    const ps = sample(engines, ['-'], (e) => timed(e, ['ps']).ms);
    row(`docker ps (${COUNT} running)`, ps('berthd', '-'), ps('dockerd', '-'));

    // Connectivity between the first and the last: ping by address, TCP by name (the embedded DNS).
    const last = `bn-${COUNT - 1}`;
    for (const e of engines) {
      const ip = dockerOk(e, ['inspect', '--format', `{{(index .NetworkSettings.Networks "${NETWORK}").IPAddress}}`, last]).trim();
      const ping = dockerRun(e, ['exec', 'bn-0', 'ping', '-c', '1', '-W', '3', ip]);
      check(`${e.name}: bn-0 pings ${last} (${ip})`, ping.status === 0, ping.status === 0 ? /time=[\d.]+ ms/.exec(ping.stdout)?.[0] ?? '' : String(ping.stderr || ping.stdout).trim().slice(0, 200));
      dockerOk(e, ['exec', '-d', last, 'sh', '-c', 'echo pong-$(hostname) | nc -l -p 7777']);
      let got = '';
      for (let i = 0; i < 20 && !got.startsWith('pong-'); i++) {
        await sleep(100);
        got = dockerRun(e, ['exec', 'bn-0', 'sh', '-c', `nc -w 3 ${last} 7777 </dev/null`]).stdout.trim();
      }
      check(`${e.name}: bn-0 reaches ${last}:7777 over TCP by name`, got.startsWith('pong-'), got === '' ? 'no answer' : got);
    }

    // Removal: all containers in one `docker rm -f`, then the network.
    const rmTimes = {};
    for (const e of engines) {
      const all = Array.from({ length: COUNT }, (_, i) => `bn-${i}`);
      rmTimes[e.name] = timed(e, ['rm', '-f', ...all]).ms / 1000;
      // Endpoints may outlive their containers for a moment: wait (up to 60 s) until none is attached.
      const attached = () => Object.keys(JSON.parse(dockerOk(e, ['network', 'inspect', NETWORK]))[0]?.Containers ?? {}).length;
      const right = attached();
      const t = Date.now();
      let still = right;
      while (still > 0 && Date.now() - t < 60_000) { await sleep(250); still = attached(); }
      check(`${e.name}: no endpoint on ${NETWORK} once docker rm -f returned`, right === 0,
        right === 0 ? '' : `${right} still attached right after; ${still === 0 ? `none after ${((Date.now() - t) / 1000).toFixed(1)} s` : `${still} after 60 s`}`);
      const r = dockerRun(e, ['network', 'rm', NETWORK]);
      check(`${e.name}: docker network rm ${NETWORK}`, r.status === 0, String(r.stderr).trim().slice(0, 200));
    }
    rows.push({ name: `docker rm -f of the ${COUNT} (one command, s)`, b: one(rmTimes.berthd), d: one(rmTimes.dockerd), unit: 's' });
    for (const [e, br] of [[b, names.bNet], [d, names.dNet]]) check(`${e.name}: network rm removed bridge ${br}`, !linkExists(br));
    done = true;
  } finally {
    // ---- stop, then what each engine left on the host ----
    for (const e of [...engines].reverse()) {
      try { await stopEngine(e, { network: NETWORK, keep: true }); } catch (err) { console.error(`${e.name}: stopping: ${err.message}`); }
    }
    const now = links();
    const newVeths = now.filter((l) => !before.links.has(l.ifname) && l.linkinfo?.info_kind === 'veth' && (l.master === undefined
      || [names.bNet, names.dNet, names.dBridge, `berth-${berthTag}`].includes(l.master))).map((l) => l.ifname);
    for (const [e, owned, bridges, dir] of [
      [engines[0], berthOwned, [`berth-${berthTag}`, names.bNet], dirs[0]],
      [engines[1], dockerOwned, [names.dNet], dirs[1]],
    ]) {
      if (e === undefined) continue;
      const ip = ipState(owned);
      const ns = mountsUnder(dir).filter((m) => m.fstype === 'nsfs').map((m) => m.point);
      const br = bridges.filter(linkExists);
      const alive = pidsOf(dir).length;
      check(`${e.name} stopped: no bridge left (${bridges.join(', ')})`, br.length === 0, br.join(', '));
      check(`${e.name} stopped: no netns bind mount left`, ns.length === 0, ns.length > 0 ? `${ns.length}: ${ns.slice(0, 3).join(', ')}` : '');
      check(`${e.name} stopped: no iptables rule or chain left`, ip.rules.length + ip.chains.length === 0,
        ip.rules.length + ip.chains.length > 0 ? `${ip.chains.length} chains (${ip.chains.join(', ')}), ${ip.rules.length} rules` : '',
        e.name === 'dockerd' ? 'left (dockerd keeps them by design)' : 'FAIL');
      check(`${e.name} stopped: no process left`, alive === 0, alive > 0 ? `${alive} processes` : '');
    }
    check('engines stopped: no new veth without a bridge or on a bench bridge', newVeths.length === 0, newVeths.join(', '));

    // ---- the benchmark's own cleanup: dockerd's kept rules and chains, its -b bridge, sysctls ----
    try { removeIp(dockerOwned); } catch (err) { console.error(`removing dockerd's iptables rules: ${err.message}`); }
    if (berthTag !== '') try { removeIp(berthOwned); } catch (err) { console.error(`removing berthd's iptables rules: ${err.message}`); }
    for (const br of [names.dBridge, names.dNet, names.bNet, ...(berthTag !== '' ? [`berth-${berthTag}`] : [])]) {
      if (linkExists(br)) sh('ip', ['link', 'del', br], { check: false });
    }
    for (const v of newVeths) if (linkExists(v)) sh('ip', ['link', 'del', v], { check: false });
    for (const [path, value] of Object.entries(before.sysctls)) {
      try { if (readFileSync(path, 'utf8').trim() !== value) writeFileSync(path, `${value}\n`); } catch { /* gone */ }
    }
    const pol = policies();
    for (const [k, v] of Object.entries(before.policies)) {
      if (pol[k] !== undefined && pol[k] !== v) { const [t, c] = k.split('/'); sh('iptables', ['-t', t, '-P', c, v], { check: false }); }
    }
    for (const dir of dirs) if (existsSync(dir)) scrub(dir);
    const ipAfter = [ipState(dockerOwned), ipState(berthOwned)];
    const left = [names.dBridge, names.dNet, names.bNet, `berth-${berthTag}`].filter(linkExists);
    const nsLeft = dirs.flatMap(mountsUnder);
    const sysNow = readSysctls();
    const sysDiff = Object.keys(before.sysctls).filter((k) => sysNow[k] !== before.sysctls[k]);
    const polNow = policies();
    const polDiff = Object.keys(before.policies).filter((k) => polNow[k] !== undefined && polNow[k] !== before.policies[k]);
    check('after the bench cleanup: host as before (bridges, rules, chains, mounts, sysctls, policies)',
      left.length + nsLeft.length + sysDiff.length + polDiff.length + ipAfter.reduce((s, x) => s + x.rules.length + x.chains.length, 0) === 0,
      [left.join(','), nsLeft.map((m) => m.point).join(','), sysDiff.join(','), polDiff.join(','),
        ipAfter.map((x) => [...x.chains, ...x.rules].join(',')).join('')].filter((s) => s !== '').join('; '));
    unguard();
    if (!done) printChecks(checks, console.error);
  }

  // ---- report ----
  console.log(`\ncontainers: ${facts.join('; ')}`);
  console.log('\n| case | berthd median | dockerd median | ratio berthd/dockerd | berthd min / p90 | dockerd min / p90 |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const unit = r.unit ?? 'ms';
    const d = unit === 's' ? 2 : 1;
    const ratio = r.d.median > 0 && r.b.median > 0 ? fmt(r.b.median / r.d.median, 2) : '-';
    const spread = (s) => (s.min === undefined ? '-' : `${fmt(s.min)} / ${fmt(s.p90)}`);
    console.log(`| ${r.name} | ${fmt(r.b.median, d)} ${unit} | ${fmt(r.d.median, d)} ${unit} | ${ratio} | ${spread(r.b)} | ${spread(r.d)} |`);
  }
  printChecks(checks);
  console.log('\nTimes are wall times of the docker CLI process. "network setup per container" is the difference of the');
  console.log('medians with a network and with --network none. dockerd keeps its DOCKER chains and rules after it stops (by design);');
  console.log('the benchmark removes them, and its -b bridge, afterwards. The machine is shared: compare ratios, not absolute times.');
  if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, `${JSON.stringify({ n: N, count: COUNT, rows, checks }, null, 2)}\n`);
  return { rows, checks };
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
