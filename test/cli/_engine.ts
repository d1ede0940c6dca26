/**
 * What the berth CLI suites share: the engines to talk to (a real dockerd started on
 * temp dirs with its own managed containerd, and an isolated berthd), berth and the
 * real docker CLI pointed at the same socket, and helpers to compare their output.
 *
 * The daemon is stopped by its PID and everything it made is removed afterwards,
 * even on failure: remaining containers are removed through the API, dockerd gets
 * SIGTERM (SIGKILL after a grace), processes still running from its temp dirs
 * (its containerd, shims) are killed by PID, mounts below the dirs are unmounted.
 */
import { after, before, describe } from 'node:test';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDockerd as startRealDockerd } from '../engine/_dockerd.js';
import { cleanupEngine, engineDirs, startEngine } from '../engine/_engine.js';
import type { EngineProcess } from '../engine/_engine.js';

export const REPO_ROOT: string = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BERTH_BIN: string = join(REPO_ROOT, 'packages', 'cli', 'bin', 'berth.js');
export const DOCKER_BIN = '/usr/local/bin/docker';
export const ROOTFS: string = join(REPO_ROOT, 'native', 'out', 'rootfs');
/** The image every suite has: the busybox-static test rootfs, `CMD ["sh"]`. */
export const IMAGE = 'busybox:latest';

export interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly input?: string | Buffer;
  readonly timeoutMs?: number;
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
}

/** Runs a program to its end (killed at the timeout), collecting its output. */
export function runProgram(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: { ...process.env, ...(opts.env ?? {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => undefined);
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export interface Engine {
  /** `dockerd` or `berthd`. */
  readonly name: string;
  readonly socket: string;
  /** A temp dir the suite may use; removed with the engine. */
  readonly dir: string;
  berth(args: readonly string[], opts?: RunOptions): Promise<Result>;
  docker(args: readonly string[], opts?: RunOptions): Promise<Result>;
  /** berth with a terminal (through `script`): stdout holds what the terminal showed. */
  berthTty(args: readonly string[], opts?: RunOptions & { cols?: number; rows?: number }): Promise<Result>;
  dockerTty(args: readonly string[], opts?: RunOptions & { cols?: number; rows?: number }): Promise<Result>;
}

function makeEngine(name: string, socket: string, dir: string): Engine {
  const berthEnv = { BERTH_HOST: `unix://${socket}`, BERTH_CONFIG: join(dir, 'berth-config'), DOCKER_HOST: '' };
  const dockerEnv = { DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: join(dir, 'docker-config') };
  const tty = (prog: string, env: Record<string, string>, args: readonly string[], opts: RunOptions & { cols?: number; rows?: number }): Promise<Result> => {
    const size = `stty cols ${opts.cols ?? 100} rows ${opts.rows ?? 30}; `;
    const line = `${size}exec ${prog} ${args.map(shellQuote).join(' ')}`;
    return runProgram('script', ['-qefc', line, '/dev/null'], { ...opts, env: { ...env, ...(opts.env ?? {}) } });
  };
  return {
    name,
    socket,
    dir,
    berth: (args, opts = {}) => runProgram(process.execPath, [BERTH_BIN, ...args], { ...opts, env: { ...berthEnv, ...(opts.env ?? {}) } }),
    docker: (args, opts = {}) => runProgram(DOCKER_BIN, args, { ...opts, env: { ...dockerEnv, ...(opts.env ?? {}) } }),
    berthTty: (args, opts = {}) => tty(`${shellQuote(process.execPath)} ${shellQuote(BERTH_BIN)}`, berthEnv, args, opts),
    dockerTty: (args, opts = {}) => tty(DOCKER_BIN, dockerEnv, args, opts),
  };
}

// ---------------------------------------------------------------------------
// dockerd

export interface RunningEngine extends Engine {
  stop(): Promise<void>;
  log(): string;
}

/** Starts a dockerd on temp dirs (test/engine's helper) and imports the test image into it. */
export async function startDockerd(): Promise<RunningEngine> {
  const d = await startRealDockerd(join(tmpdir(), 'bcli-'));
  const engine = makeEngine('dockerd', d.socket, d.dir);
  try {
    const tar = spawnSync('tar', ['-C', ROOTFS, '-c', '.'], { maxBuffer: 256 * 1024 * 1024 });
    if (tar.status !== 0) throw new Error(`tar of ${ROOTFS} failed: ${String(tar.stderr)}`);
    const imp = await engine.docker(['import', '-c', 'CMD ["sh"]', '-', IMAGE], { input: tar.stdout });
    if (imp.code !== 0) throw new Error(`docker import failed: ${imp.stderr}`);
    return { ...engine, stop: d.stop, log: d.log };
  } catch (err) {
    await d.stop();
    throw err;
  }
}

/**
 * Starts an isolated berthd (test/engine's helpers: its own data root, exec root and
 * socket under a short /tmp/be- dir) with its built-in busybox:latest.
 */
export async function startBerthd(): Promise<RunningEngine> {
  const dirs = engineDirs();
  let proc: EngineProcess | undefined;
  const stop = async (): Promise<void> => {
    await cleanupEngine(proc, dirs);
  };
  try {
    proc = await startEngine(dirs);
    const engine = makeEngine('berthd', dirs.socket, join(dirs.base, 'suite'));
    mkdirSync(engine.dir);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await engine.docker(['image', 'inspect', '-f', '{{.Id}}', IMAGE], { timeoutMs: 10_000 });
      if (r.code === 0) break;
      if (Date.now() > deadline) throw new Error(`berthd has no ${IMAGE}: ${r.stderr}\n${proc.log()}`);
      await sleep(100);
    }
    const p = proc;
    return { ...engine, stop, log: () => p.log() };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The engines the suites run against: a dockerd and a berthd, each started by the
 * suite; BERTH_CLI_TEST_SOCKET adds an engine already running there.
 */
export function engines(): Array<{ name: string; start: () => Promise<RunningEngine> }> {
  const list: Array<{ name: string; start: () => Promise<RunningEngine> }> = [
    { name: 'dockerd', start: startDockerd },
    { name: 'berthd', start: startBerthd },
  ];
  const extra = process.env.BERTH_CLI_TEST_SOCKET;
  if (extra !== undefined && extra !== '') {
    list.push({
      name: `engine at ${extra}`,
      start: async () => {
        const dir = mkdtempSync(join(tmpdir(), 'bcli-ext-'));
        const e = makeEngine('external', extra, dir);
        return { ...e, log: () => '', stop: async () => rmSync(dir, { recursive: true, force: true }) };
      },
    });
  }
  return list;
}

/**
 * One describe block per engine; the engine is started before its tests and
 * stopped after them. `get()` returns it inside tests.
 */
export function forEachEngine(title: string, body: (get: () => RunningEngine) => void): void {
  for (const { name, start } of engines()) {
    describe(`${title} [${name}]`, () => {
      let engine: RunningEngine | undefined;
      before(async () => {
        engine = await start();
      });
      after(async () => {
        await engine?.stop();
      });
      body(() => {
        if (engine === undefined) throw new Error('engine not started');
        return engine;
      });
    });
  }
}

/** berth's output as docker would print it (the program name swapped). */
export const asDocker = (s: string): string => s.replace(/\bberth\b/g, 'docker');

/** Relative times masked and table spacing collapsed, to compare tables made seconds apart. */
export function normaliseTable(s: string): string {
  return s
    .replace(/(Less than a second|About a minute|About an hour|\d+ (seconds?|minutes?|hours?)) ago/g, 'X ago')
    .replace(/Up (Less than a second|About a minute|\d+ (seconds?|minutes?))/g, 'Up X')
    .replace(/\) (Less than a second|About a minute|\d+ (seconds?|minutes?)) ago/g, ') X ago')
    .split('\n')
    .map((l) => l.replace(/ {2,}/g, '\t').trimEnd())
    .join('\n');
}

/** Fails with both outputs when berth and docker disagree. */
export function sameResult(b: Result, d: Result, what: string, norm: (s: string) => string = (s) => s): string | undefined {
  const bo = norm(asDocker(b.stdout));
  const dout = norm(d.stdout);
  const be = norm(asDocker(b.stderr));
  const de = norm(d.stderr);
  if (b.code === d.code && bo === dout && be === de) return undefined;
  return `${what}: berth and docker differ\n--- berth (exit ${String(b.code)})\n${bo}\n${be}\n--- docker (exit ${String(d.code)})\n${dout}\n${de}`;
}
