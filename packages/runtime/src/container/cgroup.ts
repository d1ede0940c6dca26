import { hostCgroupLayout, resolveCgroupPaths, cgroupManager, DEFAULT_DEVICE_RULES } from '@berth/cgroups';
import type { CgroupManager, CgroupPaths } from '@berth/cgroups';
import type { LinuxResources, LinuxDevice, LinuxDeviceCgroup } from '@berth/spec';
import { failedPrecondition } from '@berth/base';
import type { CgroupMountInfo } from '../plan/index.js';

/**
 * The device rules a container's cgroup gets, as runc composes them: the
 * config's own rules, then the default devices, then each device the config
 * creates. Without any rule in the config nothing is restricted.
 */
export function deviceRules(resources: LinuxResources | undefined, devices: LinuxDevice[] | undefined): LinuxDeviceCgroup[] | undefined {
  const own = resources?.devices;
  if (own === undefined) return undefined;
  const created: LinuxDeviceCgroup[] = (devices ?? [])
    .filter((d) => d.type === 'c' || d.type === 'b')
    .map((d) => ({ allow: true, type: d.type as 'c' | 'b', major: d.major ?? -1, minor: d.minor ?? -1, access: 'rwm' }));
  return [...own, ...DEFAULT_DEVICE_RULES, ...created];
}

/** Resolve and create the container's cgroup, with its resources applied. */
export async function createCgroup(cgroupsPath: string | undefined, containerId: string, resources: LinuxResources | undefined, devices?: LinuxDevice[]): Promise<CgroupManager> {
  const rules = deviceRules(resources, devices);
  if (resources && rules) resources = { ...resources, devices: rules };
  const layout = await hostCgroupLayout();
  const opts = cgroupsPath ? { cgroupsPath, containerId } : { containerId };
  const mgr = cgroupManager(layout, resolveCgroupPaths(layout, opts));
  try {
    const report = await mgr.create(resources);
    if (report.deviceRulesBeyondDefault.length > 0) {
      throw failedPrecondition('device cgroup rules on cgroup v2 are not supported yet (they need an eBPF device filter)');
    }
  } catch (e) {
    await mgr.destroy().catch(() => undefined);
    throw e;
  }
  return mgr;
}

export async function openCgroup(paths: CgroupPaths): Promise<CgroupManager> {
  return cgroupManager(await hostCgroupLayout(), paths);
}

/** What the planner needs to expand a `cgroup` mount on this host. */
export function cgroupMountInfo(mgr: CgroupManager): CgroupMountInfo {
  if (mgr.version === 'v2') {
    const hostDir = mgr.paths.dirs[''];
    return hostDir === undefined ? { version: 'v2' } : { version: 'v2', hostDir };
  }
  const seen = new Set<string>();
  const controllers: { name: string; hostDir: string }[] = [];
  for (const [key, mount] of Object.entries(mgr.layout.mounts)) {
    if (seen.has(mount.mountpoint)) continue;
    seen.add(mount.mountpoint);
    const hostDir = mgr.paths.dirs[key];
    if (hostDir === undefined) continue;
    controllers.push({ name: mount.controllers.join(','), hostDir });
  }
  return { version: 'v1', controllers };
}

export async function isFrozen(mgr: CgroupManager): Promise<boolean> {
  const s = await mgr.freezerState();
  return s === 'frozen' || s === 'freezing';
}
