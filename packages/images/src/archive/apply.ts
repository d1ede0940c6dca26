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
// The parent directory stays open while consecutive entries go into it (any removal
// the extractor makes has it looked up again), and an entry is made first (O_EXCL,
// mkdir, symlink, mknod), what is in the way looked at only when that fails with EEXIST.
//
// The file system calls are synchronous on purpose: each is short (metadata, or a write
// into the page cache), and a round trip through libuv's thread pool per call made
// extraction three times slower (file data written by the pool while the next batch is
// read gained nothing either). Only reading the stream is asynchronous.
//
// applyLayer reads a layer's tar; applyEntries takes entries already parsed (docker cp's
// archive) with their names mapped by the caller.
import * as fs from 'node:fs';
import type { BigIntStats } from 'node:fs';

const fsc = fs.constants;
import { BerthError, ErrorKind, errnoCode, invalid } from '@berth/base';
import { quote } from './_format.js';
import { at, openat2, sys } from './_sys.js';
import { DEFAULT_MAX_LAYER_BYTES, Meter, decompress } from './compress.js';
import { DEFAULT_MAX_ENTRIES, DEFAULT_MAX_META_BYTES, readTar, type TarEntry } from './reader.js';

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

function entryError(entry: TarEntry, err: unknown, label: string): BerthError {
  const msg = err instanceof Error ? err.message : String(err);
  const prefix = `${label}: entry ${quote(entry.rawPath)} at offset ${entry.offset}`;
  if (err instanceof BerthError) return new BerthError(err.kind, `${prefix}: ${msg.replace(/^tar: /, '')}`, { cause: err });
  return new BerthError(kindOfErrno(errnoCode(err)), `${prefix}: ${msg}`, { cause: err });
}

function lstatOrNull(p: Buffer): BigIntStats | null {
  return fs.lstatSync(p, { bigint: true, throwIfNoEntry: false }) ?? null;
}

/**
 * Where an entry goes, as components below the target directory (no "", ".", ".." or
 * "/" in them; [] is the target itself).
 */
export interface EntryNames {
  path: string[];
  /** A hard link's target, likewise. */
  linkpath?: string[];
}

export interface ApplyEntriesOptions {
  /** As ApplyOptions.mode. */
  mode: ApplyMode;
  /** As ApplyOptions.refuseWhiteouts. */
  refuseWhiteouts?: boolean;
  /**
   * Where each entry goes, or null to skip it. What it throws ends the extraction as it
   * is. Default: the entry's name (and a hard link's target) with "." and ".." folded,
   * refused when it climbs out of the target.
   */
  mapNames?: (entry: TarEntry) => EntryNames | null;
  /**
   * Called before an existing directory is replaced by a non-directory, or a
   * non-directory by a directory (`path` as mapped); what it throws ends the
   * extraction as it is.
   */
  onReplace?: (path: readonly string[], existingIsDir: boolean, entry: TarEntry) => void;
  /** What error messages start with. Default "apply layer". */
  label?: string;
}

const ZERO = Buffer.alloc(64 * 1024);

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += ZERO.length) {
    const n = Math.min(ZERO.length, b.length - i);
    if (!b.subarray(i, i + n).equals(ZERO.subarray(0, n))) return false;
  }
  return true;
}

/** File data is written in batches of up to this many bytes, or chunks (one writev each). */
const WRITE_BATCH = 1 << 20;
const WRITE_BUFFERS = 256;

/** Writes `bufs` at `pos`, all of them. */
function writeAll(fd: number, bufs: Buffer[], total: number, pos: number): void {
  let done = fs.writevSync(fd, bufs, pos);
  if (done === total) return;
  // a short write: the rest one buffer at a time
  for (const b of bufs) {
    if (done >= b.length) {
      done -= b.length;
      pos += b.length;
      continue;
    }
    let off = done;
    done = 0;
    while (off < b.length) off += fs.writeSync(fd, b, off, b.length - off, pos + off);
    pos += b.length;
  }
}

/** An error of the caller's (a callback's): it ends the extraction as it is. */
class CallerError {
  constructor(readonly error: unknown) {}
}

function checkNames(parts: readonly string[]): void {
  for (const p of parts) {
    if (p === '' || p === '.' || p === '..' || p.includes('/') || p.includes('\0')) {
      throw invalid(`the name component ${JSON.stringify(p)} is not a plain name`);
    }
  }
}

function defaultNames(e: TarEntry): EntryNames {
  const path = normalise(e.rawPath.toString('latin1'));
  if (path === null) throw invalid('the path climbs out of the layer root with ".."');
  if (e.type !== 'hardlink') return { path };
  const linkpath = normalise(e.rawLinkpath.toString('latin1'));
  if (linkpath === null) throw invalid(`hard link target ${quote(e.rawLinkpath)} climbs out of the layer root`);
  return { path, linkpath };
}

class Extractor {
  private readonly s = sys();
  private readonly c = this.s.constants;
  private readonly dirFlags = this.c.O_PATH | this.c.O_DIRECTORY;
  private readonly resolve = this.c.RESOLVE_IN_ROOT | this.c.RESOLVE_NO_MAGICLINKS;
  /** One component below a directory fd, never through a symlink. */
  private readonly beneath = this.c.RESOLVE_BENEATH | this.c.RESOLVE_NO_SYMLINKS | this.c.RESOLVE_NO_MAGICLINKS;
  /** Paths this layer created (copy mode): whiteouts and opaque markers spare them. */
  private readonly created = new Set<string>();
  private readonly dirTimes: Array<{ parts: string[]; atime: number; mtime: number }> = [];
  /**
   * The parent directory of the last entry, kept open while entries stay in it. Only a
   * removal can change what a path resolved to (every component it went through
   * exists), so any removal the extractor makes drops it before the next entry.
   */
  private cached: { key: string; fd: number } | undefined;
  private stale = false;

  constructor(
    private readonly rootFd: number,
    private readonly mode: ApplyMode,
    private readonly refuseWhiteouts = false,
    private readonly onReplace?: (path: readonly string[], existingIsDir: boolean, entry: TarEntry) => void,
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

  /** The parent directory `parts` (made where missing), from the cache when it holds it; not to be closed. */
  private parentFd(parts: string[]): number {
    const key = parts.join('/');
    if (this.stale) {
      this.stale = false;
      this.close();
    }
    if (this.cached !== undefined) {
      if (this.cached.key === key) return this.cached.fd;
      this.close();
    }
    const fd = this.openDir(parts, true);
    this.cached = { key, fd };
    return fd;
  }

  /** Closes the cached directory. */
  close(): void {
    if (this.cached === undefined) return;
    const { fd } = this.cached;
    this.cached = undefined;
    fs.closeSync(fd);
  }

  /** Removes `p` (a whole tree for a directory); cached lookups are redone from now on. */
  private remove(p: Buffer, isDir: boolean): void {
    this.stale = true;
    if (isDir) fs.rmSync(p, { recursive: true, force: true });
    else fs.unlinkSync(p);
  }

  private replacing(parts: readonly string[], existingIsDir: boolean, e: TarEntry): void {
    if (this.onReplace === undefined) return;
    try {
      this.onReplace(parts, existingIsDir, e);
    } catch (err) {
      throw new CallerError(err);
    }
  }

  /** Removes what is at `base` in the directory pfd, if anything, for the entry `e` to take its place. */
  private clear(pfd: number, base: string, parts: readonly string[], e: TarEntry): void {
    const p = at(pfd, base);
    const existing = lstatOrNull(p);
    if (existing === null) return;
    const isDir = existing.isDirectory();
    if (isDir !== (e.type === 'dir')) this.replacing(parts, isDir, e);
    this.remove(p, isDir);
  }

  /** Runs make(), which fails with EEXIST when something is in the way; then clears that and runs it again. */
  private make<T>(pfd: number, base: string, parts: readonly string[], e: TarEntry, make: () => T): T {
    try {
      return make();
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    this.clear(pfd, base, parts, e);
    return make();
  }

  async apply(e: TarEntry, names: EntryNames): Promise<void> {
    const parts = names.path;
    checkNames(parts);
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
    const pfd = this.parentFd(parentParts);
    if (this.mode === 'copy') this.created.add(parts.join('/'));
    switch (e.type) {
      case 'hardlink': {
        const target = names.linkpath ?? defaultNames(e).linkpath ?? [];
        checkNames(target);
        this.hardlink(pfd, base, parts, target, e);
        return;
      }
      case 'file':
        await this.file(pfd, base, parts, e);
        return;
      case 'dir': {
        const p = at(pfd, base);
        try {
          fs.mkdirSync(p, 0o700);
        } catch (err) {
          if (errnoCode(err) !== 'EEXIST') throw err;
          const st = lstatOrNull(p);
          if (st === null || !st.isDirectory()) {
            this.clear(pfd, base, parts, e);
            fs.mkdirSync(p, 0o700);
          }
        }
        this.attributes(pfd, base, e);
        this.dirTimes.push({ parts, atime: e.atime ?? e.mtime, mtime: e.mtime });
        return;
      }
      case 'symlink':
        if (e.rawLinkpath.length === 0) throw invalid('symlink with an empty target');
        this.make(pfd, base, parts, e, () => fs.symlinkSync(e.rawLinkpath, at(pfd, base)));
        this.attributes(pfd, base, e);
        return;
      case 'char':
      case 'block':
      case 'fifo': {
        const t = e.type === 'char' ? this.c.S_IFCHR : e.type === 'block' ? this.c.S_IFBLK : this.c.S_IFIFO;
        const name = Buffer.from(base, 'latin1');
        this.make(pfd, base, parts, e, () => this.s.mknodat(pfd, name, t | (e.mode & 0o777), e.devmajor, e.devminor));
        this.attributes(pfd, base, e);
        return;
      }
    }
  }

  private async file(pfd: number, base: string, parts: readonly string[], e: TarEntry): Promise<void> {
    const name = Buffer.from(base, 'latin1');
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
    const fd = this.make(pfd, base, parts, e, () => openat2(pfd, name, flags, this.beneath, 0o600));
    try {
      let pos = 0;
      let holes = false;
      // Chunks are gathered and written together: the source never reuses a chunk's memory.
      let batch: Buffer[] = [];
      let batchBytes = 0;
      let batchAt = 0;
      const flush = (): void => {
        if (batchBytes > 0) writeAll(fd, batch, batchBytes, batchAt);
        batch = [];
        batchBytes = 0;
      };
      for await (const chunk of e.body) {
        // Runs of zeros become holes: a huge mostly-empty file costs no disk.
        if (chunk.length >= 4096 && isZero(chunk)) {
          flush();
          holes = true;
        } else {
          if (batchBytes === 0) batchAt = pos;
          batch.push(chunk);
          batchBytes += chunk.length;
          if (batchBytes >= WRITE_BATCH || batch.length >= WRITE_BUFFERS) flush();
        }
        pos += chunk.length;
      }
      flush();
      if (holes) fs.ftruncateSync(fd, pos);
      fs.fchownSync(fd, e.uid, e.gid);
      if (e.xattrs.size > 0) this.xattrs(at(pfd, base), e);
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
    if (e.type === 'dir') {
      // the directory itself (never a symlink), changed through an fd on it
      const fd = name === '.' ? fs.openSync(p, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW) : openat2(dirFd, Buffer.from(name, 'latin1'), fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW, this.beneath);
      try {
        fs.fchownSync(fd, e.uid, e.gid);
        if (e.xattrs.size > 0) this.xattrs(p, e);
        fs.fchmodSync(fd, e.mode);
      } finally {
        fs.closeSync(fd);
      }
      if (name === '.') this.dirTimes.push({ parts: [], atime: e.atime ?? e.mtime, mtime: e.mtime });
      return;
    }
    fs.lchownSync(p, e.uid, e.gid);
    this.xattrs(p, e);
    if (e.type !== 'symlink') {
      // a device node or fifo just made by mknodat (the umask trimmed its mode)
      if (fs.lstatSync(p).isSymbolicLink()) throw invalid('changed under us');
      fs.chmodSync(p, e.mode);
    }
    fs.lutimesSync(p, e.atime ?? e.mtime, e.mtime);
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

  private hardlink(pfd: number, base: string, parts: string[], target: string[], e: TarEntry): void {
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
        if (existing.isDirectory()) this.replacing(parts, true, e);
        this.remove(p, existing.isDirectory());
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
        const dfd = this.parentFd(parentParts);
        this.s.lsetxattr(at(dfd, '.'), 'trusted.overlay.opaque', Buffer.from('y'), 0);
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
      const pfd = this.parentFd(parentParts);
      // something of this layer already there wins over the whiteout (OCI layer spec)
      if ((lstatOrNull(at(pfd, name))) !== null) return;
      this.s.mknodat(pfd, Buffer.from(name, 'latin1'), this.c.S_IFCHR, 0, 0);
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
      this.remove(at(pfd, name), true);
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
          this.remove(p, true);
        }
      }
    } finally {
      fs.closeSync(dfd);
    }
  }

  /** Directory times, set last since every entry written into a directory changes them. */
  async finish(): Promise<void> {
    this.close();
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

function openRoot(targetDir: string, label: string): number {
  const s = sys();
  try {
    return openat2(s.constants.AT_FDCWD, targetDir, s.constants.O_PATH | s.constants.O_DIRECTORY, 0);
  } catch (err) {
    throw new BerthError(kindOfErrno(errnoCode(err)), `${label}: target ${targetDir}: ${String(err)}`, { cause: err });
  }
}

/** Applies the entries one by one; returns how many there were. */
async function applyAll(x: Extractor, entries: AsyncIterable<TarEntry>, options: ApplyEntriesOptions, label: string): Promise<number> {
  let count = 0;
  for await (const entry of entries) {
    count++;
    const names = options.mapNames === undefined ? undefined : options.mapNames(entry);
    try {
      if (names !== null) await x.apply(entry, names ?? defaultNames(entry));
    } catch (err) {
      if (err instanceof CallerError) throw err.error;
      throw entryError(entry, err, label);
    }
  }
  return count;
}

/**
 * Applies already-parsed tar entries (a readTar iteration, say) to `targetDir`, each
 * where `mapNames` puts it, with applyLayer's confinement: nothing outside targetDir is
 * created, changed or followed. Errors of the entries' source pass through as they are.
 * Returns the number of entries. On failure, targetDir holds part of the entries.
 */
export async function applyEntries(
  entries: AsyncIterable<TarEntry>,
  targetDir: string,
  options: ApplyEntriesOptions,
): Promise<number> {
  if (options.mode !== 'overlay' && options.mode !== 'copy') {
    throw invalid(`apply entries: mode must be "overlay" or "copy", not ${JSON.stringify(options.mode)}`);
  }
  const label = options.label ?? 'apply layer';
  const rootFd = openRoot(targetDir, label);
  const x = new Extractor(rootFd, options.mode, options.refuseWhiteouts === true, options.onReplace);
  try {
    const count = await applyAll(x, entries, options, label);
    try {
      await x.finish();
    } catch (err) {
      throw new BerthError(kindOfErrno(errnoCode(err)), `${label}: setting directory times: ${String(err)}`, { cause: err });
    }
    return count;
  } finally {
    x.close();
    fs.closeSync(rootFd);
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
  const rootFd = openRoot(targetDir, 'apply layer');
  const x = new Extractor(rootFd, options.mode, options.refuseWhiteouts === true);
  try {
    const maxBytes = options.maxBytes ?? DEFAULT_MAX_LAYER_BYTES;
    const meter = new Meter(maxBytes);
    const decompressOptions = options.mediaType === undefined ? {} : { mediaType: options.mediaType };
    const tar = meter.measure(decompress(source, decompressOptions));
    const entries = readTar(tar, {
      maxEntries: options.maxEntries ?? DEFAULT_MAX_ENTRIES,
      maxMetaBytes: options.maxMetaBytes ?? DEFAULT_MAX_META_BYTES,
      maxEntrySize: maxBytes,
    });
    const count = await applyAll(x, entries, { mode: options.mode }, 'apply layer');
    await x.finish();
    return { size: meter.size, digest: meter.digest(), entries: count };
  } catch (err) {
    if (err instanceof BerthError && err.message.startsWith('apply layer')) throw err;
    if (err instanceof BerthError) throw new BerthError(err.kind, `apply layer: ${err.message}`, { cause: err });
    throw new BerthError(kindOfErrno(errnoCode(err)), `apply layer: ${String(err)}`, { cause: err });
  } finally {
    x.close();
    fs.closeSync(rootFd);
  }
}
