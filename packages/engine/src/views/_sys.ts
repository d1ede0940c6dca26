// Walking a tree a container may be changing at the same time: each directory
// is opened from its parent's fd with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS), and its entries are named through
// /proc/self/fd/<dirfd>/<name>, so a symlink swapped in for a directory ends
// the walk with an error instead of leading it outside. The system calls Node
// lacks come from the native addon (native/sys) that @berth/images loads too.
import { closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BerthError, ErrorKind, errnoCode } from '@berth/base';
import { sysAddonPath } from '@berth/images';

interface Addon {
  openat2(dirfd: number, path: string | Buffer, flags: number, mode: number, resolve: number): number;
  /** null when the attribute is absent. */
  lgetxattr(path: string | Buffer, name: string): Buffer | null;
  llistxattr(path: string | Buffer): string[];
  lsetxattr(path: string | Buffer, name: string, value: Buffer, flags: number): void;
  constants: {
    AT_FDCWD: number;
    O_RDONLY: number;
    O_PATH: number;
    O_DIRECTORY: number;
    O_NOFOLLOW: number;
    O_CLOEXEC: number;
    RESOLVE_NO_MAGICLINKS: number;
    RESOLVE_NO_SYMLINKS: number;
    RESOLVE_BENEATH: number;
  };
}

let loaded: Addon | undefined;

export function addon(): Addon {
  if (loaded !== undefined) return loaded;
  const path = sysAddonPath();
  try {
    loaded = createRequire(import.meta.url)(path) as Addon;
  } catch (err) {
    throw new BerthError(
      ErrorKind.FailedPrecondition,
      `cannot load the native addon ${path} (build it with make -C native): ${String(err)}`,
      { cause: err },
    );
  }
  return loaded;
}

/** A path naming `name` (raw bytes as latin1) inside the directory open as `dirfd`. */
export function at(dirfd: number, name: string): Buffer {
  return Buffer.from(`/proc/self/fd/${dirfd}/${name}`, 'latin1');
}

function openat2(dirfd: number, path: string | Buffer, flags: number): number {
  const a = addon();
  const c = a.constants;
  const resolve = c.RESOLVE_BENEATH | c.RESOLVE_NO_SYMLINKS | c.RESOLVE_NO_MAGICLINKS;
  for (let i = 0; ; i++) {
    try {
      return a.openat2(dirfd, path, flags | c.O_CLOEXEC, 0, resolve);
    } catch (err) {
      if (errnoCode(err) === 'EAGAIN' && i < 16) continue;
      throw err;
    }
  }
}

/** The directory `path` (not a symlink to one), as an O_PATH fd. */
export function openRootDir(path: string): number {
  const c = addon().constants;
  return addon().openat2(c.AT_FDCWD, path, c.O_PATH | c.O_DIRECTORY | c.O_CLOEXEC, 0, 0);
}

/** The directory `name` inside `dirfd`, as an O_PATH fd; a symlink is refused (ELOOP). */
export function openSubdir(dirfd: number, name: string): number {
  const c = addon().constants;
  return openat2(dirfd, Buffer.from(name, 'latin1'), c.O_PATH | c.O_DIRECTORY | c.O_NOFOLLOW);
}

/** The file `name` inside `dirfd` for reading; a symlink is refused (ELOOP). */
export function openFileIn(dirfd: number, name: string): number {
  const c = addon().constants;
  return openat2(dirfd, Buffer.from(name, 'latin1'), c.O_RDONLY | c.O_NOFOLLOW);
}

export function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // closing is best effort
  }
}

/** The value of an extended attribute, undefined when absent or unsupported. */
export function getXattr(path: Buffer | string, name: string): Buffer | undefined {
  try {
    return addon().lgetxattr(path, name) ?? undefined;
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENODATA' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The names of a file's extended attributes; none when unsupported. */
export function listXattrs(path: Buffer | string): string[] {
  try {
    return addon().llistxattr(path);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOENT') return [];
    throw err;
  }
}

/** Major and minor of a device number (glibc's encoding). */
export function devNumbers(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/** Byte order of latin1 names (the order of raw bytes). */
export const byBytes = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
