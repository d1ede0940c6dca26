// The native addon (native/sys, built to native/out/berth_sys.node) with the system calls
// Node lacks: openat2, mknodat and the l*xattr family. Loaded once, on first use.
import { closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { BerthError, ErrorKind, errnoCode } from '@berth/base';

export interface SysConstants {
  AT_FDCWD: number;
  O_RDONLY: number;
  O_PATH: number;
  O_DIRECTORY: number;
  O_NOFOLLOW: number;
  O_CLOEXEC: number;
  RESOLVE_NO_XDEV: number;
  RESOLVE_NO_MAGICLINKS: number;
  RESOLVE_NO_SYMLINKS: number;
  RESOLVE_BENEATH: number;
  RESOLVE_IN_ROOT: number;
  S_IFCHR: number;
  S_IFBLK: number;
  S_IFIFO: number;
  XATTR_CREATE: number;
  XATTR_REPLACE: number;
}

export type PathArg = string | Buffer;

export interface Sys {
  openat2(dirfd: number, path: PathArg, flags: number, mode: number, resolve: number): number;
  mknodat(dirfd: number, path: PathArg, mode: number, major: number, minor: number): void;
  lsetxattr(path: PathArg, name: string, value: Buffer, flags: number): void;
  /** null when the attribute is absent. */
  lgetxattr(path: PathArg, name: string): Buffer | null;
  llistxattr(path: PathArg): string[];
  lremovexattr(path: PathArg, name: string): void;
  constants: SysConstants;
}

/** native/out/berth_sys.node of this checkout, or $BERTH_SYS_ADDON. */
export function sysAddonPath(): string {
  const fromEnv = process.env['BERTH_SYS_ADDON'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  // packages/images/dist/archive/_sys.js -> repository root
  return fileURLToPath(new URL('../../../../native/out/berth_sys.node', import.meta.url));
}

let loaded: Sys | undefined;

export function sys(): Sys {
  if (loaded !== undefined) return loaded;
  const path = sysAddonPath();
  try {
    const require = createRequire(import.meta.url);
    loaded = require(path) as Sys;
  } catch (err) {
    throw new BerthError(
      ErrorKind.FailedPrecondition,
      `cannot load the native addon ${path} (build it with make -C native): ${String(err)}`,
      { cause: err },
    );
  }
  return loaded;
}

/**
 * openat2 with retries on EAGAIN (which RESOLVE_IN_ROOT returns when a rename raced
 * with the lookup of ".."); `mode` is the new file's mode with O_CREAT.
 */
export function openat2(dirfd: number, path: PathArg, flags: number, resolve: number, mode = 0): number {
  const s = sys();
  for (let i = 0; ; i++) {
    try {
      return s.openat2(dirfd, path, flags | s.constants.O_CLOEXEC, mode, resolve);
    } catch (err) {
      if (errnoCode(err) === 'EAGAIN' && i < 16) continue;
      throw err;
    }
  }
}

const procPrefix = (fd: number): Buffer => Buffer.from(`/proc/self/fd/${fd}/`, 'latin1');

/**
 * A path naming `name` (one component, raw bytes as latin1) inside the directory held
 * open as `dirfd`: the kernel follows the /proc magic link to the directory itself, so
 * nothing above `name` is looked up again. `name` "." names the directory.
 */
export function at(dirfd: number, name: string): Buffer {
  return Buffer.concat([procPrefix(dirfd), Buffer.from(name, 'latin1')]);
}

/** The directory at `path` (a symlink in the last component followed), as an O_PATH fd. */
export function openDirectory(path: string): number {
  const c = sys().constants;
  return openat2(c.AT_FDCWD, path, c.O_PATH | c.O_DIRECTORY, 0);
}

/**
 * The entry `name` (one component) of the directory held open as `dirfd`, never
 * through a symlink (one in its place fails with ELOOP).
 */
export function openBeneath(dirfd: number, name: string, flags: number): number {
  const c = sys().constants;
  return openat2(
    dirfd,
    Buffer.from(name, 'latin1'),
    flags | c.O_NOFOLLOW,
    c.RESOLVE_BENEATH | c.RESOLVE_NO_SYMLINKS | c.RESOLVE_NO_MAGICLINKS,
  );
}

/** Closes `fd`, ignoring errors (for cleanup paths). */
export function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // closing is best effort
  }
}

/** The value of an extended attribute, undefined when absent or unsupported. */
export function getXattr(path: PathArg, name: string): Buffer | undefined {
  try {
    return sys().lgetxattr(path, name) ?? undefined;
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENODATA' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The names of a file's extended attributes; none when unsupported. */
export function listXattrs(path: PathArg): string[] {
  try {
    return sys().llistxattr(path);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOENT') return [];
    throw err;
  }
}
