// Benchmark (issue 3): create+start+wait+delete of a trivial task through containerd's gRPC API,
// berth-containerd (fast path, berth-runc, runc) vs a real containerd with runc, on the same
// root filesystem; then 100 tasks started concurrently and the memory of their shims.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync, openSync, closeSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { stats, printTable, which } from './lib.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(repo, 'packages/supervisor/package.json'));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const N = Number(process.env.BENCH_N ?? 15);
const CONCURRENT = Number(process.env.BENCH_CONCURRENT ?? 100);
const protoDir = join(repo, 'packages/supervisor/dist/proto');

function loadClients(address) {
  const def = protoLoader.loadSync(['services/containers/v1/containers.proto', 'services/tasks/v1/tasks.proto'], {
    keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [protoDir],
  });
  const pkg = grpc.loadPackageDefinition(def);
  const creds = grpc.credentials.createInsecure();
  const target = `unix://${address}`;
  return {
    containers: new pkg.containerd.services.containers.v1.Containers(target, creds),
    tasks: new pkg.containerd.services.tasks.v1.Tasks(target, creds),
  };
}

const md = () => { const m = new grpc.Metadata(); m.set('containerd-namespace', 'bench'); return m; };
const call = (client, method, req) => new Promise((resolve, reject) => {
  client[method](req, md(), (err, res) => (err ? reject(new Error(`${method}: ${err.message}`)) : resolve(res)));
});

function optionsAny(binary) {
  const root = new protobuf.Root();
  root.resolvePath = (_o, t) => join(protoDir, t);
  root.loadSync('types/runc/options/oci.proto', { keepCase: true });
  const T = root.lookupType('containerd.runc.v1.Options');
  return { type_url: 'containerd.runc.v1.Options', value: Buffer.from(T.encode(T.fromObject({ binary_name: binary })).finish()) };
}

function specAny(rootfs, args) {
  const spec = defaultSpecViaDist();
  spec.process.terminal = false;
  spec.process.args = args;
  spec.root = { path: rootfs, readonly: false };
  return { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Spec', value: Buffer.from(JSON.stringify(spec)) };
}

function defaultSpecViaDist() {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-spec-'));
  spawnSync(process.execPath, [join(repo, 'packages/runtime/bin/berth-runc.js'), 'spec', '--bundle', dir]);
  const s = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  rmSync(dir, { recursive: true, force: true });
  return s;
}

async function waitSocket(path, child, logFile) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    const ok = await new Promise((r) => { const s = connect(path); s.once('connect', () => { s.destroy(); r(true); }); s.once('error', () => r(false)); });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`daemon did not come up: ${readFileSync(logFile, 'utf8').slice(-1500)}`);
}

async function startBerth(dir) {
  const address = join(dir, 'berth.sock');
  const log = join(dir, 'berth.log');
  writeFileSync(log, '');
  const fd = openSync(log, 'a');
  const prof = process.env.BENCH_DAEMON_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_DAEMON_PROFILE}`] : [];
  const child = spawn(process.execPath, [...prof, join(repo, 'packages/supervisor/bin/berth-containerd.js'), '--address', address,
    '--root', join(dir, 'berth-root'), '--state', join(dir, 'berth-state')], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  await waitSocket(address, child, log);
  return { address, child };
}

async function startContainerd(dir) {
  const address = join(dir, 'containerd.sock');
  const cfg = join(dir, 'containerd.toml');
  for (const d of ['c-root', 'c-state', 'c-tmp']) mkdirSync(join(dir, d));
  writeFileSync(cfg, [
    'version = 2', `root = "${join(dir, 'c-root')}"`, `state = "${join(dir, 'c-state')}"`, `temp = "${join(dir, 'c-tmp')}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]',
    '[grpc]', `  address = "${address}"`, '[ttrpc]', `  address = "${address}.ttrpc"`, '[debug]', '  address = ""', '[metrics]', '  address = ""', '',
  ].join('\n'));
  const log = join(dir, 'containerd.log');
  writeFileSync(log, '');
  const fd = openSync(log, 'a');
  const child = spawn('containerd', ['--config', cfg], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  await waitSocket(address, child, log);
  return { address, child };
}

export const phases = new Map();
function lap(name, t0) {
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (!phases.has(name)) phases.set(name, []);
  phases.get(name).push(ms);
  return process.hrtime.bigint();
}

async function cycle(c, id, rootfs, runtimeOptions) {
  let t = process.hrtime.bigint();
  await call(c.containers, 'Create', { container: { id, spec: specAnyCached(rootfs, ['/bin/true']), runtime: { name: 'io.containerd.runc.v2', ...(runtimeOptions ? { options: runtimeOptions } : {}) } } });
  t = lap('Containers.Create', t);
  await call(c.tasks, 'Create', { container_id: id });
  t = lap('Tasks.Create', t);
  const waiting = call(c.tasks, 'Wait', { container_id: id });
  await call(c.tasks, 'Start', { container_id: id });
  t = lap('Tasks.Start', t);
  await waiting;
  t = lap('Tasks.Wait (after start)', t);
  await call(c.tasks, 'Delete', { container_id: id });
  t = lap('Tasks.Delete', t);
  await call(c.containers, 'Delete', { id });
  lap('Containers.Delete', t);
}

// Processes whose command line matches, with their RSS and PSS in kB.
function memoryOf(match) {
  const out = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let cmd;
    try { cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8'); } catch { continue; }
    if (!cmd.includes(match)) continue;
    try {
      const roll = readFileSync(`/proc/${p}/smaps_rollup`, 'utf8');
      const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(roll)?.[1] ?? 0);
      out.push({ pid: Number(p), rss: kb('Rss'), pss: kb('Pss') });
    } catch { /* gone */ }
  }
  return out;
}

async function concurrent(c, rootfs, runtimeOptions, prefix, shimMatch) {
  const ids = Array.from({ length: CONCURRENT }, (_, i) => `${prefix}-${i}`);
  const t0 = process.hrtime.bigint();
  await Promise.all(ids.map(async (id) => {
    await call(c.containers, 'Create', { container: { id, spec: specAnyCached(rootfs, ['/bin/sleep', '60']), runtime: { name: 'io.containerd.runc.v2', ...(runtimeOptions ? { options: runtimeOptions } : {}) } } });
    await call(c.tasks, 'Create', { container_id: id });
    await call(c.tasks, 'Start', { container_id: id });
  }));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const mem = memoryOf(shimMatch);
  await Promise.all(ids.map(async (id) => {
    await call(c.tasks, 'Kill', { container_id: id, signal: 9, all: true }).catch(() => undefined);
    await call(c.tasks, 'Wait', { container_id: id }).catch(() => undefined);
    await call(c.tasks, 'Delete', { container_id: id }).catch(() => undefined);
    await call(c.containers, 'Delete', { id }).catch(() => undefined);
  }));
  return { ms, mem };
}

const specCache = new Map();
function specAnyCached(rootfs, args) {
  const k = rootfs + args.join(' ');
  if (!specCache.has(k)) specCache.set(k, specAny(rootfs, args));
  return specCache.get(k);
}

export async function run() {
  if (!existsSync(join(repo, 'packages/supervisor/dist/proto'))) throw new Error('build first (npm run build)');
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-sup-'));
  const children = [];
  try {
    const rootfs = join(dir, 'rootfs');
    cpSync(join(repo, 'native/out/rootfs'), rootfs, { recursive: true, verbatimSymlinks: true });
    const berth = await startBerth(dir);
    children.push(berth.child);
    const bc = loadClients(berth.address);
    const rows = [];
    const berthRunc = join(repo, 'packages/runtime/bin/berth-runc.js');
    const runcBin = which('runc');
    // BENCH_FAST_ONLY=1: the fast path alone (no other runtime, no containerd, no concurrent run).
    const fastOnly = process.env.BENCH_FAST_ONLY === '1';
    const cases = [
      ['berth-containerd, fast path', bc, undefined],
      ...(fastOnly ? [] : [['berth-containerd + berth-runc', bc, optionsAny(berthRunc)]]),
      ...(runcBin && !fastOnly ? [['berth-containerd + runc', bc, optionsAny(runcBin)]] : []),
    ];
    let k = 0;
    const sample = async (c, opts) => {
      await cycle(c, `warm${k++}`, rootfs, opts);
      const xs = [];
      for (let i = 0; i < N; i++) {
        const t0 = process.hrtime.bigint();
        await cycle(c, `b${k++}`, rootfs, opts);
        xs.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      return stats(xs);
    };
    for (const [name, c, opts] of cases) {
      phases.clear();
      rows.push({ name, ...(await sample(c, opts)) });
      if (process.env.BENCH_PHASES) console.log(name, JSON.stringify(Object.fromEntries([...phases].map(([k, v]) => [k, Number(stats(v).median.toFixed(1))]))));
    }
    let real;
    if (which('containerd') && runcBin && !fastOnly) {
      real = await startContainerd(dir);
      children.push(real.child);
      const rc = loadClients(real.address);
      rows.push({ name: 'containerd 1.6 + runc (containerd-shim-runc-v2)', ...(await sample(rc, undefined)) });
      rows.push(rows.shift()); // keep the fast path first in the printout, compare with containerd
      rows.unshift(rows.pop());
    }
    printTable('create + start + wait + delete of a /bin/true task through the gRPC API', rows,
      real ? 'containerd 1.6 + runc (containerd-shim-runc-v2)' : 'berth-containerd + runc');

    if (fastOnly) return;
    const conc = [];
    const b = await concurrent(bc, rootfs, undefined, 'cfast', 'berth-shim');
    conc.push({ name: `berth-containerd fast path: ${CONCURRENT} tasks started concurrently`, ms: b.ms, mem: b.mem });
    if (real) {
      const r = await concurrent(loadClients(real.address), rootfs, undefined, 'creal', 'containerd-shim-runc-v2');
      conc.push({ name: `containerd 1.6 + runc: ${CONCURRENT} tasks started concurrently`, ms: r.ms, mem: r.mem });
    }
    console.log(`\n## ${CONCURRENT} tasks started concurrently, and the memory of their shims`);
    console.log('| case | wall ms | shims | RSS per shim kB (median) | PSS per shim kB (median) |');
    console.log('|---|---:|---:|---:|---:|');
    for (const r of conc) {
      const med = (xs) => stats(xs.length ? xs : [0]).median;
      console.log(`| ${r.name} | ${r.ms.toFixed(0)} | ${r.mem.length} | ${med(r.mem.map((m) => m.rss)).toFixed(0)} | ${med(r.mem.map((m) => m.pss)).toFixed(0)} |`);
    }
  } finally {
    for (const c of children) { try { process.kill(c.pid, 'SIGTERM'); } catch { /* gone */ } }
    await new Promise((r) => setTimeout(r, 1000));
    for (const c of children) { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }
    if (process.env.BENCH_DAEMON_LOG) cpSync(join(dir, 'berth.log'), process.env.BENCH_DAEMON_LOG);
    spawnSync('sh', ['-c', `grep " ${dir}" /proc/self/mountinfo | cut -d" " -f5 | sort -r | xargs -r -n1 umount -l`]);
    rmSync(dir, { recursive: true, force: true });
  }
}
