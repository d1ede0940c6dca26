/**
 * A `cgroup` mount of config.json, expanded for the host's cgroup version.
 *
 * v1: a tmpfs at the target and one mount per controller hierarchy below it:
 * with a cgroup namespace a fresh `cgroup` mount of the controller (it shows
 * the container's own cgroup as its root), without one a bind of the
 * container's cgroup directory of that controller. Co-mounted controllers
 * (`cpu,cpuacct`) get a symlink per name, as on the host. When the mount is
 * read-only the tmpfs is remounted read-only after the controllers, and the
 * symlinks are left out (they are made after all mounts, in a later stage).
 *
 * v2: one `cgroup2` mount, or a bind of the container's cgroup directory when
 * there is no cgroup namespace and the directory is given.
 */
import { posix } from 'node:path';
import { failedPrecondition } from '@berth/base';
import { MS } from './mountopts.js';
import type { PlanRecord } from './types.js';

export interface CgroupV1Controller {
  /** The hierarchy's mount options as on the host: `memory`, `cpu,cpuacct`, `name=systemd`. */
  name: string;
  /** The container's cgroup directory in that hierarchy on the host. */
  hostDir: string;
}

export type CgroupMountInfo =
  | { version: 'v1'; controllers: CgroupV1Controller[] }
  | { version: 'v2'; hostDir?: string };

/** The directory name of a v1 hierarchy: `name=systemd` -> `systemd`, `cpu,cpuacct` stays. */
export function hierarchyDir(name: string): string {
  return name
    .split(',')
    .map((p) => (p.startsWith('name=') ? p.slice(5) : p))
    .join(',');
}

export function cgroupMountRecords(
  target: string,
  flags: number,
  info: CgroupMountInfo | undefined,
  cgroupns: boolean,
  where: string,
): PlanRecord[] {
  if (info === undefined) throw failedPrecondition(`${where}: a cgroup mount needs the host's cgroup layout, none was given`);
  const bindFlags = MS.BIND | (flags & ~MS.REC);
  if (info.version === 'v2') {
    if (!cgroupns && info.hostDir !== undefined) {
      return [{ tag: 'mount', source: info.hostDir, target, fstype: 'bind', flags: bindFlags, data: '', mkdir: 'dir', propagation: 0 }];
    }
    return [{ tag: 'mount', source: 'cgroup', target, fstype: 'cgroup2', flags, data: '', mkdir: 'dir', propagation: 0 }];
  }
  const ro = (flags & MS.RDONLY) !== 0;
  const out: PlanRecord[] = [{
    tag: 'mount', source: 'tmpfs', target, fstype: 'tmpfs', flags: flags & ~MS.RDONLY, data: 'mode=755',
    mkdir: 'dir', propagation: 0,
  }];
  const links: PlanRecord[] = [];
  for (const c of info.controllers) {
    const dir = hierarchyDir(c.name);
    const sub = posix.join(target, dir);
    if (cgroupns) {
      out.push({ tag: 'mount', source: 'cgroup', target: sub, fstype: 'cgroup', flags, data: c.name, mkdir: 'dir', propagation: 0 });
    } else {
      out.push({ tag: 'mount', source: c.hostDir, target: sub, fstype: 'bind', flags: bindFlags, data: '', mkdir: 'dir', propagation: 0 });
    }
    const names = dir.split(',');
    if (names.length > 1) {
      for (const n of names) links.push({ tag: 'symlink', target: dir, linkpath: posix.join(target, n) });
    }
  }
  if (ro) {
    out.push({
      tag: 'mount', source: 'tmpfs', target, fstype: 'tmpfs', flags: MS.REMOUNT | flags, data: 'mode=755',
      mkdir: 'none', propagation: 0,
    });
    return out;
  }
  return [...out, ...links];
}
