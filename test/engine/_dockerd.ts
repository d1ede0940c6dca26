/**
 * A real dockerd (Debian's docker.io, with its own managed containerd) on temp dirs, for suites
 * that compare berthd with it. Stopped by its PID, and everything it made goes even on failure:
 * remaining containers are removed through the API, the bridges of its user networks are
 * deleted, dockerd gets SIGTERM (SIGKILL after a grace), processes still running from its temp
 * dirs (its containerd, shims) are killed by PID, mounts below the dirs are unmounted, the stack
 * dumps its containerd may leave in /tmp are removed, and so is its empty /docker cgroup parent.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DOCKER, removeEmptyCgroupParents } from './_engine.js';

export const DOCKERD = '/usr/sbin/dockerd';

export interface Dockerd {
  readonly dir: string;
  readonly socket: string;
  log(): string;
  stop(): Promise<void>;
}

/** Processes whose command line names dir or whose working directory is below it. */
export function pidsUnder(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${p}/cwd`);
      } catch {
        // gone meanwhile
      }
      if (cmd.includes(dir) || cwd.startsWith(dir)) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

/** Mount points at or below dir, deepest first. */
export function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (point === undefined) continue;
    const p = point.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (p === dir || p.startsWith(`${dir}/`)) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

function bridges(): string[] {
  const r = spawnSync('ip', ['-o', 'link', 'show', 'type', 'bridge'], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').map((l) => (l.split(': ')[1] ?? '').split('@')[0] ?? '').filter((n) => n !== '');
}

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return await Promise.race([
    new Promise<boolean>((r) => child.once('exit', () => r(true))),
    sleep(ms, false, { ref: false }),
  ]);
}

/**
 * Starts dockerd on a new temp dir named from `prefix` (keep it short: shim socket paths under
 * the exec root must stay within 107 bytes), without networking of its own, and waits until it
 * answers.
 */
export async function startDockerd(prefix = '/tmp/bd-'): Promise<Dockerd> {
  const dir = mkdtempSync(prefix);
  const socket = join(dir, 'docker.sock');
  const logPath = join(dir, 'dockerd.log');
  const env = { DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: join(dir, 'docker-config') };
  const docker = (args: readonly string[], timeout: number): string => {
    const r = spawnSync(DOCKER, args, { encoding: 'utf8', timeout, env: { ...process.env, ...env } });
    return r.status === 0 ? r.stdout : '';
  };
  const log = (): string => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  let child: ChildProcess | undefined;
  const stop = async (): Promise<void> => {
    const ownBridges: string[] = [];
    // containerd may dump its stacks to /tmp/containerd.<pid>.stacks.log as dockerd stops it.
    const started = pidsUnder(dir);
    try {
      if (child !== undefined && child.exitCode === null && child.signalCode === null && existsSync(socket)) {
        const ids = docker(['ps', '-aq'], 20_000).split('\n').filter((s) => s !== '');
        if (ids.length > 0) docker(['rm', '-f', ...ids], 60_000);
        // dockerd keeps user networks' bridges when it stops: note this daemon's, prune, and remove what stays.
        const nets = docker(['network', 'ls', '-q', '--no-trunc', '--filter', 'driver=bridge', '--filter', 'type=custom'], 20_000);
        for (const id of nets.split('\n').filter((s) => s !== '')) ownBridges.push(`br-${id.slice(0, 12)}`);
        docker(['network', 'prune', '-f'], 30_000);
      }
    } finally {
      if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid, 'SIGTERM');
        if (!(await waitExit(child, 20_000))) {
          process.kill(child.pid, 'SIGKILL');
          await waitExit(child, 5000);
        }
      }
      for (let round = 0; round < 3; round++) {
        const left = pidsUnder(dir);
        if (left.length === 0) break;
        for (const pid of left) {
          try {
            process.kill(pid, round === 0 ? 'SIGTERM' : 'SIGKILL');
          } catch {
            // gone
          }
        }
        await sleep(500);
      }
      const present = bridges();
      for (const name of ownBridges) if (present.includes(name)) spawnSync('ip', ['link', 'del', name]);
      for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m]);
      rmSync(dir, { recursive: true, force: true });
      for (const pid of started) rmSync(`/tmp/containerd.${pid}.stacks.log`, { force: true });
      removeEmptyCgroupParents('docker');
    }
  };
  try {
    writeFileSync(join(dir, 'daemon.json'), '{}\n');
    mkdirSync(join(dir, 'data'));
    mkdirSync(join(dir, 'exec'));
    const fd = openSync(logPath, 'a');
    try {
      child = spawn(DOCKERD, [
        '--config-file', join(dir, 'daemon.json'), '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'),
        '--pidfile', join(dir, 'docker.pid'), '-H', `unix://${socket}`,
        '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-masq=false',
      ], { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`dockerd exited ${child.exitCode}: ${log()}`);
      if (existsSync(socket) && docker(['version', '--format', '{{.Server.Version}}'], 10_000) !== '') break;
      if (Date.now() > deadline) throw new Error(`dockerd did not answer on ${socket}: ${log()}`);
      await sleep(100);
    }
    return { dir, socket, log, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
