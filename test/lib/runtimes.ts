/**
 * The runtimes a suite runs against, each as the command line that starts it.
 * Every runtime is used with its own `--root <tmpdir>` by the kit.
 * BERTH_TEST_RUNTIMES=runc,crun (comma-separated names) selects a subset.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type RuntimeName = 'berth-runc' | 'runc' | 'crun';

export interface RuntimeDescriptor {
  readonly name: RuntimeName;
  /** The command line up to (not including) the global options. */
  readonly argv: readonly string[];
  /** The program file whose presence decides whether the runtime can run here. */
  readonly binary: string;
  /** Why this runtime cannot be tested here; undefined when it can. */
  readonly missing: string | undefined;
}

/** The repository root (this file is test/lib/runtimes.ts, compiled to test/dist/lib/). */
export const REPO_ROOT: string = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function exists(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** A cgroup2 filesystem mounted at /sys/fs/cgroup/unified next to v1 hierarchies. */
function hybridCgroups(): boolean {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[4] === '/sys/fs/cgroup/unified' && l.includes(' - cgroup2 '));
  } catch {
    return false;
  }
}

function berthRunc(): RuntimeDescriptor {
  const script = join(REPO_ROOT, 'packages', 'runtime', 'bin', 'berth-runc.js');
  const cli = join(REPO_ROOT, 'packages', 'runtime', 'dist', 'cli');
  let missing: string | undefined;
  if (!exists(script)) missing = `berth-runc not found at ${script}`;
  else if (!exists(join(cli, 'main.js')) && !exists(join(cli, 'berth-runc.bundle.js'))) {
    missing = `berth-runc is not built (nothing in ${cli}; run npx tsc -b)`;
  }
  return { name: 'berth-runc', argv: [process.execPath, script], binary: script, missing };
}

function runc(): RuntimeDescriptor {
  const bin = '/usr/sbin/runc';
  return { name: 'runc', argv: [bin], binary: bin, missing: isExecutable(bin) ? undefined : `${bin} not installed (Debian package runc)` };
}

function crun(): RuntimeDescriptor {
  const bin = '/usr/bin/crun';
  const missing = isExecutable(bin) ? undefined : `${bin} not installed (Debian package crun)`;
  if (!hybridCgroups()) return { name: 'crun', argv: [bin], binary: bin, missing };
  // crun 1.8 refuses to run on a hybrid cgroup host ("cgroups in hybrid mode not
  // supported, drop all controllers from cgroupv2") while a cgroup2 filesystem is
  // mounted at /sys/fs/cgroup/unified. So every crun command runs in a private
  // mount namespace of its own where that mount is gone; crun then sees plain
  // cgroup v1. The container's state files and cgroups are shared with the host.
  const argv = ['unshare', '-m', '--propagation', 'private', 'sh', '-c', `umount /sys/fs/cgroup/unified 2>/dev/null; exec ${bin} "$@"`, 'crun'];
  return { name: 'crun', argv, binary: bin, missing };
}

function selected(): RuntimeDescriptor[] {
  const all = [berthRunc(), runc(), crun()];
  const only = process.env['BERTH_TEST_RUNTIMES'];
  if (!only) return all;
  const names = only.split(',').map((s) => s.trim());
  return all.filter((r) => names.includes(r.name));
}

/** berth-runc, runc and crun (or the BERTH_TEST_RUNTIMES subset). */
export const RUNTIMES: readonly RuntimeDescriptor[] = selected();
