/**
 * The body of Docker's `POST /containers/create` (ContainerConfig with
 * HostConfig and NetworkingConfig, API 1.24 to 1.50), parsed field by field
 * from untrusted JSON, normalised for the client's API version and validated
 * with the Docker daemon's rules and wording; plus the image config's
 * defaults merged in as Docker merges them.
 */
import { isIP } from 'node:net';
import { cpus } from 'node:os';
import { posix } from 'node:path';
import { invalid } from '@berth/base';
import { normalizeCapabilities } from './caps.js';
import { parseDockerSeccompProfile } from './seccomp.js';

// ---------------------------------------------------------------- types

/** `{"<port>/<proto>": {}}` and `{"/path": {}}`: a set as a JSON object. */
export type EmptyObjectSet = Record<string, Record<string, never>>;

export interface HealthConfig {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  Retries?: number;
  StartPeriod?: number;
  StartInterval?: number;
}

export interface ContainerConfig {
  Hostname?: string;
  Domainname?: string;
  User?: string;
  AttachStdin?: boolean;
  AttachStdout?: boolean;
  AttachStderr?: boolean;
  ExposedPorts?: EmptyObjectSet;
  Tty?: boolean;
  OpenStdin?: boolean;
  StdinOnce?: boolean;
  Env?: string[];
  Cmd?: string[];
  Healthcheck?: HealthConfig;
  ArgsEscaped?: boolean;
  Image?: string;
  Volumes?: EmptyObjectSet;
  WorkingDir?: string;
  Entrypoint?: string[];
  NetworkDisabled?: boolean;
  MacAddress?: string;
  OnBuild?: string[];
  Labels?: Record<string, string>;
  StopSignal?: string;
  StopTimeout?: number;
  Shell?: string[];
}

/** The `config` section of an OCI/Docker image config: a container's defaults. */
export interface ImageConfig {
  User?: string;
  ExposedPorts?: EmptyObjectSet;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  Volumes?: EmptyObjectSet;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  Healthcheck?: HealthConfig;
  ArgsEscaped?: boolean;
  OnBuild?: string[];
  Shell?: string[];
}

export interface RestartPolicy {
  Name?: '' | 'no' | 'always' | 'unless-stopped' | 'on-failure';
  MaximumRetryCount?: number;
}

export interface DeviceMapping {
  PathOnHost?: string;
  PathInContainer?: string;
  CgroupPermissions?: string;
}

export interface DeviceRequest {
  Driver?: string;
  Count?: number;
  DeviceIDs?: string[];
  Capabilities?: string[][];
  Options?: Record<string, string>;
}

export interface ThrottleDevice {
  Path?: string;
  Rate?: number;
}

export interface WeightDevice {
  Path?: string;
  Weight?: number;
}

export interface Ulimit {
  Name?: string;
  Soft?: number;
  Hard?: number;
}

export interface Resources {
  CpuShares?: number;
  Memory?: number;
  CgroupParent?: string;
  BlkioWeight?: number;
  BlkioWeightDevice?: WeightDevice[];
  BlkioDeviceReadBps?: ThrottleDevice[];
  BlkioDeviceWriteBps?: ThrottleDevice[];
  BlkioDeviceReadIOps?: ThrottleDevice[];
  BlkioDeviceWriteIOps?: ThrottleDevice[];
  CpuPeriod?: number;
  CpuQuota?: number;
  CpuRealtimePeriod?: number;
  CpuRealtimeRuntime?: number;
  CpusetCpus?: string;
  CpusetMems?: string;
  Devices?: DeviceMapping[];
  DeviceCgroupRules?: string[];
  DeviceRequests?: DeviceRequest[];
  /** Accepted (and ignored) before API 1.42 only. */
  KernelMemory?: number;
  KernelMemoryTCP?: number;
  MemoryReservation?: number;
  MemorySwap?: number;
  MemorySwappiness?: number;
  NanoCpus?: number;
  OomKillDisable?: boolean;
  Init?: boolean;
  PidsLimit?: number;
  Ulimits?: Ulimit[];
  CpuCount?: number;
  CpuPercent?: number;
  IOMaximumIOps?: number;
  IOMaximumBandwidth?: number;
}

export interface LogConfig {
  Type?: string;
  Config?: Record<string, string>;
}

export interface PortBinding {
  HostIp?: string;
  HostPort?: string;
}

export type PortMap = Record<string, PortBinding[] | null>;

export interface MountBindOptions {
  Propagation?: 'private' | 'rprivate' | 'shared' | 'rshared' | 'slave' | 'rslave';
  NonRecursive?: boolean;
  CreateMountpoint?: boolean;
  ReadOnlyNonRecursive?: boolean;
  ReadOnlyForceRecursive?: boolean;
}

export interface MountVolumeOptions {
  NoCopy?: boolean;
  Labels?: Record<string, string>;
  DriverConfig?: { Name?: string; Options?: Record<string, string> };
  Subpath?: string;
}

export interface MountTmpfsOptions {
  SizeBytes?: number;
  Mode?: number;
  Options?: string[][];
}

export interface Mount {
  Target?: string;
  Source?: string;
  Type?: 'bind' | 'volume' | 'image' | 'tmpfs' | 'npipe' | 'cluster';
  ReadOnly?: boolean;
  Consistency?: string;
  BindOptions?: MountBindOptions;
  VolumeOptions?: MountVolumeOptions;
  ImageOptions?: { Subpath?: string };
  TmpfsOptions?: MountTmpfsOptions;
}

export interface HostConfig extends Resources {
  Binds?: string[];
  ContainerIDFile?: string;
  LogConfig?: LogConfig;
  NetworkMode?: string;
  PortBindings?: PortMap;
  RestartPolicy?: RestartPolicy;
  AutoRemove?: boolean;
  VolumeDriver?: string;
  VolumesFrom?: string[];
  Mounts?: Mount[];
  /** `[height, width]`. */
  ConsoleSize?: [number, number];
  Annotations?: Record<string, string>;
  CapAdd?: string[];
  CapDrop?: string[];
  CgroupnsMode?: '' | 'private' | 'host';
  Dns?: string[];
  DnsOptions?: string[];
  DnsSearch?: string[];
  ExtraHosts?: string[];
  GroupAdd?: string[];
  IpcMode?: string;
  Cgroup?: string;
  Links?: string[];
  OomScoreAdj?: number;
  PidMode?: string;
  Privileged?: boolean;
  PublishAllPorts?: boolean;
  ReadonlyRootfs?: boolean;
  SecurityOpt?: string[];
  StorageOpt?: Record<string, string>;
  Tmpfs?: Record<string, string>;
  UTSMode?: string;
  UsernsMode?: string;
  ShmSize?: number;
  Sysctls?: Record<string, string>;
  Runtime?: string;
  Isolation?: '' | 'default' | 'process' | 'hyperv';
  MaskedPaths?: string[];
  ReadonlyPaths?: string[];
}

export interface EndpointIPAMConfig {
  IPv4Address?: string;
  IPv6Address?: string;
  LinkLocalIPs?: string[];
}

export interface EndpointSettings {
  IPAMConfig?: EndpointIPAMConfig;
  Links?: string[];
  MacAddress?: string;
  Aliases?: string[];
  DriverOpts?: Record<string, string>;
  GwPriority?: number;
  NetworkID?: string;
  EndpointID?: string;
  Gateway?: string;
  IPAddress?: string;
  IPPrefixLen?: number;
  IPv6Gateway?: string;
  GlobalIPv6Address?: string;
  GlobalIPv6PrefixLen?: number;
  DNSNames?: string[];
}

export interface NetworkingConfig {
  EndpointsConfig?: Record<string, EndpointSettings>;
}

export interface CreateRequest {
  config: ContainerConfig;
  hostConfig: HostConfig;
  networkingConfig: NetworkingConfig;
  /** Sent back in the create response's `Warnings`. */
  warnings: string[];
  /**
   * Read-only bind mounts are non-recursive by default for clients older
   * than API 1.44 (BindOptions.ReadOnlyNonRecursive's default).
   */
  defaultReadOnlyNonRecursive: boolean;
}

export interface ParseOptions {
  /** Whether the host runs cgroup v2 only (API < 1.41 clients get a host cgroupns on v1). */
  readonly cgroupV2?: boolean;
  /** CPUs available, for NanoCpus' range (default: this machine's). */
  readonly cpuCount?: number;
}

// ---------------------------------------------------------------- JSON readers

type Obj = Record<string, unknown>;

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return `number ${String(v)}`;
  return typeof v;
}

/** Go's json error for a value of the wrong type, naming the field. */
function wrongType(field: string, goType: string, v: unknown): Error {
  return invalid(`json: cannot unmarshal ${jsonType(v)} into Go struct field ${field} of type ${goType}`);
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const fq = (path: string, key: string): string => `${path}.${key}`;

function readStr(o: Obj, key: string, path: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw wrongType(fq(path, key), 'string', v);
  return v;
}

function readBool(o: Obj, key: string, path: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw wrongType(fq(path, key), 'bool', v);
  return v;
}

function checkInt(v: unknown, field: string, goType: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw wrongType(field, goType, v);
  if (goType.startsWith('uint') && v < 0) throw wrongType(field, goType, v);
  return v;
}

function readInt(o: Obj, key: string, path: string, goType = 'int64'): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  return checkInt(v, fq(path, key), goType);
}

function readStrList(o: Obj, key: string, path: string): string[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw wrongType(fq(path, key), '[]string', v);
  return v.map((e) => {
    if (typeof e !== 'string') throw wrongType(fq(path, key), 'string', e);
    return e;
  });
}

/** Docker's StrSlice: a JSON string is a one-element list. */
function readStrSlice(o: Obj, key: string, path: string): string[] | undefined {
  const v = o[key];
  if (typeof v === 'string') return [v];
  if (v !== undefined && v !== null && !Array.isArray(v)) throw wrongType(fq(path, key), 'strslice.StrSlice', v);
  return readStrList(o, key, path);
}

function readStrMap(o: Obj, key: string, path: string): Record<string, string> | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) throw wrongType(fq(path, key), 'map[string]string', v);
  const out: Record<string, string> = {};
  for (const [k, e] of Object.entries(v)) {
    if (typeof e !== 'string') throw wrongType(fq(path, key), 'string', e);
    out[k] = e;
  }
  return out;
}

function readSet(o: Obj, key: string, path: string): EmptyObjectSet | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) throw wrongType(fq(path, key), 'map[string]struct {}', v);
  const out: EmptyObjectSet = {};
  for (const [k, e] of Object.entries(v)) {
    if (e !== null && !isObj(e)) throw wrongType(fq(path, key), 'struct {}', e);
    out[k] = {};
  }
  return out;
}

function readObj(o: Obj, key: string, path: string, goType: string): Obj | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) throw wrongType(fq(path, key), goType, v);
  return v;
}

function readObjList<T>(o: Obj, key: string, path: string, goType: string, each: (e: Obj, p: string) => T): T[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw wrongType(fq(path, key), `[]${goType}`, v);
  return v.map((e, i) => {
    if (!isObj(e)) throw wrongType(fq(path, key), goType, e);
    return each(e, `${fq(path, key)}[${i}]`);
  });
}

/** Copies the defined values only (exactOptionalPropertyTypes). */
function defined<T extends object>(o: { [K in keyof T]: T[K] | undefined }): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as T;
}

// ---------------------------------------------------------------- section parsers

function parseHealth(o: Obj, path: string): HealthConfig {
  return defined<HealthConfig>({
    Test: readStrList(o, 'Test', path),
    Interval: readInt(o, 'Interval', path),
    Timeout: readInt(o, 'Timeout', path),
    Retries: readInt(o, 'Retries', path, 'int'),
    StartPeriod: readInt(o, 'StartPeriod', path),
    StartInterval: readInt(o, 'StartInterval', path),
  });
}

/** Parses the ContainerConfig fields of an object (the create body, or an image's config). */
export function parseContainerConfig(o: Obj, path = 'Config'): ContainerConfig {
  const hc = readObj(o, 'Healthcheck', path, 'container.HealthConfig');
  return defined<ContainerConfig>({
    Hostname: readStr(o, 'Hostname', path),
    Domainname: readStr(o, 'Domainname', path),
    User: readStr(o, 'User', path),
    AttachStdin: readBool(o, 'AttachStdin', path),
    AttachStdout: readBool(o, 'AttachStdout', path),
    AttachStderr: readBool(o, 'AttachStderr', path),
    ExposedPorts: readSet(o, 'ExposedPorts', path),
    Tty: readBool(o, 'Tty', path),
    OpenStdin: readBool(o, 'OpenStdin', path),
    StdinOnce: readBool(o, 'StdinOnce', path),
    Env: readStrList(o, 'Env', path),
    Cmd: readStrSlice(o, 'Cmd', path),
    Healthcheck: hc === undefined ? undefined : parseHealth(hc, `${path}.Healthcheck`),
    ArgsEscaped: readBool(o, 'ArgsEscaped', path),
    Image: readStr(o, 'Image', path),
    Volumes: readSet(o, 'Volumes', path),
    WorkingDir: readStr(o, 'WorkingDir', path),
    Entrypoint: readStrSlice(o, 'Entrypoint', path),
    NetworkDisabled: readBool(o, 'NetworkDisabled', path),
    MacAddress: readStr(o, 'MacAddress', path),
    OnBuild: readStrList(o, 'OnBuild', path),
    Labels: readStrMap(o, 'Labels', path),
    StopSignal: readStopSignal(o, path),
    StopTimeout: readInt(o, 'StopTimeout', path, 'int'),
    Shell: readStrSlice(o, 'Shell', path),
  });
}

/** StopSignal is a string, but some clients send the number. */
function readStopSignal(o: Obj, path: string): string | undefined {
  const v = o['StopSignal'];
  if (typeof v === 'number' && Number.isInteger(v)) return String(v);
  return readStr(o, 'StopSignal', path);
}

/** Parses an image's `config` section (unknown or mistyped fields are errors naming the field). */
export function parseImageConfig(value: unknown): ImageConfig {
  if (value === undefined || value === null) return {};
  if (!isObj(value)) throw invalid(`image config: expected an object, got ${jsonType(value)}`);
  const c = parseContainerConfig(value, 'ImageConfig');
  return defined<ImageConfig>({
    User: c.User, ExposedPorts: c.ExposedPorts, Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd,
    Volumes: c.Volumes, WorkingDir: c.WorkingDir, Labels: c.Labels, StopSignal: c.StopSignal,
    Healthcheck: c.Healthcheck, ArgsEscaped: c.ArgsEscaped, OnBuild: c.OnBuild, Shell: c.Shell,
  });
}

function parseThrottle(o: Obj, path: string): ThrottleDevice {
  return defined<ThrottleDevice>({ Path: readStr(o, 'Path', path), Rate: readInt(o, 'Rate', path, 'uint64') });
}

function parseMount(o: Obj, path: string): Mount {
  const bo = readObj(o, 'BindOptions', path, 'mount.BindOptions');
  const vo = readObj(o, 'VolumeOptions', path, 'mount.VolumeOptions');
  const io = readObj(o, 'ImageOptions', path, 'mount.ImageOptions');
  const to = readObj(o, 'TmpfsOptions', path, 'mount.TmpfsOptions');
  const type = readStr(o, 'Type', path);
  let bind: MountBindOptions | undefined;
  if (bo !== undefined) {
    const p = `${path}.BindOptions`;
    const prop = readStr(bo, 'Propagation', p);
    if (prop !== undefined && prop !== '' && !PROPAGATIONS.has(prop)) {
      throw invalid(`invalid mount config for type ${JSON.stringify(type ?? '')}: invalid propagation mode: ${prop}`);
    }
    bind = defined<MountBindOptions>({
      Propagation: prop === '' ? undefined : (prop as MountBindOptions['Propagation']),
      NonRecursive: readBool(bo, 'NonRecursive', p),
      CreateMountpoint: readBool(bo, 'CreateMountpoint', p),
      ReadOnlyNonRecursive: readBool(bo, 'ReadOnlyNonRecursive', p),
      ReadOnlyForceRecursive: readBool(bo, 'ReadOnlyForceRecursive', p),
    });
  }
  let volume: MountVolumeOptions | undefined;
  if (vo !== undefined) {
    const p = `${path}.VolumeOptions`;
    const dc = readObj(vo, 'DriverConfig', p, 'mount.Driver');
    volume = defined<MountVolumeOptions>({
      NoCopy: readBool(vo, 'NoCopy', p),
      Labels: readStrMap(vo, 'Labels', p),
      DriverConfig: dc === undefined ? undefined : defined<{ Name?: string; Options?: Record<string, string> }>({
        Name: readStr(dc, 'Name', `${p}.DriverConfig`),
        Options: readStrMap(dc, 'Options', `${p}.DriverConfig`),
      }),
      Subpath: readStr(vo, 'Subpath', p),
    });
  }
  let tmpfs: MountTmpfsOptions | undefined;
  if (to !== undefined) {
    const p = `${path}.TmpfsOptions`;
    const rawOpts = to['Options'];
    let opts: string[][] | undefined;
    if (rawOpts !== undefined && rawOpts !== null) {
      if (!Array.isArray(rawOpts)) throw wrongType(`${p}.Options`, '[][]string', rawOpts);
      opts = rawOpts.map((e) => {
        if (!Array.isArray(e) || e.some((s) => typeof s !== 'string')) throw wrongType(`${p}.Options`, '[]string', e);
        if (e.length < 1 || e.length > 2) throw invalid(`invalid mount config for type "tmpfs": invalid tmpfs option ${JSON.stringify(e)}`);
        return e as string[];
      });
    }
    tmpfs = defined<MountTmpfsOptions>({
      SizeBytes: readInt(to, 'SizeBytes', p),
      Mode: readInt(to, 'Mode', p, 'fs.FileMode'),
      Options: opts,
    });
  }
  if (type !== undefined && !MOUNT_TYPES.has(type)) {
    // Docker's validation message for an unknown type.
    throw invalid(`invalid mount config for type ${JSON.stringify(type)}: mount type unknown`);
  }
  return defined<Mount>({
    Target: readStr(o, 'Target', path),
    Source: readStr(o, 'Source', path),
    Type: type as Mount['Type'],
    ReadOnly: readBool(o, 'ReadOnly', path),
    Consistency: readStr(o, 'Consistency', path),
    BindOptions: bind,
    VolumeOptions: volume,
    ImageOptions: io === undefined ? undefined : defined<{ Subpath?: string }>({ Subpath: readStr(io, 'Subpath', `${path}.ImageOptions`) }),
    TmpfsOptions: tmpfs,
  });
}

const MOUNT_TYPES = new Set(['bind', 'volume', 'image', 'tmpfs', 'npipe', 'cluster']);
const PROPAGATIONS = new Set(['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave']);

function parsePortMap(o: Obj, key: string, path: string): PortMap | undefined {
  const v = readObj(o, key, path, 'nat.PortMap');
  if (v === undefined) return undefined;
  const out: PortMap = {};
  for (const [port, list] of Object.entries(v)) {
    if (list === null) {
      out[port] = null;
      continue;
    }
    if (!Array.isArray(list)) throw wrongType(fq(path, key), '[]nat.PortBinding', list);
    out[port] = list.map((b) => {
      if (!isObj(b)) throw wrongType(fq(path, key), 'nat.PortBinding', b);
      return defined<PortBinding>({ HostIp: readStr(b, 'HostIp', `${path}.${key}`), HostPort: readStr(b, 'HostPort', `${path}.${key}`) });
    });
  }
  return out;
}

function parseResources(o: Obj, path: string): Resources {
  const ints = (k: string, t = 'int64'): number | undefined => readInt(o, k, path, t);
  return defined<Resources>({
    CpuShares: ints('CpuShares'),
    Memory: ints('Memory'),
    CgroupParent: readStr(o, 'CgroupParent', path),
    BlkioWeight: ints('BlkioWeight', 'uint16'),
    BlkioWeightDevice: readObjList(o, 'BlkioWeightDevice', path, 'blkiodev.WeightDevice', (e, p) =>
      defined<WeightDevice>({ Path: readStr(e, 'Path', p), Weight: readInt(e, 'Weight', p, 'uint16') })),
    BlkioDeviceReadBps: readObjList(o, 'BlkioDeviceReadBps', path, 'blkiodev.ThrottleDevice', parseThrottle),
    BlkioDeviceWriteBps: readObjList(o, 'BlkioDeviceWriteBps', path, 'blkiodev.ThrottleDevice', parseThrottle),
    BlkioDeviceReadIOps: readObjList(o, 'BlkioDeviceReadIOps', path, 'blkiodev.ThrottleDevice', parseThrottle),
    BlkioDeviceWriteIOps: readObjList(o, 'BlkioDeviceWriteIOps', path, 'blkiodev.ThrottleDevice', parseThrottle),
    CpuPeriod: ints('CpuPeriod'),
    CpuQuota: ints('CpuQuota'),
    CpuRealtimePeriod: ints('CpuRealtimePeriod'),
    CpuRealtimeRuntime: ints('CpuRealtimeRuntime'),
    CpusetCpus: readStr(o, 'CpusetCpus', path),
    CpusetMems: readStr(o, 'CpusetMems', path),
    Devices: readObjList(o, 'Devices', path, 'container.DeviceMapping', (e, p) => defined<DeviceMapping>({
      PathOnHost: readStr(e, 'PathOnHost', p),
      PathInContainer: readStr(e, 'PathInContainer', p),
      CgroupPermissions: readStr(e, 'CgroupPermissions', p),
    })),
    DeviceCgroupRules: readStrList(o, 'DeviceCgroupRules', path),
    DeviceRequests: readObjList(o, 'DeviceRequests', path, 'container.DeviceRequest', (e, p) => {
      const caps = e['Capabilities'];
      let capabilities: string[][] | undefined;
      if (caps !== undefined && caps !== null) {
        if (!Array.isArray(caps)) throw wrongType(`${p}.Capabilities`, '[][]string', caps);
        capabilities = caps.map((c) => {
          if (!Array.isArray(c) || c.some((s) => typeof s !== 'string')) throw wrongType(`${p}.Capabilities`, '[]string', c);
          return c as string[];
        });
      }
      return defined<DeviceRequest>({
        Driver: readStr(e, 'Driver', p),
        Count: readInt(e, 'Count', p, 'int'),
        DeviceIDs: readStrList(e, 'DeviceIDs', p),
        Capabilities: capabilities,
        Options: readStrMap(e, 'Options', p),
      });
    }),
    KernelMemory: ints('KernelMemory'),
    KernelMemoryTCP: ints('KernelMemoryTCP'),
    MemoryReservation: ints('MemoryReservation'),
    MemorySwap: ints('MemorySwap'),
    MemorySwappiness: ints('MemorySwappiness'),
    NanoCpus: ints('NanoCpus'),
    OomKillDisable: readBool(o, 'OomKillDisable', path),
    Init: readBool(o, 'Init', path),
    PidsLimit: ints('PidsLimit'),
    Ulimits: readObjList(o, 'Ulimits', path, 'units.Ulimit', (e, p) => defined<Ulimit>({
      Name: readStr(e, 'Name', p), Soft: readInt(e, 'Soft', p), Hard: readInt(e, 'Hard', p),
    })),
    CpuCount: ints('CpuCount'),
    CpuPercent: ints('CpuPercent'),
    IOMaximumIOps: ints('IOMaximumIOps', 'uint64'),
    IOMaximumBandwidth: ints('IOMaximumBandwidth', 'uint64'),
  });
}

/** Parses the HostConfig object (types only; see parseCreateBody for the rules). */
export function parseHostConfig(o: Obj, path = 'HostConfig'): HostConfig {
  const rp = readObj(o, 'RestartPolicy', path, 'container.RestartPolicy');
  const lc = readObj(o, 'LogConfig', path, 'container.LogConfig');
  const cs = o['ConsoleSize'];
  let consoleSize: [number, number] | undefined;
  if (cs !== undefined && cs !== null) {
    if (!Array.isArray(cs) || cs.length !== 2) throw wrongType(`${path}.ConsoleSize`, '[2]uint', cs);
    consoleSize = [checkInt(cs[0], `${path}.ConsoleSize`, 'uint'), checkInt(cs[1], `${path}.ConsoleSize`, 'uint')];
  }
  const cgroupns = readStr(o, 'CgroupnsMode', path);
  if (cgroupns !== undefined && cgroupns !== '' && cgroupns !== 'private' && cgroupns !== 'host') {
    throw invalid(`invalid cgroup namespace mode: ${cgroupns}`);
  }
  const isolation = readStr(o, 'Isolation', path);
  if (isolation !== undefined && isolation !== '' && isolation !== 'default') {
    throw invalid(`Invalid isolation: ${JSON.stringify(isolation)} - linux only supports 'default'`);
  }
  return defined<HostConfig>({
    ...parseResources(o, path),
    Binds: readStrList(o, 'Binds', path),
    ContainerIDFile: readStr(o, 'ContainerIDFile', path),
    LogConfig: lc === undefined ? undefined : defined<LogConfig>({
      Type: readStr(lc, 'Type', `${path}.LogConfig`),
      Config: readStrMap(lc, 'Config', `${path}.LogConfig`),
    }),
    NetworkMode: readStr(o, 'NetworkMode', path),
    PortBindings: parsePortMap(o, 'PortBindings', path),
    RestartPolicy: rp === undefined ? undefined : defined<RestartPolicy>({
      Name: readStr(rp, 'Name', `${path}.RestartPolicy`) as RestartPolicy['Name'],
      MaximumRetryCount: readInt(rp, 'MaximumRetryCount', `${path}.RestartPolicy`, 'int'),
    }),
    AutoRemove: readBool(o, 'AutoRemove', path),
    VolumeDriver: readStr(o, 'VolumeDriver', path),
    VolumesFrom: readStrList(o, 'VolumesFrom', path),
    Mounts: readObjList(o, 'Mounts', path, 'mount.Mount', parseMount),
    ConsoleSize: consoleSize,
    Annotations: readStrMap(o, 'Annotations', path),
    CapAdd: readStrSlice(o, 'CapAdd', path),
    CapDrop: readStrSlice(o, 'CapDrop', path),
    CgroupnsMode: cgroupns as HostConfig['CgroupnsMode'],
    Dns: readStrList(o, 'Dns', path),
    DnsOptions: readStrList(o, 'DnsOptions', path),
    DnsSearch: readStrList(o, 'DnsSearch', path),
    ExtraHosts: readStrList(o, 'ExtraHosts', path),
    GroupAdd: readStrList(o, 'GroupAdd', path),
    IpcMode: readStr(o, 'IpcMode', path),
    Cgroup: readStr(o, 'Cgroup', path),
    Links: readStrList(o, 'Links', path),
    OomScoreAdj: readInt(o, 'OomScoreAdj', path, 'int'),
    PidMode: readStr(o, 'PidMode', path),
    Privileged: readBool(o, 'Privileged', path),
    PublishAllPorts: readBool(o, 'PublishAllPorts', path),
    ReadonlyRootfs: readBool(o, 'ReadonlyRootfs', path),
    SecurityOpt: readStrList(o, 'SecurityOpt', path),
    StorageOpt: readStrMap(o, 'StorageOpt', path),
    Tmpfs: readStrMap(o, 'Tmpfs', path),
    UTSMode: readStr(o, 'UTSMode', path),
    UsernsMode: readStr(o, 'UsernsMode', path),
    ShmSize: readInt(o, 'ShmSize', path),
    Sysctls: readStrMap(o, 'Sysctls', path),
    Runtime: readStr(o, 'Runtime', path),
    Isolation: isolation as HostConfig['Isolation'],
    MaskedPaths: readStrList(o, 'MaskedPaths', path),
    ReadonlyPaths: readStrList(o, 'ReadonlyPaths', path),
  });
}

function parseEndpoint(o: Obj, path: string): EndpointSettings {
  const ipam = readObj(o, 'IPAMConfig', path, 'network.EndpointIPAMConfig');
  const gw = o['GwPriority'];
  if (gw !== undefined && gw !== null && (typeof gw !== 'number' || !Number.isInteger(gw))) throw wrongType(`${path}.GwPriority`, 'int', gw);
  return defined<EndpointSettings>({
    IPAMConfig: ipam === undefined ? undefined : defined<EndpointIPAMConfig>({
      IPv4Address: readStr(ipam, 'IPv4Address', `${path}.IPAMConfig`),
      IPv6Address: readStr(ipam, 'IPv6Address', `${path}.IPAMConfig`),
      LinkLocalIPs: readStrList(ipam, 'LinkLocalIPs', `${path}.IPAMConfig`),
    }),
    Links: readStrList(o, 'Links', path),
    MacAddress: readStr(o, 'MacAddress', path),
    Aliases: readStrList(o, 'Aliases', path),
    DriverOpts: readStrMap(o, 'DriverOpts', path),
    GwPriority: typeof gw === 'number' ? gw : undefined,
    NetworkID: readStr(o, 'NetworkID', path),
    EndpointID: readStr(o, 'EndpointID', path),
    Gateway: readStr(o, 'Gateway', path),
    IPAddress: readStr(o, 'IPAddress', path),
    IPPrefixLen: readInt(o, 'IPPrefixLen', path, 'int'),
    IPv6Gateway: readStr(o, 'IPv6Gateway', path),
    GlobalIPv6Address: readStr(o, 'GlobalIPv6Address', path),
    GlobalIPv6PrefixLen: readInt(o, 'GlobalIPv6PrefixLen', path, 'int'),
    DNSNames: readStrList(o, 'DNSNames', path),
  });
}

function parseNetworking(o: Obj, path = 'NetworkingConfig'): NetworkingConfig {
  const eps = readObj(o, 'EndpointsConfig', path, 'map[string]*network.EndpointSettings');
  if (eps === undefined) return {};
  const out: Record<string, EndpointSettings> = {};
  for (const [name, ep] of Object.entries(eps)) {
    if (ep === null) {
      out[name] = {};
      continue;
    }
    if (!isObj(ep)) throw wrongType(`${path}.EndpointsConfig`, 'network.EndpointSettings', ep);
    out[name] = parseEndpoint(ep, `${path}.EndpointsConfig.${name}`);
  }
  return { EndpointsConfig: out };
}

// ---------------------------------------------------------------- API versions

/** Whether API version a is older than b ("1.41" < "1.44"). */
export function versionLess(a: string, b: string): boolean {
  const pa = a.split('.').map((n) => Number.parseInt(n, 10) || 0);
  const pb = b.split('.').map((n) => Number.parseInt(n, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x < y;
  }
  return false;
}

// ---------------------------------------------------------------- signals

const SIGNALS: Record<string, number> = {
  HUP: 1, INT: 2, QUIT: 3, ILL: 4, TRAP: 5, ABRT: 6, IOT: 6, BUS: 7, FPE: 8, KILL: 9, USR1: 10,
  SEGV: 11, USR2: 12, PIPE: 13, ALRM: 14, TERM: 15, STKFLT: 16, CHLD: 17, CLD: 17, CONT: 18,
  STOP: 19, TSTP: 20, TTIN: 21, TTOU: 22, URG: 23, XCPU: 24, XFSZ: 25, VTALRM: 26, PROF: 27,
  WINCH: 28, IO: 29, POLL: 29, PWR: 30, SYS: 31, RTMIN: 34, RTMAX: 64,
};
for (let i = 1; i <= 15; i++) SIGNALS[`RTMIN+${i}`] = 34 + i;
for (let i = 1; i <= 14; i++) SIGNALS[`RTMAX-${i}`] = 64 - i;

/**
 * A signal by name (`SIGTERM`, `TERM`, `term`, `RTMIN+3`) or number, as
 * Docker parses StopSignal and `kill --signal`; `Invalid signal: x` otherwise.
 */
export function parseSignal(raw: string): number {
  if (/^[0-9]+$/.test(raw)) {
    const n = Number.parseInt(raw, 10);
    if (n < 1 || n > 64) throw invalid(`Invalid signal: ${raw}`);
    return n;
  }
  const up = raw.toUpperCase();
  const n = SIGNALS[up.startsWith('SIG') ? up.slice(3) : up];
  if (n === undefined) throw invalid(`Invalid signal: ${raw}`);
  return n;
}

// ---------------------------------------------------------------- security options

export interface SecurityOptions {
  noNewPrivileges: boolean;
  /** `unconfined`, `builtin`, or a Docker seccomp profile as JSON text (the CLI sends the file's content). */
  seccomp: string | undefined;
  apparmor: string | undefined;
  labels: string[];
  writableCgroups: boolean | undefined;
}

function parseBoolText(s: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return undefined;
}

/** SecurityOpt as the Docker daemon reads it (`key=value`, the old `key:value`, bare `no-new-privileges`). */
export function parseSecurityOpts(opts: readonly string[]): SecurityOptions {
  const out: SecurityOptions = { noNewPrivileges: false, seccomp: undefined, apparmor: undefined, labels: [], writableCgroups: undefined };
  for (const opt of opts) {
    if (opt === 'no-new-privileges') {
      out.noNewPrivileges = true;
      continue;
    }
    if (opt === 'disable') {
      out.labels.push('disable');
      continue;
    }
    let sep = opt.indexOf('=');
    if (sep < 0) sep = opt.indexOf(':');
    if (sep < 0) throw invalid(`invalid --security-opt 1: ${JSON.stringify(opt)}`);
    const k = opt.slice(0, sep);
    const v = opt.slice(sep + 1);
    switch (k) {
      case 'label':
        out.labels.push(v);
        break;
      case 'apparmor':
        out.apparmor = v;
        break;
      case 'seccomp':
        out.seccomp = v;
        break;
      case 'no-new-privileges': {
        const b = parseBoolText(v);
        if (b === undefined) throw invalid(`invalid --security-opt 2: ${JSON.stringify(opt)}`);
        out.noNewPrivileges = b;
        break;
      }
      case 'writable-cgroups': {
        const b = parseBoolText(v);
        if (b === undefined) throw invalid(`invalid --security-opt 2: ${JSON.stringify(opt)}`);
        out.writableCgroups = b;
        break;
      }
      default:
        throw invalid(`invalid --security-opt 2: ${JSON.stringify(opt)}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------- namespaces and sysctls

export type NamespaceMode = { kind: 'private' } | { kind: 'host' } | { kind: 'container'; ref: string } | { kind: 'none' } | { kind: 'shareable' };

function containerRef(mode: string): string | undefined {
  if (!mode.startsWith('container:')) return undefined;
  const ref = mode.slice('container:'.length);
  return ref === '' ? undefined : ref;
}

/** IpcMode: "" (private), none, private, shareable, host, container:<id>. */
export function ipcMode(mode: string | undefined): NamespaceMode {
  const m = mode ?? '';
  if (m === '' || m === 'private') return { kind: 'private' };
  if (m === 'shareable') return { kind: 'shareable' };
  if (m === 'none') return { kind: 'none' };
  if (m === 'host') return { kind: 'host' };
  const ref = containerRef(m);
  if (ref !== undefined) return { kind: 'container', ref };
  throw invalid(`invalid IPC mode: ${m}`);
}

/** PidMode: "" (private), host, container:<id>. */
export function pidMode(mode: string | undefined): NamespaceMode {
  const m = mode ?? '';
  if (m === '') return { kind: 'private' };
  if (m === 'host') return { kind: 'host' };
  const ref = containerRef(m);
  if (ref !== undefined) return { kind: 'container', ref };
  throw invalid(`invalid PID mode: ${m}`);
}

/** UTSMode: "" (private), host. */
export function utsMode(mode: string | undefined): NamespaceMode {
  const m = mode ?? '';
  if (m === '') return { kind: 'private' };
  if (m === 'host') return { kind: 'host' };
  throw invalid(`invalid UTS mode: ${m}`);
}

/** NetworkMode: host, none, container:<id>, or a network's name (bridge, default, user-defined). */
export function networkMode(mode: string | undefined): NamespaceMode | { kind: 'network'; name: string } {
  const m = mode ?? '';
  if (m === 'host') return { kind: 'host' };
  if (m === 'none') return { kind: 'none' };
  if (m.startsWith('container:')) {
    const ref = containerRef(m);
    if (ref === undefined) throw invalid('Invalid network mode: invalid container format container:<name|id>');
    return { kind: 'container', ref };
  }
  return { kind: 'network', name: m === '' ? 'default' : m };
}

const IPC_SYSCTLS = new Set([
  'kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'kernel.shmall', 'kernel.shmmax',
  'kernel.shmmni', 'kernel.shm_rmid_forced',
]);

/**
 * Sysctls a container may set: only those of a namespace it has of its own
 * (IPC: the System V ones and fs.mqueue.*; network: net.*; UTS: kernel.domainname),
 * with the OCI runtime's wording for the others.
 */
export function validateSysctls(sysctls: Readonly<Record<string, string>>, host: HostConfig): void {
  const net = networkMode(host.NetworkMode).kind;
  const ipc = ipcMode(host.IpcMode).kind;
  const uts = utsMode(host.UTSMode).kind;
  for (const key of Object.keys(sysctls)) {
    if (IPC_SYSCTLS.has(key) || key.startsWith('fs.mqueue.')) {
      if (ipc === 'host') throw invalid(`sysctl ${JSON.stringify(key)} is not allowed in the hosts ipc namespace`);
      continue;
    }
    if (key.startsWith('net.')) {
      if (net === 'host') throw invalid(`sysctl ${JSON.stringify(key)} not allowed in host network namespace`);
      continue;
    }
    if (key === 'kernel.domainname' && uts !== 'host') continue;
    if (key === 'kernel.hostname' && uts !== 'host') {
      throw invalid('setting the hostname through sysctl is not allowed, use the Hostname field instead');
    }
    throw invalid(`sysctl ${JSON.stringify(key)} is not in a separate kernel namespace`);
  }
}

// ---------------------------------------------------------------- ports, hosts, devices, ulimits

const PROTOS = new Set(['tcp', 'udp', 'sctp']);

function validPortOrRange(s: string, allowZero: boolean): boolean {
  const m = /^([0-9]+)(?:-([0-9]+))?$/.exec(s);
  if (m === null) return false;
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  const min = allowZero ? 0 : 1;
  return a >= min && a <= 65535 && b >= a && b <= 65535;
}

/** A `<port>[-<port>][/<proto>]` key of ExposedPorts or PortBindings. */
export function validatePortKey(key: string): void {
  const slash = key.indexOf('/');
  const port = slash < 0 ? key : key.slice(0, slash);
  const proto = slash < 0 ? 'tcp' : key.slice(slash + 1).toLowerCase();
  if (!PROTOS.has(proto)) throw invalid(`invalid proto: ${proto}`);
  if (!validPortOrRange(port, false)) throw invalid(`invalid port specification: ${JSON.stringify(port)}`);
}

/** `host:ip` of ExtraHosts (ip may be IPv6, in brackets or not, or `host-gateway`). */
export function parseExtraHost(entry: string): { name: string; ip: string } {
  const sep = entry.indexOf(':');
  const eq = entry.indexOf('=');
  const at = eq >= 0 && (sep < 0 || eq < sep) ? eq : sep;
  if (at <= 0) throw invalid(`bad format for add-host: ${JSON.stringify(entry)}`);
  const name = entry.slice(0, at);
  let ip = entry.slice(at + 1);
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  if (ip !== 'host-gateway' && isIP(ip) === 0) throw invalid(`invalid IP address in add-host: ${JSON.stringify(ip)}`);
  return { name, ip };
}

/** `a|b|c <major|*>:<minor|*> <rwm>` of DeviceCgroupRules. */
export function parseDeviceCgroupRule(rule: string): { type: 'a' | 'b' | 'c'; major: number | undefined; minor: number | undefined; access: string } {
  const m = /^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$/.exec(rule);
  if (m === null) throw invalid(`invalid device cgroup rule format: '${rule}'`);
  const num = (s: string | undefined): number | undefined => (s === undefined || s === '*' ? undefined : Number(s));
  return { type: m[1] as 'a' | 'b' | 'c', major: num(m[2]), minor: num(m[3]), access: m[4] ?? '' };
}

function validDeviceMode(mode: string): boolean {
  if (mode === '') return false;
  const seen = new Set<string>();
  for (const c of mode) {
    if (!'rwm'.includes(c) || seen.has(c)) return false;
    seen.add(c);
  }
  return true;
}

export const ULIMIT_NAMES: Readonly<Record<string, string>> = {
  as: 'RLIMIT_AS', core: 'RLIMIT_CORE', cpu: 'RLIMIT_CPU', data: 'RLIMIT_DATA', fsize: 'RLIMIT_FSIZE',
  locks: 'RLIMIT_LOCKS', memlock: 'RLIMIT_MEMLOCK', msgqueue: 'RLIMIT_MSGQUEUE', nice: 'RLIMIT_NICE',
  nofile: 'RLIMIT_NOFILE', nproc: 'RLIMIT_NPROC', rss: 'RLIMIT_RSS', rtprio: 'RLIMIT_RTPRIO',
  rttime: 'RLIMIT_RTTIME', sigpending: 'RLIMIT_SIGPENDING', stack: 'RLIMIT_STACK',
};

function validCpuset(s: string): boolean {
  if (s === '') return true;
  return s.split(',').every((part) => {
    const m = /^([0-9]+)(?:-([0-9]+))?$/.exec(part);
    return m !== null && (m[2] === undefined || Number(m[2]) >= Number(m[1]));
  });
}

// ---------------------------------------------------------------- create body

export const MIN_MEMORY = 6 * 1024 * 1024;
export const DEFAULT_SHM_SIZE = 64 * 1024 * 1024;
const MIN_CPU_SHARES = 2;
const MAX_CPU_SHARES = 262144;
/** Docker's container.MinimumDuration (1ms), for health check durations. */
const MIN_DURATION_NS = 1_000_000;

/**
 * Parses and validates a `POST /containers/create` body for a client of the
 * given API version. Throws InvalidArgument errors with Docker's wording.
 * Mounts (Binds, Mounts, Tmpfs, Volumes) are checked by parseMounts.
 */
export function parseCreateBody(body: unknown, apiVersion: string, opts: ParseOptions = {}): CreateRequest {
  if (body === undefined || body === null) throw invalid('config cannot be empty in order to create a container');
  if (!isObj(body)) throw invalid(`json: cannot unmarshal ${jsonType(body)} into Go value of type container.CreateRequest`);
  const config = parseContainerConfig(body, 'Config');
  const hostRaw = readObj(body, 'HostConfig', 'CreateRequest', 'container.HostConfig');
  const hostConfig = hostRaw === undefined ? {} : parseHostConfig(hostRaw);
  const netRaw = readObj(body, 'NetworkingConfig', 'CreateRequest', 'network.NetworkingConfig');
  const networkingConfig = netRaw === undefined ? {} : parseNetworking(netRaw);
  const warnings: string[] = [];
  const v = apiVersion === '' ? '1.50' : apiVersion;

  normalizeForVersion(config, hostConfig, networkingConfig, v, opts, warnings);
  validateConfig(config);
  validateHostConfig(config, hostConfig, networkingConfig, opts, warnings);
  return { config, hostConfig, networkingConfig, warnings, defaultReadOnlyNonRecursive: versionLess(v, '1.44') };
}

function normalizeForVersion(
  config: ContainerConfig, host: HostConfig, net: NetworkingConfig, v: string, opts: ParseOptions, warnings: string[],
): void {
  const mounts = host.Mounts ?? [];
  if (versionLess(v, '1.25')) delete host.AutoRemove;
  if (versionLess(v, '1.40')) {
    for (const m of mounts) if (m.BindOptions) delete m.BindOptions.NonRecursive;
    delete host.KernelMemoryTCP;
    if ((host.IpcMode ?? '') === '') host.IpcMode = 'shareable';
  }
  if (versionLess(v, '1.41') && !opts.cgroupV2 && (host.CgroupnsMode ?? '') === '') host.CgroupnsMode = 'host';
  if (versionLess(v, '1.42')) {
    for (const m of mounts) {
      if (m.BindOptions) delete m.BindOptions.CreateMountpoint;
      if (m.VolumeOptions && m.Type !== 'volume') delete m.VolumeOptions;
      if (m.TmpfsOptions && m.Type !== 'tmpfs') delete m.TmpfsOptions;
    }
    delete host.ConsoleSize;
  } else {
    delete host.KernelMemory;
    for (const m of mounts) {
      const t = JSON.stringify(m.Type ?? '');
      if (m.VolumeOptions && m.Type !== 'volume') throw invalid(`VolumeOptions must not be specified on mount type ${t}`);
      if (m.BindOptions && m.Type !== 'bind') throw invalid(`BindOptions must not be specified on mount type ${t}`);
      if (m.TmpfsOptions && m.Type !== 'tmpfs') throw invalid(`TmpfsOptions must not be specified on mount type ${t}`);
    }
  }
  if (versionLess(v, '1.43')) delete host.Annotations;
  if (versionLess(v, '1.44')) {
    if (config.Healthcheck) delete config.Healthcheck.StartInterval;
    for (const m of mounts) {
      if (!m.BindOptions) continue;
      delete m.BindOptions.ReadOnlyNonRecursive;
      if (m.BindOptions.ReadOnlyForceRecursive) throw invalid('BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer');
    }
    const eps = Object.keys(net.EndpointsConfig ?? {});
    if (eps.length > 1) throw invalid(`Container cannot be created with multiple network endpoints: ${eps.join(', ')}`);
  }
  if (versionLess(v, '1.45')) {
    for (const m of mounts) {
      if ((m.VolumeOptions?.Subpath ?? '') !== '') throw invalid('VolumeOptions.Subpath needs API v1.45 or newer');
    }
  }
  // The container-wide MacAddress: moved to the main network's endpoint.
  const mac = config.MacAddress ?? '';
  if (mac !== '') {
    const mode = networkMode(host.NetworkMode);
    if (mode.kind === 'host' || mode.kind === 'container') throw invalid('conflicting options: mac-address and the network mode');
    const name = mode.kind === 'network' ? mode.name : 'none';
    const eps = (net.EndpointsConfig ??= {});
    const ep = (eps[name] ??= {});
    if (versionLess(v, '1.44')) {
      if ((ep.MacAddress ?? '') === '') ep.MacAddress = mac;
    } else {
      if ((ep.MacAddress ?? '') !== '' && ep.MacAddress !== mac) {
        throw invalid('the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty');
      }
      ep.MacAddress = mac;
      warnings.push('The container-wide MacAddress field is now deprecated. It should be specified in EndpointsConfig instead.');
    }
  }
  if (host.PidsLimit !== undefined && host.PidsLimit <= 0) delete host.PidsLimit;
  if ((host.NetworkMode ?? '') === '') host.NetworkMode = 'default';
}

function validateConfig(config: ContainerConfig): void {
  const wd = config.WorkingDir ?? '';
  if (wd !== '' && !posix.isAbsolute(wd)) {
    throw invalid(`the working directory '${wd}' is invalid, it needs to be an absolute path`);
  }
  if ((config.StopSignal ?? '') !== '') parseSignal(config.StopSignal ?? '');
  if (config.StopTimeout !== undefined && config.StopTimeout < -1) {
    throw invalid(`invalid stop timeout: ${config.StopTimeout}`);
  }
  for (const e of config.Env ?? []) {
    if (e === '' || e.startsWith('=')) throw invalid(`invalid environment variable: ${e}`);
  }
  const hc = config.Healthcheck;
  if (hc) {
    const dur = (name: string, n: number | undefined): void => {
      if (n !== undefined && n !== 0 && n < MIN_DURATION_NS) throw invalid(`${name} in Healthcheck cannot be less than 1ms`);
    };
    dur('Interval', hc.Interval);
    dur('Timeout', hc.Timeout);
    dur('StartPeriod', hc.StartPeriod);
    dur('StartInterval', hc.StartInterval);
    if (hc.Retries !== undefined && hc.Retries < 0) throw invalid('Retries in Healthcheck cannot be negative');
  }
  for (const port of Object.keys(config.ExposedPorts ?? {})) validatePortKey(port);
}

function validateRestartPolicy(host: HostConfig): void {
  const p = host.RestartPolicy;
  if (!p) return;
  const name = p.Name ?? '';
  const retries = p.MaximumRetryCount ?? 0;
  switch (name) {
    case 'always':
    case 'unless-stopped':
    case 'no':
      if (retries !== 0) {
        throw invalid(`invalid restart policy: maximum retry count can only be used with 'on-failure'${retries < 0 ? ' and cannot be negative' : ''}`);
      }
      break;
    case 'on-failure':
      if (retries < 0) throw invalid('invalid restart policy: maximum retry count cannot be negative');
      break;
    case '':
      break;
    default:
      throw invalid(`invalid restart policy: unknown policy '${name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'`);
  }
}

/** Whether the restart policy restarts at all (Docker's RestartPolicy.IsNone negated). */
export function hasRestartPolicy(host: HostConfig): boolean {
  const name = host.RestartPolicy?.Name ?? '';
  return name !== '' && name !== 'no';
}

function validateResources(host: HostConfig, opts: ParseOptions, warnings: string[]): void {
  const mem = host.Memory ?? 0;
  const swap = host.MemorySwap ?? 0;
  const reservation = host.MemoryReservation ?? 0;
  if (mem !== 0 && mem < MIN_MEMORY) throw invalid('Minimum memory limit allowed is 6MB');
  if (mem > 0 && swap > 0 && swap < mem) throw invalid('Minimum memoryswap limit should be larger than memory limit, see usage');
  if (mem === 0 && swap > 0) throw invalid('You should always set the Memory limit when using Memoryswap limit, see usage');
  if (swap < -1) throw invalid(`invalid MemorySwap: ${swap} (use -1 for unlimited swap)`);
  if (host.MemorySwappiness !== undefined && host.MemorySwappiness !== -1 && (host.MemorySwappiness < 0 || host.MemorySwappiness > 100)) {
    throw invalid(`Invalid value: ${host.MemorySwappiness}, valid memory swappiness range is 0-100`);
  }
  if (host.MemorySwappiness === -1) delete host.MemorySwappiness;
  if (reservation > 0 && reservation < MIN_MEMORY) throw invalid('Minimum memory reservation allowed is 6MB');
  if (mem > 0 && reservation > 0 && mem < reservation) {
    throw invalid('Minimum memory limit can not be less than memory reservation limit, see usage');
  }
  if (mem > 0 && swap === 0) host.MemorySwap = mem * 2;
  if ((host.KernelMemory ?? 0) !== 0) {
    warnings.push('Specifying a kernel memory limit is deprecated and will be removed in a future release.');
  }
  if (host.OomKillDisable === true && mem === 0) {
    warnings.push('OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.');
  }
  const nano = host.NanoCpus ?? 0;
  if (nano > 0 && (host.CpuPeriod ?? 0) > 0) throw invalid('Conflicting options: Nano CPUs and CPU Period cannot both be set');
  if (nano > 0 && (host.CpuQuota ?? 0) > 0) throw invalid('Conflicting options: Nano CPUs and CPU Quota cannot both be set');
  const ncpu = opts.cpuCount ?? Math.max(1, cpus().length);
  if (nano < 0 || nano > ncpu * 1e9) {
    throw invalid(`Range of CPUs is from 0.01 to ${ncpu}.00, as there are only ${ncpu} CPUs available`);
  }
  const period = host.CpuPeriod ?? 0;
  if (period !== 0 && (period < 1000 || period > 1000000)) {
    throw invalid('CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)');
  }
  const quota = host.CpuQuota ?? 0;
  if (quota > 0 && quota < 1000) throw invalid('CPU cfs quota can not be less than 1ms (i.e. 1000)');
  if (host.CpuShares !== undefined) {
    if (host.CpuShares < 0) {
      warnings.push(`Changing requested CPUShares of ${host.CpuShares} to minimum allowed of ${MIN_CPU_SHARES}`);
      host.CpuShares = MIN_CPU_SHARES;
    } else if (host.CpuShares > MAX_CPU_SHARES) {
      warnings.push(`Changing requested CPUShares of ${host.CpuShares} to maximum allowed of ${MAX_CPU_SHARES}`);
      host.CpuShares = MAX_CPU_SHARES;
    }
  }
  if ((host.CpuPercent ?? 0) > 0) {
    warnings.push(`${'linux'} does not support CPU percent. Percent discarded.`);
    delete host.CpuPercent;
  }
  if ((host.CpuCount ?? 0) > 0) {
    warnings.push('linux does not support CPU count. Count discarded.');
    delete host.CpuCount;
  }
  if ((host.IOMaximumBandwidth ?? 0) !== 0 || (host.IOMaximumIOps ?? 0) !== 0) {
    throw invalid('Invalid QoS settings: linux does not support configuration of maximum bandwidth or maximum IOps');
  }
  if (!validCpuset(host.CpusetCpus ?? '')) throw invalid(`Invalid value ${host.CpusetCpus ?? ''} for cpuset cpus`);
  if (!validCpuset(host.CpusetMems ?? '')) throw invalid(`Invalid value ${host.CpusetMems ?? ''} for cpuset mems`);
  const weight = host.BlkioWeight ?? 0;
  if (weight > 0 && (weight < 10 || weight > 1000)) throw invalid('Range of blkio weight is from 10 to 1000');
  for (const d of host.BlkioWeightDevice ?? []) {
    const w = d.Weight ?? 0;
    if (w > 0 && (w < 10 || w > 1000)) throw invalid(`invalid blkio weight for device ${d.Path ?? ''}: ${w} (range is 10 to 1000)`);
  }
  for (const key of ['BlkioWeightDevice', 'BlkioDeviceReadBps', 'BlkioDeviceWriteBps', 'BlkioDeviceReadIOps', 'BlkioDeviceWriteIOps'] as const) {
    for (const d of host[key] ?? []) {
      if (!posix.isAbsolute(d.Path ?? '')) throw invalid(`invalid device path in ${key}: ${JSON.stringify(d.Path ?? '')}`);
    }
  }
  for (const d of host.Devices ?? []) {
    const onHost = d.PathOnHost ?? '';
    if (!posix.isAbsolute(onHost)) throw invalid(`invalid device path: ${JSON.stringify(onHost)}: must be an absolute path`);
    const inCtr = d.PathInContainer ?? '';
    if (inCtr !== '' && !posix.isAbsolute(inCtr)) throw invalid(`${inCtr} is not an absolute path`);
    const perms = d.CgroupPermissions ?? '';
    if (perms !== '' && !validDeviceMode(perms)) throw invalid(`invalid device mode: ${perms}`);
  }
  for (const r of host.DeviceCgroupRules ?? []) parseDeviceCgroupRule(r);
  if ((host.DeviceRequests ?? []).length > 0) {
    throw invalid(`could not select device driver ${JSON.stringify(host.DeviceRequests?.[0]?.Driver ?? '')} with capabilities: ${JSON.stringify(host.DeviceRequests?.[0]?.Capabilities ?? [])}`);
  }
  for (const u of host.Ulimits ?? []) {
    const name = u.Name ?? '';
    if (ULIMIT_NAMES[name] === undefined) throw invalid(`invalid ulimit type: ${name}`);
    const soft = u.Soft ?? 0;
    const hard = u.Hard ?? 0;
    if (soft > hard && hard !== -1) throw invalid(`ulimit soft limit must be less than or equal to hard limit: ${soft} > ${hard}`);
  }
}

function validateHostConfig(config: ContainerConfig, host: HostConfig, net: NetworkingConfig, opts: ParseOptions, warnings: string[]): void {
  validateRestartPolicy(host);
  if (host.AutoRemove === true && hasRestartPolicy(host)) {
    throw invalid("can't create 'AutoRemove' container with restart policy");
  }
  validateResources(host, opts, warnings);
  if (host.ShmSize !== undefined && host.ShmSize < 0) throw invalid('SHM size can not be less than 0');
  if (host.OomScoreAdj !== undefined && (host.OomScoreAdj < -1000 || host.OomScoreAdj > 1000)) {
    throw invalid(`Invalid value ${host.OomScoreAdj}, range for oom score adj is [-1000, 1000]`);
  }
  for (const [port, bindings] of Object.entries(host.PortBindings ?? {})) {
    const slash = port.indexOf('/');
    const p = slash < 0 ? port : port.slice(0, slash);
    if (!validPortOrRange(p, false)) throw invalid(`invalid port specification: ${JSON.stringify(p)}`);
    validatePortKey(port);
    for (const b of bindings ?? []) {
      const hp = b.HostPort ?? '';
      if (hp !== '' && !validPortOrRange(hp, true)) throw invalid(`invalid port specification: ${JSON.stringify(hp)}`);
      const ip = b.HostIp ?? '';
      if (ip !== '' && isIP(ip.replace(/^\[(.*)\]$/, '$1')) === 0) throw invalid(`invalid host IP address: ${JSON.stringify(ip)}`);
    }
  }
  const ipc = ipcMode(host.IpcMode);
  pidMode(host.PidMode);
  const uts = utsMode(host.UTSMode);
  const netMode = networkMode(host.NetworkMode);
  if ((host.UsernsMode ?? '') !== '' && host.UsernsMode !== 'host') throw invalid(`invalid USER mode: ${host.UsernsMode ?? ''}`);
  const cg = host.Cgroup ?? '';
  if (cg !== '' && cg !== 'host' && containerRef(cg) === undefined) throw invalid(`invalid cgroup mode: ${cg}`);
  if (uts.kind === 'host' && (config.Hostname ?? '') !== '') throw invalid('conflicting options: hostname and the UTS mode');
  if (ipc.kind === 'none' && (host.ShmSize ?? 0) !== 0) warnings.push('ShmSize is ignored with IpcMode "none"');
  // Network mode conflicts (runconfig's validateNetContainerMode / validateNetMode).
  if (netMode.kind === 'container') {
    if ((config.Hostname ?? '') !== '') throw invalid('conflicting options: hostname and the network mode');
    if ((host.Links ?? []).length > 0) {
      throw invalid("conflicting options: container type network can't be used with links. This would result in undefined behavior");
    }
    if ((host.Dns ?? []).length > 0) throw invalid('conflicting options: dns and the network mode');
    if ((host.ExtraHosts ?? []).length > 0) throw invalid('conflicting options: custom host-to-IP mapping and the network mode');
    if (Object.keys(host.PortBindings ?? {}).length > 0 || host.PublishAllPorts === true) {
      throw invalid('conflicting options: port publishing and the container type network mode');
    }
    if (Object.keys(config.ExposedPorts ?? {}).length > 0) {
      throw invalid('conflicting options: port exposing and the container type network mode');
    }
  }
  if (netMode.kind === 'host') {
    if ((host.Links ?? []).length > 0) {
      throw invalid("conflicting options: host type networking can't be used with links. This would result in undefined behavior");
    }
    if (Object.keys(host.PortBindings ?? {}).length > 0 || host.PublishAllPorts === true) {
      warnings.push('Published ports are discarded when using host network mode');
    }
  }
  for (const d of host.Dns ?? []) {
    if (isIP(d) === 0) throw invalid(`IP address is not correctly formatted: ${d}`);
  }
  for (const e of host.ExtraHosts ?? []) parseExtraHost(e);
  normalizeCapabilities(host.CapAdd ?? []);
  normalizeCapabilities(host.CapDrop ?? []);
  const sec = parseSecurityOpts(host.SecurityOpt ?? []);
  if (sec.seccomp !== undefined && sec.seccomp !== 'unconfined' && sec.seccomp !== 'builtin' && sec.seccomp !== '') {
    parseDockerSeccompProfile(sec.seccomp);
  }
  validateSysctls(host.Sysctls ?? {}, host);
  for (const dest of Object.keys(host.Tmpfs ?? {})) {
    if (!posix.isAbsolute(dest)) throw invalid(`invalid mount config for type "tmpfs": invalid mount path: '${dest}' mount path must be absolute`);
  }
  for (const [name, ep] of Object.entries(net.EndpointsConfig ?? {})) {
    const v4 = ep.IPAMConfig?.IPv4Address ?? '';
    const v6 = ep.IPAMConfig?.IPv6Address ?? '';
    if (v4 !== '' && isIP(v4) !== 4) throw invalid(`invalid IPv4 address: ${v4}`);
    if (v6 !== '' && isIP(v6) !== 6) throw invalid(`invalid IPv6 address: ${v6}`);
    for (const ll of ep.IPAMConfig?.LinkLocalIPs ?? []) {
      if (isIP(ll) === 0) throw invalid(`invalid link-local IP address: ${ll}`);
    }
    if ((ep.MacAddress ?? '') !== '' && !/^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/.test(ep.MacAddress ?? '')) {
      throw invalid(`invalid MAC address for endpoint ${name}: ${ep.MacAddress ?? ''}`);
    }
  }
}

// ---------------------------------------------------------------- image merge

function copyHealth(h: HealthConfig): HealthConfig {
  return { ...h, ...(h.Test ? { Test: [...h.Test] } : {}) };
}

/**
 * Fills the container's config from the image's, as Docker does: User,
 * WorkingDir and StopSignal default to the image's; Env merged by name (the
 * container's wins); Labels merged (the container's win); ExposedPorts and
 * Volumes unioned; the image's Cmd is used only when the request gives no
 * Entrypoint and no Cmd; the Healthcheck's unset fields come from the image.
 * Entrypoint `[""]` resets the entrypoint. Neither command nor entrypoint:
 * `no command specified`.
 */
export function mergeImageConfig(cfg: ContainerConfig, image: ImageConfig): ContainerConfig {
  const out: ContainerConfig = structuredClone(cfg);
  if ((out.User ?? '') === '' && image.User !== undefined) out.User = image.User;
  if (Object.keys(out.ExposedPorts ?? {}).length === 0) {
    if (image.ExposedPorts !== undefined) out.ExposedPorts = { ...image.ExposedPorts };
  } else if (image.ExposedPorts !== undefined) {
    out.ExposedPorts = { ...image.ExposedPorts, ...out.ExposedPorts };
  }
  if ((out.Env ?? []).length === 0) {
    if (image.Env !== undefined) out.Env = [...image.Env];
  } else {
    const env = [...(out.Env ?? [])];
    const keys = new Set(env.map((e) => e.split('=', 1)[0]));
    for (const e of image.Env ?? []) if (!keys.has(e.split('=', 1)[0])) env.push(e);
    out.Env = env;
  }
  out.Labels = { ...(image.Labels ?? {}), ...(out.Labels ?? {}) };
  if ((out.Entrypoint ?? []).length === 0) {
    if ((out.Cmd ?? []).length === 0 && image.Cmd !== undefined) {
      out.Cmd = [...image.Cmd];
      if (image.ArgsEscaped !== undefined) out.ArgsEscaped = image.ArgsEscaped;
    }
    if (out.Entrypoint === undefined && image.Entrypoint !== undefined) out.Entrypoint = [...image.Entrypoint];
  }
  if (image.Healthcheck !== undefined) {
    if (out.Healthcheck === undefined) {
      out.Healthcheck = copyHealth(image.Healthcheck);
    } else {
      const u = out.Healthcheck;
      const i = image.Healthcheck;
      if ((u.Test ?? []).length === 0 && i.Test !== undefined) u.Test = [...i.Test];
      if ((u.Interval ?? 0) === 0 && i.Interval !== undefined) u.Interval = i.Interval;
      if ((u.Timeout ?? 0) === 0 && i.Timeout !== undefined) u.Timeout = i.Timeout;
      if ((u.StartPeriod ?? 0) === 0 && i.StartPeriod !== undefined) u.StartPeriod = i.StartPeriod;
      if ((u.StartInterval ?? 0) === 0 && i.StartInterval !== undefined) u.StartInterval = i.StartInterval;
      if ((u.Retries ?? 0) === 0 && i.Retries !== undefined) u.Retries = i.Retries;
    }
  }
  if ((out.WorkingDir ?? '') === '' && image.WorkingDir !== undefined) out.WorkingDir = image.WorkingDir;
  if (Object.keys(out.Volumes ?? {}).length === 0) {
    if (image.Volumes !== undefined) out.Volumes = { ...image.Volumes };
  } else if (image.Volumes !== undefined) {
    out.Volumes = { ...out.Volumes, ...image.Volumes };
  }
  if ((out.StopSignal ?? '') === '' && image.StopSignal !== undefined) out.StopSignal = image.StopSignal;
  if ((out.Shell ?? []).length === 0 && image.Shell !== undefined) out.Shell = [...image.Shell];
  if ((out.OnBuild ?? []).length === 0 && image.OnBuild !== undefined) out.OnBuild = [...image.OnBuild];
  const ep = out.Entrypoint;
  if (ep !== undefined && ep.length === 1 && ep[0] === '') delete out.Entrypoint;
  if ((out.Entrypoint ?? []).length === 0 && (out.Cmd ?? []).length === 0) throw invalid('no command specified');
  return out;
}
