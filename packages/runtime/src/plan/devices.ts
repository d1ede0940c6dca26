/**
 * The devices and /dev symlinks every container gets (config-linux.md,
 * "Default Devices" and "Default filesystems"), plus the ones config.json lists.
 */
import { posix } from 'node:path';
import { invalid } from '@berth/base';
import type { LinuxDevice } from '@berth/spec';
import type { PlanRecord } from './types.js';

type DeviceRecord = Extract<PlanRecord, { tag: 'device' }>;

const DEFAULT_MODE = 0o666;

const charDevice = (path: string, major: number, minor: number): DeviceRecord => ({
  tag: 'device', path, type: 'c', major, minor, mode: DEFAULT_MODE, uid: 0, gid: 0,
});

/** /dev/null, zero, full, random, urandom and tty, mode 0666, owned by root. */
export const DEFAULT_DEVICES: readonly DeviceRecord[] = [
  charDevice('/dev/null', 1, 3),
  charDevice('/dev/zero', 1, 5),
  charDevice('/dev/full', 1, 7),
  charDevice('/dev/random', 1, 8),
  charDevice('/dev/urandom', 1, 9),
  charDevice('/dev/tty', 5, 0),
];

/** The symlinks in /dev; /dev/core only when the host has /proc/kcore. */
export function defaultSymlinks(hasKcore: boolean): PlanRecord[] {
  const links: [string, string][] = [
    ['/proc/self/fd', '/dev/fd'],
    ['/proc/self/fd/0', '/dev/stdin'],
    ['/proc/self/fd/1', '/dev/stdout'],
    ['/proc/self/fd/2', '/dev/stderr'],
  ];
  if (hasKcore) links.push(['/proc/kcore', '/dev/core']);
  links.push(['pts/ptmx', '/dev/ptmx']);
  return links.map(([target, linkpath]) => ({ tag: 'symlink', target, linkpath }));
}

/**
 * The device records for a container: the defaults, then the configured
 * devices (a configured device replaces a default with the same path).
 * In a user namespace mknod is not allowed, so the host's nodes are bound.
 */
export function deviceRecords(configured: readonly LinuxDevice[], bind: boolean): PlanRecord[] {
  const byPath = new Map<string, DeviceRecord>();
  for (const d of DEFAULT_DEVICES) byPath.set(d.path, d);
  configured.forEach((d, i) => {
    const where = `linux.devices[${i}]`;
    if (!posix.isAbsolute(d.path)) throw invalid(`${where}.path: ${JSON.stringify(d.path)} is not an absolute path`);
    const path = posix.normalize(d.path);
    if (path === '/dev' || !path.startsWith('/dev/')) {
      throw invalid(`${where}.path: ${JSON.stringify(d.path)} is not under /dev`);
    }
    byPath.delete(path);
    byPath.set(path, {
      tag: 'device',
      path,
      type: d.type,
      major: d.type === 'p' ? 0 : (d.major ?? 0),
      minor: d.type === 'p' ? 0 : (d.minor ?? 0),
      mode: (d.fileMode ?? DEFAULT_MODE) & 0o7777,
      uid: d.uid ?? 0,
      gid: d.gid ?? 0,
    });
  });
  const devices = [...byPath.values()];
  if (!bind) return devices;
  return devices.map((d) => ({ tag: 'device_bind', path: d.path }));
}
