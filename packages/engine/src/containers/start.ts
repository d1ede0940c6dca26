/**
 * What a start needs before the task is created: the container's files
 * (/etc/hostname, /etc/hosts, /etc/resolv.conf), its mounts resolved to host
 * paths (volumes created on first use), the namespaces it joins, its user
 * from the image's passwd and group files, and the OCI spec from all that.
 * Also the process spec of an exec.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { failedPrecondition, invalid } from '@berth/base';
import type { Spec } from '@berth/spec';
import { hostCapabilities } from './caps.js';
import { networkMode, ipcMode, pidMode, utsMode } from './config.js';
import type { NamespaceMode } from './config.js';
import { buildHostnameFile, buildHostsFile, buildResolvConf } from './etcfiles.js';
import { parseMounts } from './mounts.js';
import type { MountRequest } from './mounts.js';
import type { ContainerRecord, MountPoint } from './record.js';
import type { NetworkAttachment, VolumeHooks } from './hooks.js';
import type { RootfsMount } from './layered.js';
import { buildSpec, containerEnv, resolveUserFromFiles } from './spec.js';
import type { NamespaceJoin, NetworkNamespace, ResolvedMount, ResolvedUser } from './spec.js';

const HERE = dirname(fileURLToPath(import.meta.url));

/** The init binary for `--init` (native/out/berth-init, built with the rest). */
export function initBinary(): string {
  return process.env['BERTH_INIT'] ?? join(HERE, '..', '..', '..', '..', 'native', 'out', 'berth-init');
}

export interface StartContext {
  readonly dataRoot: string;
  readonly containerDir: string;
  /** A file of the container's rootfs (before it is mounted). */
  readonly readFile: (path: string) => string | undefined;
  readonly lookupContainer: (ref: string) => ContainerRecord;
  /** What the network setup gave (a namespace to join, addresses, DNS). */
  readonly network?: NetworkAttachment;
  /** The rootfs snapshot's mounts (for a volume's copy-up from the image). */
  readonly mounts?: readonly RootfsMount[];
  /** Volume storage; absent: plain directories under <data-root>/volumes. */
  readonly volumes?: VolumeHooks;
}

function userOf(readFile: (p: string) => string | undefined, user: string, groupAdd: readonly string[]): ResolvedUser {
  return resolveUserFromFiles(readFile('/etc/passwd'), readFile('/etc/group'), user, groupAdd);
}

/** /proc/<pid>/ns/<kind> of another running container. */
function joinContainer(ctx: StartContext, ref: string, kind: 'net' | 'ipc' | 'pid' | 'uts', what: string): NamespaceJoin {
  const other = ctx.lookupContainer(ref);
  if (!other.State.Running || other.State.Pid <= 0) {
    throw failedPrecondition(`cannot join ${what} of a non running container: ${ref}`);
  }
  return { kind: 'path', path: `/proc/${other.State.Pid}/ns/${kind}` };
}

function nsJoin(ctx: StartContext, mode: NamespaceMode, kind: 'ipc' | 'pid' | 'uts', what: string): NamespaceJoin | undefined {
  if (mode.kind === 'host') return { kind: 'host' };
  if (mode.kind === 'container') return joinContainer(ctx, mode.ref, kind, what);
  return undefined;
}

/** A volume's data directory, made on first use. */
function volumeDir(dataRoot: string, name: string): string {
  const dir = join(dataRoot, 'volumes', name, '_data');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  return dir;
}

export async function prepareStart(c: ContainerRecord, ctx: StartContext): Promise<{ spec: Spec; mountPoints: MountPoint[] }> {
  const cfg = c.Config;
  const host = c.HostConfig;
  mkdirSync(ctx.containerDir, { recursive: true, mode: 0o710 });

  const net = networkMode(host.NetworkMode);
  let network: NetworkNamespace;
  if (net.kind === 'host') network = { kind: 'host' };
  else if (net.kind === 'container') network = joinContainer(ctx, net.ref, 'net', 'network namespace');
  else if (ctx.network?.netnsPath !== undefined) network = { kind: 'path', path: ctx.network.netnsPath };
  else network = { kind: 'new' };

  const hostname = cfg.Hostname ?? c.Id.slice(0, 12);
  if (net.kind === 'container') {
    // The files of the container whose network is shared.
    const other = ctx.lookupContainer(net.ref);
    c.HostsPath = other.HostsPath;
    c.ResolvConfPath = other.ResolvConfPath;
  } else if (net.kind === 'host') {
    writeFileSync(c.HostsPath, readHost('/etc/hosts') + extraHostLines(host.ExtraHosts ?? []), { mode: 0o644 });
    writeFileSync(c.ResolvConfPath, buildResolvConf(readHost('/etc/resolv.conf'), resolvOpts(c, true)), { mode: 0o644 });
  } else {
    if (!existsSync(c.HostsPath) || c.berth.everStarted === false) {
      writeFileSync(c.HostsPath, buildHostsFile({
        hostname, ...(cfg.Domainname !== undefined ? { domainname: cfg.Domainname } : {}), extraHosts: host.ExtraHosts ?? [],
        addresses: ctx.network?.addresses ?? [],
        ...(ctx.network?.hostGateway !== undefined ? { hostGateway: ctx.network.hostGateway } : {}),
      }), { mode: 0o644 });
    }
    // An embedded DNS server stands in for the host's nameservers; the user's --dns still wins.
    const hostResolv = ctx.network?.dns !== undefined && ctx.network.dns.length > 0
      ? ctx.network.dns.map((ns) => `nameserver ${ns}`).join('\n') + '\n' + readHost('/etc/resolv.conf').split('\n').filter((l) => !/^\s*nameserver\s/.test(l)).join('\n')
      : readHost('/etc/resolv.conf');
    writeFileSync(c.ResolvConfPath, buildResolvConf(hostResolv, { ...resolvOpts(c, false), hostNetwork: ctx.network?.dns !== undefined && ctx.network.dns.length > 0 }), { mode: 0o644 });
  }
  writeFileSync(c.HostnamePath, buildHostnameFile(hostname), { mode: 0o644 });

  const own = parseMounts(cfg, host);
  const requests: { m: MountRequest; owner?: ContainerRecord }[] = [
    ...volumesFrom(ctx, c, host.VolumesFrom ?? [], new Set(own.map((m) => m.destination))), ...own.map((m) => ({ m })),
  ];
  const mounts: ResolvedMount[] = [];
  const points: MountPoint[] = [];
  for (const { m, owner } of requests) {
    let hostPath = m.source;
    let name = m.volumeName;
    if (m.type === 'volume' && ctx.volumes !== undefined) {
      const v = await ctx.volumes.resolve(c, m, { ...(ctx.mounts !== undefined ? { rootfs: ctx.mounts } : {}), ...(owner !== undefined ? { owner } : {}) });
      name = v.name;
      hostPath = v.hostPath;
    } else if (m.type === 'volume' && name !== undefined && name !== '' && owner !== undefined && m.source.startsWith('/')) {
      hostPath = m.source;
    } else if (m.type === 'volume') {
      name = name !== undefined && name !== '' ? name : anonymousVolume(c, m);
      hostPath = volumeDir(ctx.dataRoot, name);
      if (m.subpath !== undefined && m.subpath !== '') hostPath = join(hostPath, m.subpath);
    } else if (m.type === 'bind' && m.createSource === true && !existsSync(hostPath)) {
      mkdirSync(hostPath, { recursive: true, mode: 0o755 });
    }
    mounts.push({ ...m, hostPath });
    points.push({
      Type: m.type,
      ...(m.type === 'volume' ? { Name: name ?? '', Driver: 'local' } : {}),
      Source: m.type === 'tmpfs' ? '' : hostPath,
      Destination: m.destination,
      Mode: m.mode,
      RW: !m.readOnly,
      Propagation: m.type === 'bind' ? (m.propagation || 'rprivate') : '',
    });
  }

  const ipc = nsJoin(ctx, ipcMode(host.IpcMode), 'ipc', 'IPC namespace');
  const pid = nsJoin(ctx, pidMode(host.PidMode), 'pid', 'PID namespace');
  const uts = nsJoin(ctx, utsMode(host.UTSMode), 'uts', 'UTS namespace');
  const user = userOf(ctx.readFile, cfg.User ?? '', host.GroupAdd ?? []);
  const spec = buildSpec(cfg, host, {
    id: c.Id, rootPath: 'rootfs',
    hostnamePath: c.HostnamePath, hostsPath: c.HostsPath, resolvConfPath: c.ResolvConfPath,
    network, ...(ipc !== undefined ? { ipc } : {}), ...(pid !== undefined ? { pid } : {}), ...(uts !== undefined ? { uts } : {}),
    mounts, user, ...(host.Init === true ? { initPath: initBinary() } : {}),
  });
  return { spec, mountPoints: points };
}

/**
 * The mounts --volumes-from takes from other containers (`name[:ro|:rw]`): their
 * volumes and binds as they last started, or as their config asks when they never
 * did; `ro` makes them read-only, `rw` keeps each one's own mode. Destinations the
 * container mounts itself win.
 */
function volumesFrom(ctx: StartContext, c: ContainerRecord, specs: readonly string[], taken: Set<string>): { m: MountRequest; owner?: ContainerRecord }[] {
  const out: { m: MountRequest; owner?: ContainerRecord }[] = [];
  for (const spec of specs) {
    const i = spec.lastIndexOf(':');
    const ref = i < 0 ? spec : spec.slice(0, i);
    const mode = i < 0 ? '' : spec.slice(i + 1);
    if (mode !== '' && mode !== 'ro' && mode !== 'rw') throw invalid(`invalid mode: ${mode}`);
    const other = ctx.lookupContainer(ref);
    if (other.Id === c.Id) continue;
    const take = (m: MountRequest, owner?: ContainerRecord): void => {
      if (taken.has(m.destination)) return;
      taken.add(m.destination);
      const readOnly = mode === 'ro' ? true : m.readOnly;
      out.push({ m: { ...m, readOnly, mode: mode === '' ? m.mode : mode }, ...(owner !== undefined ? { owner } : {}) });
    };
    if (other.Mounts.length > 0 || other.berth.everStarted) {
      for (const p of other.Mounts) {
        if (p.Type === 'tmpfs') continue;
        const named = p.Type === 'volume' && ctx.volumes !== undefined;
        take({
          type: p.Type, source: named ? (p.Name ?? '') : p.Source, destination: p.Destination, readOnly: !p.RW,
          options: ['rbind'], propagation: p.Type === 'bind' ? p.Propagation : '', mode: p.Mode,
          ...(p.Type === 'volume' ? { volumeName: p.Name ?? '', noCopy: true } : {}),
        }, p.Type === 'volume' ? other : undefined);
      }
      continue;
    }
    for (const m of parseMounts(other.Config, other.HostConfig)) {
      if (m.type !== 'tmpfs') take(m, other);
    }
  }
  return out;
}

function anonymousVolume(c: ContainerRecord, m: MountRequest): string {
  // Stable across restarts: the same destination keeps its volume.
  const key = `anon:${m.destination}`;
  const known = c.berth.anonymousVolumes.find((v) => v.startsWith(`${key}=`));
  if (known !== undefined) return known.slice(key.length + 1);
  const name = randomBytes(32).toString('hex');
  c.berth.anonymousVolumes.push(`${key}=${name}`);
  return name;
}

function readHost(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function extraHostLines(extra: readonly string[]): string {
  return extra.map((e) => {
    const i = e.search(/[:=]/);
    return i < 0 ? '' : `${e.slice(i + 1)}\t${e.slice(0, i)}\n`;
  }).join('');
}

function resolvOpts(c: ContainerRecord, hostNetwork: boolean) {
  const h = c.HostConfig;
  return {
    hostNetwork,
    ...(h.Dns !== undefined && h.Dns.length > 0 ? { dns: h.Dns } : {}),
    ...(h.DnsSearch !== undefined && h.DnsSearch.length > 0 ? { dnsSearch: h.DnsSearch } : {}),
    ...(h.DnsOptions !== undefined && h.DnsOptions.length > 0 ? { dnsOptions: h.DnsOptions } : {}),
  };
}

export interface ExecOptions {
  readonly user: string;
  readonly env: readonly string[];
  readonly workingDir: string;
  readonly tty: boolean;
  readonly privileged: boolean;
  readonly args: readonly string[];
  readonly readFile: (path: string) => string | undefined;
}

/** The OCI process of an exec: the container's, with the exec's args, user, env and cwd. */
export function execProcess(c: ContainerRecord, spec: Spec, o: ExecOptions): NonNullable<Spec['process']> {
  const base = spec.process;
  if (base === undefined) throw failedPrecondition(`container ${c.Id} has no process in its spec`);
  const userStr = o.user !== '' ? o.user : (c.Config.User ?? '');
  const u = userOf(o.readFile, userStr, c.HostConfig.GroupAdd ?? []);
  const env = new Map<string, string>();
  for (const e of containerEnv(c.Config, c.Config.Hostname ?? c.Id.slice(0, 12))) {
    const i = e.indexOf('=');
    env.set(i < 0 ? e : e.slice(0, i), e);
  }
  for (const e of o.env) {
    const i = e.indexOf('=');
    env.set(i < 0 ? e : e.slice(0, i), e);
  }
  if (o.tty && !env.has('TERM')) env.set('TERM', 'TERM=xterm');
  const proc: NonNullable<Spec['process']> = {
    ...base,
    terminal: o.tty,
    args: [...o.args],
    env: [...env.values()],
    cwd: o.workingDir !== '' ? o.workingDir : base.cwd,
    user: { uid: u.uid, gid: u.gid, ...(u.additionalGids.length > 0 ? { additionalGids: u.additionalGids } : {}) },
  };
  if (o.privileged) {
    const all = hostCapabilities();
    proc.capabilities = { bounding: [...all], effective: [...all], permitted: [...all] };
  }
  delete proc.consoleSize;
  return proc;
}
