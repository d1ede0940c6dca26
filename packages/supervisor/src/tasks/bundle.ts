/**
 * What a task needs on disk before its shim starts: the bundle directory
 * <state>/io.containerd.runtime.v2.task/<ns>/<id>/ with config.json and
 * rootfs/ (the request's rootfs mounts mounted there), the stdio the shim is
 * told about, and the runtime chosen from the container's runtime options.
 * Also the task record (task.json in the bundle) a restarted supervisor reads.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errnoCode, failedPrecondition, invalid, notImplemented, writeFileAtomic } from '@berth/base';
import type { CgroupPaths } from '@berth/cgroups';
import type { Protos } from '../protos.js';
import type { AnyMessage, Timestamp } from '../wire.js';

/** Where tasks live under the daemon's --state. */
export interface TaskPaths {
  readonly bundle: string;
  readonly shimDir: string;
  /** The runtime root of berth-runc's state files for this namespace (fast path, and berth-runc's default root). */
  readonly runcRoot: string;
}

export function taskPaths(state: string, namespace: string, id: string): TaskPaths {
  return {
    bundle: join(state, 'io.containerd.runtime.v2.task', namespace, id),
    shimDir: join(state, 'shims', namespace, id),
    runcRoot: join(state, 'runc', namespace),
  };
}

/** A mount from the request (containerd.types.Mount). */
export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

/** One process's stdio as the shim is told. */
export interface Stdio {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/** The paths the shim opens: fifos as given, file:// URIs as the file they name (created). */
export interface ShimStdio {
  stdinFifo: string | undefined;
  stdoutFifo: string | undefined;
  stderrFifo: string | undefined;
}

function uriPath(field: string, value: string): string | undefined {
  if (value === '') return undefined;
  if (value.startsWith('/')) return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(`${field}: ${JSON.stringify(value)} is neither an absolute fifo path nor a URI`);
  }
  if (url.protocol === 'fifo:') return url.pathname;
  if (url.protocol === 'file:') {
    const path = fileURLToPath(url);
    mkdirSync(dirname(path), { recursive: true });
    closeSync(openSync(path, 'a', 0o640));
    return path;
  }
  if (url.protocol === 'binary:') throw notImplemented(`${field}: binary:// log URIs are not supported`);
  throw invalid(`${field}: unsupported URI scheme ${JSON.stringify(url.protocol)}`);
}

export function shimStdio(io: Stdio): ShimStdio {
  const stdin = uriPath('stdin', io.stdin);
  if (stdin !== undefined && io.stdin.startsWith('file:')) throw invalid('stdin: a file:// URI cannot be read as stdin');
  return { stdinFifo: stdin, stdoutFifo: uriPath('stdout', io.stdout), stderrFifo: uriPath('stderr', io.stderr) };
}

export function stdioArgs(s: ShimStdio): string[] {
  const out: string[] = [];
  if (s.stdinFifo !== undefined) out.push('--stdin-fifo', s.stdinFifo);
  if (s.stdoutFifo !== undefined) out.push('--stdout-fifo', s.stdoutFifo);
  if (s.stderrFifo !== undefined) out.push('--stderr-fifo', s.stderrFifo);
  return out;
}

/** containerd.runc.v1.Options as far as they matter here. */
export interface RuncOptions {
  binaryName: string;
  root: string;
  systemdCgroup: boolean;
  noPivotRoot: boolean;
  noNewKeyring: boolean;
}

export const RUNC_OPTIONS_TYPE = 'containerd.runc.v1.Options';
export const SUPPORTED_RUNTIMES: readonly string[] = ['io.containerd.runc.v2', 'io.containerd.runc.v1'];

/** The container's runtime options, overridden by the task's (when they are runc options). */
export function runcOptions(protos: Protos, runtimeName: string, containerOpts: AnyMessage | undefined, taskOpts: AnyMessage | undefined): RuncOptions {
  if (!SUPPORTED_RUNTIMES.includes(runtimeName)) {
    throw failedPrecondition(`runtime ${JSON.stringify(runtimeName)} is not supported: berth-containerd runs ${SUPPORTED_RUNTIMES.join(' and ')}`);
  }
  const out: RuncOptions = { binaryName: '', root: '', systemdCgroup: false, noPivotRoot: false, noNewKeyring: false };
  for (const any of [containerOpts, taskOpts]) {
    if (any === undefined || any.type_url === '') continue;
    const decoded = protos.unpack(any);
    if (decoded === undefined || decoded.typeName !== RUNC_OPTIONS_TYPE) {
      throw invalid(`runtime options of type ${JSON.stringify(any.type_url)} are not supported (expected ${RUNC_OPTIONS_TYPE})`);
    }
    const v = decoded.value;
    if (typeof v['binary_name'] === 'string' && v['binary_name'] !== '') out.binaryName = v['binary_name'];
    if (typeof v['root'] === 'string' && v['root'] !== '') out.root = v['root'];
    if (v['systemd_cgroup'] === true) out.systemdCgroup = true;
    if (v['no_pivot_root'] === true) out.noPivotRoot = true;
    if (v['no_new_keyring'] === true) out.noNewKeyring = true;
  }
  return out;
}

/** Mount the request's rootfs mounts on <bundle>/rootfs, in order; on failure, unmount what was mounted. */
export function mountRootfs(rootfs: string, mounts: readonly Mount[]): number {
  let done = 0;
  try {
    for (const m of mounts) {
      const args = ['-t', m.type || 'none'];
      const opts = m.options.filter((o) => o !== '');
      if (opts.length > 0) args.push('-o', opts.join(','));
      args.push('--', m.source, rootfs);
      const r = spawnSync('mount', args, { encoding: 'utf8' });
      if (r.status !== 0) {
        throw failedPrecondition(`mounting rootfs (${m.type} ${m.source}) on ${rootfs}: ${(r.stderr || r.error?.message || '').trim()}`);
      }
      done++;
    }
  } catch (e) {
    unmountRootfs(rootfs, done);
    throw e;
  }
  return done;
}

export function unmountRootfs(rootfs: string, count: number): void {
  for (let i = 0; i < count; i++) {
    const r = spawnSync('umount', [rootfs], { encoding: 'utf8' });
    if (r.status !== 0) {
      const lazy = spawnSync('umount', ['-l', rootfs], { encoding: 'utf8' });
      if (lazy.status !== 0) throw failedPrecondition(`unmounting ${rootfs}: ${(r.stderr || '').trim()}`);
    }
  }
}

/** Create the bundle with its config.json and rootfs directory. */
export function writeBundle(bundle: string, specJson: Buffer): void {
  mkdirSync(dirname(bundle), { recursive: true, mode: 0o711 });
  try {
    mkdirSync(bundle, { mode: 0o711 });
  } catch (e) {
    if (errnoCode(e) !== 'EEXIST') throw e;
    rmSync(bundle, { recursive: true, force: true });
    mkdirSync(bundle, { mode: 0o711 });
  }
  mkdirSync(join(bundle, 'rootfs'), { mode: 0o711 });
  writeFileAtomic(join(bundle, 'config.json'), specJson, 0o600, { durable: false });
}

/** An exec process as remembered across restarts. */
export interface ExecRecord extends Stdio {
  /** The process spec file (runtime path) or plan file (fast path), in the shim's directory. */
  file: string;
}

/** What a restarted supervisor needs to take a task back: <bundle>/task.json. */
export interface TaskRecord {
  version: 1;
  namespace: string;
  id: string;
  bundle: string;
  shimDir: string;
  /** fast: the supervisor planned and the shim runs the executor; runtime: an OCI runtime binary. */
  mode: 'fast' | 'runtime';
  runtime: { binary: string; args: string[]; root: string } | undefined;
  /** Fast path: berth-runc's state root and the container's cgroup. */
  runcRoot: string;
  cgroup: CgroupPaths | undefined;
  rootfsMounts: number;
  rootfsMountList: Mount[];
  io: Stdio;
  paused: boolean;
  execs: Record<string, ExecRecord>;
  /** The init exit has been published on /tasks/exit. */
  exitPublished: boolean;
  createdAt: Timestamp;
}

export function saveTaskRecord(rec: TaskRecord): void {
  writeFileAtomic(join(rec.bundle, 'task.json'), JSON.stringify(rec), 0o600, { durable: false });
}

export function loadTaskRecord(bundle: string): TaskRecord | undefined {
  const path = join(bundle, 'task.json');
  if (!existsSync(path)) return undefined;
  const v = JSON.parse(readFileSync(path, 'utf8')) as TaskRecord;
  return v.version === 1 ? v : undefined;
}
