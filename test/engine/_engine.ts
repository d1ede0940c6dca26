/**
 * An isolated berthd for a test file: its own --data-root, --exec-root and
 * socket in a temp dir, the docker CLI pointed at it, and a cleanup that
 * leaves nothing behind even when tests fail: every container removed,
 * the daemon (and the supervisor it started) stopped by PID, stray shims of
 * this instance ended, mounts under the temp dir unmounted, the dir removed.
 */
import { after, before } from 'node:test';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const REPO_ROOT: string = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BERTHD_BIN: string = join(REPO_ROOT, 'packages', 'engine', 'bin', 'berthd.js');
export const BERTH_BIN: string = join(REPO_ROOT, 'packages', 'cli', 'bin', 'berth.js');
export const DOCKER = '/usr/local/bin/docker';

export interface EngineDirs {
  readonly base: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  readonly socket: string;
  readonly log: string;
}

export function engineDirs(): EngineDirs {
  // Short: shim socket paths under the exec root must stay within 107 bytes.
  const base = mkdtempSync('/tmp/be-');
  return { base, dataRoot: join(base, 'data'), execRoot: join(base, 'x'), socket: join(base, 'berth.sock'), log: join(base, 'berthd.log') };
}

function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export class EngineProcess {
  pid: number;
  private child: ChildProcess;
  private exited: Promise<void>;

  constructor(readonly dirs: EngineDirs, child: ChildProcess) {
    this.child = child;
    this.pid = child.pid ?? 0;
    this.exited = new Promise((r) => child.once('exit', () => r()));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  log(): string {
    try {
      return readFileSync(this.dirs.log, 'utf8');
    } catch {
      return '';
    }
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    process.kill(this.pid, 'SIGTERM');
    const done = await Promise.race([this.exited.then(() => true), sleep(15_000).then(() => false)]);
    if (!done) {
      process.kill(this.pid, 'SIGKILL');
      await this.exited;
    }
  }

  async kill9(): Promise<void> {
    if (!this.running) return;
    process.kill(this.pid, 'SIGKILL');
    await this.exited;
  }
}

export async function startEngine(dirs: EngineDirs, extra: readonly string[] = []): Promise<EngineProcess> {
  const fd = openSync(dirs.log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [BERTHD_BIN, '--data-root', dirs.dataRoot, '--exec-root', dirs.execRoot,
      '-H', `unix://${dirs.socket}`, '--log-level', 'debug', ...extra], { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const e = new EngineProcess(dirs, child);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (!e.running) throw new Error(`berthd exited during start:\n${e.log()}`);
    if (existsSync(dirs.socket) && await accepts(dirs.socket)) return e;
    await sleep(50);
  }
  await e.kill9();
  throw new Error(`berthd did not listen within 60 s:\n${e.log()}`);
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The real docker CLI against the engine. */
export function docker(socket: string, args: readonly string[], opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): RunResult {
  const r = spawnSync(DOCKER, ['-H', `unix://${socket}`, ...args], {
    encoding: 'utf8', input: opts.input ?? '', timeout: opts.timeoutMs ?? 60_000,
    env: { ...process.env, DOCKER_CONFIG: join(dirname(socket), '.docker'), ...opts.env },
  });
  if (r.error) throw r.error;
  return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
}

export function dockerOk(socket: string, args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): string {
  const r = docker(socket, args, opts);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** A raw API call; returns the status and body text. */
export function api(socket: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = request({
      socketPath: socket, method, path,
      headers: { ...(data === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) }), ...headers },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

/** Processes whose command line mentions the dir (shims, containers' helpers of this instance). */
function pidsMentioning(dir: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.includes(dir)) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith(dir)).sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
}

/** Remove every trace of an engine instance. */
export async function cleanupEngine(e: EngineProcess | undefined, dirs: EngineDirs): Promise<void> {
  try {
    if (e !== undefined && e.running) {
      const ids = docker(dirs.socket, ['ps', '-aq'], { timeoutMs: 20_000 }).stdout.split('\n').filter((s) => s !== '');
      if (ids.length > 0) docker(dirs.socket, ['rm', '-f', ...ids], { timeoutMs: 60_000 });
      await e.stop();
    }
  } finally {
    for (const pid of pidsMentioning(dirs.base)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await sleep(100);
    unmountUnder(dirs.base);
    rmSync(dirs.base, { recursive: true, force: true });
    removeEmptyCgroupParents('berth');
    removeInstanceNetwork(dirs.execRoot);
  }
}

/** The tag of an engine instance (from its exec root) in its bridge's and iptables chains' names. */
export function instanceTag(execRoot: string): string {
  return createHash('sha256').update(execRoot).digest('hex').slice(0, 6);
}

/**
 * The default bridge and iptables rules of an engine instance (named by a tag of its exec root), for
 * when it could not tear them down itself (killed); a cleanly stopped engine has left none.
 */
export function removeInstanceNetwork(execRoot: string): void {
  const tag = instanceTag(execRoot);
  spawnSync('ip', ['link', 'del', `berth-${tag}`], { stdio: 'ignore' });
  for (const table of ['filter', 'nat']) {
    const rules = spawnSync('iptables', ['-t', table, '-S'], { encoding: 'utf8' }).stdout ?? '';
    for (const line of rules.split('\n')) {
      if (!line.startsWith('-A ') || !line.includes(`berth:${tag}`)) continue;
      const args = line.slice(3).match(/"[^"]*"|\S+/g)?.map((a) => a.replace(/^"|"$/g, '')) ?? [];
      spawnSync('iptables', ['-t', table, '-D', ...args], { stdio: 'ignore' });
    }
    for (const line of rules.split('\n')) {
      const chain = /^-N (BERTH-[0-9a-f]{6}-[A-Z]+)$/.exec(line)?.[1];
      if (chain === undefined || !chain.startsWith(`BERTH-${tag}-`)) continue;
      spawnSync('iptables', ['-t', table, '-F', chain], { stdio: 'ignore' });
      spawnSync('iptables', ['-t', table, '-X', chain], { stdio: 'ignore' });
    }
  }
}

/**
 * The parent cgroup the engine's containers were put under (`/berth`, `/docker` for a real
 * dockerd), in every hierarchy, once it is empty; one still in use by another engine stays.
 */
export function removeEmptyCgroupParents(name: string): void {
  let roots: string[];
  try {
    roots = readdirSync('/sys/fs/cgroup');
  } catch {
    return;
  }
  for (const r of [...roots, '']) {
    const dir = join('/sys/fs/cgroup', r, name);
    if (!existsSync(dir)) continue;
    try {
      rmdirSync(dir);
    } catch {
      /* busy: another engine's containers are in it */
    }
  }
}

/** One engine for a test file. */
export function useEngine(extra: readonly string[] = []): { dirs: EngineDirs; engine: () => EngineProcess } {
  const dirs = engineDirs();
  let engine: EngineProcess | undefined;
  before(async () => {
    engine = await startEngine(dirs, extra);
  });
  after(async () => {
    await cleanupEngine(engine, dirs);
  });
  return {
    dirs,
    engine: () => {
      if (engine === undefined) throw new Error('engine not started');
      return engine;
    },
  };
}
