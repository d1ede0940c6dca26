import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { invalid, notImplemented } from '@berth/base';
import { parseSpec } from '@berth/spec';
import type { Process, LinuxResources } from '@berth/spec';
import type { Runtime } from '../container/runtime.js';
import { parseSignal } from '../container/signals.js';
import { processAlive, sleep } from '../container/proc.js';
import { defaultSpec } from '../spec/index.js';
import { features } from './features.js';
import { parseArgs, str, strs, bool, int, need } from './args.js';
import type { FlagSpec } from './args.js';

export interface Ctx {
  rt: Runtime;
  out: (s: string) => void;
}

export type Command = (ctx: Ctx, argv: string[]) => Promise<number> | number;

const createFlags: FlagSpec[] = [
  { name: 'bundle', aliases: ['b'], value: true },
  { name: 'console-socket', value: true },
  { name: 'pid-file', value: true },
  { name: 'no-pivot' },
  { name: 'no-new-keyring' },
  { name: 'preserve-fds', value: true },
];

function createOpts(p: ReturnType<typeof parseArgs>) {
  return {
    bundle: str(p, 'bundle') ?? process.cwd(),
    pidFile: str(p, 'pid-file'),
    consoleSocket: str(p, 'console-socket'),
    noPivot: bool(p, 'no-pivot'),
    noNewKeyring: bool(p, 'no-new-keyring'),
    preserveFds: preserveFds(p),
  };
}

function preserveFds(p: ReturnType<typeof parseArgs>): number {
  let n = int(p, 'preserve-fds', 0);
  const listen = Number(process.env.LISTEN_FDS ?? 0);
  if (Number.isInteger(listen) && listen > 0) n += listen;
  if (n < 0) throw invalid('--preserve-fds: must be non-negative');
  return n;
}

const create: Command = async ({ rt }, argv) => {
  const p = parseArgs(argv, createFlags);
  const [id] = need(p, 'create', 1);
  await rt.create(id as string, createOpts(p));
  return 0;
};

const start: Command = async ({ rt }, argv) => {
  const p = parseArgs(argv, []);
  const [id] = need(p, 'start', 1);
  await rt.start(id as string);
  return 0;
};

const run: Command = async ({ rt }, argv) => {
  const p = parseArgs(argv, [...createFlags, { name: 'detach', aliases: ['d'] }, { name: 'keep' }, { name: 'no-subreaper' }]);
  const [id] = need(p, 'run', 1);
  const detach = bool(p, 'detach');
  const created = await rt.create(id as string, { ...createOpts(p), wait: !detach });
  const forward = (sig: NodeJS.Signals): void => {
    if (created.executorPid) try { process.kill(created.executorPid, sig); } catch { /* gone */ }
  };
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];
  if (!detach) for (const s of sigs) process.on(s, forward);
  try {
    await rt.start(id as string);
  } catch (e) {
    await rt.delete(id as string, true).catch(() => undefined);
    throw e;
  }
  if (detach) return 0;
  const status = await (created.exited as Promise<number>);
  for (const s of sigs) process.off(s, forward);
  if (!bool(p, 'keep')) await rt.delete(id as string, true);
  return status;
};

const state: Command = async ({ rt, out }, argv) => {
  const p = parseArgs(argv, []);
  const [id] = need(p, 'state', 1);
  out(JSON.stringify(await rt.state(id as string), null, 2) + '\n');
  return 0;
};

const list: Command = async ({ rt, out }, argv) => {
  const p = parseArgs(argv, [{ name: 'format', aliases: ['f'], value: true }, { name: 'quiet', aliases: ['q'] }]);
  const format = str(p, 'format') ?? 'table';
  const all = await rt.list();
  if (bool(p, 'quiet')) {
    for (const s of all) out(s.id + '\n');
    return 0;
  }
  if (format === 'json') {
    out((all.length ? JSON.stringify(all) : 'null') + '\n');
    return 0;
  }
  if (format !== 'table') throw invalid(`invalid format option`);
  const rows = [['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER'], ...all.map((s) => [s.id, String(s.pid), s.status, s.bundle, s.created, s.owner])];
  out(table(rows));
  return 0;
};

/** Columns padded like Go's tabwriter with minwidth 12, padding 1 (runc's list). */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, c.length); });
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(Math.max(12, (widths[i] ?? 0) + 3)))).join('') + '\n').join('');
}

const kill: Command = async ({ rt }, argv) => {
  const p = parseArgs(argv, [{ name: 'all', aliases: ['a'] }]);
  const [id, sig] = need(p, 'kill', 1);
  await rt.kill(id as string, parseSignal(sig ?? 'SIGTERM'), bool(p, 'all'));
  return 0;
};

const del: Command = async ({ rt }, argv) => {
  const p = parseArgs(argv, [{ name: 'force', aliases: ['f'] }]);
  need(p, 'delete', 1);
  for (const id of p.positionals) await rt.delete(id, bool(p, 'force'));
  return 0;
};

const execFlags: FlagSpec[] = [
  { name: 'console-socket', value: true },
  { name: 'cwd', value: true },
  { name: 'env', aliases: ['e'], value: true, repeat: true },
  { name: 'tty', aliases: ['t'] },
  { name: 'user', aliases: ['u'], value: true },
  { name: 'additional-gids', aliases: ['g'], value: true, repeat: true },
  { name: 'process', aliases: ['p'], value: true },
  { name: 'detach', aliases: ['d'] },
  { name: 'pid-file', value: true },
  { name: 'process-label', value: true },
  { name: 'apparmor', value: true },
  { name: 'no-new-privs' },
  { name: 'cap', aliases: ['c'], value: true, repeat: true },
  { name: 'preserve-fds', value: true },
  { name: 'ignore-paused' },
  { name: 'cgroup', value: true, repeat: true },
];

const exec: Command = async ({ rt }, argv) => {
  const p = parseArgs(argv, execFlags, true);
  const [id, ...cmd] = need(p, 'exec', 1);
  const rec = rt.load(id as string);
  let proc: Process;
  const procFile = str(p, 'process');
  if (procFile) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(procFile, 'utf8'));
    } catch (e) {
      throw invalid(`process ${procFile}: ${(e as Error).message}`, e);
    }
    proc = parseSpec({ ociVersion: '1.2.0', process: json, root: { path: 'rootfs' } }).process as Process;
  } else {
    if (cmd.length === 0) throw invalid('exec args cannot be empty');
    const base = rec.config.process;
    proc = {
      ...(base ?? { cwd: '/', user: { uid: 0, gid: 0 } }),
      args: cmd,
      terminal: bool(p, 'tty'),
      env: [...(base?.env ?? []), ...strs(p, 'env')],
      cwd: str(p, 'cwd') ?? base?.cwd ?? '/',
    };
    const user = str(p, 'user');
    if (user !== undefined) {
      const m = /^(\d+)(?::(\d+))?$/.exec(user);
      if (!m) throw invalid(`parsing ${user} as uid[:gid]: invalid syntax`);
      proc.user = { uid: Number(m[1]), gid: Number(m[2] ?? 0) };
    }
    const gids = strs(p, 'additional-gids').map(Number);
    if (gids.length) proc.user = { ...(proc.user ?? { uid: 0, gid: 0 }), additionalGids: gids };
    if (bool(p, 'no-new-privs')) proc.noNewPrivileges = true;
    const apparmor = str(p, 'apparmor');
    if (apparmor) proc.apparmorProfile = apparmor;
    const label = str(p, 'process-label');
    if (label) proc.selinuxLabel = label;
    const caps = strs(p, 'cap');
    if (caps.length) {
      const c = { ...(proc.capabilities ?? {}) };
      for (const set of ['bounding', 'effective', 'permitted'] as const) {
        c[set] = [...new Set([...(c[set] ?? []), ...caps])];
      }
      proc.capabilities = c;
    }
  }
  const r = await rt.exec(id as string, proc, {
    detach: bool(p, 'detach'),
    pidFile: str(p, 'pid-file'),
    consoleSocket: str(p, 'console-socket'),
    preserveFds: preserveFds(p),
    ignorePaused: bool(p, 'ignore-paused'),
  });
  return r.exited ? await r.exited : 0;
};

const ps: Command = async ({ rt, out }, argv) => {
  const p = parseArgs(argv, [{ name: 'format', aliases: ['f'], value: true }], true);
  const [id, ...psArgs] = need(p, 'ps', 1);
  const pids = await rt.pids(id as string);
  if ((str(p, 'format') ?? 'table') === 'json') {
    out(JSON.stringify(pids) + '\n');
    return 0;
  }
  const r = spawnSync('ps', psArgs.length ? psArgs : ['-ef'], { encoding: 'utf8' });
  if (r.status !== 0) throw invalid(`ps: ${r.stderr || r.error?.message}`);
  const lines = r.stdout.split('\n');
  const header = lines[0] ?? '';
  const col = header.trim().split(/\s+/).indexOf('PID');
  if (col < 0) throw invalid("couldn't find PID field in ps output");
  const want = new Set(pids);
  out(header + '\n');
  for (const l of lines.slice(1)) {
    const f = l.trim().split(/\s+/);
    if (want.has(Number(f[col]))) out(l + '\n');
  }
  return 0;
};

const pause: Command = async ({ rt }, argv) => {
  const p = parseArgs(argv, []);
  const [id] = need(p, 'pause', 1);
  await rt.pause(id as string);
  return 0;
};

const resume: Command = async ({ rt }, argv) => {
  const p = parseArgs(argv, []);
  const [id] = need(p, 'resume', 1);
  await rt.resume(id as string);
  return 0;
};

function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s);
  if (!m) throw invalid(`invalid duration "${s}"`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000);
}

const events: Command = async ({ rt, out }, argv) => {
  const p = parseArgs(argv, [{ name: 'interval', value: true }, { name: 'stats' }]);
  const [id] = need(p, 'events', 1);
  const interval = parseDuration(str(p, 'interval') ?? '5s');
  if (interval <= 0) throw invalid('duration interval must be greater than 0');
  if (bool(p, 'stats')) {
    out(JSON.stringify({ type: 'stats', id, data: await rt.stats(id as string) }) + '\n');
    return 0;
  }
  // Stats every interval; an "oom" event as soon as the OOM killer strikes (checked every 100 ms).
  const rec = rt.load(id as string);
  let ooms = await rt.oomCount(id as string);
  let nextStats = 0;
  while (processAlive(rec.pid, rec.pidStartTime)) {
    const n = await rt.oomCount(id as string).catch(() => ooms);
    if (n > ooms) out(JSON.stringify({ type: 'oom', id }) + '\n');
    ooms = n;
    if (Date.now() >= nextStats) {
      const data = await rt.stats(id as string).catch(() => undefined);
      if (data === undefined) break;
      out(JSON.stringify({ type: 'stats', id, data }) + '\n');
      nextStats = Date.now() + interval;
    }
    await sleep(Math.min(100, interval));
  }
  // The process may have died of the OOM kill itself: report it before ending.
  if ((await rt.oomCount(id as string).catch(() => ooms)) > ooms) out(JSON.stringify({ type: 'oom', id }) + '\n');
  return 0;
};

const updateFlags: FlagSpec[] = [
  { name: 'resources', aliases: ['r'], value: true },
  { name: 'blkio-weight', value: true },
  { name: 'cpu-period', value: true },
  { name: 'cpu-quota', value: true },
  { name: 'cpu-share', value: true },
  { name: 'cpu-rt-period', value: true },
  { name: 'cpu-rt-runtime', value: true },
  { name: 'cpuset-cpus', value: true },
  { name: 'cpuset-mems', value: true },
  { name: 'cpu-idle', value: true },
  { name: 'kernel-memory', value: true },
  { name: 'kernel-memory-tcp', value: true },
  { name: 'memory', value: true },
  { name: 'memory-reservation', value: true },
  { name: 'memory-swap', value: true },
  { name: 'pids-limit', value: true },
  { name: 'l3-cache-schema', value: true },
  { name: 'mem-bw-schema', value: true },
];

/** Sizes as runc's update takes them: plain bytes or with k/m/g suffixes; -1 is unlimited. */
export function parseBytes(s: string): number {
  if (s === '-1') return -1;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$/i.exec(s);
  if (!m) throw invalid(`invalid value for memory: ${s}`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * mult);
}

const update: Command = async ({ rt }, argv) => {
  const p = parseArgs(argv, updateFlags);
  const [id] = need(p, 'update', 1);
  let r: LinuxResources = {};
  const file = str(p, 'resources');
  if (file) {
    try {
      r = JSON.parse(file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8')) as LinuxResources;
    } catch (e) {
      throw invalid(`resources: ${(e as Error).message}`, e);
    }
  }
  const num = (n: string): number | undefined => {
    const v = str(p, n);
    if (v === undefined) return undefined;
    if (!/^-?\d+$/.test(v)) throw invalid(`invalid value for ${n}: ${v}`);
    return Number(v);
  };
  const bytes = (n: string): number | undefined => {
    const v = str(p, n);
    return v === undefined ? undefined : parseBytes(v);
  };
  const set = <T extends object>(o: T, k: keyof T, v: unknown): void => {
    if (v !== undefined) (o as Record<keyof T, unknown>)[k] = v;
  };
  const cpu = { ...(r.cpu ?? {}) };
  set(cpu, 'period', num('cpu-period'));
  set(cpu, 'quota', num('cpu-quota'));
  set(cpu, 'shares', num('cpu-share'));
  set(cpu, 'realtimePeriod', num('cpu-rt-period'));
  set(cpu, 'realtimeRuntime', num('cpu-rt-runtime'));
  set(cpu, 'cpus', str(p, 'cpuset-cpus'));
  set(cpu, 'mems', str(p, 'cpuset-mems'));
  set(cpu, 'idle', num('cpu-idle'));
  if (Object.keys(cpu).length) r.cpu = cpu;
  const mem = { ...(r.memory ?? {}) };
  set(mem, 'limit', bytes('memory'));
  set(mem, 'reservation', bytes('memory-reservation'));
  set(mem, 'swap', bytes('memory-swap'));
  set(mem, 'kernel', bytes('kernel-memory'));
  set(mem, 'kernelTCP', bytes('kernel-memory-tcp'));
  if (Object.keys(mem).length) r.memory = mem;
  const pids = num('pids-limit');
  if (pids !== undefined) r.pids = { limit: pids };
  const w = num('blkio-weight');
  if (w !== undefined) r.blockIO = { ...(r.blockIO ?? {}), weight: w };
  if (str(p, 'l3-cache-schema') || str(p, 'mem-bw-schema')) {
    throw notImplemented('Intel RDT is not supported by berth-runc');
  }
  await rt.update(id as string, r);
  return 0;
};

const spec: Command = ({ out }, argv) => {
  const p = parseArgs(argv, [{ name: 'bundle', aliases: ['b'], value: true }, { name: 'rootless' }]);
  const dir = resolve(str(p, 'bundle') ?? '.');
  const path = join(dir, 'config.json');
  if (existsSync(path)) throw invalid('File config.json already exists. Remove it first.');
  writeFileSync(path, JSON.stringify(defaultSpec({ rootless: bool(p, 'rootless') }), null, '\t') + '\n', { mode: 0o666 });
  void out;
  return 0;
};

const featuresCmd: Command = ({ out }) => {
  out(JSON.stringify(features(), null, 4) + '\n');
  return 0;
};

const unsupported = (what: string): Command => () => {
  throw notImplemented(`${what} is not supported: berth-runc does not implement checkpoint/restore (it needs CRIU)`);
};

export const commands: Record<string, Command> = {
  create,
  start,
  run,
  state,
  list,
  kill,
  delete: del,
  exec,
  ps,
  pause,
  resume,
  events,
  update,
  spec,
  features: featuresCmd,
  checkpoint: unsupported('checkpoint'),
  restore: unsupported('restore'),
};

export const summaries: Record<string, string> = {
  checkpoint: 'checkpoint a running container (not supported)',
  create: 'create a container',
  delete: 'delete any resources held by the container often used with detached container',
  events: 'display container events such as OOM notifications, cpu, memory, and IO usage statistics',
  exec: 'execute new process inside the container',
  features: 'show the enabled features',
  kill: 'kill sends the specified signal (default: SIGTERM) to the container\'s init process',
  list: 'lists containers started by berth-runc with the given root',
  pause: 'pause suspends all processes inside the container',
  ps: 'ps displays the processes running inside a container',
  restore: 'restore a container from a previous checkpoint (not supported)',
  resume: 'resumes all processes that have been previously paused',
  run: 'create and run a container',
  spec: 'create a new specification file',
  start: 'executes the user defined process in a created container',
  state: 'output the state of a container',
  update: 'update container resource constraints',
};
