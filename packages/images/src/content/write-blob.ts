/**
 * Helpers over any content store: writeBlob streams a blob in through
 * verification (resuming an interrupted ingest when the source can start at
 * an offset), readBlob reads a small blob whole.
 */
import { ErrorKind, failedPrecondition, invalid, isKind } from '@berth/base';
import type { ContentDescriptor, ContentInfo, ContentIngester, ContentProvider, ContentWriter } from './types.js';

/**
 * Where a blob's bytes come from. A function is called with the offset to
 * start at (an interrupted ingest resumes there: an HTTP Range request, a
 * file position); a plain iterable always starts at 0, so a partial ingest
 * is truncated first.
 */
export type BlobSource =
  | AsyncIterable<Uint8Array>
  | ((offset: number) => AsyncIterable<Uint8Array> | Promise<AsyncIterable<Uint8Array>>);

export interface WriteBlobOptions {
  /** The ingest's ref; default: the digest. Concurrent writers of one ref wait for each other. */
  readonly ref?: string;
  /** Labels stored with the blob on commit. */
  readonly labels?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  /** Called after every chunk with the bytes written so far. */
  readonly onProgress?: (offset: number, total: number) => void;
}

function chunkOf(v: unknown, ref: string): Uint8Array {
  if (v instanceof Uint8Array) return v;
  throw invalid(`ref ${ref}: the source produced ${typeof v === 'string' ? 'a string' : typeof v}, not bytes`);
}

/**
 * Store a blob, verified against desc (size and digest) before it becomes
 * visible. A blob already present is not written again: its info is
 * returned. Data that does not match desc commits nothing and the ingest is
 * removed (FailedPrecondition); a source that fails or ends early leaves the
 * ingest for a later call to resume.
 */
export async function writeBlob(store: ContentIngester, source: BlobSource, desc: ContentDescriptor, opts: WriteBlobOptions = {}): Promise<ContentInfo> {
  const ref = opts.ref ?? desc.digest;
  if (!Number.isSafeInteger(desc.size) || desc.size < 0) throw invalid(`${desc.digest}: size ${desc.size} is not a size`);
  let w: ContentWriter;
  try {
    w = await store.writer({
      ref, total: desc.size, expected: desc.digest, wait: true, ...(opts.signal === undefined ? {} : { signal: opts.signal }),
    });
  } catch (e) {
    if (isKind(e, ErrorKind.AlreadyExists)) return store.info(desc.digest);
    throw e;
  }
  let done = false;
  try {
    let offset = w.status().offset;
    if (offset > desc.size || (offset > 0 && typeof source !== 'function')) {
      await w.truncate(0);
      offset = 0;
    }
    if (offset < desc.size || desc.size === 0) {
      const chunks = typeof source === 'function' ? await source(offset) : source;
      for await (const raw of chunks) {
        opts.signal?.throwIfAborted();
        const chunk = chunkOf(raw, ref);
        try {
          await w.write(chunk);
        } catch (e) {
          // More bytes than the descriptor says: the source is wrong, not interrupted.
          if (isKind(e, ErrorKind.FailedPrecondition)) await abortQuietly(store, w, ref);
          throw e;
        }
        opts.onProgress?.(w.status().offset, desc.size);
      }
    }
    const got = w.status().offset;
    if (got < desc.size) throw failedPrecondition(`ref ${ref}: the source ended after ${got} of ${desc.size} bytes of ${desc.digest}`);
    done = true;
    try {
      return await w.commit(desc.size, desc.digest, opts.labels === undefined ? {} : { labels: opts.labels });
    } catch (e) {
      if (isKind(e, ErrorKind.AlreadyExists)) return store.info(desc.digest);
      if (isKind(e, ErrorKind.FailedPrecondition)) await abortQuietly(store, w, ref);
      throw e;
    }
  } finally {
    if (!done) await w.close();
  }
}

async function abortQuietly(store: ContentIngester, w: ContentWriter, ref: string): Promise<void> {
  await w.close();
  try {
    await store.abort(ref);
  } catch (e) {
    if (!isKind(e, ErrorKind.NotFound)) throw e;
  }
}

/** A blob whole, in memory (manifests, indexes, configs); larger than maxSize is refused. */
export async function readBlob(store: ContentProvider, digest: string, maxSize = 32 << 20): Promise<Buffer> {
  const r = await store.reader(digest);
  try {
    if (r.size > maxSize) throw failedPrecondition(`content ${digest}: ${r.size} bytes, more than the ${maxSize} this reads whole`);
    const buf = await r.readAt(0, r.size);
    if (buf.length !== r.size) throw failedPrecondition(`content ${digest}: read ${buf.length} of ${r.size} bytes`);
    return buf;
  } finally {
    await r.close();
  }
}
