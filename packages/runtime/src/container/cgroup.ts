import { hostCgroupLayout, resolveCgroupPaths, cgroupManager, deviceFilterProgram, DEFAULT_DEVICE_RULES } from '@berth/cgroups';
import type { CgroupManager, CgroupPaths } from '@berth/cgroups';
import type { LinuxResources, LinuxDevice, LinuxDeviceCgroup } from '@berth/spec';
import { failedPrecondition, invalid } from '@berth/base';
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
    // On v2 the device rules are left out here; containerDeviceFilter() compiles them for the executor.
    await mgr.create(resources);
  } catch (e) {
    await mgr.destroy().catch(() => undefined);
    throw e;
  }
  return mgr;
}

/**
 * When the device allowlist is enforced by an eBPF program rather than by
 * the v1 devices controller. BERTH_DEVICE_FILTER:
 *   unset, "" or "auto": on cgroup v2 hosts only (the only way there);
 *   "bpf": also on hybrid hosts, on the container's cgroup2 directory, in
 *     addition to the v1 devices controller (the kernel checks both), so
 *     that the v2 path can be tested on a hybrid machine.
 */
export function deviceFilterMode(env: NodeJS.ProcessEnv = process.env): 'auto' | 'bpf' {
  const v = env['BERTH_DEVICE_FILTER'] ?? '';
  if (v === '' || v === 'auto') return 'auto';
  if (v === 'bpf') return 'bpf';
  throw invalid(`BERTH_DEVICE_FILTER=${JSON.stringify(v)}: expected auto or bpf`);
}

/**
 * The eBPF device filter the executor attaches to the container's cgroup2
 * directory (the planner's `deviceFilter`), or undefined when the config
 * restricts no device or the v1 devices controller is in charge.
 */
export function containerDeviceFilter(mgr: CgroupManager, resources: LinuxResources | undefined, devices: LinuxDevice[] | undefined,
  env: NodeJS.ProcessEnv = process.env): { cgroupDir: string; program: Buffer } | undefined {
  const mode = deviceFilterMode(env);
  const rules = deviceRules(resources, devices);
  if (rules === undefined) return undefined;
  if (mgr.version === 'v1' && mode !== 'bpf') return undefined;
  const cgroupDir = mgr.paths.dirs[''];
  if (cgroupDir === undefined) {
    throw failedPrecondition('BERTH_DEVICE_FILTER=bpf: this host has no cgroup2 hierarchy to attach a device filter to');
  }
  return { cgroupDir, program: deviceFilterProgram(rules) };
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
