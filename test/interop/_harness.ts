/**
 * Shared pieces of the interoperability suites: which runtimes to test, running
 * commands with a deadline, a busybox root filesystem, and the clean-up of the
 * processes, mounts and cgroups that podman and containerd leave behind.
 */
import { runCommand } from '../lib/exec.js';
import { spawnSync } from 'node:child_process';
import {
  accessSync, chmodSync, constants, copyFileSync, existsSync, mkdirSync, mkdtempSync,
  readFileSync, readdirSync, rmSync, rmdirSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

/** The repository root (this file compiles to test/dist/interop/_harness.js). */
export const REPO_ROOT: string = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BERTH_RUNC: string = join(REPO_ROOT, 'packages', 'runtime', 'bin', 'berth-runc.js');
export const DEFAULT_RUNTIME = '/usr/sbin/runc';

/** An OCI runtime binary under test; `skip` says why it cannot be tested here. */
export interface Runtime {
  readonly label: string;
  readonly path: string;
  readonly skip: string | undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

/** Why `argv` cannot run successfully here, or undefined when it exits 0. */
function versionProblem(argv: readonly string[]): string | undefined {
  const [file, ...args] = argv;
  if (file === undefined) return 'empty command line';
  const r = spawnSync(file, args, { encoding: 'utf8', timeout: 15_000, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) return `${argv.join(' ')}: ${r.error.message}`;
  if (r.status !== 0) return `${argv.join(' ')} exited ${String(r.status ?? r.signal)}: ${firstLine(r.stderr || r.stdout)}`;
  return undefined;
}

function checkRuntime(label: string, path: string): Runtime {
  if (!existsSync(path)) return { label, path, skip: `${label}: ${path} does not exist` };
  if (!isExecutable(path)) return { label, path, skip: `${label}: ${path} is not an executable file (podman and containerd's shim exec it directly)` };
  const problem = path.endsWith('.js') ? versionProblem([process.execPath, path, '--version']) : versionProblem([path, '--version']);
  return { label, path, skip: problem === undefined ? undefined : `${label} does not work here: ${problem}` };
}

/**
 * The runtimes every interop case runs against: BERTH_INTEROP_RUNTIME (default
 * /usr/sbin/runc), and berth-runc when it is a different file. A runtime that
 * cannot work here comes back with the reason in `skip`.
 */
export function runtimesUnderTest(): Runtime[] {
  const chosen = process.env['BERTH_INTEROP_RUNTIME'] || DEFAULT_RUNTIME;
  const list = [checkRuntime(basename(chosen), chosen)];
  if (chosen !== BERTH_RUNC) list.push(checkRuntime('berth-runc', BERTH_RUNC));
  return list;
}

/** Why the host cannot run a suite that needs these programs as root, or undefined. */
export function hostProblem(programs: readonly string[][]): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const argv of programs) {
    const problem = versionProblem(argv);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/**
 * With BERTH_INTEROP_ARGV_LOG=<file>, returns a wrapper with the runtime's own file
 * name that appends the caller's name and the command line to that file and execs
 * the runtime; otherwise returns the runtime itself.
 */
export function interposeArgvLog(runtime: Runtime, dir: string): string {
  const log = process.env['BERTH_INTEROP_ARGV_LOG'];
  if (!log) return runtime.path;
  const binDir = join(dir, 'argv-bin');
  mkdirSync(binDir, { recursive: true });
  const wrapper = join(binDir, basename(runtime.path));
  writeFileSync(wrapper, [
    '#!/bin/sh',
    `{ printf '[%s]' "$(cat /proc/$PPID/comm 2>/dev/null)"; for a in "$@"; do printf ' %s' "$a"; done; echo; } >> ${shellQuote(log)}`,
    `exec ${shellQuote(runtime.path)} "$@"`,
    '',
  ].join('\n'));
  chmodSync(wrapper, 0o755);
  return wrapper;
}

export interface Result {
  /** Exit code, or null when killed by a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly argv: readonly string[];
}

export interface RunOptions {
  /** Milliseconds before the command is killed with SIGKILL; default 30 s. */
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Runs argv to completion through the test kit's runner (output through files,
 * not pipes); a command killed by a signal reports code null here.
 */
export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<Result> {
  const r = await runCommand(argv, {
    timeoutMs: opts.timeoutMs ?? 30_000,
    ...(opts.env !== undefined ? { env: opts.env } : {}),
  });
  return { ...r, code: r.signal !== null ? null : r.code };
}

/** A result in one paragraph, for assertion messages. */
export function show(r: Result): string {
  const how = r.timedOut ? 'timed out' : r.signal ? `killed by ${r.signal}` : `exited ${String(r.code)}`;
  return `\`${r.argv.join(' ')}\` ${how}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * argv run on a fresh pseudo-terminal (the tests have none): util-linux `script`
 * with -e, so that the exit status is the command's.
 */
export function inPty(argv: readonly string[]): string[] {
  return ['script', '-q', '-e', '-c', argv.map(shellQuote).join(' '), '/dev/null'];
}

export interface Rootfs {
  readonly path: string;
  /** Where it came from, for messages. */
  readonly source: string;
  readonly hasProbe: boolean;
}

/**
 * A private copy of the built-in busybox rootfs (native/out/rootfs) at `dest`
 * (podman and containerd write mount points into it), or, when that has not been
 * built, one made from the host's static busybox.
 */
export async function makeRootfs(dest: string): Promise<Rootfs> {
  const built = join(REPO_ROOT, 'native', 'out', 'rootfs');
  if (existsSync(join(built, 'bin', 'busybox'))) {
    const r = await run(['cp', '-a', built, dest]);
    if (r.code !== 0) throw new Error(`copying the rootfs failed: ${show(r)}`);
    return { path: dest, source: built, hasProbe: existsSync(join(dest, 'probe')) };
  }
  return makeBusyboxRootfs(dest);
}

/** A minimal root filesystem at `dest` from the host's static busybox, with its applet links. */
export function makeBusyboxRootfs(dest: string): Rootfs {
  const busybox = '/bin/busybox';
  for (const d of ['bin', 'etc', 'dev', 'proc', 'sys', 'tmp', 'root', 'home/user', 'run']) {
    mkdirSync(join(dest, d), { recursive: true });
  }
  chmodSync(join(dest, 'tmp'), 0o1777);
  copyFileSync(busybox, join(dest, 'bin', 'busybox'));
  chmodSync(join(dest, 'bin', 'busybox'), 0o755);
  const list = spawnSync(busybox, ['--list'], { encoding: 'utf8', timeout: 10_000 });
  if (list.status !== 0) throw new Error(`${busybox} --list failed: ${list.stderr}`);
  for (const applet of list.stdout.split('\n')) {
    if (applet && applet !== 'busybox') symlinkSync('busybox', join(dest, 'bin', applet));
  }
  writeFileSync(join(dest, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n');
  writeFileSync(join(dest, 'etc', 'group'), 'root:x:0:\nuser:x:1000:\n');
  return { path: dest, source: busybox, hasProbe: false };
}

/** A fresh directory under /tmp for one suite. */
export function makeTempDir(prefix: string): string {
  return mkdtempSync(join('/tmp', `berth-interop-${prefix}-`));
}

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const found: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const target = field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
    if (target === dir || target.startsWith(`${dir}/`)) found.push(target);
  }
  return found.sort((a, b) => b.length - a.length);
}

/** Lazily unmounts everything at or below `dir`; returns what is still mounted. */
export async function unmountUnder(dir: string): Promise<string[]> {
  for (const target of mountsUnder(dir)) {
    await run(['umount', '-l', target], { timeoutMs: 10_000 });
  }
  return mountsUnder(dir);
}

/** PIDs (other than ours) whose command line satisfies `match`. */
export function findProcesses(match: (argv: string[]) => boolean): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
    } catch {
      continue;
    }
    if (argv.length > 0 && match(argv)) pids.push(pid);
  }
  return pids;
}

export function killPids(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** The mount points of the cgroup hierarchies (v1 controllers and any cgroup2). */
export function cgroupHierarchies(): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    const target = line.split(' ')[4];
    if ((fstype === 'cgroup' || fstype === 'cgroup2') && target !== undefined) out.push(target);
  }
  return out;
}

/** Which of the hierarchies have a cgroup at `rel` (e.g. "/berthtest"). */
export function cgroupExists(rel: string): boolean {
  return cgroupHierarchies().some((h) => existsSync(join(h, rel)));
}

function cgroupDirsDeepestFirst(dir: string): string[] {
  const dirs: string[] = [];
  const walk = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) walk(join(d, e.name));
    dirs.push(d);
  };
  walk(dir);
  return dirs;
}

/**
 * Kills every process left in the cgroup `rel` and its children (in every
 * hierarchy) and removes those cgroups. Returns the cgroups it could not remove.
 */
export async function removeCgroupTree(rel: string): Promise<string[]> {
  const left: string[] = [];
  for (const h of cgroupHierarchies()) {
    const top = join(h, rel);
    if (!existsSync(top)) continue;
    for (const d of cgroupDirsDeepestFirst(top)) {
      let removed = false;
      for (let attempt = 0; attempt < 30 && !removed; attempt++) {
        try {
          const pids = readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter((s) => s !== '').map(Number);
          killPids(pids);
        } catch {
          // no procs file: nothing to kill
        }
        try {
          rmdirSync(d);
          removed = true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') removed = true;
          else await sleep(100);
        }
      }
      if (!removed) left.push(d);
    }
  }
  return left;
}

/** Polls `check` every 100 ms until it returns true or `ms` have passed. */
export async function waitFor(check: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}

/** The hard limit of a resource from /proc/self/limits ("Max open files"), or undefined if unlimited. */
export function hardLimit(name: string): number | undefined {
  for (const line of readFileSync('/proc/self/limits', 'utf8').split('\n')) {
    if (!line.startsWith(name)) continue;
    const cols = line.slice(name.length).trim().split(/\s+/);
    const hard = Number(cols[1]);
    return Number.isFinite(hard) ? hard : undefined;
  }
  return undefined;
}

/** Removes the paths of `created` (recorded absent before the suite), ignoring errors. */
export function removeIfCreated(created: readonly string[]): void {
  for (const p of created) rmSync(p, { recursive: true, force: true });
}

/** Removes each directory if it is empty (deepest first: pass children before parents). */
export function rmdirIfEmpty(dirs: readonly string[]): void {
  for (const d of dirs) {
    try {
      rmdirSync(d);
    } catch {
      // not empty, or not there
    }
  }
}
