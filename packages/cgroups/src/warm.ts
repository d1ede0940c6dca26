// Taking the cost of a cgroup migration off a container's start path.
//
// Every write to a cgroup.procs file takes the kernel's global
// cgroup_threadgroup_rwsem for writing. Unless a hierarchy is mounted with
// favordynmods, the first writer after a quiet spell waits for an RCU grace
// period (10-20 ms on the development machines); a writer that comes while
// another waits, or within about one grace period after the last one left,
// passes at once. A container start pays that wait when the executor joins
// the container's cgroup, a few milliseconds after the supervisor began the
// create. Calling warmCgroupMigration() at the beginning moves this process
// into the cgroup it is already in (the kernel takes the lock, then has
// nothing to move), on a worker thread, so the grace period runs in parallel
// with the rest of the create and the executor's join finds the lock warm.
import { readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { CgroupLayout } from './detect.js';
import { hostCgroupLayout } from './detect.js';
import { parseProcCgroup } from './paths.js';

/**
 * The cgroup.procs file of this process's own cgroup in one hierarchy, as
 * seen through the layout's mount (v1: the pids hierarchy, else the first one;
 * v2: the unified one). Undefined when it cannot be told.
 */
export function ownProcsFile(layout: CgroupLayout, procSelfCgroup: string): string | undefined {
  const own = parseProcCgroup(procSelfCgroup);
  if (layout.version === 'v2') {
    const path = own[''];
    const mount = layout.unified;
    if (path === undefined || mount === undefined) return undefined;
    return join(mount.mountpoint, relative(mount.root, path), 'cgroup.procs');
  }
  const names = Object.keys(layout.mounts).filter((c) => !c.startsWith('name='));
  const name = names.includes('pids') ? 'pids' : names[0];
  if (name === undefined) return undefined;
  const mount = layout.mounts[name];
  const path = own[name];
  if (mount === undefined || path === undefined) return undefined;
  return join(mount.mountpoint, relative(mount.root, path), 'cgroup.procs');
}

let inFlight: Promise<boolean> | undefined;
let disabled = false;

/**
 * Start warming the cgroup migration lock; resolves true once done, false
 * when it cannot be done here (not root, a cgroup this process may not write,
 * a v2 cgroup with controllers below it), after which it is not tried again.
 * Concurrent calls share one write. Never rejects.
 */
export function warmCgroupMigration(): Promise<boolean> {
  if (disabled) return Promise.resolve(false);
  inFlight ??= (async (): Promise<boolean> => {
    try {
      const file = ownProcsFile(await hostCgroupLayout(), await readFile('/proc/self/cgroup', 'utf8'));
      if (file === undefined) throw new Error('no cgroup of our own');
      await writeFile(file, String(process.pid), { flag: 'w' });
      return true;
    } catch {
      disabled = true;
      return false;
    } finally {
      inFlight = undefined;
    }
  })();
  return inFlight;
}
