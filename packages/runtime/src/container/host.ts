import { readFileSync, existsSync } from 'node:fs';

/** Whether AppArmor is enabled on this host (a profile can only be applied then). */
export function apparmorEnabled(): boolean {
  try { return readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y'; } catch { return false; }
}

/** Whether SELinux is enabled on this host. */
export function selinuxEnabled(): boolean {
  return existsSync('/sys/fs/selinux/enforce');
}

