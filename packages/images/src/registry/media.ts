// Media types, descriptors and manifests of the OCI image spec and Docker's
// schema 2, parsed from the wire and checked before use.
import { invalid } from '@berth/base';
import { validateDigest } from './reference.js';

export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** What we accept for a manifest GET/HEAD, most specific first. */
export const MANIFEST_ACCEPT = [
  MediaType.OciIndex,
  MediaType.DockerManifestList,
  MediaType.OciManifest,
  MediaType.DockerManifest,
].join(', ');

export function isIndexType(mt: string): boolean {
  return mt === MediaType.OciIndex || mt === MediaType.DockerManifestList;
}
export function isManifestType(mt: string): boolean {
  return mt === MediaType.OciManifest || mt === MediaType.DockerManifest;
}

export interface ImagePlatform {
  readonly architecture: string;
  readonly os: string;
  readonly variant?: string;
  readonly 'os.version'?: string;
  readonly 'os.features'?: readonly string[];
}

/** An OCI content descriptor. */
export interface ImageDescriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly urls?: readonly string[];
  readonly annotations?: Readonly<Record<string, string>>;
  readonly platform?: ImagePlatform;
  readonly artifactType?: string;
}

export interface ImageManifest {
  readonly schemaVersion: 2;
  readonly mediaType?: string;
  readonly config: ImageDescriptor;
  readonly layers: readonly ImageDescriptor[];
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface ImageIndex {
  readonly schemaVersion: 2;
  readonly mediaType?: string;
  readonly manifests: readonly ImageDescriptor[];
  readonly annotations?: Readonly<Record<string, string>>;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringMap(v: unknown, where: string): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v)) throw invalid(`${where}: must be an object of strings`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw invalid(`${where}.${k}: must be a string`);
    out[k] = x;
  }
  return out;
}

function parsePlatform(v: unknown, where: string): ImagePlatform {
  if (!isObject(v)) throw invalid(`${where}: must be an object`);
  const { architecture, os, variant } = v;
  if (typeof architecture !== 'string' || typeof os !== 'string') {
    throw invalid(`${where}: architecture and os must be strings`);
  }
  const p: { architecture: string; os: string; variant?: string; 'os.version'?: string; 'os.features'?: string[] } = {
    architecture,
    os,
  };
  if (typeof variant === 'string' && variant !== '') p.variant = variant;
  const ver = v['os.version'];
  if (typeof ver === 'string') p['os.version'] = ver;
  const feats = v['os.features'];
  if (Array.isArray(feats) && feats.every((f): f is string => typeof f === 'string')) p['os.features'] = feats;
  return p;
}

/** Validates a descriptor from the wire: media type, digest, size. */
export function parseDescriptor(v: unknown, where: string): ImageDescriptor {
  if (!isObject(v)) throw invalid(`${where}: descriptor must be an object`);
  const { mediaType, digest, size } = v;
  if (typeof mediaType !== 'string' || mediaType === '') throw invalid(`${where}.mediaType: must be a non-empty string`);
  if (typeof digest !== 'string') throw invalid(`${where}.digest: must be a string`);
  try {
    validateDigest(digest);
  } catch (err) {
    throw invalid(`${where}.digest: ${(err as Error).message}`, err);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size: must be a non-negative integer`);
  }
  const d: {
    mediaType: string;
    digest: string;
    size: number;
    urls?: string[];
    annotations?: Record<string, string>;
    platform?: ImagePlatform;
    artifactType?: string;
  } = { mediaType, digest, size };
  if (Array.isArray(v['urls']) && v['urls'].every((u): u is string => typeof u === 'string')) d.urls = v['urls'];
  const ann = stringMap(v['annotations'], `${where}.annotations`);
  if (ann !== undefined) d.annotations = ann;
  if (v['platform'] !== undefined) d.platform = parsePlatform(v['platform'], `${where}.platform`);
  if (typeof v['artifactType'] === 'string') d.artifactType = v['artifactType'];
  return d;
}

function parseJson(bytes: Uint8Array, what: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw invalid(`${what}: not valid JSON: ${(err as Error).message}`, err);
  }
  if (!isObject(v)) throw invalid(`${what}: must be a JSON object`);
  if (v['schemaVersion'] !== 2) throw invalid(`${what}: unsupported schemaVersion ${JSON.stringify(v['schemaVersion'])}`);
  return v;
}

/** Parses an image manifest (OCI or Docker schema 2). */
export function parseManifest(bytes: Uint8Array, what = 'manifest'): ImageManifest {
  const v = parseJson(bytes, what);
  const layers = v['layers'];
  if (!Array.isArray(layers)) throw invalid(`${what}.layers: must be an array`);
  const m: { schemaVersion: 2; mediaType?: string; config: ImageDescriptor; layers: ImageDescriptor[]; annotations?: Record<string, string> } = {
    schemaVersion: 2,
    config: parseDescriptor(v['config'], `${what}.config`),
    layers: layers.map((l, i) => parseDescriptor(l, `${what}.layers[${i}]`)),
  };
  if (typeof v['mediaType'] === 'string') m.mediaType = v['mediaType'];
  const ann = stringMap(v['annotations'], `${what}.annotations`);
  if (ann !== undefined) m.annotations = ann;
  return m;
}

/** Parses an image index (OCI or Docker manifest list). */
export function parseIndex(bytes: Uint8Array, what = 'index'): ImageIndex {
  const v = parseJson(bytes, what);
  const manifests = v['manifests'];
  if (!Array.isArray(manifests)) throw invalid(`${what}.manifests: must be an array`);
  const x: { schemaVersion: 2; mediaType?: string; manifests: ImageDescriptor[]; annotations?: Record<string, string> } = {
    schemaVersion: 2,
    manifests: manifests.map((d, i) => parseDescriptor(d, `${what}.manifests[${i}]`)),
  };
  if (typeof v['mediaType'] === 'string') x.mediaType = v['mediaType'];
  const ann = stringMap(v['annotations'], `${what}.annotations`);
  if (ann !== undefined) x.annotations = ann;
  return x;
}

/**
 * The media type of a manifest document: from its `mediaType` field, else
 * from its shape (`manifests` → OCI index, `config` → OCI manifest).
 */
export function detectManifestType(bytes: Uint8Array, fallback?: string): string {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return fallback ?? 'application/octet-stream';
  }
  if (isObject(v)) {
    if (typeof v['mediaType'] === 'string' && v['mediaType'] !== '') return v['mediaType'];
    if (Array.isArray(v['manifests'])) return MediaType.OciIndex;
    if (isObject(v['config'])) return MediaType.OciManifest;
  }
  return fallback ?? 'application/octet-stream';
}
