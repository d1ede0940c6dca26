/**
 * Mount options of config.json -> mount(2) flags, propagation flags and the
 * filesystem data string, with the same option names runc understands.
 */
import { notImplemented } from '@berth/base';

/** mount(2) flags (linux/mount.h). */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  SYNCHRONOUS: 0x10,
  REMOUNT: 0x20,
  MANDLOCK: 0x40,
  DIRSYNC: 0x80,
  NOSYMFOLLOW: 0x100,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  SILENT: 0x8000,
  POSIXACL: 0x10000,
  UNBINDABLE: 0x20000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
  RELATIME: 0x200000,
  I_VERSION: 0x800000,
  STRICTATIME: 0x1000000,
  LAZYTIME: 0x2000000,
} as const;

/** Options that set (`clear: false`) or clear (`clear: true`) a flag. */
const FLAG_OPTIONS: Record<string, { flag: number; clear: boolean }> = {
  acl: { flag: MS.POSIXACL, clear: false },
  async: { flag: MS.SYNCHRONOUS, clear: true },
  atime: { flag: MS.NOATIME, clear: true },
  bind: { flag: MS.BIND, clear: false },
  defaults: { flag: 0, clear: false },
  dev: { flag: MS.NODEV, clear: true },
  diratime: { flag: MS.NODIRATIME, clear: true },
  dirsync: { flag: MS.DIRSYNC, clear: false },
  exec: { flag: MS.NOEXEC, clear: true },
  iversion: { flag: MS.I_VERSION, clear: false },
  lazytime: { flag: MS.LAZYTIME, clear: false },
  loud: { flag: MS.SILENT, clear: true },
  mand: { flag: MS.MANDLOCK, clear: false },
  noacl: { flag: MS.POSIXACL, clear: true },
  noatime: { flag: MS.NOATIME, clear: false },
  nodev: { flag: MS.NODEV, clear: false },
  nodiratime: { flag: MS.NODIRATIME, clear: false },
  noexec: { flag: MS.NOEXEC, clear: false },
  noiversion: { flag: MS.I_VERSION, clear: true },
  nolazytime: { flag: MS.LAZYTIME, clear: true },
  nomand: { flag: MS.MANDLOCK, clear: true },
  norelatime: { flag: MS.RELATIME, clear: true },
  nostrictatime: { flag: MS.STRICTATIME, clear: true },
  nosuid: { flag: MS.NOSUID, clear: false },
  nosymfollow: { flag: MS.NOSYMFOLLOW, clear: false },
  rbind: { flag: MS.BIND | MS.REC, clear: false },
  relatime: { flag: MS.RELATIME, clear: false },
  remount: { flag: MS.REMOUNT, clear: false },
  ro: { flag: MS.RDONLY, clear: false },
  rw: { flag: MS.RDONLY, clear: true },
  silent: { flag: MS.SILENT, clear: false },
  strictatime: { flag: MS.STRICTATIME, clear: false },
  suid: { flag: MS.NOSUID, clear: true },
  symfollow: { flag: MS.NOSYMFOLLOW, clear: true },
  sync: { flag: MS.SYNCHRONOUS, clear: false },
};

const PROPAGATION_OPTIONS: Record<string, number> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

/**
 * Recursive attribute options (`rro`, `rnosuid`...). runc applies them with
 * mount_setattr(AT_RECURSIVE); on a mount without submounts (anything but an
 * `rbind`) they are the same as the plain option, which is what we support.
 */
const RECURSIVE_OPTIONS = new Set([
  'rro', 'rrw', 'rnosuid', 'rsuid', 'rnodev', 'rdev', 'rnoexec', 'rexec', 'rnodiratime',
  'rdiratime', 'rrelatime', 'rnorelatime', 'rnoatime', 'ratime', 'rstrictatime',
  'rnostrictatime', 'rnosymfollow', 'rsymfollow',
]);

/** Options that runc understands but Berth does not carry out. */
const UNSUPPORTED = new Set(['idmap', 'ridmap']);

/** Options that are dropped: `tmpcopyup` (copy the image's files into a tmpfs) is a runc extension. */
const IGNORED = new Set(['tmpcopyup']);

/** Every option name that is not passed on as filesystem data (features.md `mountOptions`). */
export const MOUNT_OPTION_NAMES: readonly string[] = [
  ...Object.keys(FLAG_OPTIONS), ...Object.keys(PROPAGATION_OPTIONS), ...RECURSIVE_OPTIONS, ...IGNORED,
].sort();

export interface MountOptions {
  flags: number;
  /** Propagation flags to apply after the mount (0: none); the last propagation option wins. */
  propagation: number;
  /** Everything that is not a flag, comma-joined, for the filesystem. */
  data: string;
}

/** Parse a mount's options. `where` names the mount in errors (`mounts[3]`). */
export function parseMountOptions(options: readonly string[], where: string): MountOptions {
  let flags = 0;
  let propagation = 0;
  const data: string[] = [];
  const recursive: string[] = [];
  for (const opt of options) {
    const f = FLAG_OPTIONS[opt];
    if (f !== undefined) {
      flags = f.clear ? flags & ~f.flag : flags | f.flag;
      continue;
    }
    const p = PROPAGATION_OPTIONS[opt];
    if (p !== undefined) {
      propagation = p;
      continue;
    }
    if (RECURSIVE_OPTIONS.has(opt)) {
      recursive.push(opt);
      continue;
    }
    if (UNSUPPORTED.has(opt)) throw notImplemented(`${where}: mount option ${JSON.stringify(opt)} is not supported`);
    if (IGNORED.has(opt)) continue;
    data.push(opt);
  }
  for (const opt of recursive) {
    if (flags & MS.REC) {
      throw notImplemented(`${where}: recursive mount option ${JSON.stringify(opt)} on an rbind mount is not supported`);
    }
    const f = FLAG_OPTIONS[opt.slice(1)];
    if (f === undefined) continue;
    flags = f.clear ? flags & ~f.flag : flags | f.flag;
  }
  return { flags, propagation, data: data.join(',') };
}

/** rootfsPropagation of config.json -> flags; runc's default is MS_REC|MS_SLAVE. */
export function rootfsPropagationFlags(value: string | undefined): number {
  if (value === undefined || value === '') return MS.REC | MS.SLAVE;
  const p = PROPAGATION_OPTIONS[value];
  if (p === undefined) throw notImplemented(`linux.rootfsPropagation: unknown value ${JSON.stringify(value)}`);
  return p;
}
