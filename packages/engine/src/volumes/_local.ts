/**
 * The local driver's host side: mounting a volume with its options (mount(8)),
 * unmounting it, copy-up of an image's directory into an empty volume, and a
 * volume's size.
 */
import { execFile } from 'node:child_process';
import { chmodSync, lchownSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmdirSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { failedPrecondition, invalid } from '@berth/base';
import { layerDirs } from '../containers/layered.js';
import type { RootfsMount } from '../containers/layered.js';

/** Runs a tool; rejects with its stderr. */
export function run(cmd: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, [...args], { timeout: 10 * 60_000, maxBuffer: 1 << 20 }, (err, _out, stderr) => {
      if (err === null) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
    });
  });
}

/** mountinfo's escaping of a path (space, tab, newline, backslash as octal). */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Mount points of this mount namespace. */
export function mountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l !== '').map((l) => unescapeMountPath(l.split(' ')[4] ?? ''));
}

export function isMounted(path: string): boolean {
  return mountPoints().includes(path);
}

/** Whether anything is mounted at or below a path. */
export function hasMountsUnder(path: string): boolean {
  return mountPoints().some((p) => p === path || p.startsWith(`${path}/`));
}

export const LOCAL_OPTIONS = new Set(['type', 'device', 'o', 'size']);

/** The local driver's options, checked as Docker checks them at create. */
export function validateLocalOptions(opts: Record<string, string> | null): void {
  if (opts === null) return;
  for (const k of Object.keys(opts)) {
    if (!LOCAL_OPTIONS.has(k)) throw invalid(`invalid option: ${JSON.stringify(k)}`);
  }
  if (opts['size'] !== undefined) throw invalid('quota size requested but no quota support');
  const type = opts['type'] ?? '';
  const device = opts['device'] ?? '';
  if (type !== '' && device === '') throw invalid('missing required option: "device"');
  if (device !== '' && type === '') throw invalid('missing required option: "type"');
  if ((opts['o'] ?? '') !== '' && type === '') throw invalid('missing required option: "type"');
}

/** Whether a volume with these options is a mount (tmpfs, bind, a device) rather than a plain directory. */
export function needsMount(opts: Record<string, string> | null): boolean {
  return opts !== null && (opts['type'] ?? '') !== '';
}

/** Mounts a volume's options at its data directory (unless already mounted). */
export async function mountLocal(name: string, opts: Record<string, string>, data: string): Promise<void> {
  if (isMounted(data)) return;
  const type = opts['type'] ?? '';
  const o = opts['o'] ?? '';
  const device = opts['device'] ?? '';
  const bind = o.split(',').some((x) => x === 'bind' || x === 'rbind');
  if (bind) {
    try {
      lstatSync(device);
    } catch {
      throw failedPrecondition(`error while mounting volume '${data}': failed to mount local volume ${name}: mount ${device}:${data}: no such file or directory`);
    }
  }
  const args = ['-t', type, ...(o !== '' ? ['-o', o] : []), device, data];
  try {
    await run('mount', args);
  } catch (e) {
    throw failedPrecondition(`error while mounting volume '${data}': failed to mount local volume ${name}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
}

export async function unmountLocal(data: string): Promise<void> {
  if (!isMounted(data)) return;
  try {
    await run('umount', [data]);
  } catch (e) {
    throw failedPrecondition(`error while unmounting volume path '${data}': ${e instanceof Error ? e.message : String(e)}`, e);
  }
  if (isMounted(data)) throw failedPrecondition(`error while unmounting volume path '${data}': still mounted`);
}

/**
 * A path of a root directory with its symlinks resolved inside that root (an
 * absolute link starts again at the root, `..` stops at it), or undefined when
 * a component is missing.
 */
export function resolveInRoot(root: string, path: string): string | undefined {
  let rest = path.split('/').filter((p) => p !== '' && p !== '.');
  const done: string[] = [];
  let hops = 0;
  while (rest.length > 0) {
    const part = rest[0] ?? '';
    rest = rest.slice(1);
    if (part === '..') {
      done.pop();
      continue;
    }
    const full = join(root, ...done, part);
    let st;
    try {
      st = lstatSync(full);
    } catch {
      return undefined;
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) return undefined;
      const target = readlinkSync(full);
      if (target.startsWith('/')) done.length = 0;
      rest = [...target.split('/').filter((p) => p !== '' && p !== '.'), ...rest];
      continue;
    }
    done.push(part);
  }
  return join(root, ...done);
}

export function isEmptyDir(dir: string): boolean {
  return readdirSync(dir).length === 0;
}

/**
 * Docker's copy-up: what the image has at `destination` (a directory) is
 * copied into the empty volume directory `data`, owners, modes, times and
 * links kept; the volume's root takes the directory's owner and mode. The
 * rootfs layers are read through a read-only overlay of them (whiteouts and
 * opaque directories as the kernel sees them) mounted in `tmpBase`.
 */
export async function copyUp(rootfs: readonly RootfsMount[], destination: string, data: string, tmpBase: string): Promise<void> {
  const dirs = layerDirs(rootfs);
  if (dirs.length === 0) return;
  let root = dirs[0] ?? '';
  let tmp: string | undefined;
  if (dirs.length > 1) {
    tmp = mkdtempSync(join(tmpBase, 'copyup-'));
    try {
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${dirs.join(':')}`, tmp]);
    } catch (e) {
      rmdirSync(tmp);
      throw failedPrecondition(`copying the image's ${destination} into the volume: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    root = tmp;
  }
  try {
    const src = resolveInRoot(root, destination);
    if (src === undefined) return;
    const st = lstatSync(src);
    if (!st.isDirectory()) return;
    if (readdirSync(src).length > 0) await run('cp', ['-a', '--', `${src}/.`, `${data}/`]);
    lchownSync(data, st.uid, st.gid);
    chmodSync(data, st.mode & 0o7777);
  } catch (e) {
    throw failedPrecondition(`copying the image's ${destination} into the volume: ${e instanceof Error ? e.message : String(e)}`, e);
  } finally {
    if (tmp !== undefined) {
      await run('umount', [tmp]).catch(() => run('umount', ['-l', tmp ?? '']));
      rmdirSync(tmp);
    }
  }
}

/** Bytes used by a directory's files (hard links once), as Docker counts a volume's size. */
export async function dirSize(dir: string): Promise<number> {
  const seen = new Set<bigint>();
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      let st;
      try {
        st = await lstat(p, { bigint: true });
      } catch {
        continue;
      }
      if (st.nlink > 1n) {
        if (seen.has(st.ino)) continue;
        seen.add(st.ino);
      }
      if (st.isDirectory()) await walk(p);
      else total += Number(st.size);
    }
  };
  await walk(dir);
  return total;
}

