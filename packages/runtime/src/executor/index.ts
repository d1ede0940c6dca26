/**
 * Runs berth-executor on a plan: spawns it with the plan and sync fds, answers
 * its hook handshakes, and resolves once the container process is ready.
 * The protocol is native/executor/PLAN.md.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess, StdioOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import { BerthError, ErrorKind } from '@berth/base';
import { encodePlan } from '../plan/encode.js';
import type { ExecutorMessage, Plan } from '../plan/types.js';

/** A failure the executor reported: the stage it was in and the errno, as well as its message. */
export class ExecutorError extends BerthError {
  readonly stage: string;
  readonly errno: number;
  constructor(kind: ErrorKind, message: string, stage: string, errno: number) {
    super(kind, message);
    this.stage = stage;
    this.errno = errno;
  }
}

export interface ExecutorOptions {
  /** The executor binary (default: executorPath()). */
  executorPath?: string;
  /** How many fds the container process gets beyond stdio (the plan's preserve_fds). */
  preserveFds?: number;
  /** The caller's fds that become 3, 4, ... in the executor (default 3 .. 3+preserveFds-1). */
  extraFds?: number[];
  /** fds 0..2 of the executor (and of the container process unless it has a terminal). */
  stdio?: ('inherit' | 'ignore' | number)[];
  /**
   * Called on a `hook` message (createRuntime); the executor continues once it
   * resolves. A string result is the OCI state JSON the executor then gives to
   * the hooks it runs itself (createContainer, startContainer).
   */
  onHook?: (event: string) => Promise<void | string>;
  /** Every message, as it arrives. */
  onMessage?: (m: ExecutorMessage) => void;
  env?: NodeJS.ProcessEnv;
}

export interface ExecutorHandle {
  /** The container process's pid, in the caller's pid namespace. */
  pid: number;
  executor: ChildProcess;
  /** The executor's exit status (128+signal if killed); with `wait`, the process's status. */
  exited: Promise<number>;
}

/** native/out/berth-executor of this checkout, or $BERTH_EXECUTOR. */
export function executorPath(): string {
  const fromEnv = process.env['BERTH_EXECUTOR'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  // packages/runtime/dist/executor/index.js -> repository root
  return fileURLToPath(new URL('../../../../native/out/berth-executor', import.meta.url));
}

/** Parses one line from the sync fd; anything malformed is a bug on one side or the other. */
export function parseMessage(line: string): ExecutorMessage {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new BerthError(ErrorKind.Internal, `executor: malformed message ${JSON.stringify(line)}`);
  }
  if (typeof v !== 'object' || v === null) {
    throw new BerthError(ErrorKind.Internal, `executor: malformed message ${JSON.stringify(line)}`);
  }
  const o = v as Record<string, unknown>;
  const str = (k: string): string => (typeof o[k] === 'string' ? (o[k] as string) : '');
  const num = (k: string): number => (typeof o[k] === 'number' ? (o[k] as number) : 0);
  switch (o['type']) {
    case 'stage': return { type: 'stage', stage: str('stage'), errno: num('errno') };
    case 'pid': return { type: 'pid', pid: num('pid') };
    case 'hook': return { type: 'hook', event: str('event') };
    case 'ready': return { type: 'ready' };
    case 'error': return { type: 'error', stage: str('stage'), errno: num('errno'), message: str('message') };
    default: throw new BerthError(ErrorKind.Internal, `executor: unknown message ${JSON.stringify(line)}`);
  }
}

function errorFrom(m: { stage: string; errno: number; message: string }): ExecutorError {
  const kind = m.stage === 'plan' ? ErrorKind.InvalidArgument : ErrorKind.FailedPrecondition;
  return new ExecutorError(kind, m.message, m.stage, m.errno);
}

/**
 * Starts the executor on plan. Resolves once the container process is ready
 * (created, waiting on the exec fifo if the plan has one); rejects with an
 * ExecutorError if the executor reports a failure or exits before ready.
 */
export function startExecutor(plan: Plan, opts: ExecutorOptions = {}): Promise<ExecutorHandle> {
  const path = opts.executorPath ?? executorPath();
  if (!existsSync(path)) {
    return Promise.reject(new BerthError(ErrorKind.FailedPrecondition,
      `executor ${path} not found (build it with make -C native, or set BERTH_EXECUTOR)`));
  }
  const n = opts.preserveFds ?? 0;
  const extra = opts.extraFds ?? Array.from({ length: n }, (_, i) => 3 + i);
  if (extra.length !== n) {
    return Promise.reject(new BerthError(ErrorKind.InvalidArgument,
      `executor: ${extra.length} extra fds given for preserveFds ${n}`));
  }
  const std = opts.stdio ?? ['inherit', 'inherit', 'inherit'];
  const stdio: StdioOptions = [std[0] ?? 'inherit', std[1] ?? 'inherit', std[2] ?? 'inherit', ...extra, 'pipe', 'pipe'];
  const planFd = 3 + n;
  const syncFd = 4 + n;

  const child = spawn(path, ['--plan-fd', String(planFd), '--sync-fd', String(syncFd)], {
    stdio,
    env: opts.env ?? process.env,
  });
  const exited = new Promise<number>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve(code ?? (signal !== null ? 128 + signalNumber(signal) : 1));
    });
  });
  // A failed spawn (ENOENT, EACCES) also emits exit; keep it from being unhandled.
  child.once('error', () => undefined);

  return new Promise<ExecutorHandle>((resolve, reject) => {
    const planSock = child.stdio[planFd] as Socket | null;
    const sync = child.stdio[syncFd] as Socket | null;
    if (planSock === null || sync === null) {
      child.kill('SIGKILL');
      reject(new BerthError(ErrorKind.Internal, 'executor: plan or sync pipe missing'));
      return;
    }
    planSock.on('error', () => undefined);
    planSock.end(encodePlan(plan));

    let settled = false;
    let pid = 0;
    let buf = '';
    let exitCode: number | undefined;
    let syncClosed = false;
    const settle = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      if (err !== undefined) {
        // The executor ends itself after reporting a failure; if it has not within
        // a moment, it must not outlive the failed start (nor keep its caller alive).
        setTimeout(() => { if (exitCode === undefined) child.kill('SIGKILL'); }, 2000).unref();
        reject(err);
        return;
      }
      sync.unref();
      resolve({ pid, executor: child, exited });
    };
    const giveUpIfDone = (): void => {
      if (settled || exitCode === undefined || !syncClosed) return;
      settle(new ExecutorError(ErrorKind.FailedPrecondition,
        `executor exited with status ${exitCode} before the container process was ready`, 'executor', 0));
    };

    const onMessage = (m: ExecutorMessage): void => {
      opts.onMessage?.(m);
      switch (m.type) {
        case 'pid': pid = m.pid; break;
        case 'ready': settle(undefined); break;
        case 'error': settle(errorFrom(m)); break;
        case 'hook': answerHook(m.event); break;
        case 'stage': break;
      }
    };
    const answerHook = (event: string): void => {
      const handler = opts.onHook;
      const run = handler !== undefined
        ? handler(event)
        : Promise.reject(new Error(`no handler for hook ${event}`));
      run.then(
        (state) => { if (!sync.destroyed) sync.write(typeof state === 'string' ? `ok ${state.replace(/\n/g, ' ')}\n` : 'ok\n'); },
        (e: unknown) => {
          if (!sync.destroyed) sync.write('abort\n');
          const msg = e instanceof Error ? e.message : String(e);
          settle(new ExecutorError(ErrorKind.FailedPrecondition, `hook ${event}: ${msg}`, 'hook', 0));
        },
      );
    };

    sync.setEncoding('utf8');
    sync.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === '') continue;
        let m: ExecutorMessage;
        try {
          m = parseMessage(line);
        } catch (e) {
          settle(e as Error);
          continue;
        }
        onMessage(m);
      }
    });
    sync.on('error', () => undefined);
    sync.on('close', () => { syncClosed = true; giveUpIfDone(); });
    child.once('error', (e) => {
      settle(new BerthError(ErrorKind.FailedPrecondition, `executor ${path}: ${e.message}`, { cause: e }));
    });
    void exited.then((code) => { exitCode = code; giveUpIfDone(); });
  });
}

function signalNumber(name: NodeJS.Signals): number {
  return constants.signals[name] ?? 0;
}
