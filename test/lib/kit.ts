/**
 * RuntimeKit: one per test and runtime. It owns a state root (`--root`), a work dir
 * and a Cleanup registered with t.after, and drives the runtime's command line.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe } from 'node:test';
import type { TestContext } from 'node:test';
import { invalid } from '@berth/base';
import { makeBundle } from './bundle.js';
import type { Bundle, BundleOptions } from './bundle.js';
import { Cleanup } from './cleanup.js';
import { describeResult, runCommand, waitFor } from './exec.js';
import type { CommandOptions, CommandResult } from './exec.js';
import type { OciState } from './oci.js';
import { probe } from './probe.js';
import type { ProbeFacts } from './probe.js';
import { RUNTIMES } from './runtimes.js';
import type { RuntimeDescriptor } from './runtimes.js';

export interface CreateResult extends CommandResult {
  readonly id: string;
  /** Where the container's stdout and stderr go (it inherits the files). */
  readonly stdoutFile: string;
  readonly stderrFile: string;
}

export interface ExecFlags {
  readonly env?: readonly string[];
  readonly cwd?: string;
  readonly user?: string;
  readonly additionalGids?: readonly number[];
  readonly processJson?: string;
  readonly detach?: boolean;
  readonly tty?: boolean;
  readonly extra?: readonly string[];
}

export class RuntimeKit {
  readonly cleanup = new Cleanup();
  /** State root passed as --root. */
  readonly root: string;
  /** Scratch dir for output files and the like. */
  readonly work: string;
  private seq = 0;

  private constructor(readonly rt: RuntimeDescriptor) {
    this.root = this.cleanup.tempDir(`berth-root-${rt.name}-`);
    this.work = this.cleanup.tempDir('berth-work-');
  }

  /** A kit whose cleanup runs after the test, pass or fail. */
  static open(t: TestContext, rt: RuntimeDescriptor): RuntimeKit {
    const kit = new RuntimeKit(rt);
    t.after(() => kit.cleanup.run());
    return kit;
  }

  /** A kit shared by several tests (e.g. made in before()); the caller runs kit.cleanup.run(). */
  static standalone(rt: RuntimeDescriptor): RuntimeKit {
    return new RuntimeKit(rt);
  }

  /** A container id unique across the whole run. */
  newId(tag = 'c'): string {
    return `bt-${tag}-${process.pid}-${randomBytes(4).toString('hex')}`;
  }

  /** Runs `<runtime> --root <root> ...args`. */
  cmd(args: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
    return runCommand([...this.rt.argv, '--root', this.root, ...args], { timeoutMs: 30_000, ...opts });
  }

  /** Like cmd(), but fails with the whole result when the exit code is not 0. */
  async ok(args: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
    const r = await this.cmd(args, opts);
    if (r.code !== 0) throw new Error(`expected success: ${describeResult(r)}`);
    return r;
  }

  bundle(opts: Omit<BundleOptions, 'cleanup'> = {}): Promise<Bundle> {
    return makeBundle({ ...opts, cleanup: this.cleanup });
  }

  private outFiles(id: string): { stdoutFile: string; stderrFile: string } {
    this.seq++;
    return { stdoutFile: join(this.work, `${id}.${this.seq}.out`), stderrFile: join(this.work, `${id}.${this.seq}.err`) };
  }

  /** `run` in the foreground: returns when the container has exited. */
  async run(bundle: Bundle, opts: { id?: string; input?: string; timeoutMs?: number; extra?: readonly string[] } = {}): Promise<CommandResult & { id: string }> {
    const id = opts.id ?? this.newId();
    this.cleanup.container(this.rt, this.root, id);
    const r = await this.cmd(['run', ...(opts.extra ?? []), '--bundle', bundle.dir, id], {
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      timeoutMs: opts.timeoutMs ?? 30_000,
      onSpawn: (c) => this.cleanup.child(c),
    });
    return { ...r, id };
  }

  /** `create` (or `run -d` with detach) with stdio going to files that outlive the command. */
  async create(bundle: Bundle, opts: { id?: string; pidFile?: string; detachedRun?: boolean; extra?: readonly string[] } = {}): Promise<CreateResult> {
    const id = opts.id ?? this.newId();
    const files = this.outFiles(id);
    this.cleanup.container(this.rt, this.root, id);
    const args = opts.detachedRun ? ['run', '-d'] : ['create'];
    if (opts.pidFile !== undefined) args.push('--pid-file', opts.pidFile);
    args.push(...(opts.extra ?? []), '--bundle', bundle.dir, id);
    const r = await this.cmd(args, { ...files, onSpawn: (c) => this.cleanup.child(c) });
    return { ...r, id, ...files };
  }

  /** create + start, both required to succeed; returns the running container's pid. */
  async startContainer(bundle: Bundle, opts: { id?: string } = {}): Promise<CreateResult & { pid: number }> {
    const c = await this.create(bundle, opts);
    if (c.code !== 0) throw new Error(`create failed: ${describeResult(c)}\ncontainer stderr: ${readFileSync(c.stderrFile, 'utf8')}`);
    const s = await this.state(c.id);
    if (s.pid === undefined || s.pid <= 0) throw new Error(`state after create has no pid: ${JSON.stringify(s)}`);
    this.cleanup.pid(s.pid);
    await this.ok(['start', c.id]);
    return { ...c, pid: s.pid };
  }

  /** Parsed `state <id>`. */
  async state(id: string): Promise<OciState> {
    const r = await this.ok(['state', id]);
    const value: unknown = JSON.parse(r.stdout);
    if (typeof value !== 'object' || value === null) throw invalid(`state printed no object: ${r.stdout}`);
    return value as OciState;
  }

  /** Waits until `state <id>` reports the status. */
  waitStatus(id: string, status: string, timeoutMs = 10_000): Promise<OciState> {
    return waitFor(`container ${id} to be ${status}`, async () => {
      // Until create has written its state, `state` fails: not ready yet.
      const r = await this.cmd(['state', id]);
      if (r.code !== 0) return undefined;
      const s = JSON.parse(r.stdout) as OciState;
      return s.status === status ? s : undefined;
    }, timeoutMs);
  }

  exec(id: string, args: readonly string[], flags: ExecFlags = {}, opts: CommandOptions = {}): Promise<CommandResult> {
    const a: string[] = ['exec'];
    for (const e of flags.env ?? []) a.push('--env', e);
    if (flags.cwd !== undefined) a.push('--cwd', flags.cwd);
    if (flags.user !== undefined) a.push('--user', flags.user);
    for (const g of flags.additionalGids ?? []) a.push('--additional-gids', String(g));
    if (flags.processJson !== undefined) a.push('--process', flags.processJson);
    if (flags.detach) a.push('--detach');
    if (flags.tty) a.push('--tty');
    a.push(...(flags.extra ?? []), id, ...args);
    return this.cmd(a, { onSpawn: (c) => this.cleanup.child(c), ...opts });
  }

  /**
   * Runs a container whose process is `/probe ...args` and returns the parsed facts;
   * fails unless the run exits 0.
   */
  async probe<T = ProbeFacts>(args: readonly string[], opts: Omit<BundleOptions, 'cleanup'> = {}): Promise<T> {
    const b = await this.bundle({
      ...opts,
      mutate: async (c, bundle) => {
        c.process.args = ['/probe', ...args];
        if (opts.mutate) await opts.mutate(c, bundle);
      },
    });
    const r = await this.run(b);
    if (r.code !== 0) throw new Error(`probe run failed: ${describeResult(r)}`);
    return probe<T>(r.stdout);
  }
}

/**
 * Declares one describe block per runtime ("<title> [runc]"), skipped with the
 * reason when the runtime is not available here. Tests inside run concurrently.
 */
export function eachRuntime(title: string, body: (rt: RuntimeDescriptor) => void, concurrency = 4): void {
  for (const rt of RUNTIMES) {
    describe(`${title} [${rt.name}]`, { skip: rt.missing ?? false, concurrency }, () => body(rt));
  }
}

/** Parses every non-empty line of output as one JSON value (several probe runs in one container). */
export function jsonLines(output: string): unknown[] {
  return output
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .map((l): unknown => JSON.parse(l));
}
