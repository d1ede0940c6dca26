/** File-tree helpers for snapshotters: disk usage and a faithful copy. */
import { execFile } from 'node:child_process';
import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { errnoCode, unavailable } from '@berth/base';
import type { SnapshotUsage } from './types.js';

const run = promisify(execFile);

/**
 * Bytes allocated and inodes used by a tree, each inode counted once (hard
 * links), directories included, without crossing into other filesystems.
 */
export async function diskUsage(dir: string): Promise<SnapshotUsage> {
  const seen = new Set<bigint>();
  let size = 0;
  const root = await lstat(dir, { bigint: true });
  const visit = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path, { bigint: true });
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return; // removed while we walked
      throw e;
    }
    if (st.dev !== root.dev) return;
    if (!seen.has(st.ino)) {
      seen.add(st.ino);
      size += Number(st.blocks) * 512;
    }
    if (!st.isDirectory()) return;
    let d;
    try {
      d = await opendir(path);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return;
      throw e;
    }
    for await (const ent of d) await visit(join(path, ent.name));
  };
  await visit(dir);
  return { size, inodes: seen.size };
}

/**
 * Copy the contents of src into the existing directory dst with cp -a
 * semantics: owners, modes, times, xattrs, device nodes, sockets, fifos,
 * symlinks as links, hard links kept; reflinks where the filesystem has them.
 */
export async function copyTree(src: string, dst: string): Promise<void> {
  try {
    await run('cp', ['-a', '--reflink=auto', '--', `${src}/.`, `${dst}/`], { maxBuffer: 1 << 20 });
  } catch (e) {
    const stderr = typeof e === 'object' && e !== null && 'stderr' in e ? String((e as { stderr: unknown }).stderr).trim() : '';
    throw unavailable(`copying snapshot tree ${src} to ${dst}: ${stderr || (e instanceof Error ? e.message : String(e))}`, e);
  }
}
