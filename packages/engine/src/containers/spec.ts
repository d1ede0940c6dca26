/**
 * A container's OCI runtime spec (config.json) from its Docker config, as the
 * Docker Engine builds it: namespaces by mode, Docker's default mounts,
 * capabilities, masked and read-only paths, device rules and seccomp profile,
 * the request's resources, mounts, user, rlimits and sysctls. The caller
 * resolves what needs state (volumes, other containers' namespaces, the
 * user's ids, the /etc files) and passes it in a SpecContext.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, realpathSync, statSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join, posix } from 'node:path';
import { errnoCode, failedPrecondition, invalid } from '@berth/base';
import type {
  LinuxBlockIO, LinuxDevice, LinuxDeviceCgroup, LinuxNamespace, LinuxResources, LinuxThrottleDevice, Mount as OciMount,
  POSIXRlimit, RootfsPropagation, Spec,
} from '@berth/spec';
import { DEFAULT_CAPABILITIES, tweakCapabilities, hostCapabilities } from './caps.js';
import {
  DEFAULT_SHM_SIZE, ULIMIT_NAMES, ipcMode, networkMode, parseDeviceCgroupRule, parseSecurityOpts, pidMode, utsMode,
  validateSysctls,
} from './config.js';
import type { ContainerConfig, HostConfig, ThrottleDevice } from './config.js';
import type { MountRequest } from './mounts.js';
import { DEFAULT_SECCOMP_PROFILE, dockerProfileToOci, parseDockerSeccompProfile } from './seccomp.js';

export const OCI_VERSION = '1.2.0';
export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Where the init binary is mounted for `Init: true`, as Docker mounts it. */
export const INIT_PATH_IN_CONTAINER = '/sbin/docker-init';

export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
export const DEFAULT_READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Joins a namespace of the host, or of another container by path (`/proc/<pid>/ns/ipc`). */
export type NamespaceJoin = { kind: 'host' } | { kind: 'path'; path: string };
export type NetworkNamespace = NamespaceJoin | { kind: 'new' };

/** A MountRequest with its host source resolved (a volume's directory, subpath included). */
export type ResolvedMount = MountRequest & { hostPath: string };

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
}

export interface SpecContext {
  /** The container's full ID. */
  id: string;
  /** root.path (default `rootfs`, relative to the bundle as in containerd's bundles). */
  rootPath?: string;
  /** Host files bind-mounted at /etc/hostname, /etc/hosts, /etc/resolv.conf. */
  hostnamePath?: string;
  hostsPath?: string;
  resolvConfPath?: string;
  /** /dev/shm: a new tmpfs of a size (default HostConfig.ShmSize or 64 MiB), or a host directory to bind (shareable IPC). */
  shm?: { size: number } | { hostPath: string };
  /** Default: from HostConfig.NetworkMode (`host`: the host's; otherwise a new one). */
  network?: NetworkNamespace;
  /** For `container:<id>` modes (required then), or to override. */
  ipc?: NamespaceJoin;
  pid?: NamespaceJoin;
  uts?: NamespaceJoin;
  /** The mounts from parseMounts, with their host sources resolved. */
  mounts?: readonly ResolvedMount[];
  /** Default: `<CgroupParent>/<id>`, or `/berth/<id>`. */
  cgroupsPath?: string;
  /** Host path of the init binary (required for Init: true). */
  initPath?: string;
  /** The process's ids (see resolveUser); default root. */
  user?: ResolvedUser;
  /** The cgroup namespace when CgroupnsMode is empty (default private). */
  defaultCgroupns?: 'private' | 'host';
  /** For the seccomp profile: architecture (default this machine's) and kernel release. */
  arch?: string;
  kernel?: string;
  /** The capabilities of this kernel (default: from /proc/sys/kernel/cap_last_cap). */
  allCapabilities?: readonly string[];
  /** The host's devices for a privileged container (default: found under /dev). */
  hostDevices?: readonly LinuxDevice[];
}

// ---------------------------------------------------------------- devices

interface DeviceFacts {
  type: 'c' | 'b';
  major: number;
  minor: number;
  mode: number;
  uid: number;
  gid: number;
}

function deviceFacts(path: string, follow: boolean): DeviceFacts | undefined {
  const st = follow ? statSync(path, { bigint: true }) : lstatSync(path, { bigint: true });
  const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : undefined;
  if (type === undefined) return undefined;
  const rdev = st.rdev;
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { type, major, minor, mode: Number(st.mode & 0o777n), uid: Number(st.uid), gid: Number(st.gid) };
}

const SKIP_DEV_DIRS = new Set(['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev']);

/** Every device node under /dev (as Docker lists them for a privileged container). */
export function listHostDevices(dir = '/dev'): LinuxDevice[] {
  const out: LinuxDevice[] = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (!SKIP_DEV_DIRS.has(e.name)) out.push(...listHostDevices(p));
      continue;
    }
    if (e.name === 'console' || !(e.isCharacterDevice() || e.isBlockDevice())) continue;
    try {
      const f = deviceFacts(p, false);
      if (f) out.push({ path: p, type: f.type, major: f.major, minor: f.minor, fileMode: f.mode, uid: f.uid, gid: f.gid });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * One HostConfig.Devices entry: the device (or every device below a
 * directory), with the host's major/minor, mode and owner, and its cgroup rule.
 */
export function devicesFromPath(pathOnHost: string, pathInContainer: string, permissions: string): { devices: LinuxDevice[]; rules: LinuxDeviceCgroup[] } {
  const inCtr = pathInContainer === '' ? pathOnHost : pathInContainer;
  const access = permissions === '' ? 'rwm' : permissions;
  const fail = (why: string): Error => invalid(`error gathering device information while adding custom device ${JSON.stringify(pathOnHost)}: ${why}`);
  let resolved: string;
  try {
    resolved = realpathSync(pathOnHost);
  } catch (err) {
    throw fail(errnoCode(err) === 'ENOENT' ? 'no such file or directory' : String(err));
  }
  const devices: LinuxDevice[] = [];
  const rules: LinuxDeviceCgroup[] = [];
  const add = (hostPath: string, ctrPath: string): void => {
    const f = deviceFacts(hostPath, true);
    if (!f) return;
    devices.push({ path: ctrPath, type: f.type, major: f.major, minor: f.minor, fileMode: f.mode, uid: f.uid, gid: f.gid });
    rules.push({ allow: true, type: f.type, major: f.major, minor: f.minor, access });
  };
  const st = statSync(resolved);
  if (st.isDirectory()) {
    const walk = (hostDir: string, ctrDir: string): void => {
      for (const e of readdirSync(hostDir, { withFileTypes: true })) {
        const hp = join(hostDir, e.name);
        const cp = posix.join(ctrDir, e.name);
        if (e.isDirectory()) walk(hp, cp);
        else if (e.isCharacterDevice() || e.isBlockDevice()) add(hp, cp);
      }
    };
    walk(resolved, inCtr);
    return { devices, rules };
  }
  if (!st.isCharacterDevice() && !st.isBlockDevice()) throw fail('not a device node');
  add(resolved, inCtr);
  return { devices, rules };
}

const cdev = (major: number | undefined, minor: number | undefined, allow = true): LinuxDeviceCgroup => {
  const r: LinuxDeviceCgroup = { allow, type: 'c', access: 'rwm' };
  if (major !== undefined) r.major = major;
  if (minor !== undefined) r.minor = minor;
  return r;
};

/**
 * The device cgroup rules of a non-privileged container: deny all, mknod of
 * any node, then the standard devices (null, zero, full, random, urandom,
 * tty, console, ptmx, the ptys and tun); /dev/fuse explicitly denied.
 */
export function defaultDeviceRules(): LinuxDeviceCgroup[] {
  return [
    { allow: false, access: 'rwm' },
    { allow: true, type: 'c', access: 'm' },
    { allow: true, type: 'b', access: 'm' },
    cdev(1, 3), cdev(1, 5), cdev(1, 7), cdev(1, 8), cdev(1, 9),
    cdev(5, 0), cdev(5, 1), cdev(5, 2), cdev(136, undefined), cdev(10, 200),
    cdev(10, 229, false),
  ];
}

function blockDevice(path: string, field: string): { major: number; minor: number } {
  let f: DeviceFacts | undefined;
  try {
    f = deviceFacts(path, true);
  } catch (err) {
    throw invalid(`${field}: ${path}: ${errnoCode(err) === 'ENOENT' ? 'no such file or directory' : String(err)}`);
  }
  if (!f || f.type !== 'b') throw invalid(`${field}: ${path} is not a block device`);
  return { major: f.major, minor: f.minor };
}

function throttles(list: readonly ThrottleDevice[] | undefined, field: string): LinuxThrottleDevice[] {
  return (list ?? []).map((d) => ({ ...blockDevice(d.Path ?? '', field), rate: d.Rate ?? 0 }));
}

// ---------------------------------------------------------------- resources

/** linux.resources from HostConfig (devices excluded). */
export function buildResources(host: HostConfig): LinuxResources {
  const r: LinuxResources = {};
  const mem: NonNullable<LinuxResources['memory']> = {};
  if ((host.Memory ?? 0) > 0) mem.limit = host.Memory ?? 0;
  if ((host.MemoryReservation ?? 0) > 0) mem.reservation = host.MemoryReservation ?? 0;
  if ((host.MemorySwap ?? 0) !== 0) mem.swap = host.MemorySwap ?? 0;
  if (host.MemorySwappiness !== undefined && host.MemorySwappiness >= 0) mem.swappiness = host.MemorySwappiness;
  if (host.OomKillDisable !== undefined) mem.disableOOMKiller = host.OomKillDisable;
  if (Object.keys(mem).length > 0) r.memory = mem;

  const cpu: NonNullable<LinuxResources['cpu']> = {};
  if ((host.CpuShares ?? 0) > 0) cpu.shares = host.CpuShares ?? 0;
  if ((host.NanoCpus ?? 0) > 0) {
    cpu.period = 100000;
    cpu.quota = Math.floor(((host.NanoCpus ?? 0) * 100000) / 1e9);
  } else {
    if ((host.CpuQuota ?? 0) !== 0) cpu.quota = host.CpuQuota ?? 0;
    if ((host.CpuPeriod ?? 0) !== 0) cpu.period = host.CpuPeriod ?? 0;
  }
  if ((host.CpuRealtimeRuntime ?? 0) !== 0) cpu.realtimeRuntime = host.CpuRealtimeRuntime ?? 0;
  if ((host.CpuRealtimePeriod ?? 0) !== 0) cpu.realtimePeriod = host.CpuRealtimePeriod ?? 0;
  if ((host.CpusetCpus ?? '') !== '') cpu.cpus = host.CpusetCpus ?? '';
  if ((host.CpusetMems ?? '') !== '') cpu.mems = host.CpusetMems ?? '';
  if (Object.keys(cpu).length > 0) r.cpu = cpu;

  if ((host.PidsLimit ?? 0) > 0) r.pids = { limit: host.PidsLimit ?? 0 };

  const bio: LinuxBlockIO = {};
  if ((host.BlkioWeight ?? 0) > 0) bio.weight = host.BlkioWeight ?? 0;
  const wd = (host.BlkioWeightDevice ?? []).map((d) => ({ ...blockDevice(d.Path ?? '', 'BlkioWeightDevice'), weight: d.Weight ?? 0 }));
  if (wd.length > 0) bio.weightDevice = wd;
  const lists = [
    ['throttleReadBpsDevice', throttles(host.BlkioDeviceReadBps, 'BlkioDeviceReadBps')],
    ['throttleWriteBpsDevice', throttles(host.BlkioDeviceWriteBps, 'BlkioDeviceWriteBps')],
    ['throttleReadIOPSDevice', throttles(host.BlkioDeviceReadIOps, 'BlkioDeviceReadIOps')],
    ['throttleWriteIOPSDevice', throttles(host.BlkioDeviceWriteIOps, 'BlkioDeviceWriteIOps')],
  ] as const;
  for (const [k, v] of lists) if (v.length > 0) bio[k] = v;
  if (Object.keys(bio).length > 0) r.blockIO = bio;
  return r;
}

// ---------------------------------------------------------------- env, args

/** Docker's container environment: PATH, HOSTNAME, TERM (with a tty), then Env replacing or removing (`NAME` alone) by name. */
export function containerEnv(cfg: ContainerConfig, hostname: string): string[] {
  const env: (string | undefined)[] = [DEFAULT_PATH_ENV, `HOSTNAME=${hostname}`];
  if (cfg.Tty === true) env.push('TERM=xterm');
  const index = new Map<string, number>();
  env.forEach((e, i) => index.set((e ?? '').split('=', 1)[0] ?? '', i));
  for (const e of cfg.Env ?? []) {
    const eq = e.indexOf('=');
    const key = eq < 0 ? e : e.slice(0, eq);
    const at = index.get(key);
    if (eq < 0) {
      if (at !== undefined) env[at] = undefined;
      continue;
    }
    if (at !== undefined && env[at] !== undefined) {
      env[at] = e;
    } else {
      index.set(key, env.length);
      env.push(e);
    }
  }
  return env.filter((e): e is string => e !== undefined);
}

/** The process's argv: Entrypoint then Cmd (or Cmd alone). */
export function containerArgs(cfg: ContainerConfig): string[] {
  const args = [...(cfg.Entrypoint ?? []), ...(cfg.Cmd ?? [])];
  if (args.length === 0) throw invalid('no command specified');
  return args;
}

// ---------------------------------------------------------------- mounts

function depth(p: string): number {
  return posix.normalize(p).split('/').filter(Boolean).length;
}

function userMount(m: ResolvedMount): OciMount {
  if (m.type === 'tmpfs') {
    return { destination: m.destination, type: 'tmpfs', source: 'tmpfs', options: [...(m.readOnly ? ['ro'] : []), ...m.options, ...(m.propagation !== '' ? [m.propagation] : [])] };
  }
  const opts = [...(m.options.length > 0 ? m.options : ['rbind'])];
  if (m.readOnly) opts.push('ro');
  if (m.propagation !== '') opts.push(m.propagation);
  return { destination: m.destination, type: 'bind', source: m.hostPath, options: opts };
}

// ---------------------------------------------------------------- spec

/**
 * The OCI spec for a container: cfg is the merged config (mergeImageConfig),
 * host the validated HostConfig (parseCreateBody), ctx what the caller resolved.
 */
export function buildSpec(cfg: ContainerConfig, host: HostConfig, ctx: SpecContext): Spec {
  const privileged = host.Privileged === true;
  const sec = parseSecurityOpts(host.SecurityOpt ?? []);
  validateSysctls(host.Sysctls ?? {}, host);

  // Namespaces.
  const namespaces: LinuxNamespace[] = [];
  const addNs = (type: LinuxNamespace['type'], j: NamespaceJoin | undefined, mode: { kind: string; ref?: string }, what: string): boolean => {
    const eff: NamespaceJoin | { kind: 'new' } = j ?? (mode.kind === 'host' ? { kind: 'host' } : { kind: 'new' });
    if (j === undefined && mode.kind === 'container') {
      throw failedPrecondition(`${what} mode container:${mode.ref ?? ''}: the other container's namespace path was not given`);
    }
    if (eff.kind === 'host') return false;
    namespaces.push(eff.kind === 'path' ? { type, path: eff.path } : { type });
    return true;
  };
  const pm = pidMode(host.PidMode);
  addNs('pid', ctx.pid, pm, 'PID');
  const nm = networkMode(host.NetworkMode);
  const netMode = nm.kind === 'network' || nm.kind === 'none' ? { kind: 'private' } : nm;
  const net = ctx.network ?? (netMode.kind === 'host' ? { kind: 'host' as const } : undefined);
  const ownNet = net?.kind === 'new' ? (namespaces.push({ type: 'network' }), true) : addNs('network', net, netMode, 'network');
  const im = ipcMode(host.IpcMode);
  const ownIpc = addNs('ipc', ctx.ipc, im, 'IPC');
  const ownUts = addNs('uts', ctx.uts, utsMode(host.UTSMode), 'UTS');
  namespaces.push({ type: 'mount' });
  const cgroupns = host.CgroupnsMode !== undefined && host.CgroupnsMode !== '' ? host.CgroupnsMode : (ctx.defaultCgroupns ?? 'private');
  if (cgroupns === 'private') namespaces.push({ type: 'cgroup' });

  // Hostname and environment.
  const hostname = (cfg.Hostname ?? '') !== '' ? (cfg.Hostname ?? '') : (!ownUts || !ownNet) ? osHostname() : ctx.id.slice(0, 12);

  // Capabilities.
  const all = ctx.allCapabilities ?? hostCapabilities();
  const caps = tweakCapabilities(DEFAULT_CAPABILITIES, host.CapAdd ?? [], host.CapDrop ?? [], privileged, all);

  // Process.
  let args = containerArgs(cfg);
  const mounts: OciMount[] = [];
  if (host.Init === true) {
    if (ctx.initPath === undefined) throw failedPrecondition('Init was requested but no init binary is configured');
    args = [INIT_PATH_IN_CONTAINER, '--', ...args];
  }
  const user = ctx.user ?? { uid: 0, gid: 0, additionalGids: [] };
  const process: NonNullable<Spec['process']> = {
    terminal: cfg.Tty === true,
    user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length > 0 ? { additionalGids: [...user.additionalGids] } : {}) },
    args,
    env: containerEnv(cfg, hostname),
    cwd: (cfg.WorkingDir ?? '') !== '' ? (cfg.WorkingDir ?? '/') : '/',
    capabilities: { bounding: [...caps], effective: [...caps], permitted: [...caps] },
    noNewPrivileges: sec.noNewPrivileges,
    oomScoreAdj: host.OomScoreAdj ?? 0,
  };
  const cs = host.ConsoleSize;
  if (cfg.Tty === true && cs !== undefined && cs[0] > 0 && cs[1] > 0) process.consoleSize = { height: cs[0], width: cs[1] };
  const rlimits: POSIXRlimit[] = (host.Ulimits ?? []).map((u) => {
    const type = ULIMIT_NAMES[u.Name ?? ''];
    if (type === undefined) throw invalid(`invalid ulimit type: ${u.Name ?? ''}`);
    const lim = (n: number | undefined): number => (n === undefined || n < 0 ? 2 ** 64 - 1 : n);
    return { type, soft: lim(u.Soft), hard: lim(u.Hard) };
  });
  if (rlimits.length > 0) process.rlimits = rlimits;

  // Mounts: Docker's defaults, minus those a user mount replaces.
  const user_ = (ctx.mounts ?? []).map((m) => ({ req: m, oci: userMount(m) }));
  const userDests = new Set(user_.map((m) => m.req.destination));
  const mountsDev = userDests.has('/dev');
  const defaults: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', ...(privileged ? [] : ['ro'])] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', ...(privileged || sec.writableCgroups === true ? [] : ['ro'])] },
  ];
  if (ownIpc) {
    defaults.push({ destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] });
  } else {
    defaults.push({ destination: '/dev/mqueue', type: 'bind', source: '/dev/mqueue', options: ['rbind', 'nosuid', 'noexec', 'nodev'] });
  }
  if (im.kind === 'host') {
    defaults.push({ destination: '/dev/shm', type: 'bind', source: '/dev/shm', options: ['rbind'] });
  } else if (im.kind !== 'none') {
    const shm = ctx.shm ?? { size: (host.ShmSize ?? 0) > 0 ? (host.ShmSize ?? 0) : DEFAULT_SHM_SIZE };
    if ('hostPath' in shm) {
      defaults.push({ destination: '/dev/shm', type: 'bind', source: shm.hostPath, options: ['rbind', 'rprivate'] });
    } else {
      defaults.push({ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${shm.size}`] });
    }
  }
  for (const m of defaults) {
    if (userDests.has(m.destination)) continue;
    if (mountsDev && m.destination.startsWith('/dev/')) continue;
    mounts.push(m);
  }
  // The network files and the user's mounts, parents before children.
  const extra: OciMount[] = [];
  const etc = (dest: string, src: string | undefined): void => {
    if (src === undefined || userDests.has(dest)) return;
    extra.push({ destination: dest, type: 'bind', source: src, options: ['rbind', 'rprivate', ...(host.ReadonlyRootfs === true ? ['ro'] : [])] });
  };
  etc('/etc/resolv.conf', ctx.resolvConfPath);
  etc('/etc/hostname', ctx.hostnamePath);
  etc('/etc/hosts', ctx.hostsPath);
  extra.push(...user_.map((m) => m.oci));
  extra.sort((a, b) => depth(a.destination) - depth(b.destination));
  mounts.push(...extra);
  if (host.Init === true && ctx.initPath !== undefined) {
    mounts.push({ destination: INIT_PATH_IN_CONTAINER, type: 'bind', source: ctx.initPath, options: ['bind', 'ro'] });
  }
  let rootfsPropagation: RootfsPropagation | undefined;
  for (const m of user_) {
    const p = m.req.propagation;
    if (p === 'shared' || p === 'rshared') rootfsPropagation = 'rshared';
    else if ((p === 'slave' || p === 'rslave') && rootfsPropagation !== 'rshared') rootfsPropagation = 'rslave';
  }

  // Devices.
  const resources = buildResources(host);
  let devices: LinuxDevice[] = [];
  if (privileged) {
    devices = [...(ctx.hostDevices ?? listHostDevices())];
    resources.devices = [{ allow: true, access: 'rwm' }];
  } else {
    const rules = defaultDeviceRules();
    for (const d of host.Devices ?? []) {
      const got = devicesFromPath(d.PathOnHost ?? '', d.PathInContainer ?? '', d.CgroupPermissions ?? '');
      devices.push(...got.devices);
      rules.push(...got.rules);
    }
    for (const raw of host.DeviceCgroupRules ?? []) {
      const r = parseDeviceCgroupRule(raw);
      const rule: LinuxDeviceCgroup = { allow: true, access: r.access };
      if (r.type !== 'a') rule.type = r.type;
      if (r.major !== undefined) rule.major = r.major;
      if (r.minor !== undefined) rule.minor = r.minor;
      rules.push(rule);
    }
    resources.devices = rules;
  }

  const linux: NonNullable<Spec['linux']> = {
    namespaces,
    resources,
    cgroupsPath: ctx.cgroupsPath ?? ((host.CgroupParent ?? '') !== '' ? posix.join(host.CgroupParent ?? '', ctx.id) : `/berth/${ctx.id}`),
  };
  if (devices.length > 0) linux.devices = devices;
  if (Object.keys(host.Sysctls ?? {}).length > 0) linux.sysctl = { ...host.Sysctls };
  if (rootfsPropagation !== undefined) linux.rootfsPropagation = rootfsPropagation;
  if (!privileged) {
    linux.maskedPaths = [...(host.MaskedPaths ?? DEFAULT_MASKED_PATHS)];
    linux.readonlyPaths = [...(host.ReadonlyPaths ?? DEFAULT_READONLY_PATHS)];
    if (sec.seccomp !== 'unconfined') {
      const profile = sec.seccomp === undefined || sec.seccomp === '' || sec.seccomp === 'builtin'
        ? DEFAULT_SECCOMP_PROFILE
        : parseDockerSeccompProfile(sec.seccomp);
      linux.seccomp = dockerProfileToOci(profile, caps, ctx.arch, ctx.kernel);
    }
  }

  const spec: Spec = {
    ociVersion: OCI_VERSION,
    process,
    root: { path: ctx.rootPath ?? 'rootfs', readonly: host.ReadonlyRootfs === true },
    mounts,
    linux,
  };
  if (ownUts) {
    spec.hostname = hostname;
    if ((cfg.Domainname ?? '') !== '') spec.domainname = cfg.Domainname ?? '';
  }
  if (host.Annotations !== undefined && Object.keys(host.Annotations).length > 0) spec.annotations = { ...host.Annotations };
  return spec;
}

// ---------------------------------------------------------------- users

const MAX_ID = 2147483647;
const MAX_FILE = 4 * 1024 * 1024;

/**
 * The host path of `inner` inside `root`, resolving symlinks as if root were
 * `/`: a link pointing out (`/`, `..`) stays inside root.
 */
export function secureJoin(root: string, inner: string): string {
  const pending = inner.split('/').filter((p) => p !== '' && p !== '.');
  const cur: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() ?? '';
    if (part === '.' || part === '') continue;
    if (part === '..') {
      cur.pop();
      continue;
    }
    const candidate = join(root, ...cur, part);
    let isLink = false;
    try {
      isLink = lstatSync(candidate).isSymbolicLink();
    } catch {
      isLink = false;
    }
    if (!isLink) {
      cur.push(part);
      continue;
    }
    if (++links > 255) throw invalid(`${inner}: too many levels of symbolic links`);
    const target = readlinkSync(candidate);
    if (target.startsWith('/')) cur.length = 0;
    pending.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
  }
  return join(root, ...cur);
}

/** A regular file inside root, read without following a final symlink; undefined when absent. */
function readInsideRoot(root: string, inner: string): string | undefined {
  const path = secureJoin(root, inner);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined;
    throw invalid(`reading ${inner} in the container's root: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    const real = readlinkSync(`/proc/self/fd/${fd}`);
    const realRoot = realpathSync(root);
    if (real !== realRoot && !real.startsWith(`${realRoot}/`)) {
      throw invalid(`${inner} in the container's root resolves outside it`);
    }
    const st = fstatSync(fd);
    if (!st.isFile()) return undefined;
    if (st.size > MAX_FILE) throw invalid(`${inner} in the container's root is too large (${st.size} bytes)`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

interface PasswdEntry { name: string; uid: number; gid: number }
interface GroupEntry { name: string; gid: number; members: string[] }

function parseId(s: string): number | undefined {
  return /^[0-9]+$/.test(s) ? Number(s) : undefined;
}

function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    const uid = parseId(f[2] ?? '');
    const gid = parseId(f[3] ?? '');
    if (uid === undefined || gid === undefined) continue;
    out.push({ name: f[0] ?? '', uid, gid });
  }
  return out;
}

function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    const gid = parseId(f[2] ?? '');
    if (gid === undefined) continue;
    out.push({ name: f[0] ?? '', gid, members: (f[3] ?? '').split(',').map((m) => m.trim()).filter(Boolean) });
  }
  return out;
}

function inRange(n: number): number {
  if (n < 0 || n > MAX_ID) throw invalid('uids and gids must be in range 0-2147483647');
  return n;
}

/**
 * The uid, gid and supplementary groups for Config.User (`name|uid[:group|gid]`,
 * empty for root) and HostConfig.GroupAdd, from the image's /etc/passwd and
 * /etc/group under rootfsPath (read without leaving it), as Docker resolves them.
 */
export function resolveUser(rootfsPath: string, user: string, groupAdd: readonly string[] = []): ResolvedUser {
  return resolveUserFromFiles(readInsideRoot(rootfsPath, '/etc/passwd'), readInsideRoot(rootfsPath, '/etc/group'), user, groupAdd);
}

/** resolveUser over the contents of passwd and group (undefined: the file is missing). */
export function resolveUserFromFiles(passwdText: string | undefined, groupText: string | undefined, user: string, groupAdd: readonly string[] = []): ResolvedUser {
  const passwd = parsePasswd(passwdText ?? '');
  const groups = parseGroup(groupText ?? '');
  const colon = user.indexOf(':');
  const userArg = colon < 0 ? user : user.slice(0, colon);
  const groupArg = colon < 0 ? '' : user.slice(colon + 1);
  const uidArg = parseId(userArg);
  let uid = 0;
  let gid = 0;
  let matched = '';
  const pw = passwd.find((p) => (userArg === '' ? p.uid === 0 : uidArg !== undefined ? p.uid === uidArg : p.name === userArg));
  if (pw) {
    matched = pw.name;
    uid = pw.uid;
    gid = pw.gid;
  } else if (userArg !== '') {
    if (uidArg === undefined) throw invalid(`unable to find user ${userArg}: no matching entries in passwd file`);
    uid = inRange(uidArg);
  }
  const sgids: number[] = [];
  if (groupArg !== '') {
    const gidArg = parseId(groupArg);
    const g = groups.find((e) => (gidArg !== undefined ? e.gid === gidArg : e.name === groupArg));
    if (g) gid = g.gid;
    else if (gidArg !== undefined) gid = inRange(gidArg);
    else throw invalid(`unable to find group ${groupArg}: no matching entries in group file`);
  } else if (matched !== '') {
    for (const g of groups) if (g.members.includes(matched)) sgids.push(g.gid);
  }
  for (const ag of groupAdd) {
    const g = groups.find((e) => e.name === ag || String(e.gid) === ag);
    if (g) {
      sgids.push(g.gid);
      continue;
    }
    const n = parseId(ag);
    if (n === undefined) throw invalid(`Unable to find group ${ag}: no matching entries in group file`);
    sgids.push(inRange(n));
  }
  return { uid, gid, additionalGids: [...new Set(sgids)] };
}
