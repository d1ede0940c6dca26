/**
 * A real containerd (Debian's 1.6) of our own, on temp root/state/socket, with
 * the plugins that would touch the host disabled: the reference the
 * conformance cases compare berth-containerd with.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Why a real containerd cannot run here, or undefined. */
export function containerdMissing(): string | undefined {
  const r = spawnSync('containerd', ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? `containerd is not usable here: ${r.error?.message ?? r.stderr}` : undefined;
}

export class RealContainerd {
  readonly dir: string;
  readonly address: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'berth-real-containerd-'));
    this.address = join(this.dir, 'containerd.sock');
    for (const d of ['root', 'state', 'tmp']) mkdirSync(join(this.dir, d));
    writeFileSync(join(this.dir, 'config.toml'), [
      'version = 2',
      `root = ${JSON.stringify(join(this.dir, 'root'))}`,
      `state = ${JSON.stringify(join(this.dir, 'state'))}`,
      `temp = ${JSON.stringify(join(this.dir, 'tmp'))}`,
      `disabled_plugins = ${JSON.stringify([
        'io.containerd.grpc.v1.cri', 'io.containerd.internal.v1.opt', 'io.containerd.internal.v1.tracing',
        'io.containerd.tracing.processor.v1.otlp', 'io.containerd.snapshotter.v1.aufs', 'io.containerd.snapshotter.v1.btrfs',
        'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.zfs',
      ])}`,
      '[grpc]',
      `  address = ${JSON.stringify(this.address)}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(`${this.address}.ttrpc`)}`,
      '[debug]',
      '  address = ""',
      '[metrics]',
      '  address = ""',
      '',
    ].join('\n'));
  }

  async start(): Promise<void> {
    const logFd = openSync(join(this.dir, 'containerd.log'), 'a');
    try {
      this.child = spawn('containerd', ['--config', join(this.dir, 'config.toml')], { stdio: ['ignore', logFd, logFd] });
    } finally {
      closeSync(logFd);
    }
    const child = this.child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect(this.address);
        s.once('connect', () => { s.destroy(); resolve(true); });
        s.once('error', () => resolve(false));
      });
      if (ok) return;
      await sleep(100);
    }
    throw new Error(`containerd did not start:\n${readFileSync(join(this.dir, 'containerd.log'), 'utf8').slice(-2000)}`);
  }

  /** Stop containerd (by its PID) and remove its directory. */
  async stop(): Promise<void> {
    try {
      const child = this.child;
      if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid, 'SIGTERM');
        const done = await Promise.race([this.exited?.then(() => true), sleep(10_000).then(() => false)]);
        if (!done) {
          process.kill(child.pid, 'SIGKILL');
          await this.exited;
        }
      }
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
      // containerd writes /tmp/containerd.<pid>.stacks.log when it is told to dump its stacks.
      if (this.child?.pid !== undefined) rmSync(`/tmp/containerd.${this.child.pid}.stacks.log`, { force: true });
    }
  }
}
