// `GET /containers/{id}/export`: a tar of a container's root filesystem, as
// docker writes it: names relative to the root without "./" (directories
// with a trailing "/"), owners, modes, times, symlinks, hard links (the
// second name of a file links to the first), devices and fifos kept, the
// security.capability attribute carried; sockets have no place in a tar.
//
// The tree may be changing while it is read (a running container): every
// directory and file is opened beneath its parent without following
// symlinks, and a file that shrinks meanwhile is padded to the size its
// header announced (one that grows is cut there).
import { fstatSync, read, type BigIntStats } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { PassThrough, type Readable } from 'node:stream';
import { errnoCode, internal } from '@berth/base';
import { TarWriter } from '@berth/images';
import type { TarEntryType, TarWriteEntry } from '@berth/images';
import { at, byBytes, closeFd, devNumbers, getXattr, openFileIn, openRootDir, openSubdir } from './_sys.js';

const CHUNK = 256 * 1024;
/** The attribute docker's archives carry (file capabilities). */
const CAPABILITY_XATTR = 'security.capability';

function typeOf(st: BigIntStats): TarEntryType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return undefined;
}

/** Exactly `size` bytes of the open file: cut if it grew, zero-padded if it shrank. */
const readAt = promisify(read);

async function* body(fd: number, size: number): AsyncGenerator<Buffer> {
  let left = size;
  let pos = 0;
  while (left > 0) {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, left));
    const { bytesRead } = await readAt(fd, buf, 0, buf.length, pos);
    if (bytesRead === 0) {
      yield Buffer.alloc(Math.min(CHUNK, left));
      left -= Math.min(CHUNK, left);
      continue;
    }
    pos += bytesRead;
    left -= bytesRead;
    yield buf.subarray(0, bytesRead);
  }
}

class Exporter {
  private readonly links = new Map<string, Buffer>();
  constructor(private readonly w: TarWriter) {}

  private header(path: Buffer, st: BigIntStats, type: TarEntryType, xattrPath: Buffer): TarWriteEntry {
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
    if (type === 'file' || type === 'dir') {
      const cap = getXattr(xattrPath, CAPABILITY_XATTR);
      if (cap !== undefined) h.xattrs = new Map([[CAPABILITY_XATTR, cap]]);
    }
    return h;
  }

  async dir(dirFd: number, prefix: string): Promise<void> {
    const names = (await readdir(at(dirFd, '.'), { encoding: 'buffer' })).map((n) => n.toString('latin1')).sort(byBytes);
    for (const name of names) {
      const rel = `${prefix}${name}`;
      const path = Buffer.from(rel, 'latin1');
      const st = await lstat(at(dirFd, name), { bigint: true }).catch((err: unknown) => {
        if (errnoCode(err) === 'ENOENT') return undefined; // removed meanwhile
        throw err;
      });
      if (st === undefined) continue;
      const type = typeOf(st);
      if (type === undefined) continue;
      if (type === 'dir') {
        await this.w.add(this.header(Buffer.from(`${rel}/`, 'latin1'), st, 'dir', at(dirFd, name)));
        const fd = openSubdir(dirFd, name);
        try {
          await this.dir(fd, `${rel}/`);
        } finally {
          closeFd(fd);
        }
        continue;
      }
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        const first = this.links.get(key);
        if (first !== undefined) {
          await this.w.add({ ...this.header(path, st, 'hardlink', at(dirFd, name)), linkpath: first });
          continue;
        }
        this.links.set(key, path);
      }
      if (type === 'symlink') {
        const target = await readlinkRaw(at(dirFd, name));
        if (target === undefined) continue;
        await this.w.add({ ...this.header(path, st, type, at(dirFd, name)), linkpath: target });
      } else if (type === 'file') {
        await this.file(dirFd, name, path);
      } else {
        await this.w.add(this.header(path, st, type, at(dirFd, name)));
      }
    }
  }

  private async file(dirFd: number, name: string, path: Buffer): Promise<void> {
    let fd: number;
    try {
      fd = openFileIn(dirFd, name);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return; // removed meanwhile
      throw err;
    }
    try {
      const st = fstatSync(fd, { bigint: true });
      if (!st.isFile()) return; // replaced meanwhile
      const size = Number(st.size);
      await this.w.add({ ...this.header(path, st, 'file', at(dirFd, name)), size }, body(fd, size));
    } finally {
      closeFd(fd);
    }
  }
}

async function readlinkRaw(path: Buffer): Promise<Buffer | undefined> {
  try {
    return await readlink(path, { encoding: 'buffer' });
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'EINVAL') return undefined;
    throw err;
  }
}

/**
 * The tar of the tree at `mergedDir` (a view of the container's root
 * filesystem, without the mounts on top of it), streamed: reading waits for
 * the consumer, and destroying the stream ends the walk.
 */
export function exportRootfs(mergedDir: string): Readable {
  const out = new PassThrough({ highWaterMark: CHUNK });
  const run = async (): Promise<void> => {
    let root: number;
    try {
      root = openRootDir(mergedDir);
    } catch (err) {
      throw internal(`export: open ${mergedDir}: ${errnoCode(err) ?? String(err)}`, err);
    }
    try {
      const w = new TarWriter(out);
      await new Exporter(w).dir(root, '');
      await w.finish();
    } finally {
      closeFd(root);
    }
  };
  run().then(
    () => out.end(),
    (err: unknown) => {
      if (!out.destroyed) out.destroy(err instanceof Error ? err : new Error(String(err)));
    },
  );
  return out;
}
