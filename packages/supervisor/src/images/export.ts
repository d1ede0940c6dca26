/**
 * Export: images of a namespace as one tar, the OCI image layout
 * (oci-layout, index.json, blobs/sha256/...) and, for the docker format,
 * Docker's manifest.json and repositories beside it (the combined form
 * Docker 25+ writes, which both `docker load` and OCI tools read).
 *
 * An image whose target is an index is exported as the one manifest of the
 * requested platform (the host's by default): an index pulled for one
 * platform has only that platform's blobs.
 *
 * Every blob is checked to be present before the first byte is written,
 * then streamed from the content store into the tar. The output is the same
 * for the same images: entries in name order, fixed times and owners.
 */
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { failedPrecondition, invalid } from '@berth/base';
import {
  MediaType, TarWriter, familiarName, familiarString, hostPlatform, isIndexType, isManifestType, parseDockerReference,
  parseIndex, parseManifest, parsePlatformSpec, readBlob, selectPlatform,
} from '@berth/images';
import type { ContentStore, ImageDescriptor, ImagePlatform, ImageReference, TarWriteResult } from '@berth/images';
import type { PullDeps } from './_unpack.js';

export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
export const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name';

export interface ExportOptions {
  /** 'oci': the OCI image layout; 'docker': the layout plus manifest.json and repositories. */
  readonly format: 'docker' | 'oci';
  /** Which manifest of an index to export: `os/arch[/variant]` or a platform; default: the host's. */
  readonly platform?: string | ImagePlatform;
}

export interface ExportedImage {
  readonly name: string;
  /** The manifest written for it. */
  readonly manifest: ImageDescriptor;
}

export interface ExportResult extends TarWriteResult {
  readonly images: readonly ExportedImage[];
}

interface Resolved {
  readonly name: string;
  readonly ref: ImageReference | undefined;
  readonly manifest: ImageDescriptor;
  readonly config: ImageDescriptor;
  readonly layers: readonly ImageDescriptor[];
  readonly platform: ImagePlatform | undefined;
}

function referenceOf(name: string): ImageReference | undefined {
  try {
    return parseDockerReference(name);
  } catch {
    return undefined;
  }
}

/** The platform a config declares, when it declares one. */
function configPlatform(bytes: Buffer): ImagePlatform | undefined {
  try {
    const c = JSON.parse(bytes.toString('utf8')) as { os?: unknown; architecture?: unknown; variant?: unknown };
    if (typeof c.os !== 'string' || typeof c.architecture !== 'string') return undefined;
    return typeof c.variant === 'string' && c.variant !== ''
      ? { os: c.os, architecture: c.architecture, variant: c.variant }
      : { os: c.os, architecture: c.architecture };
  } catch {
    return undefined;
  }
}

async function present(store: ContentStore, d: ImageDescriptor, what: string): Promise<void> {
  let size: number;
  try {
    size = (await store.info(d.digest)).size;
  } catch (e) {
    throw failedPrecondition(`export ${what}: blob ${d.digest} is not in the content store`, e);
  }
  if (size !== d.size) throw failedPrecondition(`export ${what}: blob ${d.digest} is stored with ${size} bytes, the descriptor says ${d.size}`);
}

async function resolveImage(deps: PullDeps, store: ContentStore, ns: string, name: string, want: ImagePlatform): Promise<Resolved> {
  const rec = deps.images.get(ns, name);
  let desc: ImageDescriptor = { mediaType: rec.target.mediaType, digest: rec.target.digest, size: rec.target.size };
  if (isIndexType(desc.mediaType)) {
    await present(store, desc, `image ${name}`);
    const index = parseIndex(await readBlob(store, desc.digest), `image ${name}: index ${desc.digest}`);
    const chosen = selectPlatform(index.manifests, want);
    if (chosen === undefined) throw failedPrecondition(`export image ${name}: its index has no manifest for ${want.os}/${want.architecture}`);
    desc = { mediaType: chosen.mediaType, digest: chosen.digest, size: chosen.size };
  }
  if (!isManifestType(desc.mediaType)) throw invalid(`export image ${name}: target media type ${desc.mediaType} is not a manifest or an index`);
  await present(store, desc, `image ${name}`);
  const m = parseManifest(await readBlob(store, desc.digest), `image ${name}: manifest ${desc.digest}`);
  await present(store, m.config, `image ${name} config`);
  for (const [i, l] of m.layers.entries()) await present(store, l, `image ${name} layer ${i}`);
  const platform = configPlatform(await readBlob(store, m.config.digest));
  return { name, ref: referenceOf(name), manifest: desc, config: m.config, layers: m.layers, platform };
}

const hexOf = (digest: string): string => digest.slice(digest.indexOf(':') + 1);
const blobPath = (digest: string): string => `blobs/${digest.replace(':', '/')}`;

/** The OCI ref.name of an image name: its tag, as containerd writes it; the whole name when it has none. */
function refName(r: Resolved): string {
  return r.ref?.tag ?? r.name;
}

function json(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v));
}

/** Write the images `names` of namespace `ns` to `out` as one tar; `out` is ended when the tar is complete. */
export async function exportImages(
  deps: PullDeps, ns: string, names: readonly string[], out: Writable, opts: ExportOptions,
): Promise<ExportResult> {
  if (names.length === 0) throw invalid('export: no images named');
  if (opts.format !== 'docker' && opts.format !== 'oci') throw invalid(`export: format ${JSON.stringify(opts.format)} is not docker or oci`);
  const want = opts.platform === undefined ? hostPlatform() : typeof opts.platform === 'string' ? parsePlatformSpec(opts.platform) : opts.platform;
  const store = deps.content.namespace(ns);
  const images: Resolved[] = [];
  for (const name of names) images.push(await resolveImage(deps, store, ns, name, want));

  const blobs = new Map<string, number>();
  for (const r of images) for (const d of [r.manifest, r.config, ...r.layers]) blobs.set(d.digest, d.size);

  const index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: images.map((r) => ({
      mediaType: r.manifest.mediaType,
      digest: r.manifest.digest,
      size: r.manifest.size,
      annotations: { [ANNOTATION_IMAGE_NAME]: r.name, [ANNOTATION_REF_NAME]: refName(r) },
      ...(r.platform === undefined ? {} : { platform: r.platform }),
    })),
  };
  const meta = new Map<string, Buffer>([
    ['index.json', json(index)],
    ['oci-layout', json({ imageLayoutVersion: '1.0.0' })],
  ]);
  if (opts.format === 'docker') {
    // One entry per manifest, with every name that points at it.
    const entries = new Map<string, { Config: string; RepoTags: string[]; Layers: string[] }>();
    const repositories: Record<string, Record<string, string>> = {};
    for (const r of images) {
      let e = entries.get(r.manifest.digest);
      if (e === undefined) {
        e = { Config: blobPath(r.config.digest), RepoTags: [], Layers: r.layers.map((l) => blobPath(l.digest)) };
        entries.set(r.manifest.digest, e);
      }
      const top = r.layers[r.layers.length - 1];
      if (r.ref?.tag !== undefined && r.ref.digest === undefined) {
        const tagged = familiarString(r.ref);
        if (!e.RepoTags.includes(tagged)) e.RepoTags.push(tagged);
        if (top !== undefined) (repositories[familiarName(r.ref)] ??= {})[r.ref.tag] = hexOf(top.digest);
      }
    }
    meta.set('manifest.json', json([...entries.values()]));
    meta.set('repositories', json(repositories));
  }

  const tar = new TarWriter(out);
  const common = { mtime: 0, uid: 0, gid: 0 };
  await tar.add({ type: 'dir', path: 'blobs/', mode: 0o755, ...common });
  for (const alg of [...new Set([...blobs.keys()].map((d) => d.slice(0, d.indexOf(':'))))].sort()) {
    await tar.add({ type: 'dir', path: `blobs/${alg}/`, mode: 0o755, ...common });
  }
  for (const digest of [...blobs.keys()].sort()) {
    const reader = await store.reader(digest);
    try {
      await tar.add({ type: 'file', path: blobPath(digest), mode: 0o644, size: reader.size, ...common }, reader.stream());
    } finally {
      await reader.close();
    }
  }
  for (const name of [...meta.keys()].sort()) {
    const body = meta.get(name) ?? Buffer.alloc(0);
    await tar.add({ type: 'file', path: name, mode: 0o644, size: body.length, ...common }, body);
  }
  const result = await tar.finish();
  out.end();
  await finished(out);
  return { ...result, images: images.map((r) => ({ name: r.name, manifest: r.manifest })) };
}
