// `GET /containers/{id}/stats`: Docker's ContainerStatsResponse from the
// container's cgroup (v1 or v2, through @berth/cgroups), the host's
// /proc/stat (system_cpu_usage, as dockerd computes it) and the container's
// own view of /proc/<pid>/net/dev (its network namespace).
import { readFile } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { errnoCode, internal } from '@berth/base';
import { openCgroup, UNLIMITED } from '@berth/cgroups';
import type { BlkioEntry, CgroupLayout, CgroupStats, OpenCgroupOptions } from '@berth/cgroups';

export interface BlkioStatEntry {
  major: number;
  minor: number;
  op: string;
  value: number;
}

/** On cgroup v2 only io_service_bytes_recursive is set; the others are null. */
export interface BlkioStats {
  io_service_bytes_recursive: BlkioStatEntry[] | null;
  io_serviced_recursive: BlkioStatEntry[] | null;
  io_queue_recursive: BlkioStatEntry[] | null;
  io_service_time_recursive: BlkioStatEntry[] | null;
  io_wait_time_recursive: BlkioStatEntry[] | null;
  io_merged_recursive: BlkioStatEntry[] | null;
  io_time_recursive: BlkioStatEntry[] | null;
  sectors_recursive: BlkioStatEntry[] | null;
}

export interface CpuStats {
  cpu_usage: {
    /** Nanoseconds. */
    total_usage: number;
    /** Nanoseconds per CPU; cgroup v1 only. */
    percpu_usage?: number[];
    usage_in_kernelmode: number;
    usage_in_usermode: number;
  };
  /** Nanoseconds of host CPU time (all CPUs), from /proc/stat. */
  system_cpu_usage?: number;
  online_cpus?: number;
  throttling_data: { periods: number; throttled_periods: number; throttled_time: number };
}

export interface MemoryStats {
  usage?: number;
  /** cgroup v1 only. */
  max_usage?: number;
  /** memory.stat as the kernel gives it. */
  stats?: Record<string, number>;
  /** cgroup v1 only. */
  failcnt?: number;
  /** The cgroup's limit, or the host's memory when that is lower (unlimited). */
  limit?: number;
}

export interface NetworkStats {
  rx_bytes: number;
  rx_packets: number;
  rx_errors: number;
  rx_dropped: number;
  tx_bytes: number;
  tx_packets: number;
  tx_errors: number;
  tx_dropped: number;
}

/** ContainerStatsResponse of the Docker API. */
export interface Stats {
  name?: string;
  id?: string;
  read: string;
  preread: string;
  pids_stats: { current?: number; limit?: number };
  blkio_stats: BlkioStats;
  num_procs: number;
  storage_stats: Record<string, never>;
  cpu_stats: CpuStats;
  precpu_stats: CpuStats;
  memory_stats: MemoryStats;
  /** By interface; absent when the container has no interface but lo (or no process). */
  networks?: Record<string, NetworkStats>;
}

export interface StatsTarget {
  /** linux.cgroupsPath of the container's OCI spec. */
  cgroupsPath: string;
  /** The container's init process, for its network namespace's counters; 0 when none. */
  pid: number;
  /** The container id, which names the cgroup when cgroupsPath is empty. */
  containerId?: string;
  /** Copied to the output ("/name" as docker prints it). */
  name?: string;
  id?: string;
  /** The cgroup layout (default: this host's). */
  layout?: CgroupLayout;
  /** Report network counters (default true; false for a container in the host's network namespace). */
  networks?: boolean;
}

/** Go's zero time, which docker prints for a missing preread. */
export const ZERO_TIME = '0001-01-01T00:00:00Z';

export function zeroCpuStats(): CpuStats {
  return {
    cpu_usage: { total_usage: 0, usage_in_kernelmode: 0, usage_in_usermode: 0 },
    throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 },
  };
}

/** USER_HZ, the unit of /proc/stat. */
const CLOCK_TICKS = 100;

export interface SystemCpu {
  /** Nanoseconds of CPU time of the whole host. */
  usage: number;
  onlineCpus: number;
}

/**
 * /proc/stat as dockerd reads it: the sum of the first seven fields of the
 * "cpu" line (user nice system idle iowait irq softirq) in nanoseconds, and
 * the number of "cpuN" lines.
 */
export function parseProcStat(text: string): SystemCpu {
  let usage = 0;
  let onlineCpus = 0;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] === 'cpu') {
      if (f.length < 8) throw internal('invalid /proc/stat: the "cpu" line has fewer than 7 fields');
      let ticks = 0;
      for (const v of f.slice(1, 8)) ticks += Number(v);
      usage = (ticks * 1e9) / CLOCK_TICKS;
    } else if (f[0] !== undefined && /^cpu\d+$/.test(f[0])) {
      onlineCpus++;
    }
  }
  return { usage, onlineCpus };
}

/** /proc/<pid>/net/dev: the counters of every interface but lo. */
export function parseNetDev(text: string): Record<string, NetworkStats> {
  const out: Record<string, NetworkStats> = {};
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const v = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    if (name === '' || name === 'lo' || v.length < 16 || v.some((n) => !Number.isFinite(n))) continue;
    const at = (i: number): number => v[i] ?? 0;
    out[name] = {
      rx_bytes: at(0), rx_packets: at(1), rx_errors: at(2), rx_dropped: at(3),
      tx_bytes: at(8), tx_packets: at(9), tx_errors: at(10), tx_dropped: at(11),
    };
  }
  return out;
}

async function readNetworks(pid: number): Promise<Record<string, NetworkStats> | undefined> {
  if (pid <= 0) return undefined;
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/net/dev`, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ESRCH' || errnoCode(err) === 'EINVAL') return undefined;
    throw internal(`read /proc/${pid}/net/dev: ${errnoCode(err) ?? String(err)}`, err);
  }
  const nets = parseNetDev(text);
  return Object.keys(nets).length === 0 ? undefined : nets;
}

async function systemCpu(): Promise<SystemCpu> {
  try {
    return parseProcStat(await readFile('/proc/stat', 'utf8'));
  } catch (err) {
    throw internal(`read /proc/stat: ${err instanceof Error ? err.message : String(err)}`, err);
  }
}

const blkio = (entries: BlkioEntry[], lower: boolean): BlkioStatEntry[] =>
  entries.map((e) => ({ major: e.major, minor: e.minor, op: lower ? e.op.toLowerCase() : e.op, value: e.value }));

/** The cgroup's memory limit, or the host's memory when the cgroup allows more (docker's "limit"). */
function memoryLimit(limit: number, host: number): number {
  return limit <= 0 || limit >= UNLIMITED || limit > host ? host : limit;
}

/** The Docker shape of one sample: a pure function of what was read. */
export function toDockerStats(
  version: 'v1' | 'v2',
  cg: CgroupStats,
  sys: SystemCpu,
  hostMemory: number,
  read: string,
  prev?: Stats,
): Stats {
  const v1 = version === 'v1';
  const cpu: CpuStats = {
    cpu_usage: {
      total_usage: cg.cpu.usage.total,
      usage_in_kernelmode: cg.cpu.usage.kernel,
      usage_in_usermode: cg.cpu.usage.user,
    },
    system_cpu_usage: sys.usage,
    online_cpus: sys.onlineCpus,
    throttling_data: {
      periods: cg.cpu.throttling.periods,
      throttled_periods: cg.cpu.throttling.throttledPeriods,
      throttled_time: cg.cpu.throttling.throttledTime,
    },
  };
  if (v1) cpu.cpu_usage.percpu_usage = cg.cpu.usage.percpu;
  const m = cg.memory;
  const memory: MemoryStats = v1
    ? { usage: m.usage.usage, max_usage: m.usage.max, stats: m.raw, failcnt: m.usage.failcnt, limit: memoryLimit(m.usage.limit, hostMemory) }
    : { usage: m.usage.usage, stats: m.raw, limit: memoryLimit(m.usage.limit, hostMemory) };
  const b = cg.blkio;
  const blkioStats: BlkioStats = v1
    ? {
      io_service_bytes_recursive: blkio(b.ioServiceBytesRecursive, false),
      io_serviced_recursive: blkio(b.ioServicedRecursive, false),
      io_queue_recursive: blkio(b.ioQueueRecursive, false),
      io_service_time_recursive: blkio(b.ioServiceTimeRecursive, false),
      io_wait_time_recursive: blkio(b.ioWaitTimeRecursive, false),
      io_merged_recursive: blkio(b.ioMergedRecursive, false),
      io_time_recursive: blkio(b.ioTimeRecursive, false),
      sectors_recursive: blkio(b.sectorsRecursive, false),
    }
    : {
      io_service_bytes_recursive: blkio(b.ioServiceBytesRecursive, true),
      io_serviced_recursive: null,
      io_queue_recursive: null,
      io_service_time_recursive: null,
      io_wait_time_recursive: null,
      io_merged_recursive: null,
      io_time_recursive: null,
      sectors_recursive: null,
    };
  const pids: Stats['pids_stats'] = { current: cg.pids.current };
  if (cg.pids.limit > 0 && cg.pids.limit < UNLIMITED) pids.limit = cg.pids.limit;
  return {
    read,
    preread: prev?.read ?? ZERO_TIME,
    pids_stats: pids,
    blkio_stats: blkioStats,
    num_procs: 0,
    storage_stats: {},
    cpu_stats: cpu,
    precpu_stats: prev?.cpu_stats ?? zeroCpuStats(),
    memory_stats: memory,
  };
}

/** One sample of the container's statistics; precpu_stats and preread come from `prev` (zero without). */
export async function collectStats(target: StatsTarget, prev?: Stats): Promise<Stats> {
  const open: OpenCgroupOptions = { cgroupsPath: target.cgroupsPath, containerId: target.containerId ?? '' };
  if (target.layout !== undefined) open.layout = target.layout;
  const cg = await openCgroup(open);
  const read = new Date().toISOString();
  const [cgStats, sys, networks] = await Promise.all([
    cg.stats(),
    systemCpu(),
    target.networks === false ? Promise.resolve(undefined) : readNetworks(target.pid),
  ]);
  const out = toDockerStats(cg.version, cgStats, sys, totalmem(), read, prev);
  // in docker's order: name, id and networks after the rest
  if (target.name !== undefined) out.name = target.name;
  if (target.id !== undefined) out.id = target.id;
  if (networks !== undefined) out.networks = networks;
  return out;
}

export interface StreamStatsOptions {
  /** stream=true: a sample every interval until aborted or stopped. */
  stream: boolean;
  /** With stream=false: one sample at once, with zero precpu_stats (else the second of two, a interval apart). */
  oneShot: boolean;
  signal: AbortSignal;
  /** Default 1000 ms, as docker. */
  intervalMs?: number;
  /** Streaming ends once this says false. */
  isRunning?: () => boolean;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * The samples `GET /containers/{id}/stats` sends: with stream, one per
 * interval, each with the previous one's cpu_stats as precpu_stats (the first
 * with zeros); without, a single sample (see oneShot).
 */
export async function* streamStats(target: StatsTarget, opts: StreamStatsOptions): AsyncGenerator<Stats, void, undefined> {
  const interval = opts.intervalMs ?? 1000;
  if (!opts.stream) {
    const first = await collectStats(target);
    if (opts.oneShot) {
      yield first;
      return;
    }
    await delay(interval, opts.signal);
    if (opts.signal.aborted) return;
    yield await collectStats(target, first);
    return;
  }
  let prev: Stats | undefined;
  while (!opts.signal.aborted) {
    const s = await collectStats(target, prev);
    yield s;
    prev = s;
    if (opts.isRunning !== undefined && !opts.isRunning()) return;
    await delay(interval, opts.signal);
  }
}
