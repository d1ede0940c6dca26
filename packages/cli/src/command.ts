/**
 * What every command shares: its declaration (usage, flags, argument count), the
 * context it runs in (the negotiated API client, stdio, config dir), and the
 * errors that map to exit codes the way the docker CLI's do.
 */
import type { Readable, Writable } from 'node:stream';
import { ApiError, Client } from './api.js';
import type { FlagDef, Flags } from './args.js';

export const PROG = 'berth';

/** Ends the command with an exit code, printing `message` to stderr when not empty. */
export class StatusError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = 'StatusError';
  }
}

export interface Context {
  /** The client, version-negotiated on first use. */
  client(): Promise<Client>;
  readonly stdin: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown; fd?: number };
  readonly stdout: Writable & { isTTY?: boolean; columns?: number; rows?: number };
  readonly stderr: Writable;
  /** The directory of config.json (`~/.berth` by default). */
  readonly configDir: string;
  out(text: string): void;
  err(text: string): void;
}

export type ArgCount = { readonly min?: number; readonly max?: number; readonly exact?: number };

export interface Command {
  readonly name: string;
  /** Other names for the same command within its group (`ls`, `list`, `ps`). */
  readonly aliases?: readonly string[];
  readonly usage: string;
  readonly description: string;
  readonly flags: readonly FlagDef[];
  readonly args?: ArgCount;
  readonly stopAtPositional?: boolean;
  run(ctx: Context, flags: Flags, args: string[]): Promise<number>;
}

/** A usage-hint error (bad flags or arguments): exit 125, or 1 for argument counts. */
export function usageError(cmdPath: string, usage: string, message: string, code = 125, verb = 'Run'): StatusError {
  return new StatusError(code, `${message}\n\nUsage:  ${PROG} ${usage}\n\n${verb} '${PROG} ${cmdPath} --help' for more information`);
}

export function checkArgs(cmdPath: string, cmd: Command, args: readonly string[]): void {
  const a = cmd.args;
  if (a === undefined) return;
  const plural = (n: number): string => `${n} argument${n === 1 ? '' : 's'}`;
  const who = `${PROG}: '${PROG} ${cmdPath}'`;
  if (a.exact !== undefined && args.length !== a.exact) {
    const msg = a.exact === 0 ? `${who} accepts no arguments` : `${who} requires ${plural(a.exact)}`;
    throw usageError(cmdPath, cmd.usage, msg, 1);
  }
  if (a.min !== undefined && args.length < a.min) {
    throw usageError(cmdPath, cmd.usage, `${who} requires at least ${plural(a.min)}`, 1, 'See');
  }
  if (a.max !== undefined && args.length > a.max) {
    throw usageError(cmdPath, cmd.usage, `${who} requires at most ${plural(a.max)}`, 1);
  }
}

/** The daemon's error as the docker CLI prints it. */
export function daemonMessage(err: unknown): string {
  if (err instanceof ApiError) return `Error response from daemon: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * Runs `fn` for each name, printing what it returns (when a string) on success;
 * errors are printed after all ran and the command fails with exit 1, as docker's
 * rm/stop/kill/... do. `summary` adds docker's closing line (`Error: failed to ...`).
 */
export async function forEachName(
  ctx: Context,
  names: readonly string[],
  fn: (name: string) => Promise<string | undefined>,
  summary?: (failed: string[]) => string,
): Promise<number> {
  const failed: string[] = [];
  const errors: string[] = [];
  for (const name of names) {
    try {
      const out = await fn(name);
      if (out !== undefined) ctx.out(`${out}\n`);
    } catch (err) {
      if (err instanceof StatusError) throw err;
      errors.push(daemonMessage(err));
      failed.push(name);
    }
  }
  if (errors.length > 0) {
    const lines = [...errors];
    if (summary !== undefined) lines.push(summary(failed));
    throw new StatusError(1, lines.join('\n'));
  }
  return 0;
}

/** `-f key=value` options into the filters map. */
export function filtersOf(values: readonly string[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq < 0) throw new StatusError(125, `invalid argument "${v}" for "-f, --filter" flag: bad format of filter (expected name=value)`);
    const k = v.slice(0, eq).trim().toLowerCase();
    const val = v.slice(eq + 1);
    const list = m.get(k);
    if (list === undefined) m.set(k, [val]);
    else list.push(val);
  }
  return m;
}
