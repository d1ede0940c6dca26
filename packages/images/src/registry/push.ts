// Push: every blob (existence check, cross-repository mount, monolithic or
// chunked upload), then the manifests bottom-up, the index last, with the tag.
import type { Readable } from 'node:stream';
import { BerthError, ErrorKind, failedPrecondition, invalid } from '@berth/base';
import type { RegistryClient, Repository } from './client.js';
import { isIndexType, isManifestType, detectManifestType, parseIndex, parseManifest } from './media.js';
import type { ImageDescriptor } from './media.js';
import { formatReference, parseReference } from './reference.js';
import type { ImageReference } from './reference.js';
import { verifyBytes } from './resolve.js';
import { boundedAll } from './util.js';

/** Where pushed content comes from: the content store, or anything with `read`. */
export interface PushStore {
  read(desc: ImageDescriptor): Readable | Promise<Readable>;
}

export type PushStatus = 'waiting' | 'uploading' | 'exists' | 'mounted' | 'done';

export interface PushProgress {
  readonly digest: string;
  readonly kind: 'index' | 'manifest' | 'config' | 'layer';
  readonly status: PushStatus;
  readonly current: number;
  readonly total: number;
}

export interface PushOptions {
  readonly store: PushStore;
  /** The root to push: a manifest or an index. */
  readonly descriptor: ImageDescriptor;
  /**
   * Repositories (paths, in the same registry) that hold a blob already:
   * the registry is asked to mount it from the first one instead of an upload.
   */
  readonly sources?: (desc: ImageDescriptor) => readonly string[];
  /** Blobs up to this size go in one PUT (default 8 MiB). */
  readonly monolithicMax?: number;
  /** Size of each PATCH of a chunked upload (default 8 MiB). */
  readonly chunkSize?: number;
  /** Blobs uploaded at once (default 3). */
  readonly concurrency?: number;
  readonly onProgress?: (ev: PushProgress) => void;
}

export interface PushResult {
  readonly ref: ImageReference;
  readonly name: string;
  /** The root's digest, as the registry computed it. */
  readonly digest: string;
}

const MIB = 1024 * 1024;
const MAX_MANIFEST_BYTES = 4 * MIB;

async function readAll(stream: Readable, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array);
    n += b.length;
    if (n > limit) {
      stream.destroy();
      throw failedPrecondition(`${what}: the store holds more than the ${limit} bytes expected`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** Re-slices a stream into buffers of exactly `size` bytes (the last one shorter). */
async function* chunksOf(stream: Readable, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let held = 0;
  for await (const c of stream) {
    let b = Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array);
    while (held + b.length >= size) {
      const take = size - held;
      parts.push(b.subarray(0, take));
      yield Buffer.concat(parts);
      parts = [];
      held = 0;
      b = b.subarray(take);
    }
    if (b.length > 0) {
      parts.push(b);
      held += b.length;
    }
  }
  if (held > 0) yield Buffer.concat(parts);
}

interface Node {
  readonly desc: ImageDescriptor;
  readonly kind: 'index' | 'manifest';
  readonly bytes: Buffer;
}

/** Reads the root and what it references: manifests (children first) and the blobs to upload. */
async function walk(store: PushStore, root: ImageDescriptor): Promise<{ manifests: Node[]; blobs: Map<string, { desc: ImageDescriptor; kind: 'config' | 'layer' }> }> {
  const manifests: Node[] = [];
  const blobs = new Map<string, { desc: ImageDescriptor; kind: 'config' | 'layer' }>();
  const readManifest = async (desc: ImageDescriptor): Promise<Buffer> => {
    if (desc.size > MAX_MANIFEST_BYTES) throw invalid(`manifest ${desc.digest}: ${desc.size} bytes is too large`);
    const bytes = await readAll(await store.read(desc), desc.size, `manifest ${desc.digest}`);
    verifyBytes(desc, bytes, 'manifest');
    return bytes;
  };
  const visitManifest = async (desc: ImageDescriptor, bytes: Buffer): Promise<void> => {
    const m = parseManifest(bytes, `manifest ${desc.digest}`);
    blobs.set(m.config.digest, { desc: m.config, kind: 'config' });
    for (const l of m.layers) if (!blobs.has(l.digest)) blobs.set(l.digest, { desc: l, kind: 'layer' });
    manifests.push({ desc, kind: 'manifest', bytes });
  };
  const rootBytes = await readManifest(root);
  const type = isIndexType(root.mediaType) || isManifestType(root.mediaType) ? root.mediaType : detectManifestType(rootBytes);
  if (isIndexType(type)) {
    const idx = parseIndex(rootBytes, `index ${root.digest}`);
    for (const child of idx.manifests) {
      const bytes = await readManifest(child);
      const childType = isManifestType(child.mediaType) || isIndexType(child.mediaType) ? child.mediaType : detectManifestType(bytes);
      if (!isManifestType(childType)) throw invalid(`index ${root.digest}: entry ${child.digest} has unsupported media type ${childType}`);
      await visitManifest(child, bytes);
    }
    manifests.push({ desc: root, kind: 'index', bytes: rootBytes });
  } else if (isManifestType(type)) {
    await visitManifest(root, rootBytes);
  } else {
    throw invalid(`push: ${root.digest} has media type ${root.mediaType}, neither a manifest nor an index`);
  }
  return { manifests, blobs };
}

async function pushBlob(
  repo: Repository,
  desc: ImageDescriptor,
  kind: 'config' | 'layer',
  opts: PushOptions,
  emit: (ev: PushProgress) => void,
): Promise<void> {
  const ev = (status: PushStatus, current: number): void => emit({ digest: desc.digest, kind, status, current, total: desc.size });
  if ((await repo.headBlob(desc.digest)) !== undefined) {
    ev('exists', desc.size);
    return;
  }
  const from = (opts.sources?.(desc) ?? []).find((p) => p !== repo.path);
  const start = await repo.startUpload(from !== undefined ? { digest: desc.digest, from } : undefined);
  if (start.mounted) {
    ev('mounted', desc.size);
    return;
  }
  let location = start.location;
  const chunkSize = opts.chunkSize ?? 8 * MIB;
  const monolithicMax = opts.monolithicMax ?? 8 * MIB;
  if (chunkSize <= 0) throw invalid(`push: chunk size must be positive, not ${chunkSize}`);
  try {
    ev('uploading', 0);
    const stream = await opts.store.read(desc);
    if (desc.size <= monolithicMax) {
      const bytes = await readAll(stream, desc.size, `blob ${desc.digest}`);
      verifyBytes(desc, bytes, 'blob');
      await repo.completeUpload(location, desc.digest, bytes);
    } else {
      let offset = 0;
      try {
        for await (const chunk of chunksOf(stream, chunkSize)) {
          if (offset + chunk.length > desc.size) throw failedPrecondition(`blob ${desc.digest}: the store holds more than its ${desc.size} bytes`);
          location = await repo.uploadChunk(location, chunk, offset);
          offset += chunk.length;
          ev('uploading', offset);
        }
      } finally {
        if (!stream.readableEnded) stream.destroy();
      }
      if (offset !== desc.size) throw failedPrecondition(`blob ${desc.digest}: the store holds ${offset} bytes, its descriptor says ${desc.size}`);
      await repo.completeUpload(location, desc.digest);
    }
  } catch (err) {
    await repo.cancelUpload(location);
    throw err;
  }
  ev('done', desc.size);
}

/**
 * Pushes an image (a manifest or an index, with everything it references)
 * from a store to `reference`: blobs first (checked, mounted or uploaded),
 * then the manifests, the index last, tagged with the reference's tag.
 */
export async function push(client: RegistryClient, reference: string | ImageReference, opts: PushOptions): Promise<PushResult> {
  const ref = typeof reference === 'string' ? parseReference(reference) : reference;
  const repo = client.repository(ref, true);
  const emit = opts.onProgress ?? ((): void => undefined);
  const { manifests, blobs } = await walk(opts.store, opts.descriptor);
  const list = [...blobs.values()];
  for (const b of list) emit({ digest: b.desc.digest, kind: b.kind, status: 'waiting', current: 0, total: b.desc.size });
  await boundedAll(list, opts.concurrency ?? 3, (b) => pushBlob(repo, b.desc, b.kind, opts, emit));
  let digest = opts.descriptor.digest;
  for (const m of manifests) {
    const isRoot = m.desc.digest === opts.descriptor.digest;
    const tag = isRoot ? (ref.tag ?? ref.digest ?? 'latest') : m.desc.digest;
    if (isRoot && ref.digest !== undefined && ref.digest !== m.desc.digest) {
      throw invalid(`push ${formatReference(ref)}: the reference's digest is not the image's ${m.desc.digest}`);
    }
    emit({ digest: m.desc.digest, kind: m.kind, status: 'uploading', current: 0, total: m.desc.size });
    const mediaType = isIndexType(m.desc.mediaType) || isManifestType(m.desc.mediaType) ? m.desc.mediaType : detectManifestType(m.bytes);
    const got = await repo.putManifest(tag, mediaType, m.bytes);
    if (got !== m.desc.digest) {
      throw new BerthError(ErrorKind.Internal, `push ${formatReference(ref)}: registry stored manifest ${m.desc.digest} as ${got}`);
    }
    emit({ digest: m.desc.digest, kind: m.kind, status: 'done', current: m.desc.size, total: m.desc.size });
    if (isRoot) digest = got;
  }
  return { ref, name: formatReference(ref), digest };
}
