// Conversions between the OCI (cgroup v1 oriented) values and cgroup v2 files.
import { invalid } from '@berth/base';

/**
 * cpu.shares (v1, 2..262144, default 1024) to cpu.weight (v2, 1..10000,
 * default 100), with runc's current formula: a quadratic in log2(shares)
 * that maps 2 -> 1, 1024 -> 100 and 262144 -> 10000. 0 means unset.
 */
export function cpuSharesToWeight(shares: number): number {
  if (shares === 0) return 0;
  if (shares <= 2) return 1;
  if (shares >= 262144) return 10000;
  const l = Math.log2(shares);
  const exponent = (l * l + 125 * l) / 612.0 - 7.0 / 34.0;
  return Math.ceil(Math.pow(10, exponent));
}

/** blkio.weight (v1, 10..1000) to io.weight (v2, 1..10000), linearly. 0 means unset. */
export function blkioWeightToIoWeight(weight: number): number {
  if (weight === 0) return 0;
  return 1 + Math.floor(((weight - 10) * 9999) / 990);
}

/**
 * OCI memory.swap is memory+swap (v1 memsw); v2's memory.swap.max is swap
 * alone. Returns the value for memory.swap.max: -1 for "max", 0 for unset
 * (when swap is 0 or absent). With memory unlimited and swap unset, swap is
 * unlimited too.
 */
export function memorySwapToV2(swap: number | undefined, limit: number | undefined): number | undefined {
  const s = swap ?? 0;
  const m = limit ?? 0;
  if (m === -1 && s === 0) return -1;
  if (s === -1) return -1;
  if (s === 0) return undefined;
  if (m === 0 || m === -1) throw invalid('memory.swap: cannot set a swap limit without a memory limit');
  if (m < 0) throw invalid(`memory.limit: invalid value ${m}`);
  if (s < m) throw invalid(`memory.swap (memory+swap, ${s}) must not be smaller than memory.limit (${m})`);
  return s - m;
}

/** A hugepage size as used in file names ("2MB", "1GB", "64KB"); anything else is refused. */
export function checkPageSize(pageSize: string): string {
  if (!/^[1-9][0-9]*[KMG]B$/.test(pageSize)) {
    throw invalid(`hugepageLimits: invalid pageSize ${JSON.stringify(pageSize)} (expected e.g. "2MB")`);
  }
  return pageSize;
}

/** A limit where -1 means unlimited, as the v2 files want it. */
export const maxOr = (n: number): string => (n < 0 ? 'max' : String(n));
