// Helpers shared by the benchmarks that compare berthd with a real dockerd through the docker CLI
// (engine.js, network.js, build.js): starting and stopping both engines on temp dirs, running the
// CLI against one of them, and the last-resort cleanup of an instance (processes, mounts, dir,
// the engines' parent cgroups).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
export const BERTHD = join(repo, 'packages/engine/bin/berthd.js');
export const DOCKER = '/usr/local/bin/docker';
export const DOCKERD = '/usr/sbin/dockerd';
export const IMAGE = 'busybox:latest';

/** dockerd's flags with no network of its own: no bridge, no iptables. */
export const DOCKERD_NO_NETWORK = ['--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-masq=false'];

/**
 * Throws when berthd is not built; returns the first of the docker CLI and dockerd that is not
 * installed (the benchmark is then skipped), or undefined.
 */
export function missingEngine() {
  if (!existsSync(join(repo, 'packages/engine/dist/cmd/main.js'))) throw new Error('build first (npm run build)');
  return [DOCKER, DOCKERD].find((bin) => !existsSync(bin));
}

// ---- processes and mounts ----

/** Every process but this one: { pid, ppid, cmd (argv) }. */
export function procs() {
  const out = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      out.push({ pid: Number(p), ppid, cmd });
    } catch { /* gone */ }
  }
  return out;
}

/** Processes whose command line mentions dir, and all their descendants (containers under shims). */
export function pidsOf(dir) {
  const all = procs();
  const set = new Set(all.filter((p) => p.cmd.some((a) => a.includes(dir))).map((p) => p.pid));
  for (let grew = true; grew;) {
    grew = false;
    for (const p of all) if (set.has(p.ppid) && !set.has(p.pid)) { set.add(p.pid); grew = true; }
  }
  return [...set];
}

/** Mounts at or under dir: [{ point, fstype }], deepest first. */
export function mountsUnder(dir) {
  const out = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const point = f[4];
    if (point === undefined) continue;
    const p = point.replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)));
    const fstype = f[f.indexOf('-') + 1] ?? '';
    if (p === dir || p.startsWith(`${dir}/`)) out.push({ point: p, fstype });
  }
  return out.sort((a, b) => b.point.length - a.point.length);
}

/** Last resort: every process of the instance killed, its mounts undone, its dir removed. */
export function scrub(dir) {
  for (const pid of pidsOf(dir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  spawnSync('sleep', ['0.2']);
  for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m.point]);
  rmSync(dir, { recursive: true, force: true });
  // The engines' parent cgroups, once empty (an engine in use elsewhere keeps its own).
  for (const r of readdirSync('/sys/fs/cgroup')) {
    for (const name of ['berth', 'docker']) {
      try { rmdirSync(join('/sys/fs/cgroup', r, name)); } catch { /* absent or in use */ }
    }
  }
}

/**
 * On SIGINT/SIGTERM, scrubs dirs and exits (130/143). Returns the function that removes the
 * handlers again.
 */
export function scrubOnSignal(dirs) {
  const onSignal = (sig) => { for (const d of dirs) scrub(d); process.exit(sig === 'SIGINT' ? 130 : 143); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  };
}

// ---- the docker CLI ----

/** The CLI's environment for eng: its own DOCKER_CONFIG under the engine's dir. */
export function dockerEnv(eng, extra = {}) {
  return { ...process.env, DOCKER_CONFIG: join(eng.dir, '.docker'), ...extra };
}

function dockerArgs(eng, args) {
  return { argv: ['-H', `unix://${eng.socket}`, ...args], env: dockerEnv(eng) };
}

function failure(eng, args, r, detail = String(r.stderr).slice(0, 600)) {
  return new Error(`${eng.name}: docker ${args.join(' ')} exited ${r.status ?? r.signal}: ${detail}`);
}

/** One docker command against eng, its spawnSync result (utf8, 64 MB buffers, 5 min) whatever its status. */
export function dockerRun(eng, args, opts = {}) {
  const { argv, env } = dockerArgs(eng, args);
  return spawnSync(DOCKER, argv, { env, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 300_000, ...opts });
}

/** One docker command that must succeed; its stdout. */
export function dockerOk(eng, args, opts = {}) {
  const r = dockerRun(eng, args, opts);
  if (r.error) throw r.error;
  if (r.status !== 0) throw failure(eng, args, r);
  return r.stdout;
}

const devnull = openSync('/dev/null', 'w');

/** Wall time of one docker command in ms; stdout goes to /dev/null unless wanted. */
export function timed(eng, args, { keep = false } = {}) {
  const { argv, env } = dockerArgs(eng, args);
  const t0 = process.hrtime.bigint();
  const r = spawnSync(DOCKER, argv, { env, stdio: ['ignore', keep ? 'pipe' : devnull, 'pipe'], encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.error) throw r.error;
  if (r.status !== 0) throw failure(eng, args, r);
  return { ms, out: keep ? r.stdout : '' };
}

/** One docker command run without blocking; resolves to its stdout. */
export function dockerAsync(eng, args) {
  const { argv, env } = dockerArgs(eng, args);
  return new Promise((resolve, reject) => {
    const child = spawn(DOCKER, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { err += c; });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${eng.name}: docker ${args.join(' ')} exited ${code}: ${err.slice(0, 600)}`))));
  });
}

// ---- the engines ----

/** Waits (90 s at most) until the daemon answers `docker version` and, if given, has image. */
async function waitUp(eng, logFile, image) {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (eng.child.exitCode !== null || eng.child.signalCode !== null) break;
    if (existsSync(eng.socket)) {
      const ok = (args) => dockerRun(eng, args, { stdio: 'ignore', timeout: 10_000 }).status === 0;
      if (ok(['version', '--format', '{{.Server.Version}}']) && (image === undefined || ok(['image', 'inspect', image]))) return;
    }
    await sleep(100);
  }
  throw new Error(`${eng.name} did not come up: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
}

function spawnLogged(cmd, args, logFile) {
  const fd = openSync(logFile, 'a');
  try {
    return spawn(cmd, args, { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
}

/**
 * berthd (and the berth-containerd it starts) on dir: data root dir/data, exec root dir/x, socket
 * dir/berth.sock, log dir/berthd.log. With image, also waits until that (built-in) image is there.
 */
export async function startBerthd(dir, { image } = {}) {
  const eng = {
    name: 'berthd', dir, socket: join(dir, 'berth.sock'), exec: join(dir, 'x'),
    daemonNames: ['berthd', 'berth-containerd'], shim: 'berth-shim',
  };
  eng.child = spawnLogged(process.execPath, [BERTHD, '--data-root', join(dir, 'data'), '--exec-root', eng.exec,
    '--pidfile', join(dir, 'berthd.pid'), '-H', `unix://${eng.socket}`], join(dir, 'berthd.log'));
  await waitUp(eng, join(dir, 'berthd.log'), image);
  return eng;
}

/**
 * dockerd (and its containerd) on dir with an empty daemon.json: data root dir/data, exec root
 * dir/exec, socket dir/docker.sock, log dir/dockerd.log; networkFlags set up (or not) its network.
 */
export async function startDockerd(dir, networkFlags = DOCKERD_NO_NETWORK) {
  const eng = {
    name: 'dockerd', dir, socket: join(dir, 'docker.sock'), exec: join(dir, 'exec'),
    daemonNames: ['dockerd', 'containerd'], shim: 'containerd-shim-runc-v2',
  };
  writeFileSync(join(dir, 'daemon.json'), '{}\n');
  for (const d of ['data', 'exec']) mkdirSync(join(dir, d));
  eng.child = spawnLogged(DOCKERD, ['--config-file', join(dir, 'daemon.json'), '--data-root', join(dir, 'data'),
    '--exec-root', eng.exec, '--pidfile', join(dir, 'docker.pid'), '-H', `unix://${eng.socket}`,
    ...networkFlags], join(dir, 'dockerd.log'));
  await waitUp(eng, join(dir, 'dockerd.log'));
  return eng;
}

/** Every container of eng removed (docker rm -f). */
export function removeAll(eng) {
  const ids = dockerOk(eng, ['ps', '-aq']).split('\n').filter((s) => s !== '');
  if (ids.length > 0) dockerOk(eng, ['rm', '-f', ...ids]);
}

/**
 * Containers (and network, if given) removed, then SIGTERM (SIGKILL after 20 s); waits up to 5 s
 * for the instance's processes to go, then scrubs its dir unless keep (to look at what is left first).
 */
export async function stopEngine(eng, { network, keep = false } = {}) {
  // containerd writes /tmp/containerd.<pid>.stacks.log when told to dump its stacks (dockerd's
  // shutdown may do so): the files of the processes this instance started go with it.
  const started = pidsOf(eng.dir);
  try {
    if (eng.child.exitCode === null && eng.child.signalCode === null) {
      try {
        removeAll(eng);
        if (network !== undefined && dockerRun(eng, ['network', 'inspect', network]).status === 0) dockerOk(eng, ['network', 'rm', network]);
      } catch (err) { console.error(`${eng.name}: removing containers${network === undefined ? '' : ' and networks'}: ${err.message}`); }
      const exited = new Promise((r) => eng.child.once('exit', r));
      process.kill(eng.child.pid, 'SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]))) {
        process.kill(eng.child.pid, 'SIGKILL');
        await exited;
      }
    }
  } finally {
    for (let round = 0; round < 25 && pidsOf(eng.dir).length > 0; round++) await sleep(200);
    for (const pid of started) rmSync(`/tmp/containerd.${pid}.stacks.log`, { force: true });
    if (!keep) scrub(eng.dir);
  }
}

/**
 * The same image in both engines: saved from the first (berthd, its built-in busybox) into tar,
 * loaded into the second; returns its ID, which must be the same in both.
 */
export function shareImage([from, to], tar, image = IMAGE) {
  dockerOk(from, ['save', '-o', tar, image]);
  dockerOk(to, ['load', '-i', tar]);
  const ids = [from, to].map((e) => dockerOk(e, ['image', 'inspect', '--format', '{{.Id}}', image]).trim());
  if (ids[0] !== ids[1]) throw new Error(`image IDs differ after save/load: ${from.name} ${ids[0]}, ${to.name} ${ids[1]}`);
  return ids[0];
}

/** At a benchmark's end: its engines stopped (last started first), its dirs scrubbed, its signal guard lifted. */
export async function stopAll(engines, dirs, unguard) {
  for (const e of [...engines].reverse()) {
    try { await stopEngine(e); } catch (err) { console.error(`${e.name}: stopping: ${err.message}`); }
  }
  for (const d of dirs) if (existsSync(d)) scrub(d);
  unguard();
}
