/**
 * config.json -> executor plan (native/executor/PLAN.md). Pure apart from
 * looking at the host's files through `HostFs` (bind sources, /proc/kcore),
 * which tests replace. Every choice is made here; the executor decides
 * nothing.
 */
import { statSync } from 'node:fs';
import { posix, resolve } from 'node:path';
import { failedPrecondition, invalid, notFound, notImplemented } from '@berth/base';
import type {
  Hook, LinuxNamespace, LinuxNamespaceType, LinuxSeccomp, Mount, Process, Spec, State,
} from '@berth/spec';
import { capMask } from './caps.js';
import { cgroupMountRecords } from './cgroupmounts.js';
import type { CgroupMountInfo } from './cgroupmounts.js';
import { defaultSymlinks, deviceRecords } from './devices.js';
import { MS, parseMountOptions, rootfsPropagationFlags } from './mountopts.js';
import { rlimitNumber, rlimitValue } from './rlimits.js';
import { seccompRecords } from './seccomp.js';
import type { CapSet, NamespaceType, Plan, PlanRecord } from './types.js';

/** What the planner may look at on the host. */
export interface HostFs {
  kind(path: string): 'file' | 'dir' | 'missing';
}

export const hostFs: HostFs = {
  kind(path) {
    const st = statSync(path, { throwIfNoEntry: false });
    if (st === undefined) return 'missing';
    return st.isDirectory() ? 'dir' : 'file';
  },
};

export interface CreateContext {
  /** Absolute bundle directory; a relative root.path and bind sources resolve against it. */
  bundle: string;
  containerId: string;
  /** The exec fifo that `start` opens; absent: the process starts as soon as it is ready. */
  execFifo?: string | undefined;
  consoleSocket?: string | undefined;
  /** No socket: the executor relays its own stdio to the pty (foreground `run`). */
  consoleRelay?: boolean | undefined;
  noPivot?: boolean | undefined;
  noNewKeyring?: boolean | undefined;
  preserveFds?: number | undefined;
  /** cgroup.procs files the executor joins before cloning. */
  cgroupProcsFiles?: string[] | undefined;
  /** The host's cgroup layout, for `cgroup` mounts. */
  cgroupMounts?: CgroupMountInfo | undefined;
  /**
   * The device allowlist as a BPF_PROG_TYPE_CGROUP_DEVICE program (from
   * @berth/cgroups deviceFilterProgram) for the executor to attach to the
   * container's cgroup2 directory; absent on cgroup v1, where the devices
   * controller enforces the list.
   */
  deviceFilter?: { cgroupDir: string; program: Buffer } | undefined;
  /** The executor stays and exits with the process's status. */
  wait?: boolean | undefined;
  /** The OCI state given to createContainer/startContainer hooks; built from the config if absent. */
  hookState?: State | string | undefined;
  apparmorEnabled?: boolean | undefined;
  selinuxEnabled?: boolean | undefined;
  /** Running without root on the host: setgroups is denied in the new user namespace. */
  rootless?: boolean | undefined;
  fs?: HostFs | undefined;
}

export interface ExecContext {
  /** The container's init pid on the host. */
  containerPid: number;
  /** The namespace types the container has (all are joined through /proc/<pid>/ns). */
  namespaces: LinuxNamespaceType[];
  /** The container's config: its seccomp profile applies to the new process too. */
  config?: Spec | undefined;
  /** For the session keyring's name; no new keyring without it. */
  containerId?: string | undefined;
  cgroupProcsFiles?: string[] | undefined;
  consoleSocket?: string | undefined;
  consoleRelay?: boolean | undefined;
  preserveFds?: number | undefined;
  /** The executor stays until the process exits and relays its status (not `--detach`). */
  wait?: boolean | undefined;
  /** `exec --cap`: added to the bounding, effective and permitted sets (and ambient when inheritable is set). */
  extraCaps?: string[] | undefined;
  /** `exec --no-new-privs`: overrides process.noNewPrivileges when set. */
  noNewPrivileges?: boolean | undefined;
  /** `exec --user`: overrides process.user. */
  user?: { uid: number; gid: number; additionalGids?: number[] } | undefined;
  noNewKeyring?: boolean | undefined;
  apparmorEnabled?: boolean | undefined;
  selinuxEnabled?: boolean | undefined;
}

const NS_NAMES: Record<LinuxNamespaceType, NamespaceType> = {
  user: 'user', pid: 'pid', network: 'net', ipc: 'ipc', uts: 'uts', cgroup: 'cgroup', time: 'time', mount: 'mnt',
};
/** User first (it grants the rights to join the others), mount last. */
const NS_ORDER: LinuxNamespaceType[] = ['user', 'pid', 'network', 'ipc', 'uts', 'cgroup', 'time', 'mount'];
const CAP_SETS: CapSet[] = ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'];
const PERSONALITY = { LINUX: 0, LINUX32: 8 } as const;
const DEFAULT_UMASK = 0o022;

export function keyringName(containerId: string): string {
  return `_ses.${containerId}`;
}

// ---------------------------------------------------------------- create

export function planCreate(spec: Spec, ctx: CreateContext): Plan {
  const fs = ctx.fs ?? hostFs;
  const linux = spec.linux ?? {};
  const proc = spec.process;
  if (proc === undefined) throw invalid('process: required to create a container');
  if (spec.root === undefined) throw invalid('root: required to create a container');
  if (!posix.isAbsolute(ctx.bundle)) throw invalid(`bundle: ${JSON.stringify(ctx.bundle)} is not an absolute path`);

  refuseUnsupported(spec);
  const plan: Plan = [{ tag: 'version', version: 1 }];
  for (const file of ctx.cgroupProcsFiles ?? []) plan.push({ tag: 'cgroup_join', file });
  if (ctx.deviceFilter !== undefined) plan.push(deviceFilterRecord(ctx.deviceFilter));

  // Namespaces.
  const ns = namespaceMap(linux.namespaces ?? []);
  const listed = (t: LinuxNamespaceType): boolean => ns.has(t);
  const isNew = (t: LinuxNamespaceType): boolean => ns.has(t) && (ns.get(t) ?? '') === '';
  if (!listed('mount')) throw invalid('linux.namespaces: a container needs a new mount namespace');
  if (!isNew('mount')) throw notImplemented('linux.namespaces: joining an existing mount namespace is not supported');
  for (const t of NS_ORDER) {
    const path = ns.get(t);
    if (path !== undefined) plan.push({ tag: 'ns', type: NS_NAMES[t], path });
  }

  const uidMaps = linux.uidMappings ?? [];
  const gidMaps = linux.gidMappings ?? [];
  if (isNew('user')) {
    if (uidMaps.length === 0) throw invalid('linux.uidMappings: required when a new user namespace is created');
    if (gidMaps.length === 0) throw invalid('linux.gidMappings: required when a new user namespace is created');
    for (const m of uidMaps) plan.push({ tag: 'uidmap', container: m.containerID, host: m.hostID, size: m.size });
    if (ctx.rootless) plan.push({ tag: 'setgroups', value: 'deny' });
    for (const m of gidMaps) plan.push({ tag: 'gidmap', container: m.containerID, host: m.hostID, size: m.size });
  } else if (!listed('user') && (uidMaps.length > 0 || gidMaps.length > 0)) {
    throw invalid('linux.uidMappings: user namespace mappings are given, but there is no user namespace');
  }
  if (linux.timeOffsets !== undefined) {
    if (!isNew('time')) throw invalid('linux.timeOffsets: time offsets need a new time namespace');
    throw notImplemented('linux.timeOffsets: time namespace offsets are not supported yet');
  }

  if (!ctx.noNewKeyring) plan.push({ tag: 'keyring', name: keyringName(ctx.containerId) });

  if (spec.hostname !== undefined && spec.hostname !== '') {
    if (!isNew('uts')) throw invalid('hostname: unable to set hostname without a new UTS namespace');
    plan.push({ tag: 'hostname', name: spec.hostname });
  }
  if (spec.domainname !== undefined && spec.domainname !== '') {
    if (!isNew('uts')) throw invalid('domainname: unable to set domainname without a new UTS namespace');
    plan.push({ tag: 'domainname', name: spec.domainname });
  }

  // Root filesystem and mounts.
  plan.push({ tag: 'rootfs', path: resolve(ctx.bundle, spec.root.path) });
  plan.push({ tag: 'rootfs_propagation', flags: rootfsPropagationFlags(linux.rootfsPropagation) });
  let devIsBound = false;
  const mountLabel = ctx.selinuxEnabled && linux.mountLabel ? linux.mountLabel : undefined;
  (spec.mounts ?? []).forEach((m, i) => {
    const recs = mountRecords(m, `mounts[${i}]`, ctx, fs, listed('cgroup'), mountLabel);
    for (const r of recs) {
      if (r.tag === 'mount' && r.target === '/dev' && r.flags & MS.BIND) devIsBound = true;
    }
    plan.push(...recs);
  });

  // Devices: when /dev is a bind mount it comes complete from the host.
  if (!devIsBound) {
    plan.push(...deviceRecords(linux.devices ?? [], listed('user') || ctx.rootless === true));
    plan.push(...defaultSymlinks(fs.kind('/proc/kcore') !== 'missing'));
  }

  // Hooks: createRuntime and prestart run in the runtime; the executor stops for them. It
  // also stops when it runs hooks itself, to get the state with the container's host pid.
  const hooks = spec.hooks ?? {};
  const hookCount = (hooks.createRuntime?.length ?? 0) + (hooks.prestart?.length ?? 0) +
    (hooks.createContainer?.length ?? 0) + (hooks.startContainer?.length ?? 0);
  if (hookCount > 0) {
    plan.push({ tag: 'hook_sync', event: 'createRuntime' });
  }
  const hookRecs = [
    ...hookRecords(hooks.createContainer ?? [], 'createContainer'),
    ...hookRecords(hooks.startContainer ?? [], 'startContainer'),
  ];
  if (hookRecs.length > 0) {
    plan.push({ tag: 'state', json: stateJson(spec, ctx) });
    plan.push(...hookRecs);
  }

  if (ctx.noPivot) plan.push({ tag: 'no_pivot' });
  for (const p of linux.maskedPaths ?? []) plan.push({ tag: 'mask', path: absolutePath(p, 'linux.maskedPaths') });
  for (const p of linux.readonlyPaths ?? []) plan.push({ tag: 'readonly', path: absolutePath(p, 'linux.readonlyPaths') });
  if (spec.root.readonly) plan.push({ tag: 'rootfs_readonly' });

  for (const [key, value] of Object.entries(linux.sysctl ?? {})) {
    checkSysctl(key, listed);
    plan.push({ tag: 'sysctl', key, value });
  }

  if (linux.personality !== undefined) {
    if ((linux.personality.flags ?? []).length > 0) {
      throw notImplemented('linux.personality.flags: personality flags are not supported');
    }
    plan.push({ tag: 'personality', domain: PERSONALITY[linux.personality.domain] });
  }

  plan.push(...processRecords(proc, {
    consoleSocket: ctx.consoleSocket,
    consoleRelay: ctx.consoleRelay,
    seccomp: linux.seccomp,
    apparmorEnabled: ctx.apparmorEnabled,
    selinuxEnabled: ctx.selinuxEnabled,
    noNewPrivileges: undefined,
    user: undefined,
    extraCaps: undefined,
  }));

  if (ctx.execFifo !== undefined) plan.push({ tag: 'exec_fifo', path: ctx.execFifo });
  if (ctx.preserveFds) plan.push({ tag: 'preserve_fds', n: ctx.preserveFds });
  if (ctx.wait) plan.push({ tag: 'wait' });
  return plan;
}

/**
 * Settings berth-runc cannot honour yet. A runtime that quietly ran a
 * container without them would lie about its isolation or scheduling, so
 * they are refused by name.
 */
function refuseUnsupported(spec: Spec): void {
  const linux = spec.linux ?? {};
  const refuse = (field: string, present: unknown): void => {
    if (present !== undefined && present !== null) throw notImplemented(`${field}: not supported by berth-runc yet`);
  };
  refuse('process.scheduler', spec.process?.scheduler);
  refuse('process.ioPriority', spec.process?.ioPriority);
  refuse('process.execCPUAffinity', spec.process?.execCPUAffinity);
  refuse('linux.memoryPolicy', linux.memoryPolicy);
  refuse('linux.intelRdt', linux.intelRdt);
  if (linux.netDevices !== undefined && Object.keys(linux.netDevices).length > 0) refuse('linux.netDevices', linux.netDevices);
}

function namespaceMap(list: readonly LinuxNamespace[]): Map<LinuxNamespaceType, string> {
  const ns = new Map<LinuxNamespaceType, string>();
  list.forEach((n, i) => {
    if (ns.has(n.type)) throw invalid(`linux.namespaces[${i}].type: namespace type ${JSON.stringify(n.type)} listed twice`);
    const path = n.path ?? '';
    if (path !== '' && !posix.isAbsolute(path)) {
      throw invalid(`linux.namespaces[${i}].path: ${JSON.stringify(path)} is not an absolute path`);
    }
    ns.set(n.type, path);
  });
  return ns;
}

function absolutePath(p: string, where: string): string {
  if (!posix.isAbsolute(p)) throw invalid(`${where}: ${JSON.stringify(p)} is not an absolute path`);
  return posix.normalize(p);
}

/** Filesystems that take no SELinux `context=` option. */
const NO_LABEL_FS = new Set(['proc', 'sysfs', 'cgroup', 'cgroup2', 'mqueue', 'bind']);

function mountRecords(
  m: Mount,
  where: string,
  ctx: CreateContext,
  fs: HostFs,
  cgroupns: boolean,
  mountLabel: string | undefined,
): PlanRecord[] {
  if ((m.uidMappings?.length ?? 0) > 0 || (m.gidMappings?.length ?? 0) > 0) {
    throw notImplemented(`${where}: id-mapped mounts are not supported yet`);
  }
  // A relative destination is taken from / (runc does the same, with a warning).
  const target = posix.normalize(posix.isAbsolute(m.destination) ? m.destination : `/${m.destination}`);
  const opts = parseMountOptions(m.options ?? [], where);
  const fstype = m.type ?? '';
  const bind = (opts.flags & MS.BIND) !== 0 || fstype === 'bind';
  if (fstype === 'cgroup' && !bind) {
    return cgroupMountRecords(target, opts.flags, ctx.cgroupMounts, cgroupns, where);
  }
  if (bind) {
    if (m.source === undefined || m.source === '') throw invalid(`${where}.source: required for a bind mount`);
    const source = resolve(ctx.bundle, m.source);
    const kind = fs.kind(source);
    if (kind === 'missing') throw notFound(`${where}.source: bind source ${source} does not exist`);
    return [{
      tag: 'mount', source, target, fstype: fstype === '' ? 'bind' : fstype, flags: opts.flags | MS.BIND,
      data: opts.data, mkdir: kind === 'dir' ? 'dir' : 'file', propagation: opts.propagation,
    }];
  }
  let data = opts.data;
  if (mountLabel !== undefined && !NO_LABEL_FS.has(fstype)) {
    data = [data, `context="${mountLabel}"`].filter((s) => s !== '').join(',');
  }
  return [{
    tag: 'mount', source: m.source ?? fstype, target, fstype, flags: opts.flags, data, mkdir: 'dir',
    propagation: opts.propagation,
  }];
}

function hookRecords(hooks: readonly Hook[], event: 'createContainer' | 'startContainer'): PlanRecord[] {
  return hooks.map((h, i) => {
    if (!posix.isAbsolute(h.path)) throw invalid(`hooks.${event}[${i}].path: ${JSON.stringify(h.path)} is not an absolute path`);
    const args = h.args !== undefined && h.args.length > 0 ? h.args : [h.path];
    return { tag: 'hook', event, path: h.path, timeout: h.timeout ?? 0, args, env: h.env ?? [] };
  });
}

function stateJson(spec: Spec, ctx: CreateContext): string {
  if (typeof ctx.hookState === 'string') return ctx.hookState;
  const state: State = ctx.hookState ?? {
    ociVersion: spec.ociVersion,
    id: ctx.containerId,
    status: 'creating',
    bundle: ctx.bundle,
    ...(spec.annotations !== undefined ? { annotations: spec.annotations } : {}),
  };
  return JSON.stringify(state);
}

const IPC_SYSCTLS = new Set([
  'kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'kernel.shmall', 'kernel.shmmax',
  'kernel.shmmni', 'kernel.shm_rmid_forced',
]);

/** A sysctl must belong to a namespace the container has, or it would change the host. */
function checkSysctl(key: string, listed: (t: LinuxNamespaceType) => boolean): void {
  const where = `linux.sysctl[${JSON.stringify(key)}]`;
  // The executor writes /proc/sys/<key with . as />: no empty or dot-dot components.
  if (key.split(/[./]/).some((part) => part === '' || part === '..')) {
    throw invalid(`${where}: not a sysctl name`);
  }
  const need: [boolean, LinuxNamespaceType] | undefined =
    IPC_SYSCTLS.has(key) || key.startsWith('fs.mqueue.') ? [true, 'ipc']
      : key.startsWith('net.') ? [true, 'network']
        : key === 'kernel.hostname' || key === 'kernel.domainname' ? [true, 'uts']
          : undefined;
  if (need === undefined) throw invalid(`${where}: sysctl is not in a separate kernel namespace`);
  if (!listed(need[1])) throw invalid(`${where}: sysctl needs a ${need[1]} namespace`);
}

// ---------------------------------------------------------------- process (create and exec)

interface ProcessOptions {
  consoleSocket: string | undefined;
  consoleRelay: boolean | undefined;
  seccomp: LinuxSeccomp | undefined;
  apparmorEnabled: boolean | undefined;
  selinuxEnabled: boolean | undefined;
  noNewPrivileges: boolean | undefined;
  user: { uid: number; gid: number; additionalGids?: number[] } | undefined;
  extraCaps: string[] | undefined;
}

function processRecords(p: Process, o: ProcessOptions): PlanRecord[] {
  const out: PlanRecord[] = [];
  const args = p.args ?? [];
  if (args.length === 0) throw invalid('process.args: must not be empty');
  if (args[0] === '') throw invalid('process.args[0]: must not be empty');
  if (!posix.isAbsolute(p.cwd)) throw invalid(`process.cwd: ${JSON.stringify(p.cwd)} is not an absolute path`);
  (p.env ?? []).forEach((e, i) => {
    if (e.indexOf('=') <= 0) throw invalid(`process.env[${i}]: ${JSON.stringify(e)} is not KEY=VALUE`);
  });

  // Console.
  if (p.terminal) {
    if (o.consoleSocket !== undefined && o.consoleRelay) {
      throw invalid('console: both a console socket and a console relay were given');
    }
    if (o.consoleSocket !== undefined) out.push({ tag: 'console_socket', path: o.consoleSocket });
    else if (o.consoleRelay) out.push({ tag: 'console_relay' });
    else throw invalid('process.terminal: a terminal needs a console socket (--console-socket) or a foreground run');
    if (p.consoleSize !== undefined) {
      out.push({ tag: 'console_size', rows: p.consoleSize.height, cols: p.consoleSize.width });
    }
  } else if (o.consoleSocket !== undefined) {
    throw invalid('--console-socket: cannot use a console socket when process.terminal is false');
  }

  // Limits.
  const seen = new Set<string>();
  (p.rlimits ?? []).forEach((r, i) => {
    const where = `process.rlimits[${i}]`;
    if (seen.has(r.type)) throw invalid(`${where}.type: ${r.type} is listed twice`);
    seen.add(r.type);
    const soft = rlimitValue(r.soft);
    const hard = rlimitValue(r.hard);
    if (soft > hard) throw invalid(`${where}: soft limit ${soft} is above hard limit ${hard}`);
    out.push({ tag: 'rlimit', resource: rlimitNumber(r.type, `${where}.type`), soft, hard });
  });
  if (p.oomScoreAdj !== undefined) out.push({ tag: 'oom_score_adj', value: p.oomScoreAdj });
  out.push({ tag: 'umask', mode: p.user.umask ?? DEFAULT_UMASK });

  // LSMs.
  const profile = p.apparmorProfile ?? '';
  if (profile !== '') {
    if (o.apparmorEnabled) out.push({ tag: 'apparmor', profile });
    else if (profile !== 'unconfined') {
      throw failedPrecondition(`process.apparmorProfile: profile ${JSON.stringify(profile)} is set, but AppArmor is not enabled on this host`);
    }
  }
  if (p.selinuxLabel !== undefined && p.selinuxLabel !== '' && o.selinuxEnabled) {
    out.push({ tag: 'selinux_label', label: p.selinuxLabel });
  }

  // Seccomp, loaded late (just before execve) when no_new_privs lets an unprivileged process load it.
  const nnp = o.noNewPrivileges ?? p.noNewPrivileges ?? false;
  if (o.seccomp !== undefined) {
    out.push(...seccompRecords(o.seccomp));
    if (nnp) out.push({ tag: 'seccomp_late' });
  }

  // Credentials.
  const user = o.user ?? p.user;
  out.push({ tag: 'user', uid: user.uid, gid: user.gid });
  const gids = user.additionalGids ?? [];
  if (gids.length > 0) out.push({ tag: 'additional_gids', gids: [...gids] });
  const caps = p.capabilities;
  const extra = o.extraCaps ?? [];
  if (caps !== undefined || extra.length > 0) {
    const c = caps ?? {};
    for (const set of CAP_SETS) {
      let mask = capMask(c[set] ?? [], `process.capabilities.${set}`);
      const addExtra = set === 'ambient' ? c.inheritable !== undefined : set !== 'inheritable';
      if (addExtra) mask |= capMask(extra, '--cap');
      out.push({ tag: 'caps', set, mask });
    }
  }
  if (nnp) out.push({ tag: 'no_new_privs' });

  out.push({ tag: 'cwd', path: p.cwd });
  for (const value of p.env ?? []) out.push({ tag: 'env', value });
  out.push({ tag: 'args', args: [...args] });
  return out;
}

function deviceFilterRecord(f: { cgroupDir: string; program: Buffer }): PlanRecord {
  if (!posix.isAbsolute(f.cgroupDir)) throw invalid(`device filter: cgroup directory ${JSON.stringify(f.cgroupDir)} is not an absolute path`);
  if (f.program.length === 0 || f.program.length % 8 !== 0) {
    throw invalid(`device filter: a program of ${f.program.length} bytes is not a whole number of 8-byte instructions`);
  }
  return { tag: 'device_filter', dir: f.cgroupDir, program: f.program.toString('hex') };
}

// ---------------------------------------------------------------- exec

/** The plan for a process that joins a running container (`exec`). */
export function planExec(process: Process, ctx: ExecContext): Plan {
  const pid = ctx.containerPid;
  if (!Number.isInteger(pid) || pid <= 0) throw invalid(`container pid: ${pid} is not a process id`);
  const plan: Plan = [{ tag: 'version', version: 1 }];
  for (const file of ctx.cgroupProcsFiles ?? []) plan.push({ tag: 'cgroup_join', file });
  const types = new Set(ctx.namespaces);
  for (const t of NS_ORDER) {
    if (types.has(t)) plan.push({ tag: 'ns', type: NS_NAMES[t], path: `/proc/${pid}/ns/${NS_NAMES[t]}` });
  }
  if (ctx.containerId !== undefined && !ctx.noNewKeyring) {
    plan.push({ tag: 'keyring', name: keyringName(ctx.containerId) });
  }
  plan.push(...processRecords(process, {
    consoleSocket: ctx.consoleSocket,
    consoleRelay: ctx.consoleRelay,
    seccomp: ctx.config?.linux?.seccomp,
    apparmorEnabled: ctx.apparmorEnabled,
    selinuxEnabled: ctx.selinuxEnabled,
    noNewPrivileges: ctx.noNewPrivileges,
    user: ctx.user,
    extraCaps: ctx.extraCaps,
  }));
  if (ctx.preserveFds) plan.push({ tag: 'preserve_fds', n: ctx.preserveFds });
  if (ctx.wait) plan.push({ tag: 'wait' });
  return plan;
}
