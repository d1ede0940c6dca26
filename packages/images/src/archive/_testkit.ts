// Helpers for this folder's tests: archives built in memory, sandboxes with a sentinel
// beside the target directory, and tree snapshots to prove nothing outside changed.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import { TarWriter, type TarWriteEntry } from './writer.js';

export type Spec = TarWriteEntry & { data?: Buffer | string };

/** A Writable that keeps everything written to it. */
export class Collect extends Writable {
  readonly chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(chunk);
    cb();
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** A tar made with TarWriter; entries are written verbatim (hostile names included). */
export async function tarOf(entries: Spec[], end = true): Promise<Buffer> {
  const out = new Collect();
  const w = new TarWriter(out);
  for (const e of entries) {
    const { data, ...h } = e;
    const body = data === undefined ? undefined : Buffer.from(data);
    await w.add({ ...h, ...(body !== undefined && h.type === 'file' ? { size: body.length } : {}) }, body);
  }
  if (end) await w.finish();
  return out.bytes();
}

export const file = (path: string | Buffer, data: string | Buffer = '', extra: Partial<Spec> = {}): Spec => ({
  type: 'file', path, mode: 0o644, mtime: 1_600_000_000, data, ...extra,
});
export const dir = (path: string | Buffer, extra: Partial<Spec> = {}): Spec => ({
  type: 'dir', path, mode: 0o755, mtime: 1_600_000_000, ...extra,
});
export const symlink = (path: string | Buffer, target: string | Buffer, extra: Partial<Spec> = {}): Spec => ({
  type: 'symlink', path, linkpath: target, mode: 0o777, mtime: 1_600_000_000, ...extra,
});
export const hardlink = (path: string | Buffer, target: string | Buffer): Spec => ({
  type: 'hardlink', path, linkpath: target, mode: 0o644, mtime: 1_600_000_000,
});

/** One chunk at a time, as a network stream would deliver it. */
export async function* chunks(b: Buffer, size = 7000): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

export interface Sandbox {
  /** A fresh directory: the parent of root and sentinel. */
  parent: string;
  /** The extraction target (empty). */
  root: string;
  /** A directory beside root with a file in it, which must never change. */
  sentinel: string;
}

/** A sandbox removed after the test, whatever happens; mounts registered are unmounted first. */
export async function sandbox(t: TestContext, mounts: string[] = []): Promise<Sandbox> {
  const parent = mkdtempSync('/tmp/berth-archive-test-');
  t.after(() => {
    for (const m of mounts.reverse()) {
      try {
        execFileSync('umount', ['-l', m], { stdio: 'ignore' });
      } catch {
        // not mounted (the test failed before mounting)
      }
    }
    rmSync(parent, { recursive: true, force: true });
  });
  const root = join(parent, 'root');
  const sentinel = join(parent, 'sentinel');
  await fs.mkdir(root);
  await fs.mkdir(join(sentinel, 'etc'), { recursive: true });
  await fs.writeFile(join(sentinel, 'etc', 'passwd'), 'sentinel\n');
  return { parent, root, sentinel };
}

export interface NodeInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  rdev: number;
  nlink: number;
  link?: string;
  sha?: string;
  xattrs?: string;
}

const kind = (st: import('node:fs').Stats): string =>
  st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink'
    : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'other';

/**
 * Every path under `dir` (names as latin1 of their bytes, "" for dir itself) with its
 * attributes and content hash; `skip` names a subdirectory (relative) left out.
 */
export async function tree(dir: string, opts: { skip?: string; mtimes?: boolean; xattrs?: (p: Buffer) => string } = {}): Promise<Map<string, NodeInfo>> {
  const out = new Map<string, NodeInfo>();
  const walk = async (rel: string): Promise<void> => {
    const p = Buffer.from(rel === '' ? dir : `${dir}/${rel}`, 'latin1');
    const st = await fs.lstat(p);
    const info: NodeInfo = {
      type: kind(st), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid,
      size: st.isDirectory() ? 0 : st.size, mtimeMs: opts.mtimes === false ? 0 : Math.floor(st.mtimeMs / 1000),
      rdev: st.rdev, nlink: st.isDirectory() ? 0 : st.nlink,
    };
    if (st.isSymbolicLink()) info.link = (await fs.readlink(p, { encoding: 'buffer' })).toString('latin1');
    if (st.isFile()) info.sha = createHash('sha256').update(readFileSync(p)).digest('hex');
    if (opts.xattrs !== undefined) info.xattrs = opts.xattrs(p);
    out.set(rel, info);
    if (st.isDirectory()) {
      for (const n of await fs.readdir(p, { encoding: 'buffer' })) {
        const child = rel === '' ? n.toString('latin1') : `${rel}/${n.toString('latin1')}`;
        if (child === opts.skip) continue;
        await walk(child);
      }
    }
  };
  await walk('');
  return out;
}

/** What must not change: the sandbox minus root, and a few host files a hostile layer aims at. */
export async function outside(s: Sandbox): Promise<unknown> {
  const host: Record<string, unknown> = {};
  for (const p of ['/etc/passwd', '/etc/shadow', '/etc/hostname']) {
    try {
      const st = await fs.lstat(p);
      host[p] = { mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, nlink: st.nlink, size: st.size, ino: st.ino };
    } catch {
      host[p] = null;
    }
  }
  return { sandbox: [...(await tree(s.parent, { skip: 'root' }))].filter(([k]) => k !== ''), host };
}

export function ensureRoot(t: TestContext): boolean {
  if (process.getuid?.() !== 0) {
    t.skip('needs root');
    return false;
  }
  return true;
}
