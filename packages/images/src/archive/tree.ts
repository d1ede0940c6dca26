// Writing a directory tree into a tar as docker's archives do: names relative to
// where the walk starts (directories with a trailing "/"), owners, modes, times,
// symlinks, hard links (the second name of an inode links to the first), devices
// and fifos kept, the security.capability attribute carried; sockets have no place
// in a tar.
//
// The tree may be changing while it is read (a running container): every directory
// and file is opened beneath its parent without following symlinks and named through
// /proc/self/fd/<dirfd>/<name>; an entry removed meanwhile is left out, and a file
// that shrinks is padded to the size its header announced (one that grows is cut there).
import { fstatSync, lstatSync, read, type BigIntStats } from 'node:fs';
import { readdir, readlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { errnoCode } from '@berth/base';
import type { TarEntryType } from './_format.js';
import { at, closeFd, getXattr, openBeneath, sys } from './_sys.js';
import type { TarWriteEntry, TarWriter } from './writer.js';

const CHUNK = 256 * 1024;
/** The attribute docker's archives carry (file capabilities). */
const CAPABILITY_XATTR = 'security.capability';
const readAt = promisify(read);

/** The tar type of a file, undefined for a socket. */
export function tarTypeOf(st: BigIntStats): TarEntryType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return undefined; // sockets have no place in a tar
}

/** Major and minor of a device number (glibc's encoding). */
export function devNumbers(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/** Byte order of latin1 names (the order of raw bytes). */
export const byBytes = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The header of `st` as an entry of `type` named `path`: mode, owner, time and device numbers. */
export function statEntry(path: Buffer, st: BigIntStats, type: TarEntryType): TarWriteEntry {
  const h: TarWriteEntry = {
    type,
    path,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtime: Number(st.mtimeNs / 1_000_000_000n),
  };
  if (type === 'char' || type === 'block') {
    const { major, minor } = devNumbers(st.rdev);
    h.devmajor = major;
    h.devminor = minor;
  }
  return h;
}

/** Exactly `size` bytes of the open file `fd`: cut if it grew, zero-padded if it shrank. */
async function* fileBody(fd: number, size: number): AsyncGenerator<Buffer> {
  let left = size;
  let pos = 0;
  while (left > 0) {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, left));
    const { bytesRead } = await readAt(fd, buf, 0, buf.length, pos);
    if (bytesRead === 0) {
      const n = Math.min(CHUNK, left);
      left -= n;
      yield Buffer.alloc(n);
      continue;
    }
    pos += bytesRead;
    left -= bytesRead;
    yield buf.subarray(0, bytesRead);
  }
}

/** Writes trees (or single entries) held open by fd into one tar; hard links are kept across calls. */
export class TreeTar {
  private readonly links = new Map<string, Buffer>();

  constructor(private readonly w: TarWriter) {}

  /** The header of an entry; `xattrPath` names the file whose capability attribute is carried. */
  private header(path: Buffer, st: BigIntStats, type: TarEntryType, xattrPath: Buffer): TarWriteEntry {
    const h = statEntry(path, st, type);
    if (type === 'file' || type === 'dir') {
      const cap = getXattr(xattrPath, CAPABILITY_XATTR);
      if (cap !== undefined) h.xattrs = new Map([[CAPABILITY_XATTR, cap]]);
    }
    return h;
  }

  /**
   * The directory open as `dirFd` (any fd, O_PATH will do): its own entry named
   * `prefix` when `self`, then what it holds, each named `${prefix}${name}`, in
   * byte order, depth first.
   */
  async directory(dirFd: number, prefix: string, self = true): Promise<void> {
    if (self) {
      const st = fstatSync(dirFd, { bigint: true });
      await this.w.add(this.header(Buffer.from(prefix, 'latin1'), st, 'dir', at(dirFd, '.')));
    }
    const names = (await readdir(at(dirFd, '.'), { encoding: 'buffer' })).map((n) => n.toString('latin1')).sort(byBytes);
    for (const name of names) await this.entry(dirFd, name, `${prefix}${name}`);
  }

  /** The entry `name` of `dirFd`, as `tarName` (a directory with all it holds, as `${tarName}/...`). */
  async entry(dirFd: number, name: string, tarName: string): Promise<void> {
    const c = sys().constants;
    const p = at(dirFd, name);
    const st = lstatSync(p, { bigint: true, throwIfNoEntry: false });
    if (st === undefined) return; // removed meanwhile
    const type = tarTypeOf(st);
    if (type === undefined) return;
    const path = Buffer.from(tarName, 'latin1');
    if (type === 'dir') {
      const fd = openOrGone(() => openBeneath(dirFd, name, c.O_PATH | c.O_DIRECTORY));
      if (fd === undefined) return;
      try {
        await this.directory(fd, `${tarName}/`);
      } finally {
        closeFd(fd);
      }
      return;
    }
    if (st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const first = this.links.get(key);
      if (first !== undefined) {
        await this.w.add({ ...this.header(path, st, 'hardlink', p), linkpath: first });
        return;
      }
      this.links.set(key, path);
    }
    if (type === 'symlink') {
      let target: Buffer;
      try {
        target = await readlink(p, { encoding: 'buffer' });
      } catch (err) {
        if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'EINVAL') return; // removed or replaced meanwhile
        throw err;
      }
      await this.w.add({ ...this.header(path, st, type, p), linkpath: target });
      return;
    }
    if (type !== 'file') {
      await this.w.add(this.header(path, st, type, p));
      return;
    }
    const fd = openOrGone(() => openBeneath(dirFd, name, c.O_RDONLY));
    if (fd === undefined) return;
    try {
      const fst = fstatSync(fd, { bigint: true });
      if (!fst.isFile()) return; // replaced meanwhile
      const size = Number(fst.size);
      await this.w.add({ ...this.header(path, fst, 'file', p), size }, fileBody(fd, size));
    } finally {
      closeFd(fd);
    }
  }
}

/** The fd `open` returns, undefined when the entry was removed meanwhile (ENOENT). */
/** The open fd, or undefined when the entry went away or was replaced (by a symlink: ELOOP; by a file: ENOTDIR) since its lstat. */
function openOrGone(open: () => number): number | undefined {
  try {
    return open();
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}
