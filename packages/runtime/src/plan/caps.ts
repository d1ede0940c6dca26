/** Linux capability names and numbers (linux/capability.h), CAP_CHOWN = 0 .. CAP_CHECKPOINT_RESTORE = 40. */
import { invalid } from '@berth/base';

export const CAP_NAMES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER',
  'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

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
