/**
 * Validation of config.json, of a process spec (`runc exec --process`), and
 * of the OCI state. Types, required properties, enums and ranges are
 * checked; unknown properties are dropped. Errors are invalid() and name
 * the JSON path: `linux.namespaces[2].type: unknown namespace type "foo"`.
 */
import {
  array, boolean, dflt, fail, int32, int64, integer, oneOf, opt, pattern, record, req, string,
  stringArray, stringMap, struct, uint16, uint32, uint64,
} from './_check.js';
import type { Parser } from './_check.js';
import {
  CONTAINER_STATUSES, DEVICE_TYPES, IOPRIO_CLASSES, MEMORY_POLICY_FLAGS,
  MEMORY_POLICY_MODES, NAMESPACE_TYPES, PERSONALITY_DOMAINS, ROOTFS_PROPAGATIONS, SCHEDULER_FLAGS,
  SCHEDULER_POLICIES, SECCOMP_ACTIONS, SECCOMP_ARCHES, SECCOMP_FLAGS, SECCOMP_OPERATORS,
} from './runtime.js';
import type {
  ConsoleSize, CPUAffinity, Hook, Hooks, Linux, LinuxBlockIO, LinuxCapabilities, LinuxCPU,
  LinuxDevice, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxIDMapping, LinuxIntelRdt,
  LinuxInterfacePriority, LinuxIOPriority, LinuxMemory, LinuxMemoryPolicy, LinuxNamespace,
  LinuxNetDevice, LinuxNetwork, LinuxPersonality, LinuxPids, LinuxRdma, LinuxResources,
  LinuxScheduler, LinuxSeccomp, LinuxSeccompArg, LinuxSyscall, LinuxThrottleDevice, LinuxTimeOffset,
  LinuxWeightDevice, Mount, POSIXRlimit, Process, Root, Spec, State, User,
} from './runtime.js';

const idMapping = struct<LinuxIDMapping>({
  containerID: req(uint32),
  hostID: req(uint32),
  size: req(uint32),
});

const user = struct<User>({
  uid: dflt(uint32, () => 0),
  gid: dflt(uint32, () => 0),
  umask: opt(uint32),
  additionalGids: opt(array(uint32)),
  username: opt(string),
});

const capabilities = struct<LinuxCapabilities>({
  bounding: opt(stringArray),
  effective: opt(stringArray),
  inheritable: opt(stringArray),
  permitted: opt(stringArray),
  ambient: opt(stringArray),
});

const rlimit = struct<POSIXRlimit>({
  type: req(pattern(/^RLIMIT_[A-Z]+$/, 'an RLIMIT_ name')),
  hard: req(uint64),
  soft: req(uint64),
});

const consoleSize = struct<ConsoleSize>({ height: req(uint64), width: req(uint64) });

const ioPriority = struct<LinuxIOPriority>({
  class: req(oneOf(IOPRIO_CLASSES, 'I/O priority class')),
  priority: opt(int32),
});

const scheduler = struct<LinuxScheduler>({
  policy: req(oneOf(SCHEDULER_POLICIES, 'scheduler policy')),
  nice: opt(int32),
  priority: opt(int32),
  flags: opt(array(oneOf(SCHEDULER_FLAGS, 'scheduler flag'))),
  runtime: opt(uint64),
  deadline: opt(uint64),
  period: opt(uint64),
});

const cpuList = pattern(/^[0-9, -]*$/, 'a CPU list');
const cpuAffinity = struct<CPUAffinity>({ initial: opt(cpuList), final: opt(cpuList) });

const processShape = struct<Process>({
  terminal: opt(boolean),
  consoleSize: opt(consoleSize),
  user: dflt(user, () => ({ uid: 0, gid: 0 })),
  args: opt(stringArray),
  commandLine: opt(string),
  env: opt(stringArray),
  cwd: req(string),
  capabilities: opt(capabilities),
  rlimits: opt(array(rlimit)),
  noNewPrivileges: opt(boolean),
  apparmorProfile: opt(string),
  oomScoreAdj: opt(integer(-1000, 1000)),
  selinuxLabel: opt(string),
  ioPriority: opt(ioPriority),
  scheduler: opt(scheduler),
  execCPUAffinity: opt(cpuAffinity),
});

const root = struct<Root>({ path: req(string), readonly: opt(boolean) });

const mount = struct<Mount>({
  destination: req(string),
  type: opt(string),
  source: opt(string),
  options: opt(stringArray),
  uidMappings: opt(array(idMapping)),
  gidMappings: opt(array(idMapping)),
});

const hook = struct<Hook>({
  path: req(string),
  args: opt(stringArray),
  env: opt(stringArray),
  timeout: opt(integer(1, 2 ** 31 - 1)),
});
const hookList = array(hook);
const hooks = struct<Hooks>({
  prestart: opt(hookList),
  createRuntime: opt(hookList),
  createContainer: opt(hookList),
  startContainer: opt(hookList),
  poststart: opt(hookList),
  poststop: opt(hookList),
});

// ---------------------------------------------------------------- linux

const namespace = struct<LinuxNamespace>({
  type: req(oneOf(NAMESPACE_TYPES, 'namespace type')),
  path: opt(string),
});

const namespaces: Parser<LinuxNamespace[]> = (v, path) => {
  const list = array(namespace)(v, path);
  const seen = new Set<string>();
  list.forEach((ns, i) => {
    if (seen.has(ns.type)) fail(`${path}[${i}].type`, `namespace type ${JSON.stringify(ns.type)} listed twice`);
    seen.add(ns.type);
  });
  return list;
};

const device = struct<LinuxDevice>(
  {
    path: req(string),
    type: req(oneOf(DEVICE_TYPES, 'device type')),
    major: opt(int64),
    minor: opt(int64),
    fileMode: opt(uint32),
    uid: opt(uint32),
    gid: opt(uint32),
  },
  (d, path) => {
    if (d.type !== 'p' && (d.major === undefined || d.minor === undefined)) {
      fail(path, `device ${d.path} of type ${d.type} needs major and minor`);
    }
  },
);

const deviceCgroup = struct<LinuxDeviceCgroup>({
  allow: req(boolean),
  type: opt(oneOf(['a', 'c', 'b'] as const, 'device cgroup type')),
  major: opt(int64),
  minor: opt(int64),
  access: opt(pattern(/^[rwm]*$/, 'an access string of r, w and m')),
});

const memory = struct<LinuxMemory>({
  limit: opt(int64),
  reservation: opt(int64),
  swap: opt(int64),
  kernel: opt(int64),
  kernelTCP: opt(int64),
  swappiness: opt(uint64),
  disableOOMKiller: opt(boolean),
  useHierarchy: opt(boolean),
  checkBeforeUpdate: opt(boolean),
});

const cpu = struct<LinuxCPU>({
  shares: opt(uint64),
  quota: opt(int64),
  burst: opt(uint64),
  period: opt(uint64),
  realtimeRuntime: opt(int64),
  realtimePeriod: opt(uint64),
  cpus: opt(string),
  mems: opt(string),
  idle: opt(int64),
});

const pids = struct<LinuxPids>({ limit: req(int64) });

const weightDevice = struct<LinuxWeightDevice>({
  major: req(int64),
  minor: req(int64),
  weight: opt(uint16),
  leafWeight: opt(uint16),
});
const throttleDevice = struct<LinuxThrottleDevice>({
  major: req(int64),
  minor: req(int64),
  rate: req(uint64),
});
const blockIO = struct<LinuxBlockIO>({
  weight: opt(uint16),
  leafWeight: opt(uint16),
  weightDevice: opt(array(weightDevice)),
  throttleReadBpsDevice: opt(array(throttleDevice)),
  throttleWriteBpsDevice: opt(array(throttleDevice)),
  throttleReadIOPSDevice: opt(array(throttleDevice)),
  throttleWriteIOPSDevice: opt(array(throttleDevice)),
});

const hugepageLimit = struct<LinuxHugepageLimit>({
  pageSize: req(pattern(/^[1-9][0-9]*[KMG]B$/, 'a page size like 2MB')),
  limit: req(uint64),
});

const network = struct<LinuxNetwork>({
  classID: opt(uint32),
  priorities: opt(array(struct<LinuxInterfacePriority>({ name: req(string), priority: req(uint32) }))),
});

const rdma = struct<LinuxRdma>({ hcaHandles: opt(uint32), hcaObjects: opt(uint32) });

export const parseResources: Parser<LinuxResources> = struct<LinuxResources>({
  devices: opt(array(deviceCgroup)),
  memory: opt(memory),
  cpu: opt(cpu),
  pids: opt(pids),
  blockIO: opt(blockIO),
  hugepageLimits: opt(array(hugepageLimit)),
  network: opt(network),
  rdma: opt(record(rdma)),
  unified: opt(stringMap),
});

const seccompArg = struct<LinuxSeccompArg>({
  index: req(integer(0, 5)),
  value: req(uint64),
  valueTwo: opt(uint64),
  op: req(oneOf(SECCOMP_OPERATORS, 'seccomp operator')),
});

const syscall = struct<LinuxSyscall>(
  {
    names: req(stringArray),
    action: req(oneOf(SECCOMP_ACTIONS, 'seccomp action')),
    errnoRet: opt(uint32),
    args: opt(array(seccompArg)),
  },
  (s, path) => {
    if (s.names.length === 0) fail(`${path}.names`, 'must name at least one syscall');
  },
);

const seccomp = struct<LinuxSeccomp>({
  defaultAction: req(oneOf(SECCOMP_ACTIONS, 'seccomp action')),
  defaultErrnoRet: opt(uint32),
  architectures: opt(array(oneOf(SECCOMP_ARCHES, 'seccomp architecture'))),
  flags: opt(array(oneOf(SECCOMP_FLAGS, 'seccomp flag'))),
  listenerPath: opt(string),
  listenerMetadata: opt(string),
  syscalls: opt(array(syscall)),
});

const intelRdt = struct<LinuxIntelRdt>({
  closID: opt(string),
  schemata: opt(stringArray),
  l3CacheSchema: opt(string),
  memBwSchema: opt(pattern(/^MB:[^\n]*$/, 'a memory bandwidth schema (MB:...)')),
  enableMonitoring: opt(boolean),
});

const memoryPolicy = struct<LinuxMemoryPolicy>({
  mode: req(oneOf(MEMORY_POLICY_MODES, 'memory policy mode')),
  nodes: opt(string),
  flags: opt(array(oneOf(MEMORY_POLICY_FLAGS, 'memory policy flag'))),
});

const personality = struct<LinuxPersonality>({
  domain: req(oneOf(PERSONALITY_DOMAINS, 'personality domain')),
  flags: opt(stringArray),
});

const timeOffset = struct<LinuxTimeOffset>({ secs: opt(int64), nanosecs: opt(uint32) });

const linux = struct<Linux>({
  uidMappings: opt(array(idMapping)),
  gidMappings: opt(array(idMapping)),
  sysctl: opt(stringMap),
  resources: opt(parseResources),
  cgroupsPath: opt(string),
  namespaces: opt(namespaces),
  devices: opt(array(device)),
  netDevices: opt(record(struct<LinuxNetDevice>({ name: opt(string) }))),
  seccomp: opt(seccomp),
  rootfsPropagation: opt(oneOf(ROOTFS_PROPAGATIONS, 'rootfs propagation')),
  maskedPaths: opt(stringArray),
  readonlyPaths: opt(stringArray),
  mountLabel: opt(string),
  intelRdt: opt(intelRdt),
  memoryPolicy: opt(memoryPolicy),
  personality: opt(personality),
  timeOffsets: opt(struct<{ boottime?: LinuxTimeOffset; monotonic?: LinuxTimeOffset }>({
    boottime: opt(timeOffset),
    monotonic: opt(timeOffset),
  })),
});

const spec = struct<Spec>({
  ociVersion: req(string),
  process: opt(processShape),
  root: opt(root),
  hostname: opt(string),
  domainname: opt(string),
  mounts: opt(array(mount)),
  hooks: opt(hooks),
  annotations: opt(stringMap),
  linux: opt(linux),
});

const state = struct<State>({
  ociVersion: req(string),
  id: req(string),
  status: req(oneOf(CONTAINER_STATUSES, 'container status')),
  pid: opt(integer(0, 2 ** 31 - 1)),
  bundle: req(string),
  annotations: opt(stringMap),
});

/** Validate a parsed config.json. Throws invalid() naming the JSON path of the first problem. */
export function parseSpec(json: unknown): Spec {
  return spec(json, '');
}

/** Validate a process spec (`exec --process`); paths in errors start with `prefix`. */
export function parseProcess(json: unknown, prefix = 'process'): Process {
  return processShape(json, prefix);
}

/** Validate an OCI state object. */
export function parseState(json: unknown): State {
  return state(json, '');
}
