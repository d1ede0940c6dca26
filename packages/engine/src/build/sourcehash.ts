/**
 * The content hashes of COPY and ADD sources, as the classic builder writes
 * them into history lines (`COPY file:<hex> in /dst`) and keys its cache on.
 *
 * A path's hash is SHA-256 over a tarsum v1 header (the tar header fields
 * name, mode, uid, gid, size, typeflag, linkname, uname, gname, devmajor,
 * devminor, each written as its key then its value; no mtime) followed by
 * the file's content. A source that is a file is `file:<hash>`; a directory
 * is `dir:` + SHA-256 of the sorted hashes of everything below it and itself
 * joined by commas; several sources are `multi:` + SHA-256 of their own
 * hashes joined by commas, in order.
 *
 * Context files are hashed from the context tar's own headers (mode, owner
 * names as the client wrote them); a COPY --from's files from the source
 * rootfs (the file type in the mode, owner names from the host's passwd and
 * group files, as Go's os/user finds them).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import type { TarEntry, TarEntryType, TarHeader } from '@berth/images';

/** The tar header fields a tarsum v1 header takes. */
export interface SumHeader {
  /** Source-root-relative, directories with a trailing "/". */
  name: string;
  /** st_mode: file type bits and permissions. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  typeflag: string;
  linkname: string;
  devmajor?: number;
  devminor?: number;
  uname: string;
  gname: string;
  xattrs?: ReadonlyMap<string, Buffer>;
}

const TYPE_BITS: Readonly<Record<string, number>> = {
  file: 0o100000, hardlink: 0o100000, dir: 0o040000, symlink: 0o120000, char: 0o020000, block: 0o060000, fifo: 0o010000,
};
const TYPE_FLAGS: Readonly<Record<string, string>> = {
  file: '0', hardlink: '0', dir: '5', symlink: '2', char: '3', block: '4', fifo: '6',
};

/** st_mode and typeflag of a tar entry type with its permission bits. */
export function modeOf(type: TarEntryType, perm: number): { mode: number; typeflag: string } {
  return { mode: (TYPE_BITS[type] ?? 0) | (perm & 0o7777), typeflag: TYPE_FLAGS[type] ?? '0' };
}

/** Names of host users and groups by ID (Go's os/user lookups, read once). */
export class HostNames {
  private users: Map<number, string> | undefined;
  private groups: Map<number, string> | undefined;

  private static read(path: string): Map<number, string> {
    const out = new Map<number, string>();
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return out;
    }
    for (const line of text.split('\n')) {
      const f = line.split(':');
      const id = Number(f[2]);
      if (f.length < 3 || f[0] === undefined || f[0] === '' || !Number.isInteger(id) || out.has(id)) continue;
      out.set(id, f[0]);
    }
    return out;
  }

  user(uid: number): string {
    this.users ??= HostNames.read('/etc/passwd');
    return this.users.get(uid) ?? '';
  }

  group(gid: number): string {
    this.groups ??= HostNames.read('/etc/group');
    return this.groups.get(gid) ?? '';
  }
}

/** A hash started with an entry's tarsum v1 header; its content goes in next. */
export function headerHash(h: SumHeader): ReturnType<typeof createHash> {
  const fields: [string, string][] = [
    ['name', h.name],
    ['mode', String(h.mode)],
    ['uid', String(h.uid)],
    ['gid', String(h.gid)],
    ['size', String(h.size)],
    ['typeflag', h.typeflag],
    ['linkname', h.linkname],
    ['uname', h.uname],
    ['gname', h.gname],
    ['devmajor', String(h.devmajor ?? 0)],
    ['devminor', String(h.devminor ?? 0)],
  ];
  const hash = createHash('sha256');
  for (const [k, v] of fields) hash.update(k + v);
  for (const k of [...(h.xattrs?.keys() ?? [])].sort()) {
    hash.update(k);
    hash.update(h.xattrs?.get(k) ?? Buffer.alloc(0));
  }
  return hash;
}

/** `<prefix>:` + SHA-256 of the strings joined by commas. */
export function hashList(prefix: 'dir' | 'multi', list: readonly string[]): string {
  return `${prefix}:${createHash('sha256').update(list.join(',')).digest('hex')}`;
}

/** The hash of several sources (one source's own hash when there is one). */
export function sourcesHash(hashes: readonly string[]): string {
  return hashes.length === 1 ? hashes[0] ?? '' : hashList('multi', hashes);
}

/**
 * Hashes of a build context's entries, taken from its tar as it is
 * extracted (the header fields as the client wrote them, as dockerd's
 * tarsum context does). A path without an entry of its own (a parent the
 * tar left implicit) hashes as its path.
 */
export class ContextSums {
  private readonly sums = new Map<string, string>();

  /** Hashes one entry of the context tar: its header now, its content through `data`, done at `end`. */
  observe(e: TarHeader): { data(chunk: Buffer): void; end(): void } {
    const rel = posix.join('.', posix.join('/', e.path)).replace(/\/+$/, '');
    const h = headerHash({
      name: e.path,
      mode: e.rawMode,
      uid: e.uid,
      gid: e.gid,
      size: e.size,
      // As the tar has it: a hard link is its own type here, with no content.
      typeflag: e.type === 'hardlink' ? '1' : modeOf(e.type, 0).typeflag,
      linkname: e.linkpath,
      uname: e.uname,
      gname: e.gname,
      devmajor: e.devmajor,
      devminor: e.devminor,
      xattrs: e.xattrs,
    });
    return {
      data: (c) => { h.update(c); },
      end: () => { this.sums.set(rel === '.' ? '' : rel, h.digest('hex')); },
    };
  }

  private sumOf(rel: string): string {
    return this.sums.get(rel) ?? rel;
  }

  /**
   * A source's hash: `file:<hex>` for anything but a directory; for a
   * directory `dir:<hex>` over it and everything below it from `list` (the
   * context's paths, sorted, without the ignored ones). "" is the root.
   */
  sourceHash(rel: string, isDir: boolean, list: readonly string[]): string {
    if (!isDir) return `file:${this.sumOf(rel)}`;
    const below = rel === '' ? list : list.filter((p) => p === rel || p.startsWith(`${rel}/`));
    return hashList('dir', below.map((p) => this.sumOf(p)).sort());
  }
}

/**
 * A source's hash from its tar (a rootfs path archived as docker cp does):
 * `names` maps each entry's archive name to its source-root-relative path
 * (undefined to leave it out); `linked` reads a hard link's target.
 */
export async function tarSourceHash(
  entries: AsyncIterable<TarEntry>,
  isDir: boolean,
  nameOf: (archiveName: string) => string | undefined,
  linked: (rel: string) => AsyncIterable<Uint8Array>,
  names: HostNames,
): Promise<string> {
  const hashes: string[] = [];
  for await (const e of entries) {
    const rel = nameOf(e.path.replace(/\/$/, ''));
    if (rel === undefined) continue;
    let size = e.size;
    let content: AsyncIterable<Uint8Array> | undefined = e.type === 'file' && e.size > 0 ? e.body : undefined;
    if (e.type === 'hardlink') {
      const target = nameOf(e.linkpath.replace(/\/$/, ''));
      if (target === undefined) continue;
      const chunks: Buffer[] = [];
      for await (const c of linked(target)) chunks.push(Buffer.from(c));
      const data = Buffer.concat(chunks);
      size = data.length;
      content = (async function* () { yield data; })();
    }
    const { mode, typeflag } = modeOf(e.type, e.mode);
    const h = headerHash({
      name: e.type === 'dir' ? `${rel}/` : rel,
      mode, uid: e.uid, gid: e.gid,
      size: e.type === 'file' || e.type === 'hardlink' ? size : 0,
      typeflag,
      linkname: e.type === 'symlink' ? e.linkpath : '',
      devmajor: e.type === 'char' || e.type === 'block' ? e.devmajor : 0,
      devminor: e.type === 'char' || e.type === 'block' ? e.devminor : 0,
      uname: names.user(e.uid),
      gname: names.group(e.gid),
    });
    if (content !== undefined) for await (const c of content) h.update(c);
    hashes.push(h.digest('hex'));
  }
  if (!isDir) return `file:${hashes[0] ?? createHash('sha256').digest('hex')}`;
  return hashList('dir', hashes.sort());
}
