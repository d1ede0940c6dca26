// `GET /containers/{id}/changes` (docker diff) from an overlayfs upper
// directory, with docker's rules:
//   - a whiteout (character device 0/0) is a deletion of its path;
//   - an opaque directory (trusted.overlay.opaque or user.overlay.opaque "y")
//     that the lower layers have is reported deleted, and what it holds now
//     is added (the lower contents are hidden);
//   - anything else is added, or modified when the lower layers have it; a
//     directory that was only copied up (same mode, owner and mtime as below)
//     is not reported for itself;
//   - the parent of an addition or deletion is reported modified if it was
//     not reported already (never "/").
import { lstat, readdir } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, internal } from '@berth/base';
import { at, byBytes, closeFd, getXattr, openBeneath, openDirectory, sys } from '@berth/images';

export const ChangeKind = { Modified: 0, Added: 1, Deleted: 2 } as const;
export type ChangeKind = (typeof ChangeKind)[keyof typeof ChangeKind];

export interface Change {
  Path: string;
  Kind: ChangeKind;
}

/**
 * What is below the upper directory: the lower directories, top first (as in
 * overlay's lowerdir=), or a function telling whether a path ("/etc/passwd")
 * exists in the image.
 */
export type LowerLayers = readonly string[] | ((path: string) => boolean);

const OPAQUE_XATTRS = ['trusted.overlay.opaque', 'user.overlay.opaque'];

const isWhiteout = (st: BigIntStats): boolean => st.isCharacterDevice() && st.rdev === 0n;

function isOpaque(path: Buffer | string): boolean {
  return OPAQUE_XATTRS.some((name) => getXattr(path, name)?.toString('latin1') === 'y');
}

/** lstat of a raw (latin1) path. */
async function lstatOptional(path: string): Promise<BigIntStats | undefined> {
  try {
    return await lstat(Buffer.from(path, 'latin1'), { bigint: true });
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw internal(`lstat ${apiPath(path)}: ${code ?? String(err)}`, err);
  }
}

/** Looks paths up through lower layers, whiteouts and opaque directories included. */
class LowerLookup {
  private readonly opaque = new Map<string, boolean>();
  private readonly layers: string[];
  constructor(layers: readonly string[]) {
    this.layers = layers.map((l) => Buffer.from(l, 'utf8').toString('latin1'));
  }

  /** The lower file at `path` (raw latin1, "/a/b"), undefined when the lower layers do not show one. */
  async find(path: string): Promise<BigIntStats | undefined> {
    const parts = path.split('/').filter((p) => p !== '');
    for (const layer of this.layers) {
      const st = await lstatOptional(join(layer, ...parts));
      if (st !== undefined) return isWhiteout(st) ? undefined : st;
      // an opaque directory above the path in this layer hides the layers below
      for (let i = parts.length - 1; i >= 1; i--) {
        const dir = join(layer, ...parts.slice(0, i));
        let o = this.opaque.get(dir);
        if (o === undefined) {
          o = isOpaque(Buffer.from(dir, 'latin1'));
          this.opaque.set(dir, o);
        }
        if (o) return undefined;
      }
    }
    return undefined;
  }
}

/** Decodes a raw (latin1) path for the API, as UTF-8. */
const apiPath = (raw: string): string => Buffer.from(raw, 'latin1').toString('utf8');

/** The changes in `upperDir` against the lower layers, sorted by path. */
export async function changes(upperDir: string, lower: LowerLayers): Promise<Change[]> {
  const lookup = typeof lower === 'function' ? undefined : new LowerLookup(lower);
  const existsBelow = async (path: string): Promise<{ exists: boolean; st?: BigIntStats }> => {
    if (typeof lower === 'function') return { exists: lower(apiPath(path)) };
    const st = await lookup?.find(path);
    return st === undefined ? { exists: false } : { exists: true, st };
  };
  const out: Change[] = [];
  const reported = new Set<string>();
  const record = (path: string, kind: ChangeKind): void => {
    out.push({ Path: path, Kind: kind });
    reported.add(path);
  };

  const walk = async (dirFd: number, dir: string, hidden: boolean): Promise<void> => {
    const names = (await readdir(at(dirFd, '.'), { encoding: 'buffer' })).map((n) => n.toString('latin1')).sort(byBytes);
    for (const name of names) {
      const path = `${dir}/${name}`;
      const st = await lstat(at(dirFd, name), { bigint: true }).catch((err: unknown) => {
        if (errnoCode(err) === 'ENOENT') return undefined; // removed meanwhile
        throw err;
      });
      if (st === undefined) continue;
      const isDir = st.isDirectory();
      let kind: ChangeKind | undefined;
      if (isWhiteout(st)) {
        kind = ChangeKind.Deleted;
      } else {
        const below = hidden ? { exists: false } : await existsBelow(path);
        if (isDir && below.exists && isOpaque(at(dirFd, name))) {
          kind = ChangeKind.Deleted;
        } else if (!below.exists) {
          kind = ChangeKind.Added;
        } else if (isDir && below.st !== undefined && below.st.isDirectory() && sameDir(st, below.st)) {
          kind = undefined; // only copied up, for what is below it
        } else {
          kind = ChangeKind.Modified;
        }
      }
      if (kind !== undefined) {
        if (kind !== ChangeKind.Modified && dir !== '' && !reported.has(dir)) record(dir, ChangeKind.Modified);
        record(path, kind);
      }
      if (!isDir || isWhiteout(st)) continue;
      const childHidden = hidden || kind === ChangeKind.Deleted || kind === ChangeKind.Added;
      const fd = openBeneath(dirFd, name, sys().constants.O_PATH | sys().constants.O_DIRECTORY);
      try {
        await walk(fd, path, childHidden);
      } finally {
        closeFd(fd);
      }
    }
  };

  let root: number;
  try {
    root = openDirectory(upperDir);
  } catch (err) {
    throw internal(`open upper directory ${upperDir}: ${errnoCode(err) ?? String(err)}`, err);
  }
  try {
    await walk(root, '', false);
  } finally {
    closeFd(root);
  }
  return out
    .sort((a, b) => byBytes(a.Path, b.Path))
    .map((c) => ({ Path: apiPath(c.Path), Kind: c.Kind }));
}

/** A directory copied up unchanged: same mode, owner and modification time. */
function sameDir(upper: BigIntStats, lower: BigIntStats): boolean {
  return upper.mode === lower.mode && upper.uid === lower.uid && upper.gid === lower.gid && upper.mtimeNs === lower.mtimeNs;
}
