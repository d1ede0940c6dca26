/**
 * The engine's supervisor: a berth-containerd the engine starts and watches
 * (or one given with --containerd). A supervisor left running by a previous
 * engine is reused: containers outlive both daemons, and so may it.
 * If it dies, it is started again and the engine reconnects.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { unavailable } from '@berth/base';
import type { Logger } from '@berth/base';

export interface SupervisorPaths {
  readonly address: string;
  readonly root: string;
  readonly state: string;
}

/** The supervisor's directories for an engine's data and exec roots. */
export function supervisorPaths(dataRoot: string, execRoot: string): SupervisorPaths {
  return {
    address: join(execRoot, 'containerd', 'containerd.sock'),
    root: dataRoot === '/var/lib/berth/engine' ? '/var/lib/berth/containerd' : join(dataRoot, 'containerd'),
    state: join(execRoot, 'containerd'),
  };
}

export function supervisorBinary(): string {
  const require = createRequire(import.meta.url);
  const main = require.resolve('@berth/supervisor');
  return join(dirname(main), '..', 'bin', 'berth-containerd.js');
}

function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export class ManagedSupervisor {
  private pid = 0;
  private stopping = false;
  private readonly pidFile: string;
  private restarts = 0;

  constructor(readonly paths: SupervisorPaths, private readonly log: Logger, private readonly logLevel: string,
    private readonly onRestart: () => void) {
    this.pidFile = join(paths.state, 'berth-containerd.pid');
  }

  /** Reuse a running supervisor of ours, or start one; resolves when it accepts calls. */
  async start(): Promise<void> {
    mkdirSync(this.paths.state, { recursive: true, mode: 0o711 });
    const old = this.readPid();
    if (old !== undefined && alive(old) && existsSync(this.paths.address) && await accepts(this.paths.address)) {
      this.pid = old;
      this.log.info('reusing the running berth-containerd', { pid: old });
      this.watch();
      return;
    }
    await this.spawn();
    this.watch();
  }

  private readPid(): number | undefined {
    try {
      const n = Number(readFileSync(this.pidFile, 'utf8').trim());
      return Number.isInteger(n) && n > 0 ? n : undefined;
    } catch {
      return undefined;
    }
  }

  private async spawn(): Promise<void> {
    const logPath = join(this.paths.state, 'berth-containerd.log');
    const fd = openSync(logPath, 'a');
    let pid: number | undefined;
    try {
      const child = spawn(process.execPath, [supervisorBinary(), '--address', this.paths.address, '--root', this.paths.root,
        '--state', this.paths.state, '--log-level', this.logLevel], { stdio: ['ignore', fd, fd], detached: true });
      pid = child.pid;
      child.unref();
    } finally {
      closeSync(fd);
    }
    if (pid === undefined) throw unavailable('could not start berth-containerd');
    this.pid = pid;
    writeFileSync(this.pidFile, `${pid}\n`);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (!alive(pid)) throw unavailable(`berth-containerd exited during start; see ${logPath}`);
      if (existsSync(this.paths.address) && await accepts(this.paths.address)) {
        this.log.info('started berth-containerd', { pid, address: this.paths.address });
        return;
      }
      await sleep(50);
    }
    throw unavailable(`berth-containerd did not listen on ${this.paths.address} within 20 s; see ${logPath}`);
  }

  /** Poll the process (it is not our child once reused); restart it when it dies. */
  private watch(): void {
    const tick = async (): Promise<void> => {
      if (this.stopping) return;
      if (!alive(this.pid)) {
        this.log.warn('berth-containerd died; starting it again', { pid: this.pid });
        try {
          await sleep(Math.min(5000, 100 * 2 ** this.restarts++));
          if (this.stopping) return;
          await this.spawn();
          this.onRestart();
        } catch (e) {
          this.log.error('restarting berth-containerd failed', { error: e instanceof Error ? e.message : String(e) });
        }
      }
      if (!this.stopping) setTimeout(() => void tick(), 500).unref();
    };
    setTimeout(() => void tick(), 500).unref();
  }

  /** Stop the supervisor (containers keep running under their shims). */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.pid > 0 && alive(this.pid)) {
      process.kill(this.pid, 'SIGTERM');
      const deadline = Date.now() + 10_000;
      while (alive(this.pid) && Date.now() < deadline) await sleep(25);
      if (alive(this.pid)) process.kill(this.pid, 'SIGKILL');
    }
    rmSync(this.pidFile, { force: true });
  }
}
