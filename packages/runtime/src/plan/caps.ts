/** Linux capability names and numbers (linux/capability.h), CAP_CHOWN = 0 .. CAP_CHECKPOINT_RESTORE = 40. */
import { invalid } from '@berth/base';
import { LINUX_CAPABILITIES } from '@berth/spec';

export const CAP_NAMES: readonly string[] = LINUX_CAPABILITIES;

const byName = new Map(CAP_NAMES.map((n, i) => [n, i]));

/** The number of a capability name (`CAP_SYS_ADMIN` -> 21), or undefined. */
export function capNumber(name: string): number | undefined {
  return byName.get(name);
}

/** The name of a capability number (21 -> `CAP_SYS_ADMIN`), or undefined. */
export function capName(n: number): string | undefined {
  return CAP_NAMES[n];
}

/** A 64-bit mask of capability names; `where` names the field in errors. */
export function capMask(names: readonly string[], where: string): bigint {
  let mask = 0n;
  names.forEach((name, i) => {
    const n = byName.get(name);
    if (n === undefined) throw invalid(`${where}[${i}]: unknown capability ${JSON.stringify(name)}`);
    mask |= 1n << BigInt(n);
  });
  return mask;
}

/** The capability names in a mask, in number order. */
export function capNames(mask: bigint): string[] {
  return CAP_NAMES.filter((_, i) => (mask >> BigInt(i)) & 1n);
}
