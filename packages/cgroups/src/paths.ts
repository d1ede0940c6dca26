// Where a container's cgroup lives, with the semantics of runc's cgroupfs
// driver:
//   - an absolute cgroupsPath is taken under each hierarchy's mount point;
//   - a relative one under the runtime process's own cgroup (/proc/self/cgroup);
//   - an empty one is "/<containerId>";
//   - the systemd form "slice:prefix:name" is mapped to the cgroup systemd
//     would create, "<slice path>/<prefix>-<name>.scope", managed as plain
//     cgroupfs directories (no unit is created).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { invalid } from '@berth/base';
import type { CgroupLayout, CgroupMount, CgroupVersion } from './detect.js';

export interface CgroupPaths {
  version: CgroupVersion;
  /**
   * The container's cgroup below a hierarchy's mount point (for a relative
   * cgroupsPath on v1, as seen in the pids, memory or first hierarchy).
   */
  relative: string;
  /**
   * The container's directory in each hierarchy: v1 controllers by name
   * ("memory", "name=systemd"; comounted ones share a directory); key "" is
   * the cgroup2 directory (on v2, and beside the v1 ones on a hybrid host).
   */
  dirs: Record<string, string>;
}

/** /proc/<pid>/cgroup: the cgroup path by controller name; "" for the cgroup2 entry. */
export function parseProcCgroup(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (controllers === '') out[''] = path;
    else for (const c of controllers.split(',')) out[c] = path;
  }
  return out;
}

/** Path components of a cgroup path; ".." is refused so no path leaves its hierarchy. */
function components(path: string, what: string): string[] {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw invalid(`${what} ${JSON.stringify(path)} must not contain ".."`);
  return parts;
}

/** "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice", as systemd nests slices. */
export function expandSlice(slice: string): string {
  if (!slice.endsWith('.slice') || slice.includes('/')) {
    throw invalid(`invalid systemd slice name ${JSON.stringify(slice)}: must end in ".slice" and contain no "/"`);
  }
  const name = slice.slice(0, -'.slice'.length);
  if (name === '-') return '/';
  if (name === '' || name.startsWith('-') || name.endsWith('-') || name.includes('--')) {
    throw invalid(`invalid systemd slice name ${JSON.stringify(slice)}`);
  }
  let path = '';
  let prefix = '';
  for (const part of name.split('-')) {
    prefix = prefix === '' ? part : `${prefix}-${part}`;
    path += `/${prefix}.slice`;
  }
  return path;
}

const SYSTEMD_FORM = /^([^/:]*):([^/:]*):([^/:]+)$/;

/** True when cgroupsPath has the systemd driver's "slice:prefix:name" form. */
export function isSystemdCgroupsPath(cgroupsPath: string): boolean {
  return SYSTEMD_FORM.test(cgroupsPath);
}

/**
 * The cgroupfs path systemd uses for "slice:prefix:name": the scope
 * "<prefix>-<name>.scope" under the slice (default "system.slice"), or the
 * slice itself when name ends in ".slice".
 */
export function systemdCgroupPath(cgroupsPath: string): string {
  const m = SYSTEMD_FORM.exec(cgroupsPath);
  if (m === null) {
    throw invalid(`cgroupsPath ${JSON.stringify(cgroupsPath)} is not of the systemd form "slice:prefix:name"`);
  }
  const [, slice = '', prefix = '', name = ''] = m;
  if (name.endsWith('.slice')) return expandSlice(name);
  const parent = expandSlice(slice === '' ? 'system.slice' : slice);
  const unit = prefix === '' ? `${name}.scope` : `${prefix}-${name}.scope`;
  return join(parent, unit);
}

const PRIMARY_V1 = ['pids', 'memory', 'cpu', 'devices', 'freezer'];

export interface ResolveOptions {
  /** linux.cgroupsPath from config.json; empty or absent means "/<containerId>". */
  cgroupsPath?: string;
  containerId: string;
  /** The text of /proc/self/cgroup (read when needed and not given). */
  selfCgroup?: string;
}

/** The own cgroup relative to the mount point of hierarchy `mount`. */
function ownUnderMount(own: string | undefined, mount: CgroupMount, key: string): string {
  if (own === undefined) {
    throw invalid(`relative cgroupsPath: the runtime's own ${key === '' ? 'cgroup2' : key} cgroup is not in /proc/self/cgroup`);
  }
  if (mount.root !== '/' && (own === mount.root || own.startsWith(`${mount.root}/`))) {
    return own.slice(mount.root.length) || '/';
  }
  return own;
}

export function resolveCgroupPaths(layout: CgroupLayout, options: ResolveOptions): CgroupPaths {
  let path = options.cgroupsPath ?? '';
  if (path === '') {
    if (options.containerId === '') throw invalid('cannot name a cgroup: empty container id');
    components(options.containerId, 'container id');
    path = `/${options.containerId}`;
  } else if (isSystemdCgroupsPath(path)) {
    path = systemdCgroupPath(path);
  }
  const absolute = path.startsWith('/');
  const inner = components(path, 'cgroupsPath');
  let self: Record<string, string> | undefined;
  const own = (key: string, mount: CgroupMount): string => {
    self ??= parseProcCgroup(options.selfCgroup ?? readFileSync('/proc/self/cgroup', 'utf8'));
    return ownUnderMount(self[key], mount, key);
  };
  const relative = (key: string, mount: CgroupMount): string =>
    absolute ? `/${inner.join('/')}` : join('/', own(key, mount), ...inner);

  const dirs: Record<string, string> = {};
  for (const [controller, mount] of Object.entries(layout.mounts)) {
    dirs[controller] = join(mount.mountpoint, relative(controller, mount));
  }
  if (layout.unified !== undefined) dirs[''] = join(layout.unified.mountpoint, relative('', layout.unified));
  let rel = `/${inner.join('/')}`;
  if (!absolute) {
    const key = layout.version === 'v2' ? '' : PRIMARY_V1.find((c) => c in layout.mounts) ?? Object.keys(layout.mounts)[0];
    const mount = key === '' ? layout.unified : key === undefined ? undefined : layout.mounts[key];
    if (key !== undefined && mount !== undefined) rel = relative(key, mount);
  }
  return { version: layout.version, relative: rel, dirs };
}
