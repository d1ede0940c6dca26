/**
 * Linux capabilities as Docker handles them: the default set a container
 * gets, the names the API accepts (with or without `CAP_`, any case, `ALL`),
 * and CapAdd/CapDrop applied the way Docker applies them.
 */
import { readFileSync } from 'node:fs';
import { invalid } from '@berth/base';
import { LINUX_CAPABILITIES } from '@berth/spec';

/** Every capability Linux defines, in number order (CAP_CHOWN is 0). */
export const ALL_CAPABILITIES: readonly string[] = LINUX_CAPABILITIES;

/** Docker's default capability set for a non-privileged container. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

const KNOWN = new Set(ALL_CAPABILITIES);

let hostLast: number | undefined;

/** The capabilities this kernel knows (up to /proc/sys/kernel/cap_last_cap). */
export function hostCapabilities(): string[] {
  if (hostLast === undefined) {
    try {
      const n = Number.parseInt(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim(), 10);
      hostLast = Number.isInteger(n) && n >= 0 ? n : ALL_CAPABILITIES.length - 1;
    } catch {
      hostLast = ALL_CAPABILITIES.length - 1;
    }
  }
  const known = ALL_CAPABILITIES.slice(0, hostLast + 1);
  // What this process may grant: a cap outside the engine's own bounding set cannot be given
  // (capset fails), as when the engine itself runs in a restricted container.
  const bounding = ownBoundingSet();
  return bounding === undefined ? known : known.filter((_c, i) => (bounding >> BigInt(i)) & 1n);
}

function ownBoundingSet(): bigint | undefined {
  try {
    const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m?.[1] === undefined ? undefined : BigInt(`0x${m[1]}`);
  } catch {
    return undefined;
  }
}

/**
 * Normalises capability names as Docker does: upper case, `CAP_` prefixed,
 * `ALL` kept as is. An unknown name is Docker's `unknown capability: "CAP_X"`.
 */
export function normalizeCapabilities(names: readonly string[]): string[] {
  return names.map((raw) => {
    const up = raw.toUpperCase();
    if (up === 'ALL') return up;
    const name = up.startsWith('CAP_') ? up : `CAP_${up}`;
    if (!KNOWN.has(name)) throw invalid(`unknown capability: ${JSON.stringify(name)}`);
    return name;
  });
}

/**
 * The capability set of a container: all of the host's for a privileged one;
 * otherwise the basics minus CapDrop plus CapAdd, where CapAdd `ALL` means all
 * but CapDrop and CapDrop `ALL` means only CapAdd.
 */
export function tweakCapabilities(
  basics: readonly string[],
  add: readonly string[],
  drop: readonly string[],
  privileged: boolean,
  all: readonly string[] = hostCapabilities(),
): string[] {
  if (privileged) return [...all];
  if (add.length === 0 && drop.length === 0) return [...basics];
  const adds = normalizeCapabilities(add);
  const drops = normalizeCapabilities(drop);
  let caps: string[];
  if (adds.includes('ALL')) {
    caps = all.filter((c) => !drops.includes(c));
  } else if (drops.includes('ALL')) {
    caps = [...adds];
  } else {
    caps = [...basics.filter((c) => !drops.includes(c)), ...adds];
  }
  return [...new Set(caps)];
}
