// Reading and writing cgroup control files. Every failure names the file,
// the value and the errno, e.g. "write 100 to /sys/fs/cgroup/pids/x/pids.max: EINVAL".
import { open, readFile, readdir, rmdir, mkdir, access } from 'node:fs/promises';
import { closeSync, constants, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, ErrorKind, errnoCode } from '@berth/base';

/** One write done to a control file, in the order it was done. */
export interface CgroupWrite {
  file: string;
  value: string;
}

function kindFor(code: string | undefined): ErrorKind {
  switch (code) {
    case 'EINVAL':
    case 'ERANGE':
      return ErrorKind.InvalidArgument;
    case 'ENOENT':
      return ErrorKind.NotFound;
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return ErrorKind.PermissionDenied;
    case 'EBUSY':
    case 'ENOTEMPTY':
    case 'EOPNOTSUPP':
      return ErrorKind.FailedPrecondition;
    case 'ENOSPC':
      return ErrorKind.ResourceExhausted;
    default:
      return ErrorKind.Internal;
  }
}

function showValue(value: string): string {
  return /[\s"]/.test(value) || value === '' ? JSON.stringify(value) : value;
}

export function ioError(op: string, file: string, err: unknown): BerthError {
  const code = errnoCode(err) ?? (err instanceof Error ? err.message : String(err));
  return new BerthError(kindFor(errnoCode(err)), `${op} ${file}: ${code}`, { cause: err });
}

/**
 * Write a value to an existing control file in one write(2), as the kernel
 * expects. The file is never created: a missing file is an error (ENOENT).
 */
export async function writeControl(file: string, value: string, log?: CgroupWrite[]): Promise<void> {
  let fh;
  try {
    fh = await open(file, constants.O_WRONLY | constants.O_TRUNC);
    await fh.write(Buffer.from(value));
  } catch (err) {
    throw ioError(`write ${showValue(value)} to`, file, err);
  } finally {
    await fh?.close();
  }
  log?.push({ file, value });
}

/**
 * writeControl without a round trip through the thread pool, for a cgroup
 * being created: its files take a new value at once (no usage to reclaim, no
 * process to move), and a create writes a dozen of them.
 */
export function writeControlSync(file: string, value: string, log?: CgroupWrite[]): void {
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_TRUNC);
    writeSync(fd, Buffer.from(value));
  } catch (err) {
    throw ioError(`write ${showValue(value)} to`, file, err);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  log?.push({ file, value });
}

/** readOptional, synchronously (see writeControlSync). */
export function readOptionalSync(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENODEV' || errnoCode(err) === 'EOPNOTSUPP') {
      return undefined;
    }
    throw ioError('read', file, err);
  }
}

/** readControl, synchronously (see writeControlSync). */
export function readControlSync(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw ioError('read', file, err);
  }
}

/** mkdirp, synchronously (see writeControlSync). */
export function mkdirpSync(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw ioError('mkdir', dir, err);
  }
}

export async function readControl(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw ioError('read', file, err);
  }
}

/** The file's content, or undefined when it does not exist. */
export async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENODEV' || errnoCode(err) === 'EOPNOTSUPP') {
      return undefined;
    }
    throw ioError('read', file, err);
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

export async function mkdirp(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw ioError('mkdir', dir, err);
  }
}

/** Subdirectories of a directory; none when it does not exist. */
export async function subdirs(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw ioError('read directory', dir, err);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Remove a cgroup directory and its descendants, leaf first. A cgroup stays
 * busy for a moment after its last process exits, so EBUSY is retried for
 * about two seconds. A missing directory is fine.
 */
export async function removeCgroupTree(dir: string): Promise<void> {
  for (const child of await subdirs(dir)) await removeCgroupTree(child);
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT') return;
      if (code === 'EBUSY' && attempt < 40) {
        await sleep(Math.min(5 * (attempt + 1), 100));
        continue;
      }
      throw ioError('rmdir', dir, err);
    }
  }
}

/** The pids in cgroup.procs of dir and of all its descendants, sorted. */
export async function collectPids(dir: string): Promise<number[]> {
  const out = new Set<number>();
  const walk = async (d: string): Promise<void> => {
    const text = await readOptional(join(d, 'cgroup.procs'));
    if (text === undefined) return;
    for (const line of text.split('\n')) {
      const t = line.trim();
      if (t !== '') out.add(Number(t));
    }
    for (const child of await subdirs(d)) await walk(child);
  };
  await walk(dir);
  return [...out].sort((a, b) => a - b);
}
