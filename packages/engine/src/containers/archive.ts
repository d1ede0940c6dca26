/**
 * `docker cp`'s view of a container: its root filesystem mounted read-write
 * on a private temp dir (the snapshot's own mounts for a stopped container,
 * a bind of the supervisor's mount for a running one), its volumes and bind
 * mounts (and the network files) bound on top where the container sees them.
 *
 * Every path is resolved by the kernel inside that view (openat2 with
 * RESOLVE_IN_ROOT on an fd held on its root), as if the view were "/": a
 * symlink `/escape -> /` or `-> ../../..` leads back to the container's root,
 * never to the host's. Mount targets are named through /proc/<pid>/fd/<fd> of
 * the resolved directory, so nothing is looked up again by path. A client's
 * archive is parsed once and its entries extracted by @berth/images'
 * applyEntries on that same root, each name rebased under the destination and
 * checked not to climb out of it.
 */
import { execFile } from 'node:child_process';
import { closeSync, constants as fsc, fstatSync, lstatSync, mkdirSync, mkdtempSync, openSync, readlinkSync, rmdirSync, statSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { posix } from 'node:path';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { BerthError, errnoCode, internal, invalid, notFound, unavailable } from '@berth/base';
import { TarWriter, TreeTar, applyEntries, applyLayer, at, closeFd, decompress, mountAll, mountsUnder, openDirectory, openat2, readTar, sys } from '@berth/images';
import type { EntryNames, Mount, TarEntry } from '@berth/images';

const run = promisify(execFile);
const CHUNK = 256 * 1024;
const MAX_LINKS = 255;

// ---- the system calls Node lacks (native/sys, through @berth/images) ----

/** `rel` inside the root held as rootFd, resolved as if the root were "/" (symlinks included). */
function openInRoot(rootFd: number, rel: string, flags: number): number {
  const c = sys().constants;
  return openat2(rootFd, Buffer.from(rel === '' ? '.' : rel, 'latin1'), flags, c.RESOLVE_IN_ROOT | c.RESOLVE_NO_MAGICLINKS);
}

// ---- Docker's path and stat conventions ----

/** What `HEAD /containers/{id}/archive` reports (types.ContainerPathStat). */
export interface PathStat {
  name: string;
  size: number;
  /** Go's os.FileMode bits. */
  mode: number;
  /** RFC 3339 with nanoseconds, as Go writes a time.Time. */
  mtime: string;
  linkTarget: string;
}

export const GO_MODE = {
  dir: 2 ** 31,
  symlink: 2 ** 27,
  device: 2 ** 26,
  namedPipe: 2 ** 25,
  socket: 2 ** 24,
  setuid: 2 ** 23,
  setgid: 2 ** 22,
  charDevice: 2 ** 21,
  sticky: 2 ** 20,
} as const;

/** st_mode as Go's os.FileMode. */
export function goFileMode(st: BigIntStats): number {
  const m = Number(st.mode);
  let mode = m & 0o777;
  if (st.isDirectory()) mode += GO_MODE.dir;
  else if (st.isSymbolicLink()) mode += GO_MODE.symlink;
  else if (st.isCharacterDevice()) mode += GO_MODE.device + GO_MODE.charDevice;
  else if (st.isBlockDevice()) mode += GO_MODE.device;
  else if (st.isFIFO()) mode += GO_MODE.namedPipe;
  else if (st.isSocket()) mode += GO_MODE.socket;
  if (m & 0o4000) mode += GO_MODE.setuid;
  if (m & 0o2000) mode += GO_MODE.setgid;
  if (m & 0o1000) mode += GO_MODE.sticky;
  return mode;
}

/** A time in nanoseconds as Go's RFC3339Nano (trailing zeros of the fraction dropped), in UTC. */
export function goTime(ns: bigint): string {
  const sec = ns / 1_000_000_000n;
  const frac = ns % 1_000_000_000n;
  const base = new Date(Number(sec) * 1000).toISOString().slice(0, 19);
  const f = String(frac).padStart(9, '0').replace(/0+$/, '');
  return f === '' ? `${base}Z` : `${base}.${f}Z`;
}

/** The X-Docker-Container-Path-Stat header: base64 of the JSON stat. */
export function statHeader(s: PathStat): string {
  return Buffer.from(JSON.stringify(s)).toString('base64');
}

/** Go's filepath.Clean of an absolute path. */
function clean(p: string): string {
  const n = posix.normalize(`/${p}`);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** Go's filepath.Base. */
export function goBase(p: string): string {
  const s = p.replace(/\/+$/, '');
  if (s === '') return p === '' ? '.' : '/';
  return s.slice(s.lastIndexOf('/') + 1);
}

/**
 * The absolute path of a user's path, as docker's
 * PreserveTrailingDotOrSeparator(filepath.Join("/", p), p): cleaned, with a
 * trailing "/." or "/" kept (they ask for the directory's contents, and for a
 * directory).
 */
export function absPath(p: string): string {
  let c = clean(p);
  if (goBase(c) !== '.' && goBase(p) === '.' && (p === '.' || p.endsWith('/.'))) c = c.endsWith('/') ? `${c}.` : `${c}/.`;
  if (!c.endsWith('/') && p.endsWith('/')) c = `${c}/`;
  return c;
}

const parts = (p: string): string[] => p.split('/').filter((s) => s !== '' && s !== '.');

/** Splits a tar name into components, ".." folded; null when it climbs out. */
function normalise(raw: string): string[] | null {
  const out: string[] = [];
  for (const p of raw.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (out.length === 0) return null;
      out.pop();
      continue;
    }
    out.push(p);
  }
  return out;
}

/** Whether `path` is `dest` or below it (docker's MountPoint HasResource). */
export function underPath(dest: string, path: string): boolean {
  const d = clean(dest);
  const p = clean(path);
  return d === '/' || p === d || p.startsWith(`${d}/`);
}

// ---- the view ----

/** A mount docker cp honours: a host path seen at `destination` in the container. */
export interface ViewMount {
  readonly source: string;
  readonly destination: string;
  readonly readOnly: boolean;
}

/** Where the container's root filesystem comes from. */
export type RootfsSource =
  | { readonly kind: 'snapshot'; readonly mounts: readonly Mount[] }
  | { readonly kind: 'mounted'; readonly path: string };

export interface ExtractOptions {
  /** Owners as in the archive; otherwise everything extracted is root's. */
  readonly copyUIDGID: boolean;
  /** Fail rather than replace a directory by a non-directory or the reverse. */
  readonly noOverwriteDirNonDir: boolean;
  /** Called with the resolved destination (a container path) before anything is written; throws to refuse. */
  readonly check?: (dest: string) => void;
}

export class ContainerFs {
  private closed = false;

  private constructor(
    /** The view's mount point on the host. */
    readonly root: string,
    private readonly rootFd: number,
    /** The container as the user named it, for messages. */
    private readonly label: string,
  ) {}

  /** Mounts the view in a new temp dir under `tempParent`. The caller closes it. */
  static async open(tempParent: string, label: string, rootfs: RootfsSource, mounts: readonly ViewMount[]): Promise<ContainerFs> {
    mkdirSync(tempParent, { recursive: true, mode: 0o711 });
    const dir = mkdtempSync(join(tempParent, 'tmp-archive-'));
    let mounted = false;
    let fd = -1;
    try {
      if (rootfs.kind === 'snapshot') {
        await mountAll(rootfs.mounts.map((m) => ({ ...m, target: '' })), dir);
      } else {
        await mountCmd(['--bind', rootfs.path, dir], `bind ${rootfs.path} on ${dir}`);
      }
      mounted = true;
      // Nothing mounted below the view reaches any other mount namespace.
      await mountCmd(['--make-rprivate', dir], `make ${dir} private`);
      fd = openDirectory(dir);
      const view = new ContainerFs(dir, fd, label);
      const sorted = [...mounts].sort((a, b) => parts(a.destination).length - parts(b.destination).length);
      for (const m of sorted) await view.bind(m);
      return view;
    } catch (e) {
      if (fd >= 0) closeFd(fd);
      if (mounted) await detach(dir).catch(() => undefined);
      try {
        rmdirSync(dir);
      } catch {
        // still mounted: left for the operator rather than removed with what it holds
      }
      throw e;
    }
  }

  /** Unmounts the view (every mount below it at once) and removes its dir. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    closeFd(this.rootFd);
    await detach(this.root);
    rmdirSync(this.root);
  }

  private notFound(path: string): BerthError {
    return notFound(`Could not find the file ${path} in container ${this.label}`);
  }

  /** Binds a mount's source on its destination inside the view, creating the destination if missing. */
  private async bind(m: ViewMount): Promise<void> {
    let st;
    try {
      st = statSync(m.source);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return; // a source gone (a removed volume): nothing to show there
      throw e;
    }
    const p = parts(clean(m.destination));
    if (p.length === 0) return;
    const fd = this.ensure(p, st.isDirectory());
    try {
      await mountCmd(['--no-canonicalize', '--bind', m.source, procFd(fd)], `bind ${m.source} on ${m.destination}`);
    } finally {
      closeFd(fd);
    }
    if (!m.readOnly) return;
    // The new mount, looked up again (the fd above names what is below it).
    const top = openInRoot(this.rootFd, p.join('/'), sys().constants.O_PATH);
    try {
      await mountCmd(['--no-canonicalize', '-o', 'remount,bind,ro', procFd(top)], `make ${m.destination} read-only`);
    } finally {
      closeFd(top);
    }
  }

  /** An O_PATH fd on `p` inside the view, made (directories 0755, a last empty file 0644) where missing. */
  private ensure(p: readonly string[], dir: boolean): number {
    const c = sys().constants;
    for (let i = 0; i < p.length; i++) {
      const rel = p.slice(0, i + 1).join('/');
      const last = i === p.length - 1;
      let fd: number;
      try {
        fd = openInRoot(this.rootFd, rel, c.O_PATH);
      } catch (e) {
        if (errnoCode(e) !== 'ENOENT') throw e;
        const parent = openInRoot(this.rootFd, p.slice(0, i).join('/'), c.O_PATH | c.O_DIRECTORY);
        try {
          const name = at(parent, p[i] ?? '');
          if (!last || dir) mkdirSync(name, 0o755);
          else closeSync(openSync(name, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o644));
        } finally {
          closeFd(parent);
        }
        fd = openInRoot(this.rootFd, rel, c.O_PATH);
      }
      if (last) return fd;
      closeFd(fd);
    }
    return openInRoot(this.rootFd, '', c.O_PATH | c.O_DIRECTORY);
  }

  /** The container path an fd of the view is at (its host path less the view's). */
  private containerPathOf(fd: number): string {
    const host = readlinkSync(`/proc/self/fd/${fd}`);
    if (host === this.root) return '/';
    if (!host.startsWith(`${this.root}/`)) throw internal(`resolved ${host}, outside the container's root ${this.root}`);
    return host.slice(this.root.length);
  }

  /** lstat of an absolute path (from absPath): the last component is not followed unless a "/" or "/." ends it. */
  private lstat(abs: string): BigIntStats {
    const c = sys().constants;
    const p = parts(abs);
    const follow = abs.endsWith('/') || abs.endsWith('/.') || p.length === 0;
    try {
      if (follow) {
        const fd = openInRoot(this.rootFd, p.join('/'), c.O_PATH);
        try {
          const st = fstatSync(fd, { bigint: true });
          if (abs !== '/' && !st.isDirectory()) throw Object.assign(new Error(`lstat ${abs}: not a directory`), { code: 'ENOTDIR' });
          return st;
        } finally {
          closeFd(fd);
        }
      }
      const parent = openInRoot(this.rootFd, p.slice(0, -1).join('/'), c.O_PATH | c.O_DIRECTORY);
      try {
        return lstatSync(at(parent, p[p.length - 1] ?? '.'), { bigint: true });
      } finally {
        closeFd(parent);
      }
    } catch (e) {
      throw this.pathError(abs, e);
    }
  }

  private pathError(abs: string, e: unknown): Error {
    if (e instanceof BerthError) return e;
    const code = errnoCode(e);
    if (code === 'ENOENT') return this.notFound(abs);
    if (code === 'ENOTDIR') return internal(`lstat ${abs}: not a directory`, e);
    if (code === 'ELOOP') return internal(`lstat ${abs}: too many levels of symbolic links`, e);
    return internal(`lstat ${abs}: ${e instanceof Error ? e.message : String(e)}`, e);
  }

  /**
   * Docker's FollowSymlinkInScope(path, "/"): every symlink along the path
   * followed inside the container's root; where something is missing, the rest
   * is taken as written.
   */
  private followInScope(abs: string): string {
    const c = sys().constants;
    const resolved: string[] = [];
    let pending = abs.split('/');
    let links = 0;
    while (pending.length > 0) {
      const name = pending.shift() ?? '';
      if (name === '' || name === '.') continue;
      if (name === '..') {
        resolved.pop();
        continue;
      }
      let dir: number;
      try {
        dir = openBeneathRoot(this.rootFd, resolved, c.O_PATH | c.O_DIRECTORY);
      } catch {
        return clean([...resolved, name, ...pending].join('/'));
      }
      try {
        const p = at(dir, name);
        const st = lstatSync(p, { throwIfNoEntry: false });
        if (st === undefined) return clean([...resolved, name, ...pending].join('/'));
        if (!st.isSymbolicLink()) {
          resolved.push(name);
          continue;
        }
        if (++links > MAX_LINKS) throw internal(`evaluating ${abs}: too many links`);
        const target = readlinkSync(p, { encoding: 'buffer' }).toString('latin1');
        if (target.startsWith('/')) resolved.length = 0;
        pending = [...target.split('/'), ...pending];
      } finally {
        closeFd(dir);
      }
    }
    return `/${resolved.join('/')}`;
  }

  /** Docker's stat of a container path. */
  stat(path: string): PathStat {
    const abs = absPath(path);
    const st = this.lstat(abs);
    return {
      name: goBase(abs),
      size: Number(st.size),
      mode: goFileMode(st),
      mtime: goTime(st.mtimeNs),
      linkTarget: st.isSymbolicLink() ? this.followInScope(abs) : '',
    };
  }

  /**
   * The tar of a path, as docker's GET archive: a directory's entries under
   * its own name ("dir/", "dir/x"), or under "./" when the path ends in "/.";
   * anything else as one entry named by its last component (a symlink as
   * itself). Streamed; the view must stay open until the stream ends.
   */
  archive(path: string): { stat: PathStat; tar: Readable } {
    const abs = absPath(path);
    const stat = this.stat(path);
    const c = sys().constants;
    const p = parts(abs);
    const isDir = stat.mode >= GO_MODE.dir;
    let fd: number;
    try {
      if (isDir) fd = openInRoot(this.rootFd, p.join('/'), c.O_PATH | c.O_DIRECTORY | (abs.endsWith('/') || abs.endsWith('/.') ? 0 : c.O_NOFOLLOW));
      else fd = openInRoot(this.rootFd, p.slice(0, -1).join('/'), c.O_PATH | c.O_DIRECTORY);
    } catch (e) {
      throw this.pathError(abs, e);
    }
    const out = new PassThrough({ highWaterMark: CHUNK });
    const work = async (): Promise<void> => {
      const w = new TarWriter(out);
      const t = new TreeTar(w);
      if (isDir) {
        const base = goBase(abs);
        const name = base === '/' ? '' : base;
        await t.directory(fd, `${name}/`, name !== '');
      } else {
        await t.entry(fd, p[p.length - 1] ?? '', goBase(abs));
      }
      await w.finish();
    };
    work().then(
      () => {
        closeFd(fd);
        out.end();
      },
      (err: unknown) => {
        closeFd(fd);
        if (!out.destroyed) out.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    );
    return { stat, tar: out };
  }

  /**
   * Extracts a tar (plain, gzip or zstd) into the directory at `path`
   * (symlinks followed inside the container, the last one too): names are
   * taken relative to it and may not climb out of it; a symlink in the
   * archive or in the container leads at most to the container's root.
   */
  async extract(path: string, source: AsyncIterable<Uint8Array>, opts: ExtractOptions): Promise<void> {
    const c = sys().constants;
    const abs = absPath(path);
    let fd: number;
    try {
      fd = openInRoot(this.rootFd, parts(abs).join('/'), c.O_PATH);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') throw this.notFound(path);
      throw this.pathError(abs, e);
    }
    let dest: string;
    try {
      if (!fstatSync(fd).isDirectory()) throw invalid('extraction point is not a directory');
      dest = this.containerPathOf(fd);
    } finally {
      closeFd(fd);
    }
    opts.check?.(dest);
    const destParts = parts(dest);
    const label = `extracting into ${dest}`;

    // The client's entries go straight to the extractor, each name rebased under the destination.
    const mapNames = (e: TarEntry): EntryNames | null => {
      const rel = normalise(e.rawPath.toString('latin1'));
      if (rel === null) throw internal(`${JSON.stringify(e.path)} is outside of ${JSON.stringify(dest)}`);
      const base = rel[rel.length - 1] ?? '';
      if (base.startsWith('.wh.')) throw invalid(`archive entry ${JSON.stringify(e.path)}: names starting with ".wh." are reserved for layer whiteouts`);
      if (rel.length === 0 && e.type !== 'dir') {
        // Docker's untar leaves the destination directory alone (or refuses, with noOverwriteDirNonDir)
        if (opts.noOverwriteDirNonDir) throw internal(`cannot overwrite directory ${JSON.stringify(dest)} with non-directory ${JSON.stringify(dest)}`);
        return null;
      }
      if (!opts.copyUIDGID) {
        e.uid = 0;
        e.gid = 0;
      }
      // whole seconds, the access time the modification time's
      e.mtime = Math.floor(e.mtime);
      delete e.atime;
      const names: EntryNames = { path: [...destParts, ...rel] };
      if (e.type === 'hardlink') {
        const target = normalise(e.rawLinkpath.toString('latin1'));
        if (target === null) throw internal(`invalid hardlink ${JSON.stringify(e.linkpath)}: outside of ${JSON.stringify(dest)}`);
        names.linkpath = [...destParts, ...target];
      }
      return names;
    };
    const onReplace = (full: readonly string[], existingIsDir: boolean): void => {
      const path = `/${full.join('/')}`;
      if (existingIsDir) throw internal(`cannot overwrite directory ${JSON.stringify(path)} with non-directory ${JSON.stringify(dest)}`);
      throw internal(`cannot overwrite non-directory ${JSON.stringify(path)} with directory ${JSON.stringify(dest)}`);
    };
    await applyEntries(readTar(decompress(source)), this.root, {
      mode: 'copy',
      refuseWhiteouts: true,
      mapNames,
      ...(opts.noOverwriteDirNonDir ? { onReplace } : {}),
      label,
    });
  }

  /**
   * Applies a tar whose names are relative to the container's "/" (the
   * builder's own entries): confined to the root like any layer, without
   * the path rewriting `extract` does for a client's archive. Names
   * starting with ".wh." are refused, not taken for whiteouts.
   */
  async applyAtRoot(source: AsyncIterable<Uint8Array>): Promise<void> {
    try {
      await applyLayer(source, this.root, { mode: 'copy', refuseWhiteouts: true });
    } catch (err) {
      if (err instanceof BerthError) throw new BerthError(err.kind, err.message.replace(/^apply layer: /, 'extracting: '), { cause: err });
      throw err;
    }
  }
}

/** The directory at `p` (already free of symlinks) below the root, refusing any symlink on the way. */
function openBeneathRoot(rootFd: number, p: readonly string[], flags: number): number {
  const c = sys().constants;
  return openat2(rootFd, Buffer.from(p.length === 0 ? '.' : p.join('/'), 'latin1'), flags, c.RESOLVE_BENEATH | c.RESOLVE_NO_SYMLINKS | c.RESOLVE_NO_MAGICLINKS);
}

function procFd(fd: number): string {
  return `/proc/${process.pid}/fd/${fd}`;
}

async function mountCmd(args: string[], what: string): Promise<void> {
  try {
    await run('mount', args);
  } catch (e) {
    const stderr = typeof e === 'object' && e !== null && 'stderr' in e ? String((e as { stderr: unknown }).stderr).trim() : '';
    throw unavailable(`${what}: ${stderr !== '' ? stderr : e instanceof Error ? e.message : String(e)}`, e);
  }
}

/** Detaches the view and everything below it in one call; the dir is then empty. */
async function detach(dir: string): Promise<void> {
  try {
    await run('umount', ['--lazy', dir]);
  } catch (e) {
    const stderr = typeof e === 'object' && e !== null && 'stderr' in e ? String((e as { stderr: unknown }).stderr).trim() : String(e);
    throw unavailable(`unmounting the container view ${dir}: ${stderr}`, e);
  }
  const left = await mountsUnder(dir);
  if (left.length > 0) throw unavailable(`unmounting the container view ${dir}: still mounted: ${left.join(', ')}`);
}
