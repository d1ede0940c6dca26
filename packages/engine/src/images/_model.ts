/**
 * How an image record becomes a Docker image: the record's target (an index
 * or a manifest) read through the Content service, the manifest for the
 * engine's platform chosen from an index, the config parsed, the chain IDs
 * computed. Blobs are immutable, so what a target resolves to is cached by
 * its digest.
 */
import { invalid } from '@berth/base';
import {
  chainIds, isIndexType, isManifestType, parseIndex, parseManifest, platformMatches, selectPlatform,
} from '@berth/images';
import type { ImageDescriptor, ImagePlatform } from '@berth/images';
import type { ContainerdClient } from '@berth/supervisor';
import { contentExists, readContent } from './_supervisor.js';

export interface HistoryEntry {
  readonly created?: string;
  readonly created_by?: string;
  readonly author?: string;
  readonly comment?: string;
  readonly empty_layer?: boolean;
}

/** The OCI image config, the parts the engine reads. */
export interface ParsedConfig {
  readonly created?: string;
  readonly author?: string;
  readonly architecture: string;
  readonly os: string;
  readonly variant?: string;
  readonly comment?: string;
  readonly dockerVersion?: string;
  /** The `config` section: Cmd, Env, Entrypoint, Labels… */
  readonly config: Record<string, unknown>;
  readonly diffIds: readonly string[];
  readonly history: readonly HistoryEntry[];
}

export interface ImageDetails {
  /** The record's target. */
  readonly target: ImageDescriptor;
  /** The manifest chosen (the target itself when it is one). */
  readonly manifest: ImageDescriptor;
  readonly layers: readonly ImageDescriptor[];
  readonly configDesc: ImageDescriptor;
  readonly config: ParsedConfig;
  /** result[i] names layers 0..i. */
  readonly chainIds: readonly string[];
}

const obj = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : undefined;
const optStr = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export function parseConfig(bytes: Buffer, digest: string): ParsedConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw invalid(`image config ${digest}: not JSON: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const o = obj(raw);
  if (o === undefined) throw invalid(`image config ${digest}: not a JSON object`);
  const rootfs = obj(o['rootfs']);
  const ids = rootfs?.['diff_ids'];
  if (!Array.isArray(ids) || !ids.every((d): d is string => typeof d === 'string')) {
    throw invalid(`image config ${digest}: rootfs.diff_ids must be a list of digests`);
  }
  const history: HistoryEntry[] = [];
  if (Array.isArray(o['history'])) {
    for (const h of o['history']) {
      const e = obj(h);
      if (e === undefined) continue;
      const entry: { -readonly [K in keyof HistoryEntry]: HistoryEntry[K] } = {};
      const created = optStr(e['created']);
      if (created !== undefined) entry.created = created;
      const by = optStr(e['created_by']);
      if (by !== undefined) entry.created_by = by;
      const author = optStr(e['author']);
      if (author !== undefined) entry.author = author;
      const comment = optStr(e['comment']);
      if (comment !== undefined) entry.comment = comment;
      if (e['empty_layer'] === true) entry.empty_layer = true;
      history.push(entry);
    }
  }
  const out: { -readonly [K in keyof ParsedConfig]: ParsedConfig[K] } = {
    architecture: optStr(o['architecture']) ?? '',
    os: optStr(o['os']) ?? '',
    config: obj(o['config']) ?? {},
    diffIds: ids,
    history,
  };
  const created = optStr(o['created']);
  if (created !== undefined) out.created = created;
  const author = optStr(o['author']);
  if (author !== undefined) out.author = author;
  const variant = optStr(o['variant']);
  if (variant !== undefined && variant !== '') out.variant = variant;
  const comment = optStr(o['comment']);
  if (comment !== undefined) out.comment = comment;
  const dv = optStr(o['docker_version']);
  if (dv !== undefined) out.dockerVersion = dv;
  return out;
}

/** Resolves targets to image details, cached by target digest. */
export class ImageReader {
  private readonly cache = new Map<string, Promise<ImageDetails>>();

  constructor(private readonly client: ContainerdClient, private readonly platform: ImagePlatform) {}

  details(target: ImageDescriptor): Promise<ImageDetails> {
    let p = this.cache.get(target.digest);
    if (p === undefined) {
      p = this.load(target);
      this.cache.set(target.digest, p);
      p.catch(() => this.cache.delete(target.digest));
    }
    return p;
  }

  /** Forget a target (its index may have gained a manifest). */
  forget(digest: string): void {
    this.cache.delete(digest);
  }

  private async load(target: ImageDescriptor): Promise<ImageDetails> {
    let manifest = target;
    if (isIndexType(target.mediaType)) {
      const index = parseIndex(await readContent(this.client, target.digest), `index ${target.digest}`);
      const candidates: ImageDescriptor[] = [];
      for (const m of index.manifests) {
        if (m.platform === undefined || !platformMatches(this.platform, m.platform)) continue;
        if (await contentExists(this.client, m.digest)) candidates.push(m);
      }
      const chosen = selectPlatform(candidates, this.platform);
      if (chosen === undefined) {
        throw invalid(`image index ${target.digest} has no manifest for ${this.platform.os}/${this.platform.architecture} in the content store`);
      }
      manifest = chosen;
    } else if (!isManifestType(target.mediaType)) {
      throw invalid(`target ${target.digest}: media type ${target.mediaType} is not an image manifest or index`);
    }
    const m = parseManifest(await readContent(this.client, manifest.digest), `manifest ${manifest.digest}`);
    const config = parseConfig(await readContent(this.client, m.config.digest), m.config.digest);
    if (config.diffIds.length !== m.layers.length) {
      throw invalid(`image ${m.config.digest}: the manifest has ${m.layers.length} layers, the config ${config.diffIds.length} diff IDs`);
    }
    return {
      target,
      manifest,
      layers: m.layers,
      configDesc: m.config,
      config,
      chainIds: config.diffIds.length === 0 ? [] : chainIds(config.diffIds),
    };
  }
}
