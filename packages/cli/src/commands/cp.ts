/**
 * `cp` between a container and the local filesystem, through the archive API:
 * GET /containers/{id}/archive streams a tar of the source out, PUT uploads one
 * in; HEAD stats the container path. Local archives are written and read entry
 * by entry with the tar code of @berth/images (loaded only when cp runs). The
 * naming follows docker cp: into an existing directory, or renamed to a path
 * that does not exist yet; `SRC/.` copies a directory's contents; `-` is a tar
 * on stdin or stdout.
 */
import { createReadStream, createWriteStream, lstatSync, mkdirSync, readdirSync, readlinkSync, chmodSync, linkSync, symlinkSync, utimesSync, rmSync, statSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { basename, dirname, join, posix, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ApiError } from '../api.js';
import type { Client } from '../api.js';
import { StatusError, daemonMessage } from '../command.js';
import type { Command } from '../command.js';
import { humanSize } from '../format.js';
import { copyRaw } from '../stdcopy.js';

interface PathStat {
  name: string;
  size: number;
  mode: number;
  mtime: string;
  linkTarget: string;
}

/** Go's os.ModeDir bit, as the stat header carries it. */
const GO_MODE_DIR = 2 ** 31;
const isGoDir = (mode: number): boolean => Math.floor(mode / GO_MODE_DIR) % 2 === 1;

function decodeStat(header: string | string[] | undefined): PathStat | undefined {
  if (typeof header !== 'string' || header === '') return undefined;
  try {
    return JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as PathStat;
  } catch {
    return undefined;
  }
}

/** `CONTAINER:PATH` or a local path (a `:` after a `/` is part of a local path). */
export function splitCpArg(arg: string): { container?: string; path: string } {
  if (arg.startsWith('/') || arg.startsWith('.')) return { path: arg };
  const colon = arg.indexOf(':');
  if (colon <= 0) return { path: arg };
  const slash = arg.indexOf('/');
  if (slash >= 0 && slash < colon) return { path: arg };
  return { container: arg.slice(0, colon), path: arg.slice(colon + 1) };
}

async function statInContainer(client: Client, container: string, path: string): Promise<PathStat | undefined> {
  try {
    const res = await client.request('HEAD', `/containers/${encodeURIComponent(container)}/archive`, { query: { path } });
    res.resume();
    return decodeStat(res.headers['x-docker-container-path-stat']);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return undefined;
    throw err;
  }
}

/** Components of a tar entry name inside the target; null when it would climb out. */
function safeParts(name: string): string[] | null {
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (parts.length === 0) return null;
      parts.pop();
    } else parts.push(p);
  }
  return parts;
}

/** Refuses to write through a symlink that an earlier entry (or the target) put on the way. */
function checkNoSymlinkParents(root: string, parts: readonly string[]): void {
  let p = root;
  for (const part of parts.slice(0, -1)) {
    p = join(p, part);
    let st: Stats;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (st.isSymbolicLink()) throw new StatusError(1, `cp: refusing to write below symlink ${p}`);
  }
}

/**
 * Extracts a tar stream into `targetDir`; `rename` replaces the first path
 * component of every entry (docker's copy-to-a-new-name). Returns bytes read.
 */
async function extract(source: AsyncIterable<Uint8Array>, targetDir: string, rename: { from: string; to: string } | undefined): Promise<number> {
  const { readTar } = await import('@berth/images');
  let bytes = 0;
  const counted = (async function* () {
    for await (const c of source) {
      bytes += c.length;
      yield c;
    }
  })();
  const dirTimes: Array<[string, number]> = [];
  for await (const e of readTar(counted)) {
    let parts = safeParts(e.path);
    if (parts === null) throw new StatusError(1, `cp: archive entry ${JSON.stringify(e.path)} points outside the destination`);
    if (rename !== undefined && parts[0] === rename.from) parts = [rename.to, ...parts.slice(1)];
    if (parts.length === 0) continue;
    checkNoSymlinkParents(targetDir, parts);
    const dest = join(targetDir, ...parts);
    mkdirSync(dirname(dest), { recursive: true });
    switch (e.type) {
      case 'dir':
        mkdirSync(dest, { recursive: true });
        chmodSync(dest, e.mode & 0o7777);
        dirTimes.push([dest, e.mtime]);
        break;
      case 'file': {
        const st = lstatIf(dest);
        if (st?.isDirectory() === true) throw new StatusError(1, `cannot overwrite directory "${dest}" with non-directory`);
        if (st?.isSymbolicLink() === true) rmSync(dest);
        await pipeline(e.body, createWriteStream(dest, { mode: e.mode & 0o7777 }));
        chmodSync(dest, e.mode & 0o7777);
        utimesSync(dest, e.mtime, e.mtime);
        break;
      }
      case 'symlink':
        if (lstatIf(dest) !== undefined) rmSync(dest, { recursive: true, force: true });
        symlinkSync(e.linkpath, dest);
        break;
      case 'hardlink': {
        const lp = safeParts(e.linkpath);
        if (lp === null) throw new StatusError(1, `cp: hard link ${JSON.stringify(e.linkpath)} points outside the destination`);
        const target = join(targetDir, ...(rename !== undefined && lp[0] === rename.from ? [rename.to, ...lp.slice(1)] : lp));
        if (lstatIf(dest) !== undefined) rmSync(dest, { force: true });
        linkSync(target, dest);
        break;
      }
      default:
        // devices and fifos are not recreated by an unprivileged copy; skip them as docker does for non-root
        break;
    }
  }
  for (const [d, t] of dirTimes.reverse()) utimesSync(d, t, t);
  return bytes;
}

function lstatIf(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch {
    return undefined;
  }
}

/** Writes a tar of a local path, its root entry named `rootName` ('' = contents only). */
async function archive(src: string, rootName: string, out: PassThrough, keepOwner: boolean, follow: boolean): Promise<void> {
  const { TarWriter } = await import('@berth/images');
  const w = new TarWriter(out);
  const add = async (path: string, name: string, top: boolean): Promise<void> => {
    const st = follow && top ? statSync(path) : lstatSync(path);
    const owner = keepOwner ? { uid: st.uid, gid: st.gid } : { uid: 0, gid: 0 };
    const mtime = Math.floor(st.mtimeMs / 1000);
    if (st.isDirectory()) {
      if (name !== '') await w.add({ type: 'dir', path: `${name}/`, mode: st.mode & 0o7777, mtime, ...owner });
      for (const child of readdirSync(path).sort()) await add(join(path, child), name === '' ? child : `${name}/${child}`, false);
    } else if (st.isSymbolicLink()) {
      await w.add({ type: 'symlink', path: name, linkpath: readlinkSync(path), mode: st.mode & 0o7777, mtime, ...owner });
    } else if (st.isFile()) {
      await w.add({ type: 'file', path: name, size: st.size, mode: st.mode & 0o7777, mtime, ...owner }, createReadStream(path));
    }
  };
  await add(src, rootName, true);
  await w.finish();
  out.end();
}

export const cp: Command = {
  name: 'cp',
  usage: 'cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH',
  description: 'Copy files/folders between a container and the local filesystem',
  args: { exact: 2 },
  flags: [
    { long: 'archive', short: 'a', kind: 'bool', help: 'Archive mode (copy all uid/gid information)' },
    { long: 'follow-link', short: 'L', kind: 'bool', help: 'Always follow symbol link in SRC_PATH' },
    { long: 'quiet', short: 'q', kind: 'bool', help: 'Suppress progress output during copy. Progress output is automatically suppressed if no terminal is attached' },
  ],
  async run(ctx, flags, args) {
    const src = splitCpArg(args[0] ?? '');
    const dst = splitCpArg(args[1] ?? '');
    if (src.container !== undefined && dst.container !== undefined) throw new StatusError(1, 'copying between containers is not supported');
    if (src.container === undefined && dst.container === undefined) throw new StatusError(1, 'must specify at least one container source');
    if ((src.container !== undefined && src.path === '') || (dst.container !== undefined && dst.path === '')) {
      throw new StatusError(1, 'filepath cannot be empty');
    }
    const client = await ctx.client();
    const progress = !flags.bool('quiet') && (ctx.stderr as { isTTY?: boolean }).isTTY === true;
    if (src.container !== undefined) {
      const res = await client
        .request('GET', `/containers/${encodeURIComponent(src.container)}/archive`, { query: { path: src.path } })
        .catch((err: unknown) => {
          throw new StatusError(1, daemonMessage(err));
        });
      if (dst.path === '-') {
        await copyRaw(res, ctx.stdout);
        return 0;
      }
      const stat = decodeStat(res.headers['x-docker-container-path-stat']);
      const srcIsDir = stat !== undefined && isGoDir(stat.mode);
      const contentsOnly = src.path.endsWith('/.') && srcIsDir;
      const dest = resolve(dst.path);
      const dstStat = lstatIf(dest);
      let targetDir: string;
      let rename: { from: string; to: string } | undefined;
      const rootName = stat?.name ?? basename(src.path);
      if (dstStat?.isDirectory() === true) {
        targetDir = dest;
        if (contentsOnly) rename = undefined;
      } else if (dstStat !== undefined) {
        if (srcIsDir) {
          res.resume();
          throw new StatusError(1, `cannot copy a directory to a file`);
        }
        targetDir = dirname(dest);
        rename = { from: rootName, to: basename(dest) };
      } else {
        if (dst.path.endsWith('/') && !srcIsDir) {
          res.resume();
          throw new StatusError(1, `destination directory "${dst.path}" must exist`);
        }
        targetDir = dirname(dest);
        if (contentsOnly) {
          mkdirSync(dest, { recursive: true });
          targetDir = dest;
        } else rename = { from: rootName, to: basename(dest) };
      }
      const n = await extract(res, targetDir, rename);
      if (progress) ctx.err(`Successfully copied ${humanSize(n, 3)} to ${dest}\n`);
      return 0;
    }
    // local -> container
    const container = dst.container as string;
    if (src.path === '-') {
      await client
        .call('PUT', `/containers/${encodeURIComponent(container)}/archive`, {
          query: { path: dst.path, noOverwriteDirNonDir: true },
          body: ctx.stdin,
          headers: { 'Content-Type': 'application/x-tar' },
        })
        .catch((err: unknown) => {
          throw new StatusError(1, daemonMessage(err));
        });
      return 0;
    }
    const local = resolve(src.path);
    const localStat = lstatIf(local);
    if (localStat === undefined) throw new StatusError(1, `lstat ${local}: no such file or directory`);
    const srcIsDir = (flags.bool('follow-link') ? statSync(local) : localStat).isDirectory();
    const contentsOnly = srcIsDir && (src.path.endsWith('/.') || src.path === '.');
    const dstStat = await statInContainer(client, container, dst.path).catch((err: unknown) => {
      throw new StatusError(1, daemonMessage(err));
    });
    let uploadDir: string;
    let rootName: string;
    if (dstStat !== undefined && isGoDir(dstStat.mode)) {
      uploadDir = dst.path;
      rootName = contentsOnly ? '' : basename(local);
    } else if (dstStat !== undefined) {
      if (srcIsDir) throw new StatusError(1, 'cannot copy directory');
      uploadDir = posix.dirname(dst.path);
      rootName = posix.basename(dst.path);
    } else {
      if (dst.path.endsWith('/')) throw new StatusError(1, `Error response from daemon: Could not find the file ${dst.path} in container ${container}`);
      uploadDir = posix.dirname(dst.path);
      rootName = posix.basename(dst.path);
      if (contentsOnly) {
        // docker creates the directory by naming the archive's root after it
        rootName = posix.basename(dst.path);
      }
    }
    const body = new PassThrough();
    let sent = 0;
    body.on('data', (c: Buffer) => {
      sent += c.length;
    });
    const counted = new PassThrough();
    const producing = archive(local, contentsOnly && rootName === '' ? '' : rootName, counted, flags.bool('archive'), flags.bool('follow-link'));
    counted.pipe(body);
    producing.catch((err: unknown) => body.destroy(err instanceof Error ? err : new Error(String(err))));
    await client
      .call('PUT', `/containers/${encodeURIComponent(container)}/archive`, {
        query: { path: uploadDir, noOverwriteDirNonDir: true, copyUIDGID: flags.bool('archive') || undefined },
        body,
        headers: { 'Content-Type': 'application/x-tar' },
      })
      .catch((err: unknown) => {
        throw new StatusError(1, daemonMessage(err));
      });
    await producing;
    if (progress) ctx.err(`Successfully copied ${humanSize(sent, 3)} to ${container}:${dst.path}\n`);
    return 0;
  },
};

