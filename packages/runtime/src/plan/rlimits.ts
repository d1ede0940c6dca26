/** RLIMIT_* names and numbers (asm-generic/resource.h, as on x86_64 and arm64). */
import { invalid } from '@berth/base';

export const RLIMITS: readonly string[] = [
  'RLIMIT_CPU', 'RLIMIT_FSIZE', 'RLIMIT_DATA', 'RLIMIT_STACK', 'RLIMIT_CORE', 'RLIMIT_RSS',
  'RLIMIT_NPROC', 'RLIMIT_NOFILE', 'RLIMIT_MEMLOCK', 'RLIMIT_AS', 'RLIMIT_LOCKS',
  'RLIMIT_SIGPENDING', 'RLIMIT_MSGQUEUE', 'RLIMIT_NICE', 'RLIMIT_RTPRIO', 'RLIMIT_RTTIME',
];

const byName = new Map(RLIMITS.map((n, i) => [n, i]));

/** RLIM_INFINITY as the executor reads it (unsigned 64-bit). */
export const RLIM_INFINITY = 2n ** 64n - 1n;

export function rlimitNumber(name: string, where: string): number {
  const n = byName.get(name);
  if (n === undefined) throw invalid(`${where}: unknown rlimit ${JSON.stringify(name)}`);
  return n;
}

/**
 * A JSON rlimit value as an unsigned 64-bit integer. JSON.parse turns
 * 18446744073709551615 into 2^64, so anything at or above 2^64 is infinity.
 */
export function rlimitValue(v: number): bigint {
  const b = BigInt(v);
  return b > RLIM_INFINITY ? RLIM_INFINITY : b;
}
