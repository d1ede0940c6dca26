/**
 * The commands that connect the local terminal to a container: run, create,
 * start, attach and exec. Attach hijacks the connection before start; the exit
 * is learned from a wait registered before start (`next-exit`, or `removed`
 * with --rm). With -t the local terminal goes raw, the window size follows
 * (resize at start and on SIGWINCH), ctrl-p ctrl-q detaches, and the terminal
 * is restored on every way out.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { ApiError, readAll } from '../api.js';
import type { Client } from '../api.js';
import type { Flags } from '../args.js';
import { UsageError } from '../args.js';
import { PROG, StatusError, daemonMessage, forEachName, usageError } from '../command.js';
import type { Command, Context } from '../command.js';
import { copyRaw, demux } from '../stdcopy.js';
import { pullImage } from './images.js';
import { CREATE_FLAGS, buildCreate, readKeyFile } from './opts.js';
import type { CreateRequest } from './opts.js';

const DEFAULT_DETACH_KEYS = 'ctrl-p,ctrl-q';

/** Docker's detach-keys syntax (`ctrl-p,ctrl-q`, `a`, `ctrl-@`) into bytes. */
export function parseDetachKeys(spec: string): Buffer {
  const out: number[] = [];
  for (const key of spec.split(',')) {
    const k = key.trim();
    if (k.length === 1) out.push(k.charCodeAt(0));
    else {
      const m = /^ctrl-([a-z@[\\\]^_])$/i.exec(k);
      if (m === null) throw new StatusError(125, `Invalid detach keys (${spec}) provided`);
      const c = (m[1] ?? '').toLowerCase();
      const code = c >= 'a' && c <= 'z' ? c.charCodeAt(0) - 96 : { '@': 0, '[': 27, '\\': 28, ']': 29, '^': 30, _: 31 }[c] ?? 0;
      out.push(code);
    }
  }
  return Buffer.from(out);
}

/** Finds the detach sequence across chunks; holds back a partial match. */
export class DetachScanner {
  private held: Buffer = Buffer.alloc(0);
  constructor(private readonly keys: Buffer) {}

  /** Bytes to forward, and whether the sequence was completed. */
  push(chunk: Buffer): { forward: Buffer; detach: boolean } {
    if (this.keys.length === 0) return { forward: chunk, detach: false };
    const data = Buffer.concat([this.held, chunk]);
    const out: number[] = [];
    let matched = 0;
    for (const b of data) {
      if (b === this.keys[matched]) {
        matched++;
        if (matched === this.keys.length) {
          this.held = Buffer.alloc(0);
          return { forward: Buffer.from(out), detach: true };
        }
      } else {
        for (let i = 0; i < matched; i++) out.push(this.keys[i] as number);
        matched = 0;
        if (b === this.keys[0]) matched = 1;
        else out.push(b);
      }
    }
    this.held = this.keys.subarray(0, matched);
    return { forward: Buffer.from(out), detach: false };
  }
}

/** Puts the local terminal in raw mode; the returned function restores it (idempotent). */
function rawTerminal(ctx: Context): () => void {
  const stdin = ctx.stdin;
  if (stdin.isTTY !== true || typeof stdin.setRawMode !== 'function') return () => undefined;
  stdin.setRawMode(true);
  // libuv's raw mode keeps output processing (ONLCR); a raw terminal as docker makes it has none
  spawnSync('stty', ['-opost'], { stdio: ['inherit', 'ignore', 'ignore'] });
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    try {
      stdin.setRawMode?.(false);
    } catch {
      // the terminal may be gone already
    }
    process.off('exit', restore);
  };
  process.on('exit', restore);
  return restore;
}

export interface StreamOptions {
  readonly stdin: boolean;
  readonly stdout: boolean;
  readonly stderr: boolean;
  readonly tty: boolean;
  readonly detachKeys: string;
}

export interface Streaming {
  /** Settles when the output ends (or the user detached). */
  readonly done: Promise<'ended' | 'detached'>;
  /** Tears the connection down and restores the terminal. */
  close(): void;
}

/** Wires a hijacked connection to the local stdio. */
function pump(ctx: Context, socket: Duplex, opts: StreamOptions): Streaming {
  const restore = opts.tty && opts.stdin ? rawTerminal(ctx) : () => undefined;
  let detached = false;
  let onStdinData: ((b: Buffer) => void) | undefined;
  let onStdinEnd: (() => void) | undefined;
  const stopInput = (): void => {
    if (onStdinData !== undefined) ctx.stdin.off('data', onStdinData);
    if (onStdinEnd !== undefined) ctx.stdin.off('end', onStdinEnd);
    onStdinData = undefined;
    ctx.stdin.pause();
  };
  let resolveDetach: (v: 'detached') => void = () => undefined;
  const detachP = new Promise<'detached'>((r) => {
    resolveDetach = r;
  });
  if (opts.stdin) {
    const scanner = ctx.stdin.isTTY === true ? new DetachScanner(parseDetachKeys(opts.detachKeys)) : undefined;
    onStdinData = (chunk: Buffer): void => {
      let data = Buffer.from(chunk);
      if (scanner !== undefined) {
        const r = scanner.push(data);
        data = r.forward;
        if (r.detach) {
          if (data.length > 0) socket.write(data);
          detached = true;
          stopInput();
          socket.destroy();
          resolveDetach('detached');
          return;
        }
      }
      if (data.length > 0 && !socket.write(data)) {
        ctx.stdin.pause();
        socket.once('drain', () => ctx.stdin.resume());
      }
    };
    onStdinEnd = (): void => {
      stopInput();
      if (!socket.destroyed) socket.end();
    };
    ctx.stdin.on('data', onStdinData);
    ctx.stdin.on('end', onStdinEnd);
    ctx.stdin.resume();
  }
  socket.on('error', () => undefined);
  const output = (async (): Promise<'ended'> => {
    try {
      if (opts.tty) await copyRaw(socket, ctx.stdout);
      else await demux(socket, ctx.stdout, ctx.stderr);
    } catch (err) {
      if (!detached) throw err;
    }
    return 'ended';
  })();
  const done = Promise.race([output, detachP]).finally(() => {
    stopInput();
    restore();
  });
  return {
    done,
    close: () => {
      stopInput();
      socket.destroy();
      restore();
    },
  };
}

/** Hijacks POST /containers/{id}/attach and wires it to the local stdio. */
export async function attachContainer(ctx: Context, client: Client, id: string, opts: StreamOptions, logs = false): Promise<Streaming> {
  const h = await client.hijack('POST', `/containers/${encodeURIComponent(id)}/attach`, {
    query: {
      stream: true,
      logs: logs || undefined,
      stdin: opts.stdin || undefined,
      stdout: opts.stdout || undefined,
      stderr: opts.stderr || undefined,
      detachKeys: opts.detachKeys !== DEFAULT_DETACH_KEYS ? opts.detachKeys : undefined,
    },
  });
  return pump(ctx, h.socket, opts);
}

/** Keeps the container's (or exec's) TTY size equal to the local terminal's. */
function followSize(ctx: Context, client: Client, path: string): () => void {
  if (ctx.stdout.isTTY !== true) return () => undefined;
  const resize = (): void => {
    const h = ctx.stdout.rows ?? 0;
    const w = ctx.stdout.columns ?? 0;
    if (h === 0 || w === 0) return;
    client.call('POST', path, { query: { h, w } }).catch(() => undefined);
  };
  resize();
  process.on('SIGWINCH', resize);
  return () => process.off('SIGWINCH', resize);
}

const PROXIED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const;

/** Forwards the signals this process receives to the container (docker's --sig-proxy). */
function proxySignals(client: Client, id: string): () => void {
  const handlers = PROXIED.map((sig) => {
    const h = (): void => {
      client.call('POST', `/containers/${encodeURIComponent(id)}/kill`, { query: { signal: sig } }).catch(() => undefined);
    };
    process.on(sig, h);
    return [sig, h] as const;
  });
  return () => {
    for (const [sig, h] of handlers) process.off(sig, h);
  };
}

interface WaitResult {
  StatusCode: number;
  Error?: { Message?: string } | null;
}

/**
 * Registers a wait before the container starts: resolves once the daemon has
 * answered the request headers (or after a short grace), with the eventual result.
 */
async function registerWait(client: Client, id: string, condition: string): Promise<{ result: Promise<WaitResult> }> {
  const req = client.request('POST', `/containers/${encodeURIComponent(id)}/wait`, { query: { condition } });
  const result = req.then(async (res: IncomingMessage) => JSON.parse((await readAll(res)).toString('utf8')) as WaitResult);
  result.catch(() => undefined);
  await Promise.race([req.catch(() => undefined), new Promise((r) => setTimeout(r, 500).unref())]);
  return { result };
}

function startErrorCode(message: string): number {
  if (/executable file not found|no such file or directory|system cannot find the file specified/.test(message)) return 127;
  if (/permission denied|is a directory/.test(message)) return 126;
  return 125;
}

const runError = (cmd: string, err: unknown, code = 125): StatusError =>
  new StatusError(code, `${PROG}: ${daemonMessage(err)}\n\nRun '${PROG} ${cmd} --help' for more information`);

/** Option errors of run/create, printed as docker prints them (`docker: ...`, usage hint). */
function validated<T>(cmd: Command, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof UsageError) throw usageError(cmd.name, cmd.usage, err.message);
    if (err instanceof StatusError && err.code === 125) throw runError(cmd.name, err);
    throw err;
  }
}

/** Creates the container, pulling the image first when --pull says so or it is missing. */
async function createContainer(ctx: Context, client: Client, req: CreateRequest, flags: Flags): Promise<string> {
  const policy = flags.str('pull') || 'missing';
  if (!['always', 'missing', 'never'].includes(policy)) throw new StatusError(125, `invalid pull option: '${policy}': must be one of "always", "missing" or "never"`);
  const cidfile = flags.str('cidfile');
  if (cidfile !== '' && existsSync(cidfile)) {
    throw new StatusError(125, `${PROG}: container ID file found, make sure the other container isn't running or delete ${cidfile}`);
  }
  const quiet = flags.bool('quiet');
  const pull = async (): Promise<void> => {
    await pullImage(ctx, client, req.image, { platform: req.platform, quiet, out: ctx.stderr });
  };
  const create = (): Promise<{ Id: string; Warnings?: string[] | null }> =>
    client.json('POST', '/containers/create', { query: { name: req.name, platform: req.platform }, body: req.body });
  let r: { Id: string; Warnings?: string[] | null };
  if (policy === 'always') await pull();
  try {
    r = await create();
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404 || policy !== 'missing' || !/no such image/i.test(err.message)) throw err;
    ctx.err(`Unable to find image '${displayRef(req.image)}' locally\n`);
    await pull();
    r = await create();
  }
  for (const w of r.Warnings ?? []) ctx.err(`WARNING: ${w}\n`);
  if (cidfile !== '') writeFileSync(cidfile, r.Id);
  return r.Id;
}

function displayRef(image: string): string {
  const lastSlash = image.lastIndexOf('/');
  return image.includes('@') || image.lastIndexOf(':') > lastSlash ? image : `${image}:latest`;
}

export const create: Command = {
  name: 'create',
  usage: 'create [OPTIONS] IMAGE [COMMAND] [ARG...]',
  description: 'Create a new container',
  args: { min: 1 },
  stopAtPositional: true,
  flags: CREATE_FLAGS,
  async run(ctx, flags, args) {
    const req = validated(create, () => buildCreate(flags, args, false));
    const client = await ctx.client();
    try {
      ctx.out(`${await createContainer(ctx, client, req, flags)}\n`);
    } catch (err) {
      if (err instanceof StatusError) throw err;
      throw new StatusError(1, daemonMessage(err));
    }
    return 0;
  },
};

export const run: Command = {
  name: 'run',
  usage: 'run [OPTIONS] IMAGE [COMMAND] [ARG...]',
  description: 'Create and run a new container from an image',
  args: { min: 1 },
  stopAtPositional: true,
  flags: [
    ...CREATE_FLAGS,
    { long: 'detach', short: 'd', kind: 'bool', help: 'Run container in background and print container ID' },
    { long: 'sig-proxy', kind: 'bool', help: 'Proxy received signals to the process', default: true },
  ],
  async run(ctx, flags, args) {
    const detach = flags.bool('detach');
    const req = validated(run, () => buildCreate(flags, args, detach));
    const detachKeys = flags.str('detach-keys') || DEFAULT_DETACH_KEYS;
    parseDetachKeys(detachKeys);
    if (req.tty && req.attach.stdin && ctx.stdin.isTTY !== true) {
      throw new StatusError(1, 'the input device is not a TTY');
    }
    const client = await ctx.client();
    let id: string;
    try {
      id = await createContainer(ctx, client, req, flags);
    } catch (err) {
      if (err instanceof StatusError) throw err;
      throw runError('run', err);
    }
    if (detach) {
      try {
        await client.call('POST', `/containers/${id}/start`);
      } catch (err) {
        throw runError('run', err, startErrorCode(daemonMessage(err)));
      }
      ctx.out(`${id}\n`);
      return 0;
    }
    const attachAny = req.attach.stdin || req.attach.stdout || req.attach.stderr;
    let streaming: Streaming | undefined;
    if (attachAny) {
      streaming = await attachContainer(ctx, client, id, { ...req.attach, tty: req.tty, detachKeys });
    }
    const { result: waitP } = await registerWait(client, id, req.autoRemove ? 'removed' : 'next-exit');
    const unproxy = !req.tty && flags.bool('sig-proxy') ? proxySignals(client, id) : () => undefined;
    let unsize: () => void = () => undefined;
    try {
      try {
        await client.call('POST', `/containers/${id}/start`);
      } catch (err) {
        streaming?.close();
        if (req.autoRemove) await Promise.race([waitP.catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
        throw runError('run', err, startErrorCode(daemonMessage(err)));
      }
      if (req.tty) unsize = followSize(ctx, client, `/containers/${id}/resize`);
      if (streaming !== undefined) {
        const how = await streaming.done;
        if (how === 'detached') return 0;
      }
      const r = await waitP.catch((err: unknown) => {
        throw new StatusError(125, `${PROG}: ${daemonMessage(err)}`);
      });
      if (r.Error?.Message !== undefined && r.Error.Message !== '') {
        throw new StatusError(125, `${PROG}: Error response from daemon: ${r.Error.Message}`);
      }
      return r.StatusCode;
    } finally {
      unproxy();
      unsize();
      streaming?.close();
    }
  },
};

export const start: Command = {
  name: 'start',
  usage: 'start [OPTIONS] CONTAINER [CONTAINER...]',
  description: 'Start one or more stopped containers',
  args: { min: 1 },
  flags: [
    { long: 'attach', short: 'a', kind: 'bool', help: 'Attach STDOUT/STDERR and forward signals' },
    { long: 'detach-keys', kind: 'string', help: 'Override the key sequence for detaching a container' },
    { long: 'interactive', short: 'i', kind: 'bool', help: "Attach container's STDIN" },
  ],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    if (!flags.bool('attach') && !flags.bool('interactive')) {
      return forEachName(
        ctx,
        args,
        async (name) => {
          await client.call('POST', `/containers/${encodeURIComponent(name)}/start`);
          return name;
        },
        (failed) => `Error: failed to start containers: ${failed.join(', ')}`,
      );
    }
    if (args.length > 1) throw new StatusError(1, 'you cannot start and attach multiple containers at once');
    const name = args[0] ?? '';
    const c = await client.json<{ Id: string; Config: { Tty?: boolean; OpenStdin?: boolean }; HostConfig?: { AutoRemove?: boolean } }>(
      'GET',
      `/containers/${encodeURIComponent(name)}/json`,
    );
    const tty = c.Config.Tty === true;
    const stdin = flags.bool('interactive') && c.Config.OpenStdin === true;
    const detachKeys = flags.str('detach-keys') || DEFAULT_DETACH_KEYS;
    const streaming = await attachContainer(ctx, client, c.Id, { stdin, stdout: true, stderr: true, tty, detachKeys });
    const { result: waitP } = await registerWait(client, c.Id, c.HostConfig?.AutoRemove === true ? 'removed' : 'next-exit');
    const unproxy = !tty ? proxySignals(client, c.Id) : () => undefined;
    let unsize: () => void = () => undefined;
    try {
      try {
        await client.call('POST', `/containers/${c.Id}/start`);
      } catch (err) {
        throw new StatusError(1, daemonMessage(err));
      }
      if (tty) unsize = followSize(ctx, client, `/containers/${c.Id}/resize`);
      if ((await streaming.done) === 'detached') return 0;
      const r = await waitP;
      return r.StatusCode;
    } finally {
      unproxy();
      unsize();
      streaming.close();
    }
  },
};

export const attach: Command = {
  name: 'attach',
  usage: 'attach [OPTIONS] CONTAINER',
  description: 'Attach local standard input, output, and error streams to a running container',
  args: { exact: 1 },
  flags: [
    { long: 'detach-keys', kind: 'string', help: 'Override the key sequence for detaching a container' },
    { long: 'no-stdin', kind: 'bool', help: 'Do not attach STDIN' },
    { long: 'sig-proxy', kind: 'bool', help: 'Proxy all received signals to the process', default: true },
  ],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    const c = await client.json<{ Id: string; State: { Running?: boolean; Paused?: boolean; Restarting?: boolean }; Config: { Tty?: boolean; OpenStdin?: boolean } }>(
      'GET',
      `/containers/${encodeURIComponent(args[0] ?? '')}/json`,
    );
    if (c.State.Running !== true) throw new StatusError(1, 'You cannot attach to a stopped container, start it first');
    if (c.State.Paused === true) throw new StatusError(1, 'You cannot attach to a paused container, unpause it first');
    if (c.State.Restarting === true) throw new StatusError(1, 'You cannot attach to a restarting container, wait until it is running');
    const tty = c.Config.Tty === true;
    const stdin = !flags.bool('no-stdin') && c.Config.OpenStdin === true;
    if (stdin && tty && ctx.stdin.isTTY !== true) throw new StatusError(1, 'the input device is not a TTY');
    const detachKeys = flags.str('detach-keys') || DEFAULT_DETACH_KEYS;
    parseDetachKeys(detachKeys);
    const { result: waitP } = await registerWait(client, c.Id, 'not-running');
    const streaming = await attachContainer(ctx, client, c.Id, { stdin, stdout: true, stderr: true, tty, detachKeys });
    const unproxy = !tty && flags.bool('sig-proxy') ? proxySignals(client, c.Id) : () => undefined;
    const unsize = tty ? followSize(ctx, client, `/containers/${c.Id}/resize`) : () => undefined;
    try {
      if ((await streaming.done) === 'detached') return 0;
      const r = await waitP;
      return r.StatusCode;
    } finally {
      unproxy();
      unsize();
      streaming.close();
    }
  },
};

export const exec: Command = {
  name: 'exec',
  usage: 'exec [OPTIONS] CONTAINER COMMAND [ARG...]',
  description: 'Execute a command in a running container',
  args: { min: 2 },
  stopAtPositional: true,
  flags: [
    { long: 'detach', short: 'd', kind: 'bool', help: 'Detached mode: run command in the background' },
    { long: 'detach-keys', kind: 'string', help: 'Override the key sequence for detaching a container' },
    { long: 'env', short: 'e', kind: 'list', help: 'Set environment variables' },
    { long: 'env-file', kind: 'list', help: 'Read in a file of environment variables' },
    { long: 'interactive', short: 'i', kind: 'bool', help: 'Keep STDIN open even if not attached' },
    { long: 'privileged', kind: 'bool', help: 'Give extended privileges to the command' },
    { long: 'tty', short: 't', kind: 'bool', help: 'Allocate a pseudo-TTY' },
    { long: 'user', short: 'u', kind: 'string', help: 'Username or UID (format: "<name|uid>[:<group|gid>]")' },
    { long: 'workdir', short: 'w', kind: 'string', help: 'Working directory inside the container' },
  ],
  async run(ctx, flags, args) {
    const [container = '', ...cmd] = args;
    const detach = flags.bool('detach');
    const tty = flags.bool('tty');
    const interactive = flags.bool('interactive');
    if (tty && interactive && !detach && ctx.stdin.isTTY !== true) throw new StatusError(1, 'the input device is not a TTY');
    const env: string[] = [];
    for (const f of flags.list('env-file')) env.push(...readKeyFile(f, true));
    for (const e of flags.list('env')) env.push(e.includes('=') || process.env[e] === undefined ? e : `${e}=${process.env[e] ?? ''}`);
    const detachKeys = flags.str('detach-keys') || DEFAULT_DETACH_KEYS;
    const client = await ctx.client();
    const body: Record<string, unknown> = {
      User: flags.str('user'),
      Privileged: flags.bool('privileged'),
      Tty: tty,
      AttachStdin: interactive && !detach,
      AttachStdout: !detach,
      AttachStderr: !detach,
      Env: env,
      WorkingDir: flags.str('workdir'),
      Cmd: cmd,
    };
    if (flags.changed('detach-keys')) body.DetachKeys = detachKeys;
    const created = await client.json<{ Id: string }>('POST', `/containers/${encodeURIComponent(container)}/exec`, { body });
    if (detach) {
      await client.call('POST', `/exec/${created.Id}/start`, { body: { Detach: true, Tty: tty } });
      return 0;
    }
    const h = await client.hijack('POST', `/exec/${created.Id}/start`, { body: { Detach: false, Tty: tty } });
    const streaming = pump(ctx, h.socket, { stdin: interactive, stdout: true, stderr: true, tty, detachKeys });
    const unsize = tty ? followSize(ctx, client, `/exec/${created.Id}/resize`) : () => undefined;
    try {
      if ((await streaming.done) === 'detached') return 0;
    } finally {
      unsize();
      streaming.close();
    }
    const info = await client.json<{ ExitCode: number | null; Running?: boolean }>('GET', `/exec/${created.Id}/json`);
    return info.ExitCode ?? 0;
  },
};
