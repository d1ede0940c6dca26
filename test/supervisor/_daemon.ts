/**
 * Shared pieces of the berth-containerd suites: a daemon started as a child
 * process on temp --root/--state/--address (killed by its PID and its
 * directories removed afterwards, even on failure), ctr pointed at it, and a
 * grpc-js client speaking the containerd API through the same protos.
 */
import { after, before } from 'node:test';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Metadata, credentials } from '@grpc/grpc-js';
import type { ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import { Protos } from '@berth/supervisor';

/** The repository root (this file compiles to test/dist/supervisor/_daemon.js). */
export const REPO_ROOT: string = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const DAEMON_BIN: string = join(REPO_ROOT, 'packages', 'supervisor', 'bin', 'berth-containerd.js');
export const CTR = '/usr/bin/ctr';

export interface Dirs {
  readonly base: string;
  readonly root: string;
  readonly state: string;
  readonly address: string;
  readonly log: string;
}

/** Fresh temp directories for one daemon (the paths are not created but base). */
export function tempDirs(): Dirs {
  const base = mkdtempSync(join(tmpdir(), 'berth-containerd-'));
  return { base, root: join(base, 'root'), state: join(base, 'state'), address: join(base, 'state', 'containerd.sock'), log: join(base, 'daemon.log') };
}

export class DaemonProcess {
  readonly pid: number;
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitedNow = false;

  constructor(readonly dirs: Dirs, child: ChildProcess) {
    if (child.pid === undefined) throw new Error('berth-containerd did not start');
    this.pid = child.pid;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      this.exitedNow = true;
      resolve({ code, signal });
    }));
  }

  get running(): boolean {
    return !this.exitedNow;
  }

  log(): string {
    try {
      return readFileSync(this.dirs.log, 'utf8');
    } catch {
      return '';
    }
  }

  /** Wait for the exit, up to ms; undefined on timeout. */
  async waitExit(ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
    return Promise.race([this.exited, sleep(ms).then(() => undefined)]);
  }

  /** SIGTERM, then SIGKILL after a grace period. Returns how it ended. */
  async stop(graceMs = 5000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) process.kill(this.pid, 'SIGTERM');
    const r = await this.waitExit(graceMs);
    if (r !== undefined) return r;
    process.kill(this.pid, 'SIGKILL');
    return this.exited;
  }

  async kill9(): Promise<void> {
    if (this.running) process.kill(this.pid, 'SIGKILL');
    await this.exited;
  }
}

function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Start berth-containerd on the given directories and wait until its socket accepts connections. */
export async function startDaemon(dirs: Dirs, extraArgs: readonly string[] = []): Promise<DaemonProcess> {
  const logFd = openSync(dirs.log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [DAEMON_BIN, '--address', dirs.address, '--root', dirs.root, '--state', dirs.state, '--log-level', 'debug', ...extraArgs], {
      stdio: ['ignore', logFd, logFd],
    });
  } finally {
    closeSync(logFd);
  }
  const d = new DaemonProcess(dirs, child);
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (!d.running) throw new Error(`berth-containerd exited during start:\n${d.log()}`);
    if (existsSync(dirs.address) && await socketAccepts(dirs.address)) return d;
    await sleep(50);
  }
  await d.kill9();
  throw new Error(`berth-containerd did not listen on ${dirs.address} within 15 s:\n${d.log()}`);
}

/** Stop (or kill) the daemon and remove its directories; safe to call twice. */
export async function cleanup(d: DaemonProcess | undefined, dirs: Dirs): Promise<void> {
  try {
    if (d !== undefined && d.running) await d.stop();
  } finally {
    rmSync(dirs.base, { recursive: true, force: true });
  }
}

export interface CtrResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run ctr against the daemon. */
export function ctr(address: string, args: readonly string[], namespace?: string): CtrResult {
  const argv = ['--address', address, ...(namespace === undefined ? [] : ['--namespace', namespace]), ...args];
  const r = spawnSync(CTR, argv, { encoding: 'utf8', timeout: 20_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
}

/** ctr that must succeed; returns stdout. */
export function ctrOk(address: string, args: readonly string[], namespace?: string): string {
  const r = ctr(address, args, namespace);
  if (r.code !== 0) throw new Error(`ctr ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Rows of ctr's tabular output, split on runs of spaces, without the header. */
export function rows(table: string): string[][] {
  return table.split('\n').slice(1).map((l) => l.trim()).filter((l) => l !== '').map((l) => l.split(/\s+/));
}

let protos: Protos | undefined;
export function loadProtos(): Protos {
  protos ??= Protos.load();
  return protos;
}

export type Msg = Record<string, unknown>;

/** A containerd API client over the daemon's socket. */
export class Api {
  private readonly client: Client;
  private readonly protos = loadProtos();

  constructor(address: string) {
    this.client = new Client(`unix:${address}`, credentials.createInsecure());
  }

  private method(service: string, name: string) {
    const def = this.protos.service(service)[name];
    if (def === undefined) throw new Error(`no method ${service}/${name}`);
    return def;
  }

  private static metadata(namespace: string | undefined): Metadata {
    const md = new Metadata();
    if (namespace !== undefined) md.set('containerd-namespace', namespace);
    return md;
  }

  unary(service: string, name: string, request: Msg, namespace?: string): Promise<Msg> {
    const m = this.method(service, name);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest<Msg, Msg>(
        m.path, (v) => m.requestSerialize(v), (b) => m.responseDeserialize(b) as Msg,
        request, Api.metadata(namespace), { deadline: Date.now() + 20_000 },
        (err: ServiceError | null, res?: Msg) => (err ? reject(err) : resolve(res ?? {})),
      );
    });
  }

  stream(service: string, name: string, request: Msg, namespace?: string): ClientReadableStream<Msg> {
    const m = this.method(service, name);
    return this.client.makeServerStreamRequest<Msg, Msg>(
      m.path, (v) => m.requestSerialize(v), (b) => m.responseDeserialize(b) as Msg, request, Api.metadata(namespace),
    );
  }

  close(): void {
    this.client.close();
  }
}

export const CONTAINERS = 'containerd.services.containers.v1.Containers';
export const NAMESPACES = 'containerd.services.namespaces.v1.Namespaces';
export const EVENTS = 'containerd.services.events.v1.Events';
export const INTROSPECTION = 'containerd.services.introspection.v1.Introspection';
export const VERSION_SVC = 'containerd.services.version.v1.Version';

/** The spec Any ctr and the Go client write. */
export const SPEC_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';

export function specAny(spec: object): { type_url: string; value: Buffer } {
  return { type_url: SPEC_TYPE_URL, value: Buffer.from(JSON.stringify(spec)) };
}

/** A rejected call's gRPC code and message. */
export async function grpcError(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as ServiceError;
    return { code: err.code, details: err.details };
  }
  throw new Error('call succeeded, an error was expected');
}

/** Collect messages from a stream until pred says enough, or time runs out. */
export async function collect(stream: ClientReadableStream<Msg>, pred: (got: Msg[]) => boolean, ms = 10_000): Promise<Msg[]> {
  const got: Msg[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanupListeners(); reject(new Error(`stream: timed out with ${got.length} messages: ${JSON.stringify(got)}`)); }, ms);
    const onData = (m: Msg): void => {
      got.push(m);
      if (pred(got)) { cleanupListeners(); resolve(got); }
    };
    const onError = (e: Error): void => { cleanupListeners(); reject(e); };
    const onEnd = (): void => { cleanupListeners(); pred(got) ? resolve(got) : reject(new Error(`stream ended early with ${JSON.stringify(got)}`)); };
    function cleanupListeners(): void {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('error', onError);
      stream.off('end', onEnd);
    }
    stream.on('data', onData);
    stream.on('error', onError);
    stream.on('end', onEnd);
  });
}

/**
 * One daemon for a whole test file: started before its tests, stopped and its
 * directories removed after them (also when they fail).
 */
export function useDaemon(): { dirs: Dirs; daemon: () => DaemonProcess | undefined; client: () => Api } {
  const dirs = tempDirs();
  let daemon: DaemonProcess | undefined;
  let api: Api | undefined;
  before(async () => {
    daemon = await startDaemon(dirs);
    api = new Api(dirs.address);
  });
  after(async () => {
    api?.close();
    await cleanup(daemon, dirs);
  });
  return {
    dirs,
    daemon: () => daemon,
    client: () => {
      if (api === undefined) throw new Error('the daemon did not start');
      return api;
    },
  };
}
