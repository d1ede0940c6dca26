/**
 * Cleanup: one registry per test for everything the test creates (containers,
 * processes, mounts, temp dirs, cgroups). Steps run in reverse order of
 * registration, all of them even when some fail; meant for `t.after(() => c.run())`.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, rmdirSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errnoCode } from '@berth/base';
import { runCommand } from './exec.js';
import type { RuntimeDescriptor } from './runtimes.js';

interface Step {
  readonly what: string;
  readonly fn: () => Promise<void> | void;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks), to recognise a pid later. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19];
  } catch {
    return undefined;
  }
}

/** Mount points at or below dir, deepest first. */
function mountsBelow(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const target = line.split(' ')[4];
    if (target === undefined) continue;
    const path = target.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (path === dir || path.startsWith(`${dir}/`)) out.push(path);
  }
  return out.sort((a, b) => b.length - a.length);
}

export class Cleanup {
  private readonly steps: Step[] = [];
  private ran = false;

  /** Registers any undo step. */
  defer(what: string, fn: () => Promise<void> | void): void {
    this.steps.push({ what, fn });
  }

  /** Deletes a container through the runtime under test (`delete -f`), if it still exists. */
  container(rt: RuntimeDescriptor, root: string, id: string): void {
    this.defer(`delete container ${id} (${rt.name})`, async () => {
      await runCommand([...rt.argv, '--root', root, 'delete', '-f', id], { timeoutMs: 20_000 });
    });
  }

  /** Kills a child process this test spawned, if it has not exited yet. */
  child(child: ChildProcess): void {
    this.defer(`kill child ${child.pid ?? '?'}`, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
  }

  /** Kills a pid the test started (e.g. a container's), only if it is still the same process. */
  pid(pid: number): void {
    const started = startTime(pid);
    if (started === undefined) return;
    this.defer(`kill pid ${pid}`, () => {
      if (startTime(pid) !== started) return;
      try {
        process.kill(pid, 'SIGKILL');
      } catch (err) {
        if (errnoCode(err) !== 'ESRCH') throw err;
      }
    });
  }

  /** A new temp dir, removed afterwards (mounts below it are lazily unmounted first). */
  tempDir(prefix = 'berth-test-'): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.defer(`remove ${dir}`, () => removeTree(dir));
    return dir;
  }

  /** Removes a cgroup (v1: in every hierarchy; v2: the unified one), children first. */
  cgroup(path: string): void {
    this.defer(`remove cgroup ${path}`, () => {
      const base = '/sys/fs/cgroup';
      const roots = existsSync(join(base, 'cgroup.controllers'))
        ? [base]
        : readdirSync(base).map((h) => join(base, h));
      for (const r of roots) removeCgroupDir(join(r, path));
    });
  }

  /** Runs every step, newest first; throws one error listing the steps that failed. */
  async run(): Promise<void> {
    if (this.ran) return;
    this.ran = true;
    const failures: string[] = [];
    for (const step of this.steps.reverse()) {
      try {
        await step.fn();
      } catch (err) {
        failures.push(`${step.what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (failures.length > 0) throw new Error(`cleanup failed:\n${failures.join('\n')}`);
  }
}

/** Lazily unmounts everything below dir, then removes it. */
export async function removeTree(dir: string): Promise<void> {
  for (const m of mountsBelow(dir)) {
    await runCommand(['umount', '-l', m], { timeoutMs: 10_000 });
  }
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

function removeCgroupDir(dir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return;
    throw err;
  }
  for (const e of entries) removeCgroupDir(join(dir, e));
  try {
    rmdirSync(dir);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}
