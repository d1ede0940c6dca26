// Blob downloads streamed through digest verification (resumed with Range
// after a broken connection), and pull: the manifests, then every layer in
// parallel into a store, each shared digest fetched once.
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { Readable, Writable, addAbortSignal } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BerthError, ErrorKind, failedPrecondition, invalid, unavailable } from '@berth/base';
import { isRetryableError } from './client.js';
import type { RegistryClient, Repository } from './client.js';
import type { ImageDescriptor, ImagePlatform } from './media.js';
import { formatReference } from './reference.js';
import type { ImageReference } from './reference.js';
import { hostPlatform, parsePlatformSpec } from './platform.js';
import { boundedAll } from './util.js';
import { fetchImageManifests } from './resolve.js';
import type { ImageManifests } from './resolve.js';

export interface BlobFetchOptions {
  /** Called as bytes arrive: bytes so far (including a resumed prefix) and the total. */
  readonly onProgress?: (current: number, total: number) => void;
  readonly signal?: AbortSignal;
  /** Resume a partial download: the `offset` bytes already held, readable again for hashing. */
  readonly resume?: { readonly offset: number; readonly prefix: Readable };
  /** Reconnections (with Range) after a broken connection; default 3. */
  readonly retries?: number;
}

function algorithmOf(digest: string): string {
  return digest.slice(0, digest.indexOf(':'));
}

async function* verifiedChunks(repo: Repository, desc: ImageDescriptor, opts: BlobFetchOptions): AsyncGenerator<Buffer> {
  const hash: Hash = createHash(algorithmOf(desc.digest));
  let offset = 0;
  if (opts.resume !== undefined && opts.resume.offset > 0) {
    if (opts.resume.offset > desc.size) throw invalid(`blob ${desc.digest}: resume offset ${opts.resume.offset} is past its size ${desc.size}`);
    for await (const c of opts.resume.prefix) {
      const b = c as Buffer;
      const take = Math.min(b.length, opts.resume.offset - offset);
      hash.update(b.subarray(0, take));
      offset += take;
      if (offset === opts.resume.offset) break;
    }
    if (offset !== opts.resume.offset) throw invalid(`blob ${desc.digest}: the resumed prefix has ${offset} bytes, not ${opts.resume.offset}`);
  }
  const retries = opts.retries ?? 3;
  let failures = 0;
  while (offset < desc.size) {
    const { body, start } = await repo.getBlob(desc.digest, offset);
    let skip = offset - start; // the registry ignored our Range: drop what we hold
    try {
      for await (const c of body) {
        let b = c as Buffer;
        if (skip > 0) {
          if (b.length <= skip) {
            skip -= b.length;
            continue;
          }
          b = b.subarray(skip);
          skip = 0;
        }
        if (offset + b.length > desc.size) {
          body.destroy();
          throw failedPrecondition(`blob ${desc.digest}: size mismatch: the registry served more than the ${desc.size} bytes of its descriptor`);
        }
        hash.update(b);
        offset += b.length;
        opts.onProgress?.(offset, desc.size);
        yield b;
      }
    } catch (err) {
      if (err instanceof BerthError || opts.signal?.aborted === true) throw err;
      if (failures < retries && isRetryableError(err)) {
        failures++;
        continue; // reconnect and ask for the rest with Range
      }
      throw unavailable(`blob ${repo.name}@${desc.digest}: download broke after ${offset} of ${desc.size} bytes: ${(err as Error).message}`, err);
    }
    if (offset < desc.size) {
      if (failures < retries) {
        failures++;
        continue;
      }
      throw unavailable(`blob ${repo.name}@${desc.digest}: connection closed after ${offset} of ${desc.size} bytes`);
    }
  }
  const got = `${algorithmOf(desc.digest)}:${hash.digest('hex')}`;
  if (got !== desc.digest) {
    throw failedPrecondition(`blob ${desc.digest}: digest mismatch: the registry served content with digest ${got}`);
  }
}

/**
 * A blob as a stream that fails (before it ends) when the bytes do not hash
 * to the descriptor's digest or are not its size: a consumer that commits
 * only on a clean end commits nothing wrong. A broken connection is resumed
 * with a Range request; bytes already passed on are not sent again.
 */
export function openBlob(repo: Repository, desc: ImageDescriptor, opts: BlobFetchOptions = {}): Readable {
  const stream = Readable.from(verifiedChunks(repo, desc, opts), { objectMode: false, highWaterMark: 1 << 20 });
  if (opts.signal !== undefined) addAbortSignal(opts.signal, stream);
  return stream;
}

/** Streams a verified blob into a Writable, or hands the stream to a consumer. */
export async function fetchBlob(
  repo: Repository,
  desc: ImageDescriptor,
  sink: Writable | ((stream: Readable) => Promise<void>),
  opts: BlobFetchOptions = {},
): Promise<void> {
  const src = openBlob(repo, desc, opts);
  if (sink instanceof Writable) {
    await pipeline(src, sink);
    return;
  }
  try {
    await sink(src);
  } finally {
    if (!src.readableEnded) src.destroy();
  }
  if (!src.readableEnded) throw invalid(`blob ${desc.digest}: the consumer returned before reading the whole blob`);
}

export type PullStatus = 'waiting' | 'downloading' | 'verifying' | 'done' | 'exists';

export interface PullProgress {
  readonly digest: string;
  readonly kind: 'index' | 'manifest' | 'config' | 'layer';
  readonly status: PullStatus;
  readonly current: number;
  readonly total: number;
}

/** Where pulled content goes: the content store, or anything with the same two calls. */
export interface PullStore {
  has(desc: ImageDescriptor): boolean | Promise<boolean>;
  /** Consumes the stream; must not commit unless the stream ends without error. */
  write(desc: ImageDescriptor, stream: Readable): Promise<void>;
}

export interface PullOptions {
  readonly store: PullStore;
  /** Default: the host's platform. */
  readonly platform?: ImagePlatform | string;
  /** Layers downloaded at once (default 3). */
  readonly concurrency?: number;
  readonly onProgress?: (ev: PullProgress) => void;
  readonly signal?: AbortSignal;
}

export interface PullResult {
  /** The normalised reference that was pulled (`127.0.0.1:5000/app:latest`). */
  readonly ref: ImageReference;
  readonly name: string;
  /** What the name points at: the index, or the manifest when there is none (the image record's target). */
  readonly target: ImageDescriptor;
  /** The chosen platform's manifest, its config and layers, as fetched. */
  readonly manifests: ImageManifests;
  readonly layers: readonly ImageDescriptor[];
}

/**
 * Downloads in progress in this process, by digest: a pull that needs a blob
 * another pull is fetching waits for it, then finds it in its store (or, if
 * its store is another one or the download failed, fetches it itself).
 */
const inflight = new Map<string, Promise<void>>();

const PROGRESS_INTERVAL_MS = 100;

/**
 * Puts one blob in the store unless it is there: fetched by `open`, or
 * awaited when another pull is already fetching the same digest.
 */
async function ensureBlob(
  store: PullStore,
  desc: ImageDescriptor,
  kind: PullProgress['kind'],
  open: (onBytes: (current: number, total: number) => void) => Readable,
  emit: (ev: PullProgress) => void,
): Promise<void> {
  const map = inflight;
  const ev = (status: PullStatus, current: number): void => emit({ digest: desc.digest, kind, status, current, total: desc.size });
  for (;;) {
    const running = map.get(desc.digest);
    if (running !== undefined) {
      ev('waiting', 0);
      await running.catch(() => undefined); // its failure is its own: we look again
      continue;
    }
    if (await store.has(desc)) {
      ev('exists', desc.size);
      return;
    }
    if (map.has(desc.digest)) continue;
    let last = 0;
    const job = (async () => {
      ev('downloading', 0);
      const stream = open((current, total) => {
        const now = Date.now();
        if (current === total) ev('verifying', current);
        else if (now - last >= PROGRESS_INTERVAL_MS) {
          last = now;
          ev('downloading', current);
        }
      });
      try {
        await store.write(desc, stream);
      } finally {
        if (!stream.readableEnded) stream.destroy();
      }
      if (!stream.readableEnded) throw invalid(`blob ${desc.digest}: the store returned before reading the whole blob`);
    })();
    map.set(desc.digest, job);
    try {
      await job;
    } finally {
      map.delete(desc.digest);
    }
    ev('done', desc.size);
    return;
  }
}

/**
 * Pulls an image into a store: resolves the reference, fetches and verifies
 * the index (if any), the platform's manifest and its config, then downloads
 * the layers in parallel (bounded), skipping blobs the store has and sharing
 * downloads with concurrent pulls (by digest). Unpacking is the
 * caller's: the store's `write` gets each verified stream.
 */
export async function pull(client: RegistryClient, reference: string | ImageReference, opts: PullOptions): Promise<PullResult> {
  const platform = typeof opts.platform === 'string' ? parsePlatformSpec(opts.platform) : (opts.platform ?? hostPlatform());
  const aborted = (): boolean => opts.signal?.aborted === true;
  const ac = new AbortController();
  const onOuterAbort = (): void => ac.abort(opts.signal?.reason);
  if (aborted()) throw new BerthError(ErrorKind.Canceled, 'pull canceled');
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const emit = opts.onProgress ?? ((): void => undefined);
  try {
    const m = await fetchImageManifests(client, reference, platform);
    if (ac.signal.aborted) throw new BerthError(ErrorKind.Canceled, `pull ${formatReference(m.resolved.ref)} canceled`);
    const repo = m.resolved.repository;
    const small = (desc: ImageDescriptor, kind: PullProgress['kind'], bytes: Buffer): Promise<void> =>
      ensureBlob(opts.store, desc, kind, () => Readable.from([bytes]), emit);
    if (m.index !== undefined) await small(m.index.descriptor, 'index', m.index.bytes);
    await small(m.manifest.descriptor, 'manifest', m.manifest.bytes);
    await small(m.config.descriptor, 'config', m.config.bytes);
    const layers = m.manifest.manifest.layers;
    const unique = [...new Map(layers.map((l) => [l.digest, l])).values()];
    for (const l of unique) emit({ digest: l.digest, kind: 'layer', status: 'waiting', current: 0, total: l.size });
    await boundedAll(unique, opts.concurrency ?? 3, (layer) =>
      ensureBlob(
        opts.store,
        layer,
        'layer',
        (onProgress) => openBlob(repo, layer, { onProgress, signal: ac.signal }),
        emit,
      ).catch((err: unknown) => {
        ac.abort(err);
        throw err;
      }),
    );
    const ref = m.resolved.ref;
    return { ref, name: formatReference(ref), target: m.index?.descriptor ?? m.manifest.descriptor, manifests: m, layers };
  } catch (err) {
    if (aborted() && !(err instanceof BerthError)) {
      throw new BerthError(ErrorKind.Canceled, 'pull canceled', { cause: err });
    }
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', onOuterAbort);
  }
}
