/**
 * Reading a file of a container's root filesystem before it is mounted
 * (the user's /etc/passwd and /etc/group at start), from the snapshot's
 * mounts: overlay layers are looked up top-down as the kernel would, a
 * whiteout hides what is below, and no symlink is ever followed, so an image
 * cannot point the engine at a file of the host.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';

export interface RootfsMount {
  type: string;
  source: string;
  options: string[];
}

/** The directories of a rootfs, top layer first. */
export function layerDirs(mounts: readonly RootfsMount[]): string[] {
  const m = mounts[0];
  if (m === undefined) return [];
  if (m.type === 'overlay') {
    const dirs: string[] = [];
    const upper = m.options.find((o) => o.startsWith('upperdir='));
    if (upper !== undefined) dirs.push(upper.slice('upperdir='.length));
    const lower = m.options.find((o) => o.startsWith('lowerdir='));
    if (lower !== undefined) dirs.push(...lower.slice('lowerdir='.length).split(':'));
    return dirs;
  }
  return [m.source];
}

type Lookup = { kind: 'file'; path: string } | { kind: 'hidden' } | { kind: 'absent' };

function lookIn(dir: string, parts: readonly string[]): Lookup {
  let p = dir;
  for (let i = 0; i < parts.length; i++) {
    p = join(p, parts[i] ?? '');
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return { kind: 'absent' };
    }
    if (st.isCharacterDevice() && st.rdev === 0) return { kind: 'hidden' };
    const last = i === parts.length - 1;
    if (last) return st.isFile() ? { kind: 'file', path: p } : { kind: 'hidden' };
    if (!st.isDirectory()) return { kind: 'hidden' };
  }
  return { kind: 'absent' };
}

/** The content of an absolute path of the rootfs, or undefined (missing, a symlink, too big). */
export function readRootfsFile(mounts: readonly RootfsMount[], path: string, limit = 4 << 20): string | undefined {
  const parts = path.split('/').filter((s) => s !== '' && s !== '.' && s !== '..');
  for (const dir of layerDirs(mounts)) {
    const r = lookIn(dir, parts);
    if (r.kind === 'hidden') return undefined;
    if (r.kind === 'absent') continue;
    let fd: number;
    try {
      fd = openSync(r.path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch {
      return undefined;
    }
    try {
      const size = fstatSync(fd).size;
      if (size > limit) return undefined;
      const buf = Buffer.alloc(size);
      let off = 0;
      while (off < size) {
        const n = readSync(fd, buf, off, size - off, off);
        if (n === 0) break;
        off += n;
      }
      return buf.subarray(0, off).toString('utf8');
    } finally {
      closeSync(fd);
    }
  }
  return undefined;
}
