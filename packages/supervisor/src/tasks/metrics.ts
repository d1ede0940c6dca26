/**
 * Task metrics: each task's cgroup statistics as the message containerd's
 * runc shim reports on cgroup v1 hosts (io.containerd.cgroups.v1.Metrics,
 * the part of it that `ctr task metrics` shows: pids, cpu, memory). The
 * message is encoded here by field number, since its proto is not part of
 * containerd's API protos; 64-bit counters go through BigInt so that
 * "unlimited" keeps its exact value.
 */
import type { CgroupStats, MemoryEntry } from '@berth/cgroups';
import { parseFilters, present } from '../filters.js';
import type { Protos } from '../protos.js';
import { now } from '../wire.js';
import type { TaskManager } from './manager.js';

export const CGROUPS_V1_METRICS = 'io.containerd.cgroups.v1.Metrics';

/** What the kernel reports for "no limit" on cgroup v1 (the largest page-aligned int64). */
const KERNEL_UNLIMITED = 9223372036854771712n;

function u64(v: number): bigint {
  if (!Number.isFinite(v) || v <= 0) return 0n;
  if (v >= 2 ** 63) return KERNEL_UNLIMITED;
  return BigInt(Math.round(v));
}

function varint(v: bigint): Buffer {
  const out: number[] = [];
  let x = v;
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return Buffer.from(out);
}

/** A message under construction: fields in order, zero values left out as proto3 does. */
class Msg {
  private readonly parts: Buffer[] = [];

  uint(field: number, v: number): this {
    const n = u64(v);
    if (n !== 0n) this.parts.push(varint(BigInt(field << 3)), varint(n));
    return this;
  }

  packed(field: number, values: readonly number[]): this {
    if (values.length === 0) return this;
    const body = Buffer.concat(values.map((v) => varint(u64(v))));
    this.parts.push(varint(BigInt((field << 3) | 2)), varint(BigInt(body.length)), body);
    return this;
  }

  message(field: number, m: Msg): this {
    const body = m.bytes();
    this.parts.push(varint(BigInt((field << 3) | 2)), varint(BigInt(body.length)), body);
    return this;
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function memoryEntry(e: MemoryEntry): Msg {
  return new Msg().uint(1, e.limit).uint(2, e.usage).uint(3, e.max).uint(4, e.failcnt);
}

/** The memory.stat keys of cgroup v1 by their MemoryStat field number. */
const MEMORY_STAT_FIELDS: readonly (readonly [number, string])[] = [
  [1, 'cache'], [2, 'rss'], [3, 'rss_huge'], [4, 'mapped_file'], [5, 'dirty'], [6, 'writeback'],
  [7, 'pgpgin'], [8, 'pgpgout'], [9, 'pgfault'], [10, 'pgmajfault'], [11, 'inactive_anon'], [12, 'active_anon'],
  [13, 'inactive_file'], [14, 'active_file'], [15, 'unevictable'], [16, 'hierarchical_memory_limit'],
  [17, 'hierarchical_memsw_limit'], [18, 'total_cache'], [19, 'total_rss'], [20, 'total_rss_huge'],
  [21, 'total_mapped_file'], [22, 'total_dirty'], [23, 'total_writeback'], [24, 'total_pgpgin'],
  [25, 'total_pgpgout'], [26, 'total_pgfault'], [27, 'total_pgmajfault'], [28, 'total_inactive_anon'],
  [29, 'total_active_anon'], [30, 'total_inactive_file'], [31, 'total_active_file'], [32, 'total_unevictable'],
];

/** io.containerd.cgroups.v1.Metrics from our cgroup statistics. */
export function encodeV1Metrics(s: CgroupStats): Buffer {
  const pids = new Msg().uint(1, s.pids.current).uint(2, s.pids.limit);
  const usage = new Msg().uint(1, s.cpu.usage.total).uint(2, s.cpu.usage.kernel).uint(3, s.cpu.usage.user).packed(4, s.cpu.usage.percpu);
  const throttling = new Msg().uint(1, s.cpu.throttling.periods).uint(2, s.cpu.throttling.throttledPeriods).uint(3, s.cpu.throttling.throttledTime);
  const cpu = new Msg().message(1, usage).message(2, throttling);
  const memory = new Msg();
  for (const [field, key] of MEMORY_STAT_FIELDS) {
    const v = key === 'cache' ? s.memory.raw['cache'] ?? s.memory.cache : s.memory.raw[key];
    if (v !== undefined) memory.uint(field, v);
  }
  memory.message(33, memoryEntry(s.memory.usage)).message(34, memoryEntry(s.memory.swap))
    .message(35, memoryEntry(s.memory.kernel)).message(36, memoryEntry(s.memory.kernelTCP));
  return new Msg().message(2, pids).message(3, cpu).message(4, memory).bytes();
}

/** containerd.types.Metric for each task of the namespace the filters select (by id). */
export async function metricsOf(manager: TaskManager, _protos: Protos, ns: string, filters: readonly string[]): Promise<object[]> {
  const filter = parseFilters(filters);
  const out: object[] = [];
  for (const t of manager.list(ns)) {
    if (!filter.match((path) => (path[0] === 'id' ? present(t.containerId) : path[0] === 'namespace' ? present(ns) : undefined))) continue;
    if (t.status === 'STOPPED') continue;
    const stats = await manager.stats(ns, t.containerId);
    out.push({ timestamp: now(), id: t.containerId, data: { type_url: CGROUPS_V1_METRICS, value: encodeV1Metrics(stats) } });
  }
  return out;
}
