/**
 * Running commands from tests: with a timeout, stdout and stderr captured through
 * files (never pipes: a container that inherits a pipe would keep it open and a
 * reader would wait for the container, not for the command).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CommandResult {
  /** Exit code, or 128 + signal number when killed by a signal (as a shell reports it). */
  readonly code: number;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  /** The command line, for assertion messages. */
  readonly argv: readonly string[];
}

export interface CommandOptions {
  /** Data for stdin; without it stdin is /dev/null. */
  readonly input?: string;
  /** Milliseconds before the command is killed (SIGKILL); default 30 s. */
  readonly timeoutMs?: number;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Send stdout / stderr to this file (appended, kept) instead of a temp file: for
   * detached containers, which keep writing after the command has exited. */
  readonly stdoutFile?: string;
  readonly stderrFile?: string;
  /** Called with the child as soon as it is spawned (to track or signal it). */
  readonly onSpawn?: (child: ChildProcess) => void;
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8,
  SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15,
};

/** Runs argv to completion and returns what it printed and how it ended. */
export async function runCommand(argv: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('runCommand: empty argv');
  const dir = mkdtempSync(join(tmpdir(), 'berth-cmd-'));
  const outPath = opts.stdoutFile ?? join(dir, 'stdout');
  const errPath = opts.stderrFile ?? join(dir, 'stderr');
  const outFd = openSync(outPath, 'a');
  const errFd = openSync(errPath, 'a');
  try {
    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', outFd, errFd],
    });
    opts.onSpawn?.(child);
    if (opts.input !== undefined && child.stdin) {
      child.stdin.on('error', () => { /* the command may exit without reading */ });
      child.stdin.end(opts.input);
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
      (resolve, reject) => {
        child.once('error', reject);
        child.once('exit', (c, s) => resolve({ code: c, signal: s }));
      },
    );
    clearTimeout(timer);
    return {
      code: code ?? 128 + (signal ? SIGNALS[signal] ?? 0 : 0),
      signal,
      stdout: readFileSync(outPath, 'utf8'),
      stderr: readFileSync(errPath, 'utf8'),
      timedOut,
      argv,
    };
  } finally {
    closeSync(outFd);
    closeSync(errFd);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A one-line description of a result for assertion messages. */
export function describeResult(r: CommandResult): string {
  const how = r.timedOut ? 'timed out' : r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
  return `${r.argv.join(' ')}: ${how}\nstdout: ${r.stdout.slice(0, 2000)}\nstderr: ${r.stderr.slice(0, 2000)}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls check() until it returns a value other than undefined, or throws after timeoutMs. */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}
