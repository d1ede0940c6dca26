// The statistics of one cgroup, in the shape `runc events --stats` prints
// (the "data" of {"type":"stats","id":...,"data":...}), plus the parsers of
// the kernel's stat files shared by v1 and v2.

/**
 * How "max" (unlimited) reads on cgroup v2, as runc reports it: 2^64-1.
 * As a JavaScript number this is 2^64; eventsStatsJSON prints it exactly.
 */
export const UNLIMITED = 2 ** 64;

export interface CpuUsage {
  /** Nanoseconds, all CPUs. */
  total: number;
  /** Nanoseconds per CPU (v1 only). */
  percpu: number[];
  percpu_kernel: number[];
  percpu_user: number[];
  /** Nanoseconds in kernel mode. */
  kernel: number;
  /** Nanoseconds in user mode. */
  user: number;
}

export interface CpuThrottling {
  periods: number;
  throttledPeriods: number;
  /** Nanoseconds. */
  throttledTime: number;
}

export interface CpuStats {
  usage: CpuUsage;
  throttling: CpuThrottling;
}

export interface CpusetStats {
  cpus: number[];
  mems: number[];
}

export interface MemoryEntry {
  limit: number;
  usage: number;
  max: number;
  failcnt: number;
}

export interface MemoryStats {
  /** Page cache bytes ("cache" in v1 memory.stat, "file" in v2). */
  cache: number;
  usage: MemoryEntry;
  /** v1: memory+swap (memsw); v2: memory.current + memory.swap.current, as runc reports it. */
  swap: MemoryEntry;
  kernel: MemoryEntry;
  kernelTCP: MemoryEntry;
  /** memory.stat as is. */
  raw: Record<string, number>;
}

export interface PidsStats {
  current: number;
  /** 0 when unlimited, as runc reports it. */
  limit: number;
}

export interface BlkioEntry {
  major: number;
  minor: number;
  op: string;
  value: number;
}

export interface BlkioStats {
  ioServiceBytesRecursive: BlkioEntry[];
  ioServicedRecursive: BlkioEntry[];
  ioQueueRecursive: BlkioEntry[];
  ioServiceTimeRecursive: BlkioEntry[];
  ioWaitTimeRecursive: BlkioEntry[];
  ioMergedRecursive: BlkioEntry[];
  ioTimeRecursive: BlkioEntry[];
  sectorsRecursive: BlkioEntry[];
}

export interface HugetlbStats {
  usage: number;
  max: number;
  failcnt: number;
}

export interface CgroupStats {
  cpu: CpuStats;
  cpuset: CpusetStats;
  memory: MemoryStats;
  pids: PidsStats;
  blkio: BlkioStats;
  /** By page size ("2MB"). */
  hugetlb: Record<string, HugetlbStats>;
}

const memoryEntry = (): MemoryEntry => ({ limit: 0, usage: 0, max: 0, failcnt: 0 });

export function emptyStats(): CgroupStats {
  return {
    cpu: {
      usage: { total: 0, percpu: [], percpu_kernel: [], percpu_user: [], kernel: 0, user: 0 },
      throttling: { periods: 0, throttledPeriods: 0, throttledTime: 0 },
    },
    cpuset: { cpus: [], mems: [] },
    memory: { cache: 0, usage: memoryEntry(), swap: memoryEntry(), kernel: memoryEntry(), kernelTCP: memoryEntry(), raw: {} },
    pids: { current: 0, limit: 0 },
    blkio: {
      ioServiceBytesRecursive: [],
      ioServicedRecursive: [],
      ioQueueRecursive: [],
      ioServiceTimeRecursive: [],
      ioWaitTimeRecursive: [],
      ioMergedRecursive: [],
      ioTimeRecursive: [],
      sectorsRecursive: [],
    },
    hugetlb: {},
  };
}

/** A single decimal value; "max" reads as `max` (UNLIMITED unless told). */
export function parseValue(text: string | undefined, max = UNLIMITED): number {
  if (text === undefined) return 0;
  const t = text.trim();
  if (t === 'max') return max;
  const n = Number(t);
  return Number.isFinite(n) ? n : 0;
}

/** "key value" lines (memory.stat, cpu.stat, memory.events) to a map. */
export function parseKeyValues(text: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  if (text === undefined) return out;
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k === undefined || k === '' || v === undefined) continue;
    const n = Number(v);
    if (Number.isFinite(n)) out[k] = n;
  }
  return out;
}

/** Space-separated numbers (cpuacct.usage_percpu). */
export function parseNumberList(text: string | undefined): number[] {
  if (text === undefined) return [];
  return text.trim().split(/\s+/).filter((s) => s !== '').map(Number);
}

/** A kernel list such as "0-3,7" to [0,1,2,3,7]. */
export function parseRangeList(text: string | undefined): number[] {
  const out: number[] = [];
  if (text === undefined) return out;
  for (const part of text.trim().split(',')) {
    if (part === '') continue;
    const [a, b] = part.split('-');
    const lo = Number(a);
    const hi = b === undefined ? lo : Number(b);
    if (!Number.isInteger(lo) || !Number.isInteger(hi)) continue;
    for (let i = lo; i <= hi; i++) out.push(i);
  }
  return out;
}

/** v1 blkio files: "8:0 Read 4096" lines; the "Total" line is skipped. */
export function parseBlkioV1(text: string | undefined): BlkioEntry[] {
  const out: BlkioEntry[] = [];
  if (text === undefined) return out;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const dev = f[0];
    if (dev === undefined || !dev.includes(':')) continue;
    const [major, minor] = dev.split(':').map(Number);
    if (major === undefined || minor === undefined) continue;
    if (f.length === 3) out.push({ major, minor, op: f[1] ?? '', value: Number(f[2]) });
    else if (f.length === 2) out.push({ major, minor, op: '', value: Number(f[1]) });
  }
  return out;
}

/** v2 io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" lines. */
export function parseIoStatV2(text: string | undefined): Pick<BlkioStats, 'ioServiceBytesRecursive' | 'ioServicedRecursive'> {
  const bytes: BlkioEntry[] = [];
  const ios: BlkioEntry[] = [];
  if (text !== undefined) {
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      const dev = f[0];
      if (dev === undefined || !dev.includes(':')) continue;
      const [major, minor] = dev.split(':').map(Number);
      if (major === undefined || minor === undefined) continue;
      for (const kv of f.slice(1)) {
        const [k, v] = kv.split('=');
        const value = Number(v);
        if (k === 'rbytes') bytes.push({ major, minor, op: 'Read', value });
        else if (k === 'wbytes') bytes.push({ major, minor, op: 'Write', value });
        else if (k === 'rios') ios.push({ major, minor, op: 'Read', value });
        else if (k === 'wios') ios.push({ major, minor, op: 'Write', value });
      }
    }
  }
  return { ioServiceBytesRecursive: bytes, ioServicedRecursive: ios };
}

/** "hugepages-2048kB" style sizes in kB to the page size names used in file names ("2MB"). */
export function hugePageSizeName(kB: number): string {
  if (kB >= 1024 * 1024 && kB % (1024 * 1024) === 0) return `${kB / (1024 * 1024)}GB`;
  if (kB >= 1024 && kB % 1024 === 0) return `${kB / 1024}MB`;
  return `${kB}KB`;
}

const U64_MAX_TEXT = '18446744073709551615';
const MARK = '\u0001u64:';

/**
 * `runc events --stats` output for one container: {"type":"stats","id":...,"data":...}.
 * Integers beyond 2^53 (unlimited limits) are printed exactly, with 2^64 as 2^64-1,
 * so Go's uint64 decoding accepts them.
 */
export function eventsStatsJSON(id: string, stats: CgroupStats): string {
  const text = JSON.stringify({ type: 'stats', id, data: stats }, (_k, v: unknown) => {
    if (typeof v === 'number' && Number.isInteger(v) && v > Number.MAX_SAFE_INTEGER) {
      return `${MARK}${v >= UNLIMITED ? U64_MAX_TEXT : BigInt(v).toString()}`;
    }
    return v;
  });
  return text.replace(/"\\u0001u64:(\d+)"/g, '$1');
}
