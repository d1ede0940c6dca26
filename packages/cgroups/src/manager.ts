// One interface over cgroup v1 and v2: the cgroup of one container.
import type { LinuxDeviceCgroup, LinuxResources } from '@berth/spec';
import type { CgroupWrite } from './_fs.js';
import type { CgroupLayout, CgroupVersion } from './detect.js';
import { hostCgroupLayout } from './detect.js';
import type { CgroupPaths, ResolveOptions } from './paths.js';
import { resolveCgroupPaths } from './paths.js';
import type { CgroupStats } from './stats.js';
import { V1Manager } from './_v1.js';
import { V2Manager } from './_v2.js';

export type { CgroupWrite } from './_fs.js';

/** "freezing": asked to freeze, not all tasks frozen yet. "unknown": no freezer here. */
export type FreezerState = 'thawed' | 'freezing' | 'frozen' | 'unknown';

/** What create() or apply() did. */
export interface ApplyReport {
  /** Every control file written, in order, with the value written. */
  writes: CgroupWrite[];
  /** Settings that this cgroup version has no file for and that were left out. */
  warnings: string[];
  /**
   * cgroup v2: the device rules, which have no cgroup file there; they are
   * enforced by the eBPF program of devicefilter.ts that the executor attaches.
   * v1: [].
   */
  unappliedDeviceRules: LinuxDeviceCgroup[];
  /** cgroup v2: the unapplied rules beyond the deny-all and DEFAULT_DEVICE_RULES. */
  deviceRulesBeyondDefault: LinuxDeviceCgroup[];
}

export interface CgroupManager {
  readonly version: CgroupVersion;
  readonly layout: CgroupLayout;
  readonly paths: CgroupPaths;
  /**
   * Create the cgroup directories (every v1 hierarchy, or the v2 directory with
   * controllers enabled in its ancestors), then apply resources if given.
   * Existing directories are fine.
   */
  create(resources?: LinuxResources): Promise<ApplyReport>;
  /** The cgroup.procs files a process writes its pid to, to join the cgroup. */
  procsFiles(): string[];
  /** Write resource limits (on create and on `update`); unset fields are left as they are. */
  apply(resources: LinuxResources): Promise<ApplyReport>;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  freezerState(): Promise<FreezerState>;
  /** Every process in the cgroup and its descendants, sorted. */
  pids(): Promise<number[]>;
  /**
   * Send a signal to every process. For SIGKILL, repeat until the cgroup is
   * empty (v2 uses cgroup.kill where the kernel has it).
   */
  killAll(signal?: NodeJS.Signals | number): Promise<void>;
  stats(): Promise<CgroupStats>;
  /** How many processes the OOM killer killed in this cgroup (0 when unknown). */
  oomCount(): Promise<number>;
  /**
   * The files that change on an OOM kill: v1 memory.oom_control (readable,
   * and the target of a cgroup.event_control eventfd), v2 memory.events.
   */
  oomEventFiles(): string[];
  /** Remove the cgroup directories, leaf first; missing ones are fine. */
  destroy(): Promise<void>;
}

export function cgroupManager(layout: CgroupLayout, paths: CgroupPaths): CgroupManager {
  return layout.version === 'v1' ? new V1Manager(layout, paths) : new V2Manager(layout, paths);
}

export interface OpenCgroupOptions extends ResolveOptions {
  /** Defaults to this host's layout, detected once. */
  layout?: CgroupLayout;
}

/** The manager for a container's cgroup (nothing is created until create()). */
export async function openCgroup(options: OpenCgroupOptions): Promise<CgroupManager> {
  const layout = options.layout ?? (await hostCgroupLayout());
  return cgroupManager(layout, resolveCgroupPaths(layout, options));
}
