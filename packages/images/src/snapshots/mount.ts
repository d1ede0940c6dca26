/**
 * Carrying out mounts that snapshotters return as data, with mount(8) and
 * umount(8): the same commands `ctr snapshots mounts` prints. For callers that
 * need a snapshot's tree at a path (tests, unpacking into a bind, diffs).
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { unavailable } from '@berth/base';
import type { Mount } from './types.js';

const run = promisify(execFile);

function stderrOf(e: unknown): string {
  if (typeof e === 'object' && e !== null && 'stderr' in e) {
    const s = String((e as { stderr: unknown }).stderr).trim();
    if (s !== '') return s;
  }
  return e instanceof Error ? e.message : String(e);
}

/** The mount(8) argument list for one mount at target. */
export function mountArgs(m: Mount, target: string): string[] {
  const args = ['-t', m.type, m.source, join(target, m.target)];
  if (m.options.length > 0) args.push('-o', m.options.join(','));
  return args;
}

/** Mount each in order at target (a mount's own target is a path inside it). On failure, what was mounted is unmounted. */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  const done: string[] = [];
  try {
    for (const m of mounts) {
      const args = mountArgs(m, target);
      try {
        await run('mount', args);
      } catch (e) {
        throw unavailable(`mount ${m.type} ${m.source} on ${join(target, m.target)} (options ${m.options.join(',')}): ${stderrOf(e)}`, e);
      }
      done.push(join(target, m.target));
    }
  } catch (e) {
    for (const t of done.reverse()) await run('umount', [t]).catch(() => undefined);
    throw e;
  }
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** The mount points at or below path, per /proc/self/mountinfo, deepest last. */
export async function mountsUnder(path: string): Promise<string[]> {
  const base = resolve(path);
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const out: string[] = [];
  for (const line of info.split('\n')) {
    const mp = line.split(' ')[4];
    if (mp === undefined) continue;
    const p = unescapeMountinfo(mp);
    if (p === base || p.startsWith(base === '/' ? '/' : `${base}/`)) out.push(p);
  }
  return out;
}

/** Unmount everything mounted at or below target (stacked mounts included). */
export async function unmountAll(target: string): Promise<void> {
  for (let i = 0; i < 64; i++) {
    const mounted = await mountsUnder(target);
    const last = mounted[mounted.length - 1];
    if (last === undefined) return;
    try {
      await run('umount', [last]);
    } catch (e) {
      throw unavailable(`umount ${last}: ${stderrOf(e)}`, e);
    }
  }
  throw unavailable(`unmounting ${target}: still mounted after 64 unmounts`);
}
