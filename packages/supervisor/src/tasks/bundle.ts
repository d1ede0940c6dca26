/**
 * What a task needs on disk before its shim starts: the bundle directory
 * <state>/io.containerd.runtime.v2.task/<ns>/<id>/ with config.json and
 * rootfs/ (the request's rootfs mounts mounted there), the stdio the shim is
 * told about, and the runtime chosen from the container's runtime options.
 * Also the task record (task.json in the bundle) a restarted supervisor reads.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
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

/** The bundles, <dir>/<namespace>/<id>: the task runtime plugin's state directory. */
export function bundlesDir(state: string): string {
  return join(state, 'io.containerd.runtime.v2.task');
}

/** The shims' directories, <dir>/<namespace>/<id> (control.sock, attach.sock). */
export function shimsDir(state: string): string {
  return join(state, 'shims');
}

/** The longest path a UNIX socket can be bound at. */
export const SOCKET_PATH_MAX = 107;

/**
 * A task's shim directory: <shims>/<namespace>/<id>, unless its sockets would
 * not fit in a socket path (a 64-character ID under a deep state dir): then
 * <shims>/<namespace>/~<24 hex of sha256(namespace/id)> (`~` is never in an ID).
 */
export function shimDirFor(state: string, namespace: string, id: string): string {
  const plain = join(shimsDir(state), namespace, id);
  if (Buffer.byteLength(join(plain, 'control.sock')) <= SOCKET_PATH_MAX) return plain;
  const h = createHash('sha256').update(`${namespace}/${id}`).digest('hex').slice(0, 24);
  return join(shimsDir(state), namespace, `~${h}`);
}

export function taskPaths(state: string, namespace: string, id: string): TaskPaths {
  return {
    bundle: join(bundlesDir(state), namespace, id),
    shimDir: shimDirFor(state, namespace, id),
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

/** A json-file log the shim writes itself (`jsonfile://` stdout): its path and Docker's rotation options. */
export interface JsonFileLog {
  path: string;
  /** Bytes; 0: no rotation. */
  maxSize: number;
  /** Docker's max-file: the files kept, the current one included. */
  maxFiles: number;
}

/**
 * What the shim is told about one process's stdio (IO.md): fifos as given,
 * file:// URIs as the file they name, `attach:` stdin as a pipe kept open,
 * a `jsonfile://` stdout as the shim's json-file log.
 */
export interface ShimStdio {
  stdinFifo: string | undefined;
  stdoutFifo: string | undefined;
  stderrFifo: string | undefined;
  /** stdin is a pipe kept open, fed through the attach socket. */
  stdinOpen: boolean;
  /** The init process's json-file log. */
  log: JsonFileLog | undefined;
  /** file:// targets, created (empty) before the shim appends to them. */
  files: string[];
}

/** One stdio field, parsed. */
type Target =
  | { kind: 'none' }
  | { kind: 'fifo'; path: string }
  | { kind: 'file'; path: string }
  | { kind: 'jsonfile'; log: JsonFileLog }
  | { kind: 'attach' };

const ATTACH_URI = 'attach:';

function absolutePath(field: string, value: string, path: string): string {
  if (!isAbsolute(path) || path.includes('\0')) {
    throw invalid(`${field}: ${JSON.stringify(value)} does not name an absolute path`);
  }
  return normalize(path);
}

function counter(field: string, value: string, key: string, raw: string | null, dflt: number, min: number): number {
  if (raw === null) return dflt;
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < min) {
    throw invalid(`${field}: ${JSON.stringify(value)}: ${key} must be a whole number${min > 0 ? ` of at least ${min}` : ''} (got ${JSON.stringify(raw)})`);
  }
  return Number(raw);
}

function jsonFileLog(field: string, value: string, url: URL): JsonFileLog {
  if (url.host !== '') throw invalid(`${field}: ${JSON.stringify(value)}: a jsonfile:// URI has no host (jsonfile:///abs/path)`);
  for (const key of url.searchParams.keys()) {
    if (key !== 'max-size' && key !== 'max-file') {
      throw invalid(`${field}: ${JSON.stringify(value)}: unknown option ${JSON.stringify(key)} (max-size, max-file)`);
    }
  }
  let path: string;
  try {
    path = decodeURIComponent(url.pathname);
  } catch (e) {
    throw invalid(`${field}: ${JSON.stringify(value)}: the path is not valid percent-encoding`, e);
  }
  return {
    path: absolutePath(field, value, path),
    maxSize: counter(field, value, 'max-size', url.searchParams.get('max-size'), 0, 0),
    maxFiles: counter(field, value, 'max-file', url.searchParams.get('max-file'), 1, 1),
  };
}

function parseTarget(field: string, value: string): Target {
  if (value === '') return { kind: 'none' };
  if (value === ATTACH_URI) return { kind: 'attach' };
  if (value.startsWith('/')) return { kind: 'fifo', path: absolutePath(field, value, value) };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(`${field}: ${JSON.stringify(value)} is neither an absolute fifo path nor a URI`);
  }
  switch (url.protocol) {
    case 'fifo:': return { kind: 'fifo', path: absolutePath(field, value, url.pathname) };
    case 'file:': {
      let path: string;
      try {
        path = fileURLToPath(url);
      } catch (e) {
        throw invalid(`${field}: ${JSON.stringify(value)}: ${e instanceof Error ? e.message : String(e)}`, e);
      }
      return { kind: 'file', path: absolutePath(field, value, path) };
    }
    case 'jsonfile:': return { kind: 'jsonfile', log: jsonFileLog(field, value, url) };
    case 'binary:': throw notImplemented(`${field}: binary:// log URIs are not supported`);
    default: throw invalid(`${field}: unsupported URI scheme ${JSON.stringify(url.protocol)}`);
  }
}

/** Which process the stdio is for: the task's init, or an exec (named in messages). */
export type StdioOwner = { kind: 'init' } | { kind: 'exec'; execId: string };

/**
 * The containerd stdio strings of a process as the shim's options, checked:
 * what the shim cannot do is an InvalidArgument naming the field. Pure (see
 * prepareStdio for the files and directories it needs).
 */
export function shimStdio(io: Stdio, owner: StdioOwner = { kind: 'init' }): ShimStdio {
  const stdin = parseTarget('stdin', io.stdin);
  const stdout = parseTarget('stdout', io.stdout);
  const stderr = parseTarget('stderr', io.stderr);
  const out: ShimStdio = { stdinFifo: undefined, stdoutFifo: undefined, stderrFifo: undefined, stdinOpen: false, log: undefined, files: [] };

  switch (stdin.kind) {
    case 'none': break;
    case 'fifo': out.stdinFifo = stdin.path; break;
    case 'attach': out.stdinOpen = true; break;
    case 'file': throw invalid('stdin: a file:// URI cannot be read as stdin');
    case 'jsonfile': throw invalid('stdin: a jsonfile:// URI is an output (stdout) form, not stdin');
  }

  for (const [field, t] of [['stdout', stdout], ['stderr', stderr]] as const) {
    switch (t.kind) {
      case 'attach':
        throw invalid(`${field}: ${ATTACH_URI} is a stdin form; attach clients get the output whatever ${field} is`);
      case 'fifo':
      case 'file':
        if (field === 'stdout') out.stdoutFifo = t.path;
        else out.stderrFifo = t.path;
        if (t.kind === 'file') out.files.push(t.path);
        break;
      default:
        break;
    }
  }

  if (stdout.kind === 'jsonfile') {
    if (owner.kind === 'exec') {
      throw invalid(`stdout: exec ${owner.execId}: jsonfile:// logs are written for a task's init process only; an exec's output goes to fifos or attach clients`);
    }
    out.log = stdout.log;
  }
  if (stderr.kind === 'jsonfile') {
    if (owner.kind === 'exec') {
      throw invalid(`stderr: exec ${owner.execId}: jsonfile:// logs are written for a task's init process only; an exec's output goes to fifos or attach clients`);
    }
    if (stdout.kind !== 'jsonfile') {
      throw invalid('stderr: a jsonfile:// log needs the same URI as stdout: the shim writes both streams to one json-file log');
    }
    const a = stdout.log;
    const b = stderr.log;
    if (a.path !== b.path || a.maxSize !== b.maxSize || a.maxFiles !== b.maxFiles) {
      throw invalid(`stderr: ${JSON.stringify(io.stderr)} differs from stdout ${JSON.stringify(io.stdout)}: the shim writes one json-file log for both streams`);
    }
  }
  return out;
}

/** Create what the shim opens but does not create: file:// targets, the log's directory. */
export function prepareStdio(s: ShimStdio): void {
  const step = (what: string, path: string, fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      throw failedPrecondition(`${what} ${path}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
  };
  for (const path of s.files) {
    step('creating the log file', path, () => {
      mkdirSync(dirname(path), { recursive: true });
      closeSync(openSync(path, 'a', 0o640));
    });
  }
  const log = s.log;
  if (log !== undefined) step('creating the directory of the json-file log', log.path, () => mkdirSync(dirname(log.path), { recursive: true, mode: 0o700 }));
}

/** The shim's command-line options for the init process's stdio. */
export function stdioArgs(s: ShimStdio): string[] {
  const out: string[] = [];
  if (s.stdinOpen) out.push('--stdin');
  if (s.stdinFifo !== undefined) out.push('--stdin-fifo', s.stdinFifo);
  if (s.stdoutFifo !== undefined) out.push('--stdout-fifo', s.stdoutFifo);
  if (s.stderrFifo !== undefined) out.push('--stderr-fifo', s.stderrFifo);
  if (s.log !== undefined) {
    out.push('--log-path', s.log.path, '--log-max-size', String(s.log.maxSize), '--log-max-files', String(s.log.maxFiles));
  }
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
