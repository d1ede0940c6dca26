/**
 * The local content store: blobs on disk, shared by every namespace.
 *
 *   <root>/blobs/sha256/<hex>        committed blobs, read-only (0444), never rewritten
 *   <root>/ingest/<sha256(ref)>/     one directory per ingest in progress
 *       ref                          the ref, as given
 *       startedat                    ISO time the ingest began
 *       total                        expected size (decimal, 0 = unknown)
 *       expected                     expected digest ("" = unknown)
 *       data                         the bytes so far; its size is the offset, its mtime the update time
 *
 * A new ingest directory is built under a temporary name and renamed into
 * place, so an ingest is either complete or absent. A commit fsyncs the data,
 * checks size and digest, and hard-links the data into blobs/ (link never
 * replaces an existing file, so a blob already present stays as it is), then
 * fsyncs the blob directory and removes the ingest. A crash at any point
 * leaves either the ingest (resumable) or the blob.
 *
 * One writer per ref at a time, in this process (the daemon owns the root):
 * a second one waits or gets Unavailable "ref ... locked".
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { chmod, link, mkdir, open, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  Bug, ErrorKind, alreadyExists, errnoCode, failedPrecondition, fsyncDir, invalid, isKind, notFound, unavailable, writeFileAtomic,
} from '@berth/base';
import { isContentDigest, parseContentDigest } from './digest.js';
import type {
  CommitOptions, ContentInfo, ContentIngester, ContentProvider, ContentReader, ContentStatus, ContentWriter, ContentWriterOptions,
} from './types.js';

/** How much is read or sent at once. */
export const CONTENT_CHUNK = 1 << 20;

const TMP_PREFIX = '.tmp-';

interface RefLock {
  readonly since: Date;
  readonly released: Promise<void>;
  release(): void;
}

function describeDuration(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(1)}s`;
}

function intFrom(text: string, what: string): number {
  const t = text.trim();
  if (t === '') return 0;
  if (!/^\d+$/.test(t)) throw failedPrecondition(`${what}: not a size: ${JSON.stringify(t)}`);
  return Number(t);
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined;
    throw e;
  }
}

export class LocalContentStore implements ContentProvider, ContentIngester {
  private readonly locks = new Map<string, RefLock>();
  private readonly active = new Map<string, LocalWriter>();

  private constructor(readonly root: string) {}

  /** Open (creating) the store at root; leftovers of interrupted ingest creations are removed. */
  static open(root: string): LocalContentStore {
    mkdirSync(join(root, 'blobs', 'sha256'), { recursive: true, mode: 0o755 });
    mkdirSync(join(root, 'ingest'), { recursive: true, mode: 0o700 });
    for (const name of readdirSync(join(root, 'ingest'))) {
      if (name.startsWith(TMP_PREFIX)) rmSync(join(root, 'ingest', name), { recursive: true, force: true });
    }
    return new LocalContentStore(root);
  }

  blobPath(digest: string): string {
    const { hex } = parseContentDigest(digest);
    return join(this.root, 'blobs', 'sha256', hex);
  }

  private ingestDir(ref: string): string {
    return join(this.root, 'ingest', createHash('sha256').update(ref).digest('hex'));
  }

  // ---- committed blobs ----

  async info(digest: string): Promise<ContentInfo> {
    const path = this.blobPath(digest);
    try {
      const st = await stat(path);
      return { digest, size: st.size, createdAt: st.mtime, updatedAt: st.mtime, labels: {} };
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') throw notFound(`content digest ${digest}`);
      throw e;
    }
  }

  async has(digest: string): Promise<boolean> {
    try {
      await this.info(digest);
      return true;
    } catch (e) {
      if (isKind(e, ErrorKind.NotFound)) return false;
      throw e;
    }
  }

  async reader(digest: string): Promise<ContentReader> {
    const path = this.blobPath(digest);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') throw notFound(`content digest ${digest}`);
      throw e;
    }
    try {
      const st = await fh.stat();
      return new LocalReader(fh, st.size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async list(match?: (info: ContentInfo) => boolean): Promise<ContentInfo[]> {
    const dir = join(this.root, 'blobs', 'sha256');
    const out: ContentInfo[] = [];
    for (const name of (await readdir(dir)).sort()) {
      const digest = `sha256:${name}`;
      if (!isContentDigest(digest)) continue;
      try {
        const info = await this.info(digest);
        if (match === undefined || match(info)) out.push(info);
      } catch (e) {
        if (!isKind(e, ErrorKind.NotFound)) throw e;
      }
    }
    return out;
  }

  async delete(digest: string): Promise<void> {
    try {
      await unlink(this.blobPath(digest));
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') throw notFound(`content digest ${digest}`);
      throw e;
    }
  }

  // ---- locks ----

  private tryLock(ref: string): RefLock | undefined {
    if (this.locks.has(ref)) return undefined;
    let release!: () => void;
    const released = new Promise<void>((resolve) => { release = resolve; });
    const lock: RefLock = {
      since: new Date(),
      released,
      release: () => {
        if (this.locks.get(ref) === lock) this.locks.delete(ref);
        release();
      },
    };
    this.locks.set(ref, lock);
    return lock;
  }

  private async lock(ref: string, wait: boolean, signal: AbortSignal | undefined): Promise<RefLock> {
    for (;;) {
      const mine = this.tryLock(ref);
      if (mine !== undefined) return mine;
      const held = this.locks.get(ref);
      if (held === undefined) continue;
      if (!wait) {
        throw unavailable(`ref ${ref} locked for ${describeDuration(Date.now() - held.since.getTime())} (since ${held.since.toISOString()})`);
      }
      if (signal?.aborted) throw unavailable(`ref ${ref}: gave up waiting for the writer holding it`);
      await new Promise<void>((resolve) => {
        const onAbort = (): void => resolve();
        signal?.addEventListener('abort', onAbort, { once: true });
        void held.released.then(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    }
  }

  // ---- ingests ----

  async writer(opts: ContentWriterOptions): Promise<ContentWriter> {
    const { ref } = opts;
    if (ref === '') throw invalid('ref must not be empty');
    const total = opts.total ?? 0;
    const expected = opts.expected ?? '';
    if (!Number.isSafeInteger(total) || total < 0) throw invalid(`ref ${ref}: total ${total} is not a size`);
    if (expected !== '') parseContentDigest(expected);
    const lock = await this.lock(ref, opts.wait ?? false, opts.signal);
    try {
      if (expected !== '' && await this.has(expected)) throw alreadyExists(`content ${expected}`);
      const dir = this.ingestDir(ref);
      const existing = await this.readIngest(dir);
      let writer: LocalWriter;
      if (existing !== undefined) {
        if (existing.ref !== ref) throw new Bug(`ingest ${dir} belongs to ref ${JSON.stringify(existing.ref)}, not ${JSON.stringify(ref)}`);
        if (total > 0 && total !== existing.total) writeFileAtomic(join(dir, 'total'), String(total), 0o600);
        if (expected !== '' && expected !== existing.expected) writeFileAtomic(join(dir, 'expected'), expected, 0o600);
        writer = await LocalWriter.resume(this, {
          ...existing, total: total > 0 ? total : existing.total, expected: expected !== '' ? expected : existing.expected,
        }, dir, lock);
      } else {
        await this.createIngest(dir, ref, total, expected);
        const fresh = await this.readIngest(dir);
        if (fresh === undefined) throw new Bug(`ingest ${dir} vanished right after its creation`);
        writer = await LocalWriter.resume(this, fresh, dir, lock);
      }
      this.active.set(ref, writer);
      return writer;
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  /** Called by a writer when it lets go of its ref. */
  detach(writer: LocalWriter): void {
    if (this.active.get(writer.ref) === writer) this.active.delete(writer.ref);
  }

  private async createIngest(dir: string, ref: string, total: number, expected: string): Promise<void> {
    const tmp = join(this.root, 'ingest', `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    await mkdir(tmp, { mode: 0o700 });
    try {
      await writeFile(join(tmp, 'ref'), ref, { mode: 0o600 });
      await writeFile(join(tmp, 'startedat'), new Date().toISOString(), { mode: 0o600 });
      await writeFile(join(tmp, 'total'), String(total), { mode: 0o600 });
      await writeFile(join(tmp, 'expected'), expected, { mode: 0o600 });
      await writeFile(join(tmp, 'data'), new Uint8Array(0), { mode: 0o600 });
      await rename(tmp, dir);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  /** An ingest as found on disk; undefined when there is none. */
  private async readIngest(dir: string): Promise<ContentStatus | undefined> {
    const ref = await readOptional(join(dir, 'ref'));
    if (ref === undefined) return undefined;
    let st;
    try {
      st = await stat(join(dir, 'data'));
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return undefined;
      throw e;
    }
    const started = await readOptional(join(dir, 'startedat'));
    const startedAt = started === undefined ? st.birthtime : new Date(started.trim());
    return {
      ref,
      offset: st.size,
      total: intFrom(await readOptional(join(dir, 'total')) ?? '', `${dir}/total`),
      expected: (await readOptional(join(dir, 'expected')) ?? '').trim(),
      startedAt: Number.isNaN(startedAt.getTime()) ? st.mtime : startedAt,
      updatedAt: st.mtime,
    };
  }

  async status(ref: string): Promise<ContentStatus> {
    const w = this.active.get(ref);
    if (w !== undefined) return w.status();
    const s = await this.readIngest(this.ingestDir(ref));
    if (s === undefined || s.ref !== ref) throw notFound(`ref ${ref}`);
    return s;
  }

  async listStatuses(match?: (s: ContentStatus) => boolean): Promise<ContentStatus[]> {
    const out: ContentStatus[] = [];
    for (const name of (await readdir(join(this.root, 'ingest'))).sort()) {
      if (name.startsWith(TMP_PREFIX)) continue;
      const s = await this.readIngest(join(this.root, 'ingest', name));
      if (s === undefined) continue;
      const st = this.active.get(s.ref)?.status() ?? s;
      if (match === undefined || match(st)) out.push(st);
    }
    return out;
  }

  async abort(ref: string): Promise<void> {
    const lock = this.tryLock(ref);
    if (lock === undefined) {
      const held = this.locks.get(ref);
      throw unavailable(`ref ${ref} locked${held === undefined ? '' : ` since ${held.since.toISOString()}`}: cannot abort while it is being written`);
    }
    try {
      const dir = this.ingestDir(ref);
      const s = await this.readIngest(dir);
      if (s === undefined || s.ref !== ref) throw notFound(`ref ${ref}`);
      // Renamed away first so the ingest disappears at once, then removed.
      const doomed = join(this.root, 'ingest', `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
      await rename(dir, doomed);
      await rm(doomed, { recursive: true, force: true });
    } finally {
      lock.release();
    }
  }
}

class LocalWriter implements ContentWriter {
  private closed = false;
  private busy = false;

  private constructor(
    private readonly store: LocalContentStore,
    readonly ref: string,
    private readonly dir: string,
    private readonly fh: FileHandle,
    private hash: Hash,
    private offset: number,
    private readonly total: number,
    private readonly expected: string,
    private readonly startedAt: Date,
    private updatedAt: Date,
    private readonly lock: RefLock,
  ) {}

  /** Open the ingest's data and re-hash what is there (so the digest continues where it stopped). */
  static async resume(store: LocalContentStore, s: ContentStatus, dir: string, lock: RefLock): Promise<LocalWriter> {
    const fh = await open(join(dir, 'data'), 'r+');
    try {
      const hash = createHash('sha256');
      const buf = Buffer.allocUnsafe(CONTENT_CHUNK);
      let offset = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
        offset += bytesRead;
      }
      return new LocalWriter(store, s.ref, dir, fh, hash, offset, s.total, s.expected, s.startedAt, s.updatedAt, lock);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  status(): ContentStatus {
    return { ref: this.ref, offset: this.offset, total: this.total, expected: this.expected, startedAt: this.startedAt, updatedAt: this.updatedAt };
  }

  digest(): string {
    return `sha256:${this.hash.copy().digest('hex')}`;
  }

  private enter(what: string): void {
    if (this.closed) throw failedPrecondition(`ref ${this.ref}: ${what} on a closed writer`);
    if (this.busy) throw new Bug(`ref ${this.ref}: ${what} while another operation on the writer is running`);
    this.busy = true;
  }

  async write(data: Uint8Array, offset?: number): Promise<void> {
    this.enter('write');
    try {
      if (offset !== undefined && offset !== this.offset) {
        if (offset !== 0) {
          throw invalid(`ref ${this.ref}: write at offset ${offset} must occur at the current offset ${this.offset} (or at 0 to start over)`);
        }
        await this.truncateNow();
      }
      if (this.total > 0 && this.offset + data.length > this.total) {
        throw failedPrecondition(`ref ${this.ref}: write of ${data.length} bytes at offset ${this.offset} goes past the expected size ${this.total}`);
      }
      let done = 0;
      try {
        while (done < data.length) {
          const { bytesWritten } = await this.fh.write(data, done, data.length - done, this.offset + done);
          done += bytesWritten;
        }
      } catch (e) {
        // The file may now hold bytes the hash has not seen: let go, a reopen re-hashes.
        await this.shut();
        throw e;
      }
      this.hash.update(data);
      this.offset += data.length;
      this.updatedAt = new Date();
    } finally {
      this.busy = false;
    }
  }

  private async truncateNow(): Promise<void> {
    await this.fh.truncate(0);
    this.hash = createHash('sha256');
    this.offset = 0;
    this.updatedAt = new Date();
  }

  async truncate(size: number): Promise<void> {
    if (size !== 0) throw invalid(`ref ${this.ref}: truncate to ${size}: only truncating to 0 is supported`);
    this.enter('truncate');
    try {
      await this.truncateNow();
    } finally {
      this.busy = false;
    }
  }

  async commit(size: number, expected: string, _opts?: CommitOptions): Promise<ContentInfo> {
    this.enter('commit');
    try {
      if (expected !== '') parseContentDigest(expected);
      await this.fh.sync();
      const st = await this.fh.stat();
      if (st.size !== this.offset) throw new Bug(`ref ${this.ref}: data holds ${st.size} bytes, the writer wrote ${this.offset}`);
      if (size > 0 && size !== st.size) throw failedPrecondition(`unexpected commit size ${st.size}, expected ${size}`);
      const actual = this.digest();
      if (expected !== '' && expected !== actual) throw failedPrecondition(`unexpected commit digest ${actual}, expected ${expected}`);
      await this.fh.close();
      const data = join(this.dir, 'data');
      const target = this.store.blobPath(actual);
      await chmod(data, 0o444);
      let existed = false;
      try {
        await link(data, target);
      } catch (e) {
        if (errnoCode(e) !== 'EEXIST') throw e;
        existed = true;
      }
      if (!existed) fsyncDir(join(this.store.root, 'blobs', 'sha256'));
      await rm(this.dir, { recursive: true, force: true });
      if (existed) throw alreadyExists(`content ${actual}`);
      const info = await stat(target);
      return { digest: actual, size: info.size, createdAt: info.mtime, updatedAt: info.mtime, labels: {} };
    } finally {
      this.busy = false;
      await this.shut();
    }
  }

  private async shut(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.store.detach(this);
    try {
      await this.fh.close();
    } catch {
      /* already closed by commit */
    } finally {
      this.lock.release();
    }
  }

  async close(): Promise<void> {
    if (this.busy) throw new Bug(`ref ${this.ref}: close while an operation on the writer is running`);
    await this.shut();
  }
}

class LocalReader implements ContentReader {
  constructor(private readonly fh: FileHandle, readonly size: number) {}

  async readAt(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw invalid(`read offset ${offset} is not a position`);
    if (!Number.isSafeInteger(length) || length < 0) throw invalid(`read length ${length} is not a size`);
    const n = Math.max(0, Math.min(length, this.size - offset));
    const buf = Buffer.allocUnsafe(n);
    let done = 0;
    while (done < n) {
      const { bytesRead } = await this.fh.read(buf, done, n - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done === n ? buf : buf.subarray(0, done);
  }

  stream(offset = 0, length?: number): Readable {
    const end = length === undefined ? this.size : Math.min(this.size, offset + length);
    const chunks = async function* (reader: LocalReader): AsyncGenerator<Buffer> {
      for (let pos = offset; pos < end;) {
        const chunk = await reader.readAt(pos, Math.min(CONTENT_CHUNK, end - pos));
        if (chunk.length === 0) return;
        pos += chunk.length;
        yield chunk;
      }
    };
    return Readable.from(chunks(this), { objectMode: false });
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
