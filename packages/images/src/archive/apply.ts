// applyLayer: extracts a layer tar into a directory and never outside it.
//
// Every path is resolved by the kernel with openat2(RESOLVE_IN_ROOT) relative to a file
// descriptor held on the target directory: ".." stops at that directory and symlinks,
// absolute or relative, are resolved as if it were "/". Only the parent directory of an
// entry is resolved that way; the entry itself is then named through /proc/self/fd/<fd>/
// <name> with calls that never follow a symlink in the last component (lstat, unlink,
// mkdir, symlink, link, O_NOFOLLOW|O_EXCL opens, mknodat on the fd, l*xattr, lchown,
// lutimes).
//
// The file system calls are synchronous on purpose: each is short (metadata, or a write
// into the page cache), and a round trip through libuv's thread pool per call made
// extraction three times slower. Only reading the stream is asynchronous.
import * as fs from 'node:fs';
import type { BigIntStats } from 'node:fs';

const fsc = fs.constants;
import { BerthError, ErrorKind, errnoCode, invalid } from '@berth/base';
import { quote } from './_format.js';
import { at, openat2, sys } from './_sys.js';
import { DEFAULT_MAX_LAYER_BYTES, Meter, decompress } from './compress.js';
import { DEFAULT_MAX_ENTRIES, DEFAULT_MAX_META_BYTES, readTar, type TarEntry, type TarHeader } from './reader.js';

export type ApplyMode = 'overlay' | 'copy';

export interface ApplyOptions {
  /**
   * 'overlay': targetDir is an empty overlayfs upper directory; whiteouts become overlay
   * whiteouts (0/0 character devices) and opaque markers set trusted.overlay.opaque=y.
   * 'copy': targetDir holds a copy of the parent's tree; whiteouts delete what they name
   * and opaque markers empty their directory of what earlier layers put there.
   */
  mode: ApplyMode;
  /** The descriptor's media type (the stream's magic bytes decide the compression). */
  mediaType?: string;
  /** Limit on the uncompressed tar size, in bytes. Default 64 GiB. */
  maxBytes?: number;
  /** Limit on the number of entries. Default 4,000,000. */
  maxEntries?: number;
  /** Limit on one pax header or GNU long name. Default 1 MiB. */
  maxMetaBytes?: number;
  /** Refuse names starting with ".wh." instead of taking them for whiteouts (an archive that is not a layer). */
  refuseWhiteouts?: boolean;
  /**
   * Sees each entry as it is applied: the header first, then the body's
   * chunks through the returned callback, then `end` once the entry is
   * applied.
   */
  observe?: (header: TarHeader) => EntryObserver | undefined;
}

export interface EntryObserver {
  data(chunk: Buffer): void;
  end(): void;
}

async function* observed(body: AsyncIterable<Buffer>, o: EntryObserver): AsyncGenerator<Buffer> {
  for await (const c of body) {
    o.data(c);
    yield c;
  }
}

export interface ApplyResult {
  /** Bytes of uncompressed tar. */
  size: number;
  /** sha256:<hex> of the uncompressed tar: the layer's diffID. */
  digest: string;
  /** Entries in the archive (whiteouts included). */
  entries: number;
}

const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';
const OVERLAY_XATTR = 'trusted.overlay.';

/** Splits a raw name (latin1) into components: no "" or ".", ".." folded; null if it climbs out. */
export function normalise(raw: string): string[] | null {
  const parts: string[] = [];
  for (const p of raw.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (parts.length === 0) return null;
      parts.pop();
      continue;
    }
    parts.push(p);
  }
  return parts;
}

function kindOfErrno(code: string | undefined): ErrorKind {
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EMFILE':
    case 'ENFILE':
      return ErrorKind.ResourceExhausted;
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
      return ErrorKind.PermissionDenied;
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EISDIR':
    case 'EEXIST':
    case 'ELOOP':
    case 'EXDEV':
    case 'ENAMETOOLONG':
    case 'EMLINK':
    case 'ENOTEMPTY':
    case 'EINVAL':
      return ErrorKind.InvalidArgument;
    default:
      return ErrorKind.Internal;
  }
}

function entryError(entry: TarEntry, err: unknown): BerthError {
  const msg = err instanceof Error ? err.message : String(err);
  const prefix = `apply layer: entry ${quote(entry.rawPath)} at offset ${entry.offset}`;
  if (err instanceof BerthError) return new BerthError(err.kind, `${prefix}: ${msg.replace(/^tar: /, '')}`, { cause: err });
  return new BerthError(kindOfErrno(errnoCode(err)), `${prefix}: ${msg}`, { cause: err });
}

function lstatOrNull(p: Buffer): BigIntStats | null {
  return fs.lstatSync(p, { bigint: true, throwIfNoEntry: false }) ?? null;
}

const ZERO = Buffer.alloc(64 * 1024);

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += ZERO.length) {
    const n = Math.min(ZERO.length, b.length - i);
    if (!b.subarray(i, i + n).equals(ZERO.subarray(0, n))) return false;
  }
  return true;
}

class Extractor {
  private readonly s = sys();
  private readonly c = this.s.constants;
  private readonly dirFlags = this.c.O_PATH | this.c.O_DIRECTORY;
  private readonly resolve = this.c.RESOLVE_IN_ROOT | this.c.RESOLVE_NO_MAGICLINKS;
  /** Paths this layer created (copy mode): whiteouts and opaque markers spare them. */
  private readonly created = new Set<string>();
  private readonly dirTimes: Array<{ parts: string[]; atime: number; mtime: number }> = [];

  constructor(
    private readonly rootFd: number,
    private readonly mode: ApplyMode,
    private readonly refuseWhiteouts = false,
  ) {}

  /** Opens (O_PATH) the directory at `parts` inside the root; with `create`, makes what is missing (0755). */
  private openDir(parts: string[], create: boolean): number {
    const rel = parts.length === 0 ? '.' : parts.join('/');
    try {
      return openat2(this.rootFd, Buffer.from(rel, 'latin1'), this.dirFlags, this.resolve);
    } catch (err) {
      if (!create || errnoCode(err) !== 'ENOENT') throw err;
    }
    // Make the missing components one by one, each looked up again from the root.
    let fd = openat2(this.rootFd, '.', this.dirFlags, this.resolve);
    try {
      for (let i = 0; i < parts.length; i++) {
        const prefix = Buffer.from(parts.slice(0, i + 1).join('/'), 'latin1');
        let next: number;
        try {
          next = openat2(this.rootFd, prefix, this.dirFlags, this.resolve);
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') throw err;
          try {
            // fd is the directory that the previous prefix resolved to, inside the root
            fs.mkdirSync(at(fd, parts[i] as string), 0o755);
          } catch (e) {
            if (errnoCode(e) === 'EEXIST') {
              throw invalid(`parent ${quote(prefix)} is a symlink to a missing directory`);
            }
            throw e;
          }
          if (this.mode === 'copy') this.created.add(parts.slice(0, i + 1).join('/'));
          next = openat2(this.rootFd, prefix, this.dirFlags, this.resolve);
        }
        fs.closeSync(fd);
        fd = next;
      }
      return fd;
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  async apply(e: TarEntry): Promise<void> {
    const parts = normalise(e.rawPath.toString('latin1'));
    if (parts === null) throw invalid('the path climbs out of the layer root with ".."');
    if (parts.length === 0) {
      if (e.type !== 'dir') throw invalid(`the layer root can only be a directory, not a ${e.type}`);
      this.attributes(this.rootFd, '.', e);
      return;
    }
    const base = parts[parts.length - 1] as string;
    const parentParts = parts.slice(0, -1);
    if (base.startsWith(WH)) {
      if (this.refuseWhiteouts) throw invalid('names starting with ".wh." are reserved for layer whiteouts');
      await this.whiteout(parentParts, base);
      return;
    }
    const rel = parts.join('/');
    const pfd = this.openDir(parentParts, true);
    try {
      const p = at(pfd, base);
      if (e.type === 'hardlink') {
        await this.hardlink(pfd, base, parts, e);
        if (this.mode === 'copy') this.created.add(rel);
        return;
      }
      const existing = lstatOrNull(p);
      if (existing !== null && !(e.type === 'dir' && existing.isDirectory())) {
        if (existing.isDirectory()) fs.rmSync(p, { recursive: true, force: true });
        else fs.unlinkSync(p);
      }
      if (this.mode === 'copy') this.created.add(rel);
      switch (e.type) {
        case 'file':
          await this.file(p, e);
          return;
        case 'dir':
          if (existing === null || !existing.isDirectory()) fs.mkdirSync(p, 0o700);
          this.attributes(pfd, base, e);
          this.dirTimes.push({ parts, atime: e.atime ?? e.mtime, mtime: e.mtime });
          return;
        case 'symlink':
          if (e.rawLinkpath.length === 0) throw invalid('symlink with an empty target');
          fs.symlinkSync(e.rawLinkpath, p);
          this.attributes(pfd, base, e);
          return;
        case 'char':
        case 'block':
        case 'fifo': {
          const t = e.type === 'char' ? this.c.S_IFCHR : e.type === 'block' ? this.c.S_IFBLK : this.c.S_IFIFO;
          this.s.mknodat(pfd, Buffer.from(base, 'latin1'), t | (e.mode & 0o777), e.devmajor, e.devminor);
          this.attributes(pfd, base, e);
          return;
        }
      }
    } finally {
      fs.closeSync(pfd);
    }
  }

  private async file(p: Buffer, e: TarEntry): Promise<void> {
    const fd = fs.openSync(p, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    try {
      let pos = 0;
      let holes = false;
      for await (const chunk of e.body) {
        // Runs of zeros become holes: a huge mostly-empty file costs no disk.
        if (chunk.length >= 4096 && isZero(chunk)) holes = true;
        else {
          let off = 0;
          while (off < chunk.length) off += fs.writeSync(fd, chunk, off, chunk.length - off, pos + off);
        }
        pos += chunk.length;
      }
      if (holes) fs.ftruncateSync(fd, pos);
      fs.fchownSync(fd, e.uid, e.gid);
      this.xattrs(p, e);
      // chown clears setuid/setgid, so the mode comes after it
      fs.fchmodSync(fd, e.mode);
      fs.futimesSync(fd, e.atime ?? e.mtime, e.mtime);
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Owner, then extended attributes, then mode (chown clears setuid/setgid), then times
   * (directories' times are set at the end, by finish()).
   */
  private attributes(dirFd: number, name: string, e: TarEntry): void {
    const p = at(dirFd, name);
    fs.lchownSync(p, e.uid, e.gid);
    this.xattrs(p, e);
    if (e.type === 'dir') {
      // open the directory itself (never a symlink) and change its mode through the fd
      const fd = fs.openSync(p, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
      try {
        fs.fchmodSync(fd, e.mode);
      } finally {
        fs.closeSync(fd);
      }
      if (name === '.') this.dirTimes.push({ parts: [], atime: e.atime ?? e.mtime, mtime: e.mtime });
    } else if (e.type !== 'symlink') {
      // a device node or fifo just made by mknodat (the umask trimmed its mode)
      if (fs.lstatSync(p).isSymbolicLink()) throw invalid('changed under us');
      fs.chmodSync(p, e.mode);
    }
    if (e.type !== 'dir') fs.lutimesSync(p, e.atime ?? e.mtime, e.mtime);
  }

  private xattrs(p: Buffer, e: TarEntry): void {
    for (const [name, value] of e.xattrs) {
      // overlay's own attributes come only from whiteout markers, never from the archive
      if (name.startsWith(OVERLAY_XATTR)) continue;
      try {
        this.s.lsetxattr(p, name, value, 0);
      } catch (err) {
        throw new BerthError(kindOfErrno(errnoCode(err)), `setting xattr ${name}: ${String(err)}`, { cause: err });
      }
    }
  }

  private async hardlink(pfd: number, base: string, parts: string[], e: TarEntry): Promise<void> {
    const target = normalise(e.rawLinkpath.toString('latin1'));
    if (target === null) throw invalid(`hard link target ${quote(e.rawLinkpath)} climbs out of the layer root`);
    if (target.length === 0) throw invalid('hard link to the layer root');
    if (target.join('/') === parts.join('/')) return;
    let tfd: number;
    try {
      tfd = this.openDir(target.slice(0, -1), false);
    } catch (err) {
      throw new BerthError(
        kindOfErrno(errnoCode(err)),
        `hard link target ${quote(e.rawLinkpath)} is not in the layer root (${err instanceof Error ? err.message : String(err)})`,
        { cause: err },
      );
    }
    try {
      const tp = at(tfd, target[target.length - 1] as string);
      const tst = lstatOrNull(tp);
      if (tst === null) throw invalid(`hard link target ${quote(e.rawLinkpath)} is not in the layer root`);
      if (tst.isDirectory()) throw invalid(`hard link target ${quote(e.rawLinkpath)} is a directory`);
      const p = at(pfd, base);
      const existing = lstatOrNull(p);
      if (existing !== null) {
        if (existing.ino === tst.ino && existing.dev === tst.dev) return;
        if (existing.isDirectory()) fs.rmSync(p, { recursive: true, force: true });
        else fs.unlinkSync(p);
      }
      // link(2) never follows a symlink in its first argument: a link to a symlink links the symlink
      fs.linkSync(tp, p);
    } finally {
      fs.closeSync(tfd);
    }
  }

  private async whiteout(parentParts: string[], base: string): Promise<void> {
    if (base === OPAQUE) {
      if (this.mode === 'overlay') {
        const dfd = this.openDir(parentParts, true);
        try {
          this.s.lsetxattr(at(dfd, '.'), 'trusted.overlay.opaque', Buffer.from('y'), 0);
        } finally {
          fs.closeSync(dfd);
        }
      } else {
        await this.clearOpaque(parentParts);
      }
      return;
    }
    // other .wh..wh.* names are aufs bookkeeping, meaningless here
    if (base.startsWith(`${WH}${WH}`)) return;
    const name = base.slice(WH.length);
    if (name === '' || name === '.' || name === '..') throw invalid('whiteout names nothing');
    if (this.mode === 'overlay') {
      const pfd = this.openDir(parentParts, true);
      try {
        // something of this layer already there wins over the whiteout (OCI layer spec)
        if ((lstatOrNull(at(pfd, name))) !== null) return;
        this.s.mknodat(pfd, Buffer.from(name, 'latin1'), this.c.S_IFCHR, 0, 0);
      } finally {
        fs.closeSync(pfd);
      }
      return;
    }
    if (this.created.has([...parentParts, name].join('/'))) return;
    let pfd: number;
    try {
      pfd = this.openDir(parentParts, false);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw err;
    }
    try {
      fs.rmSync(at(pfd, name), { recursive: true, force: true });
    } finally {
      fs.closeSync(pfd);
    }
  }

  /** Copy mode: removes what earlier layers put in the directory, keeping this layer's entries. */
  private async clearOpaque(dirParts: string[]): Promise<void> {
    let dfd: number;
    try {
      dfd = this.openDir(dirParts, false);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw err;
    }
    try {
      const names = fs.readdirSync(at(dfd, '.'), { encoding: 'buffer' });
      for (const n of names) {
        const name = n.toString('latin1');
        const childParts = [...dirParts, name];
        const p = at(dfd, name);
        if (this.created.has(childParts.join('/'))) {
          if (fs.lstatSync(p).isDirectory()) await this.clearOpaque(childParts);
        } else {
          fs.rmSync(p, { recursive: true, force: true });
        }
      }
    } finally {
      fs.closeSync(dfd);
    }
  }

  /** Directory times, set last since every entry written into a directory changes them. */
  async finish(): Promise<void> {
    for (let i = this.dirTimes.length - 1; i >= 0; i--) {
      const { parts, atime, mtime } = this.dirTimes[i] as (typeof this.dirTimes)[number];
      let pfd: number;
      try {
        pfd = this.openDir(parts.slice(0, -1), false);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        throw err;
      }
      try {
        const p = at(pfd, parts.length === 0 ? '.' : (parts[parts.length - 1] as string));
        const st = lstatOrNull(p);
        if (st !== null && st.isDirectory()) fs.lutimesSync(p, atime, mtime);
      } finally {
        fs.closeSync(pfd);
      }
    }
  }
}

/**
 * Applies a layer (gzip, zstd or plain tar, as its magic bytes say) to `targetDir`.
 * Nothing outside targetDir is created, changed or followed, whatever the archive holds.
 * On failure, targetDir holds a partial layer: the caller discards it.
 */
export async function applyLayer(
  source: AsyncIterable<Uint8Array>,
  targetDir: string,
  options: ApplyOptions,
): Promise<ApplyResult> {
  if (options.mode !== 'overlay' && options.mode !== 'copy') {
    throw invalid(`apply layer: mode must be "overlay" or "copy", not ${JSON.stringify(options.mode)}`);
  }
  const s = sys();
  let rootFd: number;
  try {
    rootFd = openat2(s.constants.AT_FDCWD, targetDir, s.constants.O_PATH | s.constants.O_DIRECTORY, 0);
  } catch (err) {
    throw new BerthError(kindOfErrno(errnoCode(err)), `apply layer: target ${targetDir}: ${String(err)}`, { cause: err });
  }
  try {
    const maxBytes = options.maxBytes ?? DEFAULT_MAX_LAYER_BYTES;
    const meter = new Meter(maxBytes);
    const decompressOptions = options.mediaType === undefined ? {} : { mediaType: options.mediaType };
    const tar = meter.measure(decompress(source, decompressOptions));
    const x = new Extractor(rootFd, options.mode, options.refuseWhiteouts === true);
    let entries = 0;
    for await (const entry of readTar(tar, {
      maxEntries: options.maxEntries ?? DEFAULT_MAX_ENTRIES,
      maxMetaBytes: options.maxMetaBytes ?? DEFAULT_MAX_META_BYTES,
      maxEntrySize: maxBytes,
    })) {
      entries++;
      const o = options.observe?.(entry);
      if (o !== undefined) entry.body = observed(entry.body, o);
      try {
        await x.apply(entry);
        if (o !== undefined) {
          // Whatever the extractor left unread still counts.
          for await (const c of entry.body) void c;
          o.end();
        }
      } catch (err) {
        throw entryError(entry, err);
      }
    }
    await x.finish();
    return { size: meter.size, digest: meter.digest(), entries };
  } catch (err) {
    if (err instanceof BerthError && err.message.startsWith('apply layer')) throw err;
    if (err instanceof BerthError) throw new BerthError(err.kind, `apply layer: ${err.message}`, { cause: err });
    throw new BerthError(kindOfErrno(errnoCode(err)), `apply layer: ${String(err)}`, { cause: err });
  } finally {
    fs.closeSync(rootFd);
  }
}
