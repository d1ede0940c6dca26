// Resolving a reference to its descriptor, and fetching manifests, indexes
// and configs with their digests verified: bytes that do not hash to the
// descriptor's digest are an error, never a result.
import { createHash } from 'node:crypto';
import { BerthError, ErrorKind, failedPrecondition, invalid, notFound } from '@berth/base';
import type { RegistryClient, Repository } from './client.js';
import { readBody } from './client.js';
import { familiarString, parseDockerReference, withDefaultTag } from './reference.js';
import type { ImageReference } from './reference.js';
import { detectManifestType, isIndexType, isManifestType, parseIndex, parseManifest } from './media.js';
import type { ImageDescriptor, ImageIndex, ImageManifest, ImagePlatform } from './media.js';
import { formatPlatform, hostPlatform, selectPlatform } from './platform.js';

/** A hash of `bytes` with the algorithm of `digest` (`sha256:…`). */
export function digestOf(bytes: Uint8Array, algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/** Throws unless `bytes` are exactly what `desc` describes. */
export function verifyBytes(desc: ImageDescriptor, bytes: Uint8Array, what: string): void {
  if (bytes.length !== desc.size) {
    throw failedPrecondition(`${what} ${desc.digest}: size mismatch: expected ${desc.size} bytes, the registry served ${bytes.length}`);
  }
  const alg = desc.digest.slice(0, desc.digest.indexOf(':'));
  const got = digestOf(bytes, alg);
  if (got !== desc.digest) {
    throw failedPrecondition(`${what} ${desc.digest}: digest mismatch: the registry served content with digest ${got}`);
  }
}

export interface Resolved {
  /** The reference as given, normalised, with `:latest` added when it had neither tag nor digest. */
  readonly ref: ImageReference;
  readonly repository: Repository;
  /** The top-level descriptor: an index or a manifest. */
  readonly descriptor: ImageDescriptor;
  /** The manifest's bytes when resolving had to GET them (already verified). */
  readonly bytes?: Buffer;
}

/**
 * Resolves a reference to the descriptor of what it names: HEAD by tag or
 * digest, else GET (for registries that omit Docker-Content-Digest).
 */
export async function resolve(client: RegistryClient, reference: string | ImageReference, push = false): Promise<Resolved> {
  const ref = typeof reference === 'string' ? parseDockerReference(reference) : withDefaultTag(reference);
  const repository = client.repository(ref, push);
  const tagOrDigest = ref.digest ?? ref.tag ?? 'latest';
  const notFoundMsg = `manifest for ${familiarString(ref)} not found`;
  let head: ImageDescriptor | undefined;
  try {
    head = await repository.headManifest(tagOrDigest);
  } catch (err) {
    if (!(err instanceof BerthError) || err.kind === ErrorKind.PermissionDenied || err.kind === ErrorKind.Unavailable) throw err;
    head = undefined; // some registries refuse HEAD: fall back to GET
  }
  if (head !== undefined && (ref.digest === undefined || head.digest === ref.digest)) {
    return { ref, repository, descriptor: head };
  }
  let got: Awaited<ReturnType<Repository['getManifest']>>;
  try {
    got = await repository.getManifest(tagOrDigest);
  } catch (err) {
    if (err instanceof BerthError && err.kind === ErrorKind.NotFound) {
      const detail = err.message.slice(err.message.indexOf(': ') + 2);
      throw notFound(`${notFoundMsg}: ${detail}`, err);
    }
    throw err;
  }
  const alg = ref.digest !== undefined ? ref.digest.slice(0, ref.digest.indexOf(':')) : 'sha256';
  const digest = digestOf(got.bytes, alg);
  if (ref.digest !== undefined && digest !== ref.digest) {
    throw failedPrecondition(`manifest for ${familiarString(ref)}: digest mismatch: the registry served content with digest ${digest}`);
  }
  return { ref, repository, descriptor: { mediaType: got.mediaType, digest, size: got.bytes.length }, bytes: got.bytes };
}

/** GETs a manifest or index by digest and verifies it against its descriptor. */
export async function fetchManifestBytes(repository: Repository, desc: ImageDescriptor): Promise<Buffer> {
  const got = await repository.getManifest(desc.digest);
  verifyBytes(desc, got.bytes, 'manifest');
  return got.bytes;
}

/** GETs a small blob (a config) whole and verifies it against its descriptor. */
export async function fetchBlobBytes(repository: Repository, desc: ImageDescriptor, limit = 64 * 1024 * 1024): Promise<Buffer> {
  if (desc.size > limit) throw invalid(`blob ${desc.digest}: ${desc.size} bytes is more than the ${limit} allowed here`);
  const { body } = await repository.getBlob(desc.digest);
  const bytes = await readBody(body, desc.size, `blob ${repository.name}@${desc.digest}`).catch((err: unknown) => {
    if (err instanceof BerthError && err.kind === ErrorKind.InvalidArgument) {
      throw failedPrecondition(`config ${desc.digest}: size mismatch: the registry served more than ${desc.size} bytes`, err);
    }
    throw err;
  });
  verifyBytes(desc, bytes, 'blob');
  return bytes;
}

export interface ImageManifests {
  readonly resolved: Resolved;
  /** The index, when the reference names one. */
  readonly index?: { readonly descriptor: ImageDescriptor; readonly bytes: Buffer; readonly index: ImageIndex };
  /** The platform's manifest. */
  readonly manifest: { readonly descriptor: ImageDescriptor; readonly bytes: Buffer; readonly manifest: ImageManifest };
  readonly config: { readonly descriptor: ImageDescriptor; readonly bytes: Buffer };
}

/**
 * Resolves a reference and fetches, verified: the index (if any), the
 * manifest for `platform` (default: the host's) and the config blob.
 */
export async function fetchImageManifests(
  client: RegistryClient,
  reference: string | ImageReference,
  platform: ImagePlatform = hostPlatform(),
): Promise<ImageManifests> {
  const resolved = await resolve(client, reference);
  const repo = resolved.repository;
  let desc = resolved.descriptor;
  let bytes = resolved.bytes ?? (await fetchManifestBytes(repo, desc));
  let index: ImageManifests['index'];
  if (isIndexType(desc.mediaType)) {
    const idx = parseIndex(bytes, `index ${desc.digest}`);
    index = { descriptor: desc, bytes, index: idx };
    const chosen = selectPlatform(idx.manifests, platform);
    if (chosen === undefined) {
      const have = idx.manifests.flatMap((m) => (m.platform !== undefined ? [formatPlatform(m.platform)] : []));
      throw notFound(
        `no matching manifest for ${formatPlatform(platform)} in the manifest list entries of ${familiarString(resolved.ref)} (has ${have.join(', ') || 'none'})`,
      );
    }
    desc = chosen;
    bytes = await fetchManifestBytes(repo, desc);
  }
  const actual = detectManifestType(bytes, desc.mediaType);
  if (!isManifestType(actual) && !isManifestType(desc.mediaType)) {
    throw invalid(`manifest ${desc.digest} of ${familiarString(resolved.ref)}: unsupported media type ${actual}`);
  }
  const manifest = parseManifest(bytes, `manifest ${desc.digest}`);
  const configBytes = await fetchBlobBytes(repo, manifest.config);
  return {
    resolved,
    ...(index !== undefined ? { index } : {}),
    manifest: { descriptor: desc, bytes, manifest },
    config: { descriptor: manifest.config, bytes: configBytes },
  };
}
