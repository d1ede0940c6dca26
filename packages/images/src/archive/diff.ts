// makeLayer: writes an OCI layer tar of the changes in a snapshot, either from an
// overlayfs upper directory or by comparing two plain directories.
//
// The trees walked may hold anything a container wrote, possibly while it still runs,
// so every directory is opened from its parent's fd with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS) and every entry is named through /proc/self/fd/<dirfd>/<name>:
// a symlink swapped in for a directory fails the walk instead of leading it outside.
import { closeSync, createReadStream, fstatSync, type BigIntStats } from 'node:fs';
import * as fs from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { BerthError, ErrorKind, errnoCode, failedPrecondition, invalid } from '@berth/base';
import { quote, type TarEntryType } from './_format.js';
import { at, openBeneath, openDirectory, sys } from './_sys.js';
import { byBytes, statEntry, tarTypeOf as typeOf } from './tree.js';
import { TarWriter, type TarWriteEntry, type TarWriteResult } from './writer.js';

/** What changed: an overlay upper directory (lowers listed top first), or a pair of trees. */
export type LayerChanges = { lower: string[]; upper: string } | { base: string; changed: string };

export interface MakeLayerOptions {
  /** End `out` when the tar is complete. Default true. */
  end?: boolean;
}

const OVERLAY_XATTR = 'trusted.overlay.';

interface Node {
  name: string;
  st: BigIntStats;
}

interface PendingDir {
  parts: string[];
  dirFd: number;
  name: string;
  st: BigIntStats;
  written: boolean;
}

function sameXattrs(a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (w === undefined || !w.equals(v)) return false;
  }
  return true;
}

class LayerMaker {
  private readonly s = sys();
  private readonly c = this.s.constants;
  private readonly links = new Map<string, string>();
  private readonly pending: PendingDir[] = [];
  private readonly w: TarWriter;

  constructor(out: Writable) {
    this.w = new TarWriter(out);
  }

  result(): Promise<TarWriteResult> {
    return this.w.finish();
  }

  openRoot(path: string): number {
    return openDirectory(path);
  }

  private openDir(dirFd: number, name: string): number {
    return openBeneath(dirFd, name, this.c.O_PATH | this.c.O_DIRECTORY);
  }

  private async list(dirFd: number): Promise<Node[]> {
    const names = (await fs.readdir(at(dirFd, '.'), { encoding: 'buffer' })).map((n) => n.toString('latin1'));
    names.sort(byBytes);
    const out: Node[] = [];
    for (const name of names) out.push({ name, st: await fs.lstat(at(dirFd, name), { bigint: true }) });
    return out;
  }

  private xattrNames(dirFd: number, name: string): string[] {
    try {
      return this.s.llistxattr(at(dirFd, name));
    } catch (err) {
      if (errnoCode(err) === 'ENOTSUP' || errnoCode(err) === 'EOPNOTSUPP') return [];
      throw err;
    }
  }

  /** The extended attributes worth carrying (overlay's own are not). */
  private xattrs(dirFd: number, name: string, names = this.xattrNames(dirFd, name)): Map<string, Buffer> {
    const out = new Map<string, Buffer>();
    for (const n of names) {
      if (n.startsWith(OVERLAY_XATTR)) continue;
      const v = this.s.lgetxattr(at(dirFd, name), n);
      if (v !== null) out.set(n, v);
    }
    return out;
  }

  /** Writes the headers of the enclosing directories not written yet. */
  private async flush(): Promise<void> {
    for (const d of this.pending) {
      if (d.written) continue;
      d.written = true;
      await this.w.add(this.header(d.parts, d.st, 'dir', this.xattrs(d.dirFd, d.name)));
    }
  }

  private header(parts: string[], st: BigIntStats, type: TarEntryType, xattrs: Map<string, Buffer>): TarWriteEntry {
    const rel = parts.join('/') + (type === 'dir' ? '/' : '');
    const h = statEntry(Buffer.from(rel === '/' ? './' : rel, 'latin1'), st, type);
    if (xattrs.size > 0) h.xattrs = xattrs;
    return h;
  }

  async whiteout(parts: string[], name: string): Promise<void> {
    await this.flush();
    await this.w.add({ type: 'file', path: Buffer.from([...parts, name].join('/'), 'latin1'), mode: 0o600, size: 0 });
  }

  /** Writes one non-directory entry: a hard link if its inode was written before in this layer. */
  async entry(dirFd: number, parts: string[], node: Node, xattrNames?: string[]): Promise<void> {
    const type = typeOf(node.st);
    if (type === undefined || type === 'dir') return;
    await this.flush();
    const rel = parts.join('/');
    const h = this.header(parts, node.st, type, this.xattrs(dirFd, node.name, xattrNames));
    if (node.st.nlink > 1n) {
      const key = `${node.st.dev}:${node.st.ino}`;
      const first = this.links.get(key);
      if (first !== undefined) {
        await this.w.add({ ...h, type: 'hardlink', linkpath: Buffer.from(first, 'latin1') });
        return;
      }
      this.links.set(key, rel);
    }
    if (type === 'symlink') {
      h.linkpath = await fs.readlink(at(dirFd, node.name), { encoding: 'buffer' });
      await this.w.add(h);
      return;
    }
    if (type !== 'file') {
      await this.w.add(h);
      return;
    }
    h.size = Number(node.st.size);
    const fd = openBeneath(dirFd, node.name, this.c.O_RDONLY);
    let handedOver = false;
    try {
      const st = fstatSync(fd, { bigint: true });
      if (st.ino !== node.st.ino || st.dev !== node.st.dev) {
        throw failedPrecondition(`make layer: ${quote(rel)} changed while the layer was being made`);
      }
      if (h.size === 0) {
        await this.w.add(h);
        return;
      }
      const rs = createReadStream(at(dirFd, node.name), { fd, start: 0, end: h.size - 1, highWaterMark: 1 << 20 });
      handedOver = true;
      try {
        await this.w.add(h, rs);
      } catch (err) {
        if (err instanceof BerthError && err.kind === ErrorKind.InvalidArgument) {
          throw failedPrecondition(`make layer: ${quote(rel)} changed size while the layer was being made`, err);
        }
        throw err;
      } finally {
        rs.destroy();
      }
    } finally {
      if (!handedOver) closeSync(fd);
    }
  }

  /** A directory: pending until something inside it (or it itself) has to be written. */
  async dir(dirFd: number, parts: string[], node: Node, write: boolean, inside: (fd: number) => Promise<void>): Promise<void> {
    const fd = this.openDir(dirFd, node.name);
    const d: PendingDir = { parts, dirFd, name: node.name, st: node.st, written: false };
    this.pending.push(d);
    try {
      if (write) await this.flush();
      await inside(fd);
    } finally {
      this.pending.pop();
      closeSync(fd);
    }
  }

  // ---- overlay: the upper directory is the change set ----

  async upper(dirFd: number, parts: string[]): Promise<void> {
    const nodes = await this.list(dirFd);
    const isWhiteout = (n: Node): boolean => n.st.isCharacterDevice() && n.st.rdev === 0n;
    for (const n of nodes) if (isWhiteout(n)) await this.whiteout(parts, `.wh.${n.name}`);
    for (const n of nodes) {
      if (isWhiteout(n)) continue;
      const rel = [...parts, n.name];
      const names = this.xattrNames(dirFd, n.name);
      for (const x of ['trusted.overlay.redirect', 'trusted.overlay.metacopy']) {
        if (names.includes(x)) {
          throw failedPrecondition(
            `make layer: ${quote(rel.join('/'))} has ${x}: mount overlays without redirect_dir and metacopy`,
          );
        }
      }
      if (n.st.isDirectory()) {
        const opaque = names.includes('trusted.overlay.opaque') &&
          this.s.lgetxattr(at(dirFd, n.name), 'trusted.overlay.opaque')?.toString('latin1') === 'y';
        await this.dir(dirFd, rel, n, true, async (fd) => {
          if (opaque) await this.whiteout(rel, '.wh..wh..opq');
          await this.upper(fd, rel);
        });
      } else {
        await this.entry(dirFd, rel, n, names);
      }
    }
  }

  // ---- two plain trees: what differs between base and changed ----

  private static differs(a: BigIntStats, b: BigIntStats): boolean {
    return (
      a.mode !== b.mode ||
      a.uid !== b.uid ||
      a.gid !== b.gid ||
      a.rdev !== b.rdev ||
      a.mtimeNs !== b.mtimeNs ||
      (!a.isDirectory() && a.size !== b.size)
    );
  }

  async pair(baseFd: number | null, changedFd: number, parts: string[]): Promise<void> {
    const changed = await this.list(changedFd);
    const base = baseFd === null ? [] : await this.list(baseFd);
    const inChanged = new Set(changed.map((n) => n.name));
    const inBase = new Map(base.map((n) => [n.name, n]));
    for (const b of base) if (!inChanged.has(b.name)) await this.whiteout(parts, `.wh.${b.name}`);
    for (const n of changed) {
      if (typeOf(n.st) === undefined) continue;
      const rel = [...parts, n.name];
      const old = inBase.get(n.name);
      if (n.st.isDirectory()) {
        const oldIsDir = old !== undefined && old.st.isDirectory();
        const same =
          oldIsDir &&
          baseFd !== null &&
          !LayerMaker.differs(old.st, n.st) &&
          sameXattrs(this.xattrs(baseFd, n.name), this.xattrs(changedFd, n.name));
        await this.dir(changedFd, rel, n, !same, async (fd) => {
          if (!oldIsDir || baseFd === null) return this.pair(null, fd, rel);
          const bfd = this.openDir(baseFd, n.name);
          try {
            await this.pair(bfd, fd, rel);
          } finally {
            closeSync(bfd);
          }
        });
        continue;
      }
      let write = old === undefined || baseFd === null || LayerMaker.differs(old.st, n.st);
      if (!write && baseFd !== null) {
        write = !sameXattrs(this.xattrs(baseFd, n.name), this.xattrs(changedFd, n.name));
        if (!write && n.st.isSymbolicLink()) {
          const [a, b] = await Promise.all([
            fs.readlink(at(baseFd, n.name), { encoding: 'buffer' }),
            fs.readlink(at(changedFd, n.name), { encoding: 'buffer' }),
          ]);
          write = !a.equals(b);
        }
      }
      if (write) await this.entry(changedFd, rel, n);
    }
  }

  /** The root itself, written as "./" when its owner, mode or xattrs changed. */
  async root(baseFd: number, changedFd: number): Promise<void> {
    const [a, b] = await Promise.all([
      fs.lstat(at(baseFd, '.'), { bigint: true }),
      fs.lstat(at(changedFd, '.'), { bigint: true }),
    ]);
    const bx = this.xattrs(changedFd, '.');
    if (a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || !sameXattrs(this.xattrs(baseFd, '.'), bx)) {
      await this.w.add(this.header([], b, 'dir', bx));
    }
  }
}

/**
 * Writes the layer tar of `from`'s changes to `out`, in a deterministic order (each
 * directory's whiteouts first, then its entries sorted by name bytes, depth first),
 * and returns its size and digest (the diffID). Hard links within the layer stay links.
 */
export async function makeLayer(from: LayerChanges, out: Writable, options: MakeLayerOptions = {}): Promise<TarWriteResult> {
  const m = new LayerMaker(out);
  const fds: number[] = [];
  const open = (path: string, what: string): number => {
    try {
      const fd = m.openRoot(path);
      fds.push(fd);
      return fd;
    } catch (err) {
      throw invalid(`make layer: ${what} ${path}: ${String(err)}`, err);
    }
  };
  try {
    if ('upper' in from) {
      for (const l of from.lower) closeSync(open(l, 'lower directory'));
      fds.length = 0;
      await m.upper(open(from.upper, 'upper directory'), []);
    } else {
      const b = open(from.base, 'base directory');
      const c = open(from.changed, 'changed directory');
      await m.root(b, c);
      await m.pair(b, c, []);
    }
    const result = await m.result();
    if (options.end ?? true) out.end();
    return result;
  } catch (err) {
    if (err instanceof BerthError) throw err;
    throw new BerthError(ErrorKind.Internal, `make layer: ${String(err)}`, { cause: err });
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}
