/**
 * Import: image archives into a namespace, and `docker import` of a plain
 * rootfs tar.
 *
 *   read the tar once, member by member:
 *     blobs/<alg>/<hex>, <hex>.json   stored, verified against the digest
 *                                     their name states
 *     <id>/layer.tar (legacy docker)  stored under the digest of its bytes
 *     index.json, manifest.json,      kept in memory (small)
 *     oci-layout, repositories
 *   name the targets: index.json's annotations, manifest.json's RepoTags
 *     (a legacy docker archive gets a Docker schema 2 manifest made here)
 *   check every blob a target needs is there, with its size
 *   unpack each target's layers into the snapshotter by chain ID
 *   label the blobs for the garbage collector, create the image records
 *
 * Everything stored is held by one lease until the records exist: a failure
 * at any step (a member named with `..`, a missing or wrong blob, a
 * truncated tar, a layer that does not match its diff ID) creates no image
 * record, and what was stored goes with the next garbage collection.
 */
import { createHash, randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { ErrorKind, failedPrecondition, invalid, isKind } from '@berth/base';
import {
  Meter, MediaType, decompress, detectCompression, formatReference, hostPlatform, isIndexType, isManifestType,
  parseDockerReference, parseIndex, parseManifest, parsePlatformSpec, readBlob, readTar, selectPlatform, withTag, writeBlob,
} from '@berth/images';
import type { ContentInfo, ContentStore, ImageDescriptor, ImageManifest, ImagePlatform } from '@berth/images';
import { DEFAULT_SNAPSHOTTER, snapshotterFor } from '../services/snapshots.js';
import type { NamespacedSnapshotter } from '../services/snapshots.js';
import { ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME } from './export.js';
import {
  GC_REF_SNAPSHOT, ImageLease, diffIdsOf, indexRefs, labelBlob, manifestRefs, recordImage, unpackLayers,
} from './_unpack.js';
import type { PullDeps } from './_unpack.js';

/** An uncompressed layer in a Docker archive (the Docker schema 2 type; OCI's is MediaType.OciLayer). */
export const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';

/** Small members (index.json, manifest.json...) larger than this are refused. */
const MAX_META_BYTES = 8 << 20;

export interface ImportOptions {
  /** Names the images of an OCI layout whose ref.name is a bare tag: `<baseName>:<tag>`. */
  readonly baseName?: string;
  /** Unpack into the snapshotter (default true). */
  readonly unpack?: boolean;
  /** Default: overlayfs. */
  readonly snapshotter?: string;
  /** Which manifest of an index to unpack: `os/arch[/variant]` or a platform; default: the host's. */
  readonly platform?: string | ImagePlatform;
}

export interface ImportedImage {
  /** The image record's name. */
  readonly name: string;
  /** What it points at: a manifest, or an index. */
  readonly target: ImageDescriptor;
  /** The committed snapshot of the whole rootfs, when unpacked. */
  readonly chainId?: string;
}

/** The runtime part of an image config (the OCI config's `config` object). */
export interface ImageRunConfig {
  readonly Cmd?: readonly string[];
  readonly Entrypoint?: readonly string[];
  readonly Env?: readonly string[];
  readonly WorkingDir?: string;
  readonly User?: string;
  readonly Labels?: Readonly<Record<string, string>>;
  readonly ExposedPorts?: Readonly<Record<string, Record<string, never>>>;
  readonly Volumes?: Readonly<Record<string, Record<string, never>>>;
  readonly StopSignal?: string;
}

export interface RootfsImportOptions {
  /** The image's name (normalised: `app` becomes `docker.io/library/app:latest`). */
  readonly ref: string;
  readonly config?: ImageRunConfig;
  /** The history entry's comment (default "Imported from tarball"). */
  readonly message?: string;
  readonly snapshotter?: string;
  /** The platform the config declares; default: the host's. */
  readonly platform?: string | ImagePlatform;
}

interface Stored {
  readonly digest: string;
  readonly size: number;
}

interface Target {
  readonly names: string[];
  readonly desc: ImageDescriptor;
}

const BLOB_PATH = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/;
const HEX_LENGTH: Readonly<Record<string, number>> = { sha256: 64, sha512: 128 };
const LEGACY_CONFIG = /^([a-f0-9]{64})\.json$/;
const META_FILES = new Set(['index.json', 'manifest.json', 'oci-layout', 'repositories']);
const TAG_RE = /^[\w][\w.-]{0,127}$/;

/** A member's path, normalised; `..` and absolute paths are refused. */
function memberPath(raw: string, what = 'member'): string {
  if (raw.startsWith('/')) throw invalid(`archive ${what} ${JSON.stringify(raw)}: absolute paths are not allowed`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw invalid(`archive ${what} ${JSON.stringify(raw)}: ".." is not allowed in a member path`);
  return parts.join('/');
}

async function collect(body: AsyncIterable<Buffer>, size: number, path: string): Promise<Buffer> {
  if (size > MAX_META_BYTES) throw invalid(`archive member ${path}: ${size} bytes, more than the ${MAX_META_BYTES} allowed`);
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts);
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw invalid(`archive ${what}: not JSON: ${e instanceof Error ? e.message : String(e)}`, e);
  }
}

/**
 * Store a blob whose digest is not known beforehand (a legacy layer.tar, a
 * rootfs tar): the digest is what the bytes hash to.
 */
async function ingest(store: ContentStore, body: AsyncIterable<Uint8Array>, size: number | undefined): Promise<Stored> {
  const ref = `import-${Date.now()}-${randomBytes(8).toString('hex')}`;
  const w = await store.writer({ ref, ...(size === undefined ? {} : { total: size }) });
  let committed = false;
  try {
    for await (const c of body) await w.write(c);
    const got = w.status().offset;
    if (size !== undefined && got !== size) throw failedPrecondition(`ingest ${ref}: ${got} of ${size} bytes`);
    const digest = w.digest();
    committed = true;
    try {
      await w.commit(got, digest);
    } catch (e) {
      if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
    }
    return { digest, size: got };
  } finally {
    if (!committed) {
      await w.close();
      await store.abort(ref).catch(() => undefined);
    }
  }
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

async function putBytes(store: ContentStore, bytes: Buffer, mediaType: string): Promise<ImageDescriptor> {
  const desc = { mediaType, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length };
  await writeBlob(store, once(bytes), desc);
  return desc;
}

/** What the read pass found. */
class ArchiveContents {
  /** Regular members stored as blobs, by normalised path. */
  readonly files = new Map<string, Stored>();
  /** Symbolic and hard links between members, by normalised path. */
  readonly links = new Map<string, string>();
  readonly meta = new Map<string, Buffer>();

  /** The blob a member path names, following links; a missing member is FailedPrecondition. */
  member(raw: string, what: string): Stored {
    let path = memberPath(raw, `${what} path`);
    for (let hops = 0; hops < 16; hops++) {
      const f = this.files.get(path);
      if (f !== undefined) return f;
      const next = this.links.get(path);
      if (next === undefined) break;
      path = next;
    }
    throw failedPrecondition(`archive: ${what} is ${JSON.stringify(raw)}, which the archive does not hold`);
  }
}

async function readArchive(store: ContentStore, input: AsyncIterable<Uint8Array>): Promise<ArchiveContents> {
  const out = new ArchiveContents();
  for await (const entry of readTar(input)) {
    const path = memberPath(entry.path);
    if (entry.type === 'symlink' || entry.type === 'hardlink') {
      const target = entry.type === 'hardlink' ? entry.linkpath : posix.join(posix.dirname(path), entry.linkpath);
      out.links.set(path, memberPath(target, `link target of ${path}:`));
      continue;
    }
    if (entry.type !== 'file' || path === '') continue;
    const blob = BLOB_PATH.exec(path);
    const legacyConfig = LEGACY_CONFIG.exec(path);
    if (blob !== null) {
      const [, alg = '', hex = ''] = blob;
      if (hex.length !== HEX_LENGTH[alg]) throw invalid(`archive member ${path}: not a ${alg} digest`);
      const digest = `${alg}:${hex}`;
      await writeBlob(store, entry.body, { digest, size: entry.size });
      out.files.set(path, { digest, size: entry.size });
    } else if (META_FILES.has(path)) {
      out.meta.set(path, await collect(entry.body, entry.size, path));
    } else if (legacyConfig !== null) {
      const digest = `sha256:${legacyConfig[1] ?? ''}`;
      await writeBlob(store, entry.body, { digest, size: entry.size });
      out.files.set(path, { digest, size: entry.size });
    } else if (path.endsWith('/layer.tar')) {
      out.files.set(path, await ingest(store, entry.body, entry.size));
    }
    // Anything else (<id>/json, <id>/VERSION) is not needed.
  }
  return out;
}

/** An image name from a full reference, normalised; invalid names fail. */
function normalName(s: string, what: string): string {
  try {
    return formatReference(parseDockerReference(s));
  } catch (e) {
    throw invalid(`archive: ${what} ${JSON.stringify(s)} is not an image name: ${e instanceof Error ? e.message : String(e)}`, e);
  }
}

/** The names index.json gives a descriptor. */
function indexNames(d: ImageDescriptor, baseName: string | undefined): string[] {
  const full = d.annotations?.[ANNOTATION_IMAGE_NAME];
  if (full !== undefined && full !== '') return [full];
  const ref = d.annotations?.[ANNOTATION_REF_NAME];
  if (ref === undefined || ref === '') return [];
  if (TAG_RE.test(ref)) {
    return baseName === undefined ? [] : [formatReference(withTag(parseDockerReference(baseName), ref))];
  }
  return [normalName(ref, 'ref.name')];
}

/** The media type of a layer blob in a Docker archive, from its first bytes. */
async function dockerLayerType(store: ContentStore, digest: string): Promise<string> {
  const r = await store.reader(digest);
  try {
    switch (detectCompression(await r.readAt(0, Math.min(6, r.size)))) {
      case 'gzip': return MediaType.DockerLayerGzip;
      case 'zstd': return MediaType.OciLayerZstd;
      case 'none': return DOCKER_LAYER_TAR;
    }
  } finally {
    await r.close();
  }
}

interface DockerEntry {
  readonly Config: string;
  readonly RepoTags: readonly string[];
  readonly Layers: readonly string[];
}

function parseDockerManifest(bytes: Buffer): DockerEntry[] {
  const v = parseJson(bytes, 'manifest.json');
  if (!Array.isArray(v)) throw invalid('archive manifest.json: must be a list');
  return v.map((e: unknown, i) => {
    const o = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>;
    const cfg = o['Config'];
    const tags = o['RepoTags'] ?? [];
    const layers = o['Layers'];
    if (typeof cfg !== 'string') throw invalid(`archive manifest.json[${i}].Config: must be a path`);
    if (!Array.isArray(tags) || !tags.every((t): t is string => typeof t === 'string')) throw invalid(`archive manifest.json[${i}].RepoTags: must be a list of names`);
    if (!Array.isArray(layers) || !layers.every((t): t is string => typeof t === 'string')) throw invalid(`archive manifest.json[${i}].Layers: must be a list of paths`);
    return { Config: cfg, RepoTags: tags, Layers: layers };
  });
}

/** The images of an archive: from index.json, manifest.json, or both (Docker 25+). */
async function targetsOf(store: ContentStore, a: ArchiveContents, baseName: string | undefined): Promise<Target[]> {
  const indexBytes = a.meta.get('index.json');
  const dockerBytes = a.meta.get('manifest.json');
  if (indexBytes === undefined && dockerBytes === undefined) {
    throw invalid('archive: neither index.json nor manifest.json: not an image archive');
  }
  const layout = a.meta.get('oci-layout');
  if (layout !== undefined) {
    const v = parseJson(layout, 'oci-layout') as { imageLayoutVersion?: unknown };
    if (typeof v.imageLayoutVersion !== 'string') throw invalid('archive oci-layout: no imageLayoutVersion');
  }
  const targets: Target[] = [];
  const configOf = new Map<string, Target>();
  if (indexBytes !== undefined) {
    const index = parseIndex(indexBytes, 'archive index.json');
    for (const [i, d] of index.manifests.entries()) {
      const desc = { mediaType: d.mediaType, digest: d.digest, size: d.size, ...(d.annotations === undefined ? {} : { annotations: d.annotations }) };
      const t: Target = { names: indexNames(d, baseName), desc };
      targets.push(t);
      if (isManifestType(d.mediaType) && a.files.has(`blobs/${d.digest.replace(':', '/')}`)) {
        const m = parseManifest(await readBlob(store, d.digest), `archive index.json manifests[${i}]`);
        configOf.set(m.config.digest, t);
      }
    }
  }
  if (dockerBytes !== undefined) {
    for (const [i, e] of parseDockerManifest(dockerBytes).entries()) {
      const names = e.RepoTags.map((t) => normalName(t, `manifest.json[${i}].RepoTags`));
      const cfg = a.member(e.Config, `manifest.json[${i}].Config`);
      const known = configOf.get(cfg.digest);
      if (known !== undefined) {
        for (const n of names) if (!known.names.includes(n)) known.names.push(n);
        continue;
      }
      // A legacy archive: the manifest is made from the config and the layer files.
      const layers: ImageDescriptor[] = [];
      for (const [j, p] of e.Layers.entries()) {
        const l = a.member(p, `manifest.json[${i}].Layers[${j}]`);
        layers.push({ mediaType: await dockerLayerType(store, l.digest), digest: l.digest, size: l.size });
      }
      const manifest = {
        schemaVersion: 2,
        mediaType: MediaType.DockerManifest,
        config: { mediaType: MediaType.DockerConfig, digest: cfg.digest, size: cfg.size },
        layers,
      };
      const desc = await putBytes(store, Buffer.from(JSON.stringify(manifest)), MediaType.DockerManifest);
      targets.push({ names, desc });
    }
  }
  return targets;
}

/** A blob a target needs: in the store (from the archive or from before) with the descriptor's size. */
async function need(store: ContentStore, d: ImageDescriptor, what: string): Promise<ContentInfo> {
  let info: ContentInfo;
  try {
    info = await store.info(d.digest);
  } catch (e) {
    if (isKind(e, ErrorKind.NotFound)) throw failedPrecondition(`archive: ${what} ${d.digest} is not in the archive`, e);
    throw e;
  }
  if (info.size !== d.size) throw failedPrecondition(`archive: ${what} ${d.digest} has ${info.size} bytes, its descriptor says ${d.size}`);
  return info;
}

interface Prepared {
  readonly target: Target;
  readonly index?: { readonly digest: string; readonly manifests: readonly ImageDescriptor[] };
  readonly manifestDigest: string;
  readonly manifest: ImageManifest;
  readonly diffIds: readonly string[];
}

async function prepare(store: ContentStore, t: Target, want: ImagePlatform, lease: ImageLease): Promise<Prepared> {
  const what = `image ${t.names[0] ?? t.desc.digest}`;
  const hold = async (d: ImageDescriptor, role: string): Promise<void> => {
    await need(store, d, `${what}: ${role}`);
    lease.add('content', d.digest);
  };
  let desc = t.desc;
  let index: Prepared['index'];
  if (isIndexType(desc.mediaType)) {
    await hold(desc, 'index');
    const x = parseIndex(await readBlob(store, desc.digest), `${what}: index ${desc.digest}`);
    const chosen = selectPlatform(x.manifests, want);
    if (chosen === undefined) throw failedPrecondition(`${what}: its index has no manifest for ${want.os}/${want.architecture}`);
    index = { digest: desc.digest, manifests: x.manifests };
    desc = chosen;
  }
  if (!isManifestType(desc.mediaType)) throw invalid(`${what}: media type ${desc.mediaType} is not a manifest or an index`);
  await hold(desc, 'manifest');
  const manifest = parseManifest(await readBlob(store, desc.digest), `${what}: manifest ${desc.digest}`);
  await hold(manifest.config, 'config');
  for (const [i, l] of manifest.layers.entries()) await hold(l, `layer ${i}`);
  const diffIds = diffIdsOf(await readBlob(store, manifest.config.digest), manifest.config.digest);
  if (diffIds.length !== manifest.layers.length) {
    throw invalid(`${what}: the manifest has ${manifest.layers.length} layers but the config's rootfs.diff_ids has ${diffIds.length}`);
  }
  return { target: t, ...(index === undefined ? {} : { index }), manifestDigest: desc.digest, manifest, diffIds };
}

/** Unpack, label and record prepared images; records are created only once every unpack succeeded. */
async function finish(
  deps: PullDeps, ns: string, store: ContentStore, sn: NamespacedSnapshotter | undefined, lease: ImageLease, images: readonly Prepared[],
): Promise<ImportedImage[]> {
  const tops = new Map<Prepared, string>();
  if (sn !== undefined) {
    for (const p of images) tops.set(p, await unpackLayers(sn, store, p.manifest.layers, p.diffIds, lease));
  }
  for (const p of images) {
    if (p.index !== undefined) await labelBlob(store, p.index.digest, indexRefs(p.index.manifests));
    await labelBlob(store, p.manifestDigest, manifestRefs(p.manifest));
    const top = tops.get(p);
    if (sn !== undefined && top !== undefined) await labelBlob(store, p.manifest.config.digest, { [`${GC_REF_SNAPSHOT}${sn.name}`]: top });
  }
  const out: ImportedImage[] = [];
  for (const p of images) {
    const names = p.target.names.length > 0 ? p.target.names : [`import@${p.target.desc.digest}`];
    const top = tops.get(p);
    for (const name of names) {
      const rec = recordImage(deps.images, ns, name, p.target.desc);
      out.push({ name: rec.name, target: p.target.desc, ...(top === undefined ? {} : { chainId: top }) });
    }
  }
  return out;
}

function platformOf(p: string | ImagePlatform | undefined): ImagePlatform {
  return p === undefined ? hostPlatform() : typeof p === 'string' ? parsePlatformSpec(p) : p;
}

/**
 * Import a `docker save` archive (legacy or Docker 25+'s combined form) or
 * an OCI image layout tar into namespace `ns`. Images without a name
 * (no RepoTags, no usable ref.name) are recorded as `import@<digest>`.
 */
export async function importImages(
  deps: PullDeps, ns: string, input: AsyncIterable<Uint8Array>, opts: ImportOptions = {},
): Promise<ImportedImage[]> {
  const want = platformOf(opts.platform);
  if (opts.baseName !== undefined) normalName(opts.baseName, 'base name');
  const sn = opts.unpack === false ? undefined : snapshotterFor(deps.snapshotters, opts.snapshotter ?? DEFAULT_SNAPSHOTTER, ns);
  const lease = new ImageLease(deps.gc, ns, 'import');
  try {
    const store = deps.content.namespace(ns, lease.id);
    const contents = await readArchive(store, input);
    const targets = await targetsOf(store, contents, opts.baseName);
    if (targets.length === 0) throw invalid('archive: it names no image');
    const prepared: Prepared[] = [];
    for (const t of targets) prepared.push(await prepare(store, t, want, lease));
    return await finish(deps, ns, store, sn, lease, prepared);
  } finally {
    lease.end();
  }
}

/**
 * `docker import`: a plain rootfs tar (uncompressed, gzip or zstd; stored
 * as it comes) becomes a one-layer image named `opts.ref`, unpacked.
 */
export async function importRootfs(
  deps: PullDeps, ns: string, input: AsyncIterable<Uint8Array>, opts: RootfsImportOptions,
): Promise<ImportedImage> {
  const name = normalName(opts.ref, 'ref');
  const platform = platformOf(opts.platform);
  const sn = snapshotterFor(deps.snapshotters, opts.snapshotter ?? DEFAULT_SNAPSHOTTER, ns);
  const lease = new ImageLease(deps.gc, ns, 'import');
  try {
    const store = deps.content.namespace(ns, lease.id);
    const layer = await ingest(store, input, undefined);
    lease.add('content', layer.digest);
    if (layer.size === 0) throw invalid('import: the rootfs tar is empty');
    // The diff ID: the digest of the uncompressed tar.
    const meter = new Meter();
    const reader = await store.reader(layer.digest);
    let compression;
    try {
      compression = detectCompression(await reader.readAt(0, Math.min(6, reader.size)));
      for await (const _ of meter.measure(decompress(reader.stream()))) { /* hashing only */ }
    } finally {
      await reader.close();
    }
    const mediaType = compression === 'gzip' ? MediaType.OciLayerGzip : compression === 'zstd' ? MediaType.OciLayerZstd : MediaType.OciLayer;
    const created = new Date().toISOString();
    const config = {
      created,
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant === undefined ? {} : { variant: platform.variant }),
      config: { ...(opts.config ?? {}) },
      rootfs: { type: 'layers', diff_ids: [meter.digest()] },
      history: [{ created, comment: opts.message ?? 'Imported from tarball' }],
    };
    const configDesc = await putBytes(store, Buffer.from(JSON.stringify(config)), MediaType.OciConfig);
    const manifest = {
      schemaVersion: 2 as const,
      mediaType: MediaType.OciManifest,
      config: configDesc,
      layers: [{ mediaType, digest: layer.digest, size: layer.size }],
    };
    const desc = await putBytes(store, Buffer.from(JSON.stringify(manifest)), MediaType.OciManifest);
    const target = { names: [name], desc };
    const [img] = await finish(deps, ns, store, sn, lease, [await prepare(store, target, platform, lease)]);
    if (img === undefined) throw invalid('import: no image recorded');
    return img;
  } finally {
    lease.end();
  }
}
