// The device allowlist. On cgroup v1 it is the devices controller's
// devices.allow/devices.deny files. On cgroup v2 it needs an eBPF program
// attached to the cgroup: devicefilter.ts compiles it and berth-runc's
// executor attaches it (the plan's device_filter record), so the v2
// manager's apply() leaves the rules out and returns them as unapplied.
import type { LinuxDeviceCgroup } from '@berth/spec';

/** One rule as the v1 devices files take it: "c 1:3 rwm", or "a" for all devices. */
export function formatDeviceRule(rule: LinuxDeviceCgroup): string {
  const type = rule.type ?? 'a';
  if (type === 'a') return 'a';
  const major = rule.major === undefined || rule.major < 0 ? '*' : String(rule.major);
  const minor = rule.minor === undefined || rule.minor < 0 ? '*' : String(rule.minor);
  return `${type} ${major}:${minor} ${rule.access ?? 'rwm'}`;
}

const allow = (type: 'c' | 'b', major: number | undefined, minor: number | undefined, access: string): LinuxDeviceCgroup => {
  const r: LinuxDeviceCgroup = { allow: true, type, access };
  if (major !== undefined) r.major = major;
  if (minor !== undefined) r.minor = minor;
  return r;
};

/**
 * The allowlist every container gets (as runc and Docker give it), after a
 * leading deny-all: mknod of any device, and the standard /dev nodes.
 */
export const DEFAULT_DEVICE_RULES: readonly LinuxDeviceCgroup[] = [
  allow('c', undefined, undefined, 'm'),
  allow('b', undefined, undefined, 'm'),
  allow('c', 1, 3, 'rwm'), // /dev/null
  allow('c', 1, 5, 'rwm'), // /dev/zero
  allow('c', 1, 7, 'rwm'), // /dev/full
  allow('c', 1, 8, 'rwm'), // /dev/random
  allow('c', 1, 9, 'rwm'), // /dev/urandom
  allow('c', 5, 0, 'rwm'), // /dev/tty
  allow('c', 5, 1, 'rwm'), // /dev/console
  allow('c', 5, 2, 'rwm'), // /dev/ptmx
  allow('c', 136, undefined, 'rwm'), // /dev/pts/*
  allow('c', 10, 200, 'rwm'), // /dev/net/tun
];

const isDenyAll = (r: LinuxDeviceCgroup): boolean =>
  !r.allow && (r.type ?? 'a') === 'a' && r.major === undefined && r.minor === undefined;

const norm = (n: number | undefined): number => (n === undefined || n < 0 ? -1 : n);

/** Whether a rule is the deny-all or is covered by one of DEFAULT_DEVICE_RULES. */
export function isDefaultDeviceRule(rule: LinuxDeviceCgroup): boolean {
  if (isDenyAll(rule)) return true;
  if (!rule.allow) return false;
  const access = rule.access ?? 'rwm';
  return DEFAULT_DEVICE_RULES.some(
    (d) =>
      d.type === (rule.type ?? 'a') &&
      norm(d.major) === norm(rule.major) &&
      norm(d.minor) === norm(rule.minor) &&
      [...access].every((ch) => (d.access ?? '').includes(ch)),
  );
}

/** The rules not covered by the deny-all and DEFAULT_DEVICE_RULES. */
export function deviceRulesBeyondDefault(rules: readonly LinuxDeviceCgroup[]): LinuxDeviceCgroup[] {
  return rules.filter((r) => !isDefaultDeviceRule(r));
}
