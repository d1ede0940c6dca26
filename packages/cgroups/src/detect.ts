// Which cgroup version the host runs, and where each hierarchy is mounted,
// read once from /proc/self/mountinfo.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { failedPrecondition } from '@berth/base';

export type CgroupVersion = 'v1' | 'v2';

/** One cgroup hierarchy as mounted: its mount point and the cgroup mounted there. */
export interface CgroupMount {
  /** Where it is mounted (prefixed with `fsRoot` when one was given). */
  mountpoint: string;
  /** The cgroup at the mount point, relative to the hierarchy's root ("/" on the host). */
  root: string;
  /** v1: the controllers of this hierarchy ("cpu", "cpuacct", "name=systemd"); v2: []. */
  controllers: string[];
}

export interface CgroupLayout {
  /** v1 when any v1 controller is mounted (also in hybrid mode), else v2. */
  version: CgroupVersion;
  /** v1 controllers with a cgroup2 hierarchy mounted beside them. */
  hybrid: boolean;
  /**
   * v1 hierarchies by controller name; comounted controllers (cpu,cpuacct)
   * share one entry object. Named hierarchies appear as "name=systemd". Empty on v2.
   */
  mounts: Record<string, CgroupMount>;
  /** The cgroup2 hierarchy, on v2 and on hybrid hosts. */
  unified?: CgroupMount;
}

export interface MountinfoEntry {
  mountpoint: string;
  root: string;
  fstype: string;
  source: string;
  superOptions: string[];
}

/** Mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountinfo(text: string): MountinfoEntry[] {
  const out: MountinfoEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    const root = fields[3];
    const mountpoint = fields[4];
    const fstype = fields[sep + 1];
    if (sep < 0 || root === undefined || mountpoint === undefined || fstype === undefined) continue;
    out.push({
      root: unescapeMountinfo(root),
      mountpoint: unescapeMountinfo(mountpoint),
      fstype,
      source: fields[sep + 2] ?? '',
      superOptions: (fields[sep + 3] ?? '').split(','),
    });
  }
  return out;
}

// Mount options of the v1 cgroup filesystem that are not controllers.
const NON_CONTROLLER_OPTIONS = new Set([
  'rw', 'ro', 'noprefix', 'xattr', 'clone_children', 'cpuset_v2_mode', 'favordynmods', 'nofavordynmods',
]);

function v1Controllers(superOptions: string[]): string[] {
  return superOptions.filter((o) => o !== '' && !NON_CONTROLLER_OPTIONS.has(o) && !o.startsWith('release_agent='));
}

export interface DetectOptions {
  /** A directory the mount points are resolved under (tests point this at a fake tree). */
  fsRoot?: string;
}

/** The layout described by a mountinfo text. The first mount of each hierarchy wins. */
export function layoutFromMountinfo(mountinfo: string, options: DetectOptions = {}): CgroupLayout {
  const at = (p: string): string => (options.fsRoot === undefined ? p : join(options.fsRoot, p));
  const mounts: Record<string, CgroupMount> = {};
  let unified: CgroupMount | undefined;
  let realV1 = false;
  for (const e of parseMountinfo(mountinfo)) {
    if (e.fstype === 'cgroup2') {
      unified ??= { mountpoint: at(e.mountpoint), root: e.root, controllers: [] };
    } else if (e.fstype === 'cgroup') {
      const controllers = v1Controllers(e.superOptions);
      if (controllers.length === 0 || controllers.some((c) => c in mounts)) continue;
      const mount: CgroupMount = { mountpoint: at(e.mountpoint), root: e.root, controllers };
      for (const c of controllers) {
        mounts[c] = mount;
        if (!c.startsWith('name=')) realV1 = true;
      }
    }
  }
  if (realV1) {
    const layout: CgroupLayout = { version: 'v1', hybrid: unified !== undefined, mounts };
    if (unified !== undefined) layout.unified = unified;
    return layout;
  }
  if (unified !== undefined) return { version: 'v2', hybrid: false, mounts: {}, unified };
  throw failedPrecondition('no cgroup filesystem is mounted (no cgroup or cgroup2 entry in /proc/self/mountinfo)');
}

/** Detect the layout from a mountinfo text, or from /proc/self/mountinfo. */
export async function detect(mountinfo?: string, options: DetectOptions = {}): Promise<CgroupLayout> {
  const text = mountinfo ?? (await readFile('/proc/self/mountinfo', 'utf8'));
  return layoutFromMountinfo(text, options);
}

let hostLayout: Promise<CgroupLayout> | undefined;

/** This host's layout, detected once per process. */
export function hostCgroupLayout(): Promise<CgroupLayout> {
  hostLayout ??= detect().catch((err: unknown) => {
    hostLayout = undefined;
    throw err;
  });
  return hostLayout;
}
