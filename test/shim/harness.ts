/**
 * What the berth-shim tests share: paths, a cleanup registry, bundles made with
 * `berth-runc spec`, starting a shim, and a small client for its control and
 * attach sockets (native/shim/PROTOCOL.md).
 */
import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { planCreate } from '@berth/runtime';

/** test/dist/shim/harness.js -> the repository root. */
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const SHIM = join(REPO, 'native/out/berth-shim');
export const EXECUTOR = join(REPO, 'native/out/berth-executor');
export const BERTH_RUNC = join(REPO, 'packages/runtime/bin/berth-runc.js');
export const RUNC = '/usr/sbin/runc';
export const ROOTFS = join(REPO, 'native/out/rootfs');

export type Spec = Parameters<typeof planCreate>[0];
export type Json = Record<string, unknown>;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Undo steps, run in reverse order, all of them even when some fail. */
export class Cleanup {
  private readonly steps: { what: string; fn: () => unknown }[] = [];
  defer(what: string, fn: () => unknown): void {
    this.steps.push({ what, fn });
  }
  tempDir(prefix: string): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }
  /** Kills a process by pid if it still runs (the shim, a container). */
  pid(pid: number): void {
    const start = startTime(pid);
    this.defer(`kill ${pid}`, async () => {
      if (start === undefined || startTime(pid) !== start) return;
      try { process.kill(pid, 'SIGKILL'); } catch { return; }
      for (let i = 0; i < 200 && startTime(pid) === start && !isZombie(pid); i++) await sleep(10);
    });
  }
  async run(): Promise<void> {
    const errors: string[] = [];
    for (const s of this.steps.reverse()) {
      try {
        await s.fn();
      } catch (e) {
        errors.push(`${s.what}: ${(e as Error).message}`);
      }
    }
    this.steps.length = 0;
    if (errors.length > 0) throw new Error(`cleanup failed: ${errors.join('; ')}`);
  }
}

export function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

export function alive(pid: number): boolean {
  return startTime(pid) !== undefined && !isZombie(pid);
}

/** A bundle from `berth-runc spec`, rooted at the built-in rootfs (read-only), with args and changes. */
export function makeBundle(c: Cleanup, args: string[], edit?: (spec: Spec) => void): { dir: string; spec: Spec } {
  if (!existsSync(join(ROOTFS, 'bin/busybox'))) throw new Error(`${ROOTFS} is missing: run make -C native`);
  const dir = c.tempDir('berth-shim-bundle-');
  const r = spawnSync(process.execPath, [BERTH_RUNC, 'spec', '--bundle', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`berth-runc spec: ${r.stderr}`);
  const spec = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Spec;
  spec.root = { path: ROOTFS, readonly: true };
  if (spec.process === undefined) throw new Error('berth-runc spec wrote no process');
  spec.process.terminal = false;
  spec.process.args = args;
  edit?.(spec);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec, null, 2));
  return { dir, spec };
}

export interface Runtime {
  name: string;
  /** The shim's runtime options. */
  args(root: string): string[];
  /** `<runtime> --root root delete -f id` for cleanup. */
  argv: string[];
}

export const CRUN = '/usr/bin/crun';

/** runc first (the tests that need one runtime use it), berth-runc, and crun when installed. */
export const runtimes: Runtime[] = [
  { name: 'runc', argv: [RUNC], args: (root) => ['--runtime', RUNC, '--runtime-root', root] },
  { name: 'berth-runc', argv: [process.execPath, BERTH_RUNC], args: (root) => ['--runtime', BERTH_RUNC, '--runtime-root', root] },
  ...(existsSync(CRUN) ? [crun()] : []),
];

/**
 * crun refuses a hybrid cgroup host (v1 controllers plus an empty cgroup2 at
 * /sys/fs/cgroup/unified): there it runs in a private mount namespace without that
 * mount, through the shim's --runtime-arg prefix.
 */
function crun(): Runtime {
  const hybrid = existsSync('/sys/fs/cgroup/unified/cgroup.procs') && existsSync('/sys/fs/cgroup/memory/cgroup.procs');
  if (!hybrid) return { name: 'crun', argv: [CRUN], args: (root) => ['--runtime', CRUN, '--runtime-root', root] };
  const prefix = ['-m', '--propagation', 'private', 'sh', '-c', `umount /sys/fs/cgroup/unified 2>/dev/null; exec ${CRUN} "$@"`, 'crun'];
  return {
    name: 'crun',
    argv: ['unshare', ...prefix],
    args: (root) => ['--runtime', '/usr/bin/unshare', ...prefix.flatMap((a) => ['--runtime-arg', a]), '--runtime-root', root],
  };
}

export interface Shim {
  pid: number;
  stateDir: string;
  control: string;
  attach: string;
}

/**
 * Starts berth-shim and waits for its ready line. Registers: kill the shim, and
 * (runtime given) `<runtime> --root root delete -f id`, and the state dir's removal.
 */
export async function startShim(c: Cleanup, o: {
  id: string;
  bundle: string;
  stateDir: string;
  mode: string[];
  extra?: string[];
  runtime?: { rt: Runtime; root: string };
}): Promise<Shim> {
  if (!existsSync(SHIM)) throw new Error(`${SHIM} is missing: run make -C native`);
  c.defer(`remove ${o.stateDir}`, () => rmSync(o.stateDir, { recursive: true, force: true }));
  const rt = o.runtime;
  if (rt !== undefined) {
    c.defer(`delete container ${o.id}`, () => {
      spawnSync(rt.rt.argv[0] ?? '', [...rt.rt.argv.slice(1), '--root', rt.root, 'delete', '-f', o.id], { stdio: 'ignore', timeout: 20_000 });
    });
  }
  const args = ['--id', o.id, '--namespace', 'test', '--bundle', o.bundle, '--state-dir', o.stateDir,
    ...o.mode, ...(o.extra ?? []), '--ready-fd', '3'];
  const child = spawn(SHIM, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const ready = child.stdio[3] as Socket;
  let line = '';
  ready.setEncoding('utf8');
  await new Promise<void>((resolve) => {
    ready.on('data', (d: string) => { line += d; });
    ready.on('end', () => resolve());
    ready.on('error', () => resolve());
  });
  await new Promise<void>((resolve) => { if (child.exitCode !== null) resolve(); else child.once('exit', () => resolve()); });
  if (child.exitCode !== 0) throw new Error(`berth-shim exited with ${child.exitCode}: ${stderr}`);
  const msg = JSON.parse(line) as Json;
  if (msg['ok'] !== true || typeof msg['pid'] !== 'number') throw new Error(`berth-shim: ${line}`);
  const pid = msg['pid'];
  c.pid(pid);
  return { pid, stateDir: o.stateDir, control: join(o.stateDir, 'control.sock'), attach: join(o.stateDir, 'attach.sock') };
}

/** A connection to the control socket: requests by seq, events collected. */
export class Control {
  readonly events: Json[] = [];
  private seq = 0;
  private buf = '';
  private readonly pending = new Map<number, (v: Json) => void>();
  private eventWaiters: (() => void)[] = [];
  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(this.buf.slice(0, nl)) as Json;
        this.buf = this.buf.slice(nl + 1);
        if (typeof msg['event'] === 'string') {
          this.events.push(msg);
          for (const w of this.eventWaiters.splice(0)) w();
        } else if (typeof msg['seq'] === 'number') {
          this.pending.get(msg['seq'])?.(msg);
          this.pending.delete(msg['seq']);
        }
      }
    });
    sock.on('error', () => undefined);
  }

  static async open(path: string): Promise<Control> {
    const sock = connect(path);
    await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
    const c = new Control(sock);
    const v = await c.call('version', { version: 1 });
    if (v['ok'] !== true) throw new Error(`version: ${JSON.stringify(v)}`);
    return c;
  }

  /** Sends a request and resolves with the answer, ok or not. */
  call(op: string, fields: Json = {}, timeoutMs = 30_000): Promise<Json> {
    const seq = ++this.seq;
    return new Promise<Json>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${op}: no answer in ${timeoutMs} ms`)), timeoutMs);
      this.pending.set(seq, (v) => { clearTimeout(t); resolve(v); });
      this.sock.write(`${JSON.stringify({ op, seq, ...fields })}\n`);
    });
  }

  /** As call, but throws unless ok. */
  async ok(op: string, fields: Json = {}, timeoutMs?: number): Promise<Json> {
    const v = await this.call(op, fields, timeoutMs);
    if (v['ok'] !== true) throw new Error(`${op}: ${JSON.stringify(v)}`);
    return v;
  }

  async event(pred: (e: Json) => boolean, timeoutMs = 20_000): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.events.find(pred);
      if (e !== undefined) return e;
      if (Date.now() > deadline) throw new Error(`no such event in ${timeoutMs} ms; got ${JSON.stringify(this.events)}`);
      await new Promise<void>((r) => { this.eventWaiters.push(r); setTimeout(r, 100); });
    }
  }

  close(): void {
    this.sock.destroy();
  }
}

/** An attach connection: output collected by stream (1, 2; 0 raw for a terminal). */
export class Attach {
  readonly out: Record<number, string> = { 0: '', 1: '', 2: '' };
  answer: Json | undefined;
  readonly closed: Promise<void>;
  private raw = Buffer.alloc(0);
  private constructor(readonly sock: Socket) {
    this.closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      this.raw = Buffer.concat([this.raw, d]);
      if (this.answer === undefined) {
        const nl = this.raw.indexOf(10);
        if (nl < 0) return;
        this.answer = JSON.parse(this.raw.subarray(0, nl).toString('utf8')) as Json;
        this.raw = this.raw.subarray(nl + 1);
      }
      if (this.answer['terminal'] === true) {
        this.out[0] += this.raw.toString('utf8');
        this.raw = Buffer.alloc(0);
        return;
      }
      while (this.raw.length >= 8) {
        const len = this.raw.readUInt32BE(4);
        if (this.raw.length < 8 + len) break;
        const stream = this.raw[0] ?? 0;
        this.out[stream] = (this.out[stream] ?? '') + this.raw.subarray(8, 8 + len).toString('utf8');
        this.raw = this.raw.subarray(8 + len);
      }
    });
  }

  static async open(path: string, req: Json): Promise<Attach> {
    const sock = connect(path);
    await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
    const a = new Attach(sock);
    sock.write(`${JSON.stringify(req)}\n`);
    await until(() => a.answer !== undefined, 5000, 'attach answer');
    return a;
  }
}

export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export interface LogEntry { log: string; stream: string; time: string }

export function readLog(path: string): LogEntry[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as LogEntry);
}

export function mkfifo(path: string): void {
  const r = spawnSync('mkfifo', ['-m', '0600', path]);
  if (r.status !== 0) throw new Error(`mkfifo ${path} failed`);
}

export function vmRssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m?.[1] !== undefined ? Number(m[1]) : NaN;
}
