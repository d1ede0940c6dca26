/**
 * The engine's images, kept by the supervisor as containerd keeps them for
 * Docker's containerd image store: a record per name
 * (`docker.io/library/busybox:latest`) pointing at an index or a manifest,
 * blobs in the content store, layers unpacked into the overlayfs
 * snapshotter under their chain IDs. A Docker image is the set of records
 * whose target leads (for this engine's platform) to one config: its ID is
 * the config's digest. An image that loses its last name while something
 * still needs it keeps a `moby-dangling@<digest>` record, as Docker does.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BerthError, ErrorKind, invalid, isKind, notFound } from '@berth/base';
import type { Logger } from '@berth/base';
import {
  MediaType, decompress, familiarName, familiarString, formatPlatform, formatReference, hostPlatform, parsePlatformSpec, parseReference,
  withDefaultTag, withTag,
} from '@berth/images';
import type { ImageDescriptor, ImagePlatform, ImageReference } from '@berth/images';
import { SERVICES, exportArchive, importArchive, transferPull, transferPush } from '@berth/supervisor';
import type { ContainerdClient, Message } from '@berth/supervisor';
import { parseImageConfig } from '../containers/config.js';
import { SNAPSHOTTER } from '../engine.js';
import type { EventBus } from '../events.js';
import { conflict } from '../server/errors.js';
import { boolFilter, checkFilterKeys, globRegExp, labelsMatch, parseTimestamp } from './_filters.js';
import { isInsecure, transferAuth } from './_auth.js';
import type { AuthConfig } from './_auth.js';
import { applyChanges } from './_changes.js';
import { ImageReader } from './_model.js';
import { PullReporter, PushReporter } from './_progress.js';
import type { Emit } from './_progress.js';
import type { ImageDetails } from './_model.js';
import {
  Lease, deleteRecord, descToWire, getRecord, listRecords, putRecord, setContentLabels, writeContent,
} from './_supervisor.js';
import type { ImageRecord } from './_supervisor.js';
import type { ImageResolver, ResolvedImage } from './types.js';

export type { ImageRecord } from './_supervisor.js';
export type { ImageDetails, ParsedConfig, HistoryEntry } from './_model.js';

/** Docker's name for the record that keeps an image without a name. */
export const DANGLING_PREFIX = 'moby-dangling@';
/** On the record of an image a build step made: listed only with `all`. */
export const INTERMEDIATE_LABEL = 'berth.image.intermediate';
const GC_REF_SNAPSHOT = `containerd.io/gc.ref.snapshot.${SNAPSHOTTER}`;
const GC_REF_CONTENT = 'containerd.io/gc.ref.content.';
const ZERO_TIME = '0001-01-01T00:00:00Z';

export interface ImageServiceOptions {
  /** Registries reached over plain HTTP besides the loopback ones, which always are (`--insecure-registry`). */
  readonly insecureRegistries?: readonly string[];
  /** The platform images are chosen for (default: the host's). */
  readonly platform?: ImagePlatform;
  /** Where an imported layer is spooled while its digest is computed (default: the system's temp dir). */
  readonly tempDir?: string;
}

/** Which container, if any, uses an image (by ID): the engine's answer. */
export type ImageUse = (imageId: string) => { containerId: string; running: boolean } | undefined;

/** A local image: the records naming it and what they lead to. */
export interface LocalImage {
  /** The config digest. */
  readonly id: string;
  readonly records: readonly ImageRecord[];
  readonly details: ImageDetails;
}

export interface ImageSummary {
  Id: string;
  ParentId: string;
  RepoTags: string[];
  RepoDigests: string[];
  Created: number;
  Size: number;
  SharedSize: number;
  Labels: Record<string, string>;
  Containers: number;
  VirtualSize?: number;
}

export interface ListOptions {
  /** Intermediate images too (there are none: every image is a final one). */
  readonly all?: boolean;
  readonly filters: ReadonlyMap<string, readonly string[]>;
  /** RepoDigests are always given; kept for the API's parameter. */
  readonly digests?: boolean;
  /** Whether the client's API version is 1.44 or later (VirtualSize omitted). */
  readonly apiVersionAtLeast144?: boolean;
}

export interface HistoryItem {
  Id: string;
  Created: number;
  CreatedBy: string;
  Tags: string[] | null;
  Size: number;
  Comment: string;
}

export type DeleteItem = { Untagged: string } | { Deleted: string };

export interface PruneReport {
  ImagesDeleted: DeleteItem[] | null;
  SpaceReclaimed: number;
}

export interface PullOptions {
  readonly auth: AuthConfig;
  /** `os/arch[/variant]`; default: the engine's. */
  readonly platform?: string;
  readonly signal?: AbortSignal;
}

export interface PushOptions {
  readonly auth: AuthConfig;
  readonly platform?: string;
  readonly signal?: AbortSignal;
}

export interface ImportOptions {
  readonly repo?: string;
  readonly tag?: string;
  /** Dockerfile instructions for the config (`--change`). */
  readonly changes?: readonly string[];
  /** The commit message (default `Imported from <source>`). */
  readonly message?: string;
  /** Where the tar came from (`-`: the request body). */
  readonly source?: string;
  readonly platform?: string;
}

export interface NewImage {
  /** An uncompressed layer tar. */
  readonly layer: Buffer | AsyncIterable<Uint8Array>;
  /** The config's `config` section. */
  readonly runConfig: Readonly<Record<string, unknown>>;
  /** RFC 3339. */
  readonly created: string;
  readonly createdBy?: string;
  readonly comment?: string;
  /** The config's own `comment` (docker import's message). */
  readonly configComment?: string;
  readonly author?: string;
  /** The normalised name; none: an image without a name. */
  readonly name?: string;
  readonly platform?: ImagePlatform;
}

const shortId = (id: string): string => id.replace(/^sha256:/, '').slice(0, 12);
const HEX_PREFIX = /^(?:sha256:)?([a-f0-9]{1,64})$/;

/** A reference parsed, or undefined when it is not one (an ID, garbage). */
function tryParse(ref: string): ImageReference | undefined {
  try {
    return parseReference(ref);
  } catch {
    return undefined;
  }
}

/** `busybox:latest`, `127.0.0.1:5000/x:1`; undefined for dangling and foreign names. */
export function tagOf(name: string): string | undefined {
  if (name.startsWith(DANGLING_PREFIX)) return undefined;
  const r = tryParse(name);
  if (r === undefined || r.tag === undefined || r.digest !== undefined) return undefined;
  return familiarString(r);
}

function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

export class ImageService implements ImageResolver {
  readonly reader: ImageReader;
  readonly platform: ImagePlatform;
  readonly insecureRegistries: readonly string[];
  private readonly tempDir: string;
  private readonly usage = new Map<string, number>();
  private readonly unpacking = new Map<string, Promise<void>>();

  constructor(
    readonly client: ContainerdClient,
    readonly events: EventBus,
    readonly log: Logger,
    opts: ImageServiceOptions = {},
  ) {
    this.platform = opts.platform ?? hostPlatform();
    this.insecureRegistries = opts.insecureRegistries ?? [];
    this.tempDir = opts.tempDir ?? tmpdir();
    this.reader = new ImageReader(client, this.platform);
  }

  // ---------------------------------------------------------------- lookup

  /** Every local image, grouped by ID; records whose content is unreadable are skipped (and logged). */
  async images(): Promise<LocalImage[]> {
    const records = await listRecords(this.client);
    const byId = new Map<string, { records: ImageRecord[]; details: ImageDetails }>();
    await Promise.all(records.map(async (r) => {
      let d: ImageDetails;
      try {
        d = await this.reader.details(r.target);
      } catch (e) {
        this.log.debug('image record skipped', { name: r.name, error: e instanceof Error ? e.message : String(e) });
        return;
      }
      const id = d.configDesc.digest;
      const g = byId.get(id);
      if (g === undefined) byId.set(id, { records: [r], details: d });
      else g.records.push(r);
    }));
    const out: LocalImage[] = [];
    for (const [id, g] of byId) {
      g.records.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      out.push({ id, records: g.records, details: g.details });
    }
    return out;
  }

  /** The image a record names, if its content is readable. */
  private async imageOfRecord(r: ImageRecord): Promise<LocalImage> {
    const d = await this.reader.details(r.target);
    const all = await this.images();
    return all.find((i) => i.id === d.configDesc.digest) ?? { id: d.configDesc.digest, records: [r], details: d };
  }

  /**
   * An image as `docker run` finds it: a full ID, a name (default tag
   * `latest`, docker.io normalised), `name@sha256:…`, or a unique ID prefix.
   */
  async find(ref: string): Promise<{ image: LocalImage; record: ImageRecord | undefined; byId: boolean }> {
    const s = ref.trim();
    const noSuch = (): Error => notFound(`No such image: ${displayRef(s)}`);
    if (s === '') throw noSuch();
    const full = /^sha256:([a-f0-9]{64})$/.exec(s);
    if (full !== null) {
      const img = (await this.images()).find((i) => i.id === s);
      if (img === undefined) throw noSuch();
      return { image: img, record: undefined, byId: true };
    }
    const parsed = tryParse(s);
    if (parsed !== undefined) {
      if (parsed.digest !== undefined) {
        const repo = `${parsed.domain}/${parsed.path}`;
        const exact = await getRecord(this.client, `${repo}@${parsed.digest}`);
        if (exact !== undefined) return { image: await this.imageOfRecord(exact), record: exact, byId: false };
        for (const img of await this.images()) {
          for (const r of img.records) {
            const rr = tryParse(r.name);
            if (rr === undefined || `${rr.domain}/${rr.path}` !== repo) continue;
            if (r.target.digest === parsed.digest || img.details.manifest.digest === parsed.digest) {
              return { image: img, record: r, byId: false };
            }
          }
        }
        throw noSuch();
      }
      const name = formatReference(withDefaultTag(parsed));
      const r = await getRecord(this.client, name);
      if (r !== undefined) {
        try {
          return { image: await this.imageOfRecord(r), record: r, byId: false };
        } catch (e) {
          throw notFound(`No such image: ${displayRef(s)}: ${e instanceof Error ? e.message : String(e)}`, e);
        }
      }
    }
    const hex = HEX_PREFIX.exec(s);
    if (hex !== null) {
      const matches = (await this.images()).filter((i) => i.id.slice('sha256:'.length).startsWith(hex[1] ?? ''));
      if (matches.length === 1 && matches[0] !== undefined) return { image: matches[0], record: undefined, byId: true };
    }
    throw noSuch();
  }

  async resolve(ref: string): Promise<ResolvedImage> {
    const { image, record } = await this.find(ref);
    return this.resolved(image, record);
  }

  resolved(image: LocalImage, record: ImageRecord | undefined): ResolvedImage {
    const d = image.details;
    const top = d.chainIds[d.chainIds.length - 1];
    if (top === undefined) throw invalid(`image ${image.id} has no layers to run`);
    return {
      id: image.id,
      name: record?.name,
      manifestDigest: d.manifest.digest,
      config: parseImageConfig(d.config.config),
      chainId: top,
      os: d.config.os,
      architecture: d.config.architecture,
    };
  }

  // ---------------------------------------------------------------- unpack

  async ensureUnpacked(img: ResolvedImage): Promise<void> {
    const found = (await this.images()).find((i) => i.id === img.id);
    if (found === undefined) throw notFound(`No such image: ${img.id}`);
    await this.unpack(found.details);
  }

  /** Unpack the layers whose chain snapshot is missing (at most one unpack per chain at a time). */
  async unpack(d: ImageDetails, lease?: Lease): Promise<void> {
    const top = d.chainIds[d.chainIds.length - 1];
    if (top === undefined) return;
    let p = this.unpacking.get(top);
    if (p === undefined) {
      p = this.unpackNow(d, lease).finally(() => this.unpacking.delete(top));
      this.unpacking.set(top, p);
    }
    await p;
  }

  private async committed(name: string): Promise<boolean> {
    try {
      const res = await this.client.call(SERVICES.snapshots, 'Stat', { snapshotter: SNAPSHOTTER, key: name });
      return (res['info'] as Message | undefined)?.['kind'] === 'COMMITTED';
    } catch (e) {
      if (isKind(e, ErrorKind.NotFound)) return false;
      throw e;
    }
  }

  private async unpackNow(d: ImageDetails, outer: Lease | undefined): Promise<void> {
    const top = d.chainIds[d.chainIds.length - 1] ?? '';
    if (await this.committed(top)) {
      await this.labelSnapshot(d, top);
      return;
    }
    const lease = outer ?? await Lease.create(this.client, 'unpack');
    const resource = `snapshots/${SNAPSHOTTER}`;
    try {
      for (const [i, layer] of d.layers.entries()) {
        const name = d.chainIds[i] ?? '';
        const parent = i === 0 ? '' : d.chainIds[i - 1] ?? '';
        await lease.add(resource, name);
        if (await this.committed(name)) continue;
        const key = `extract-${Date.now()}-${randomBytes(6).toString('hex')} ${name}`;
        await lease.add(resource, key);
        let done = false;
        try {
          const prep = await this.client.call(SERVICES.snapshots, 'Prepare', { snapshotter: SNAPSHOTTER, key, parent, labels: {} });
          const res = await this.client.call(SERVICES.diff, 'Apply', {
            diff: descToWire(layer), mounts: prep['mounts'] ?? [], payloads: {}, sync_fs: false,
          }, { timeoutMs: 30 * 60_000 });
          const applied = (res['applied'] as Message | undefined)?.['digest'];
          if (applied !== d.config.diffIds[i]) {
            throw invalid(`unpack layer ${i} (${layer.digest}) of image ${d.configDesc.digest}: its content has diff ID ${String(applied)}, the config says ${d.config.diffIds[i] ?? ''}`);
          }
          try {
            await this.client.call(SERVICES.snapshots, 'Commit', { snapshotter: SNAPSHOTTER, name, key, labels: {} });
            done = true;
          } catch (e) {
            if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
          }
        } finally {
          if (!done) await this.client.call(SERVICES.snapshots, 'Remove', { snapshotter: SNAPSHOTTER, key }).catch(() => undefined);
        }
      }
      await this.labelSnapshot(d, top);
    } finally {
      if (outer === undefined) await lease.end();
    }
  }

  /** The config blob references the top snapshot, so the collector keeps the unpacked layers with the image. */
  private async labelSnapshot(d: ImageDetails, top: string): Promise<void> {
    await setContentLabels(this.client, d.configDesc.digest, { [GC_REF_SNAPSHOT]: top });
  }

  // ---------------------------------------------------------------- views

  /** Bytes the image's layers take unpacked (the content sizes while not unpacked). */
  async sizeOf(d: ImageDetails): Promise<number> {
    let total = 0;
    for (const [i, chain] of d.chainIds.entries()) total += await this.layerSize(chain, d.layers[i]?.size ?? 0);
    return total;
  }

  private async layerSize(chain: string, fallback: number): Promise<number> {
    const known = this.usage.get(chain);
    if (known !== undefined) return known;
    try {
      const res = await this.client.call(SERVICES.snapshots, 'Usage', { snapshotter: SNAPSHOTTER, key: chain });
      const size = Number(res['size'] ?? 0);
      this.usage.set(chain, size);
      return size;
    } catch (e) {
      if (isKind(e, ErrorKind.NotFound)) return fallback;
      throw e;
    }
  }

  repoTags(img: LocalImage): string[] {
    const out: string[] = [];
    for (const r of img.records) {
      const t = tagOf(r.name);
      if (t !== undefined && !out.includes(t)) out.push(t);
    }
    return out;
  }

  repoDigests(img: LocalImage): string[] {
    const out: string[] = [];
    for (const r of img.records) {
      if (r.name.startsWith(DANGLING_PREFIX)) continue;
      const p = tryParse(r.name);
      if (p === undefined) continue;
      const s = `${familiarName(p)}@${p.digest ?? r.target.digest}`;
      if (!out.includes(s)) out.push(s);
    }
    return out;
  }

  private createdMs(img: LocalImage): number {
    const c = img.details.config.created;
    const t = c === undefined ? NaN : Date.parse(c);
    if (!Number.isNaN(t)) return t;
    return Math.min(...img.records.map((r) => r.createdAt));
  }

  async summary(img: LocalImage, apiVersionAtLeast144: boolean): Promise<ImageSummary> {
    const size = await this.sizeOf(img.details);
    const labels = img.details.config.config['Labels'];
    const s: ImageSummary = {
      Id: img.id,
      ParentId: '',
      RepoTags: this.repoTags(img),
      RepoDigests: this.repoDigests(img),
      Created: Math.floor(this.createdMs(img) / 1000),
      Size: size,
      SharedSize: -1,
      Labels: typeof labels === 'object' && labels !== null ? { ...(labels as Record<string, string>) } : {},
      Containers: -1,
    };
    if (!apiVersionAtLeast144) s.VirtualSize = size;
    return s;
  }

  /** `GET /images/json`. */
  async list(opts: ListOptions): Promise<ImageSummary[]> {
    const filters = opts.filters;
    const apiVersionAtLeast144 = opts.apiVersionAtLeast144 ?? true;
    checkFilterKeys(filters, ['dangling', 'label', 'before', 'since', 'reference', 'until']);
    const dangling = boolFilter(filters, 'dangling');
    const images = await this.images();
    const refTime = async (key: string): Promise<number | undefined> => {
      const vs = filters.get(key) ?? [];
      let out: number | undefined;
      for (const v of vs) {
        let found;
        try {
          found = await this.find(v);
        } catch (e) {
          if (isKind(e, ErrorKind.NotFound)) throw invalid(`invalid filter '${key}=${v}': ${e instanceof Error ? e.message : String(e)}`);
          throw e;
        }
        const t = this.createdMs(found.image);
        out = out === undefined ? t : key === 'before' ? Math.min(out, t) : Math.max(out, t);
      }
      return out;
    };
    const before = await refTime('before');
    const since = await refTime('since');
    const until = (filters.get('until') ?? []).map((v) => parseTimestamp(v, 'until'));
    const patterns = (filters.get('reference') ?? []).map(globRegExp);
    const labels = filters.get('label') ?? [];
    const out: ImageSummary[] = [];
    for (const img of images) {
      const created = this.createdMs(img);
      if (before !== undefined && created >= before) continue;
      if (since !== undefined && created <= since) continue;
      if (until.some((u) => created > u)) continue;
      // A build step's image (its cache entry) shows only with -a, as Docker's intermediate images.
      if (opts.all !== true && img.records.length > 0 && img.records.every((r) => r.labels[INTERMEDIATE_LABEL] === '1')) continue;
      const s = await this.summary(img, apiVersionAtLeast144);
      if (dangling === true && s.RepoTags.length > 0) continue;
      if (dangling === false && s.RepoTags.length === 0) continue;
      if (labels.length > 0 && !labelsMatch(s.Labels, labels)) continue;
      if (patterns.length > 0) {
        const matching = s.RepoTags.filter((t) => {
          const p = tryParse(t);
          if (p === undefined) return false;
          const name = familiarName(p);
          return patterns.some((re) => re.test(t) || re.test(name));
        });
        if (matching.length === 0) continue;
        s.RepoTags = matching;
      }
      out.push(s);
    }
    out.sort((a, b) => b.Created - a.Created || (a.Id < b.Id ? -1 : 1));
    return out;
  }

  /** `GET /images/{name}/json`. */
  async inspect(ref: string, apiVersionAtLeast144 = true): Promise<Record<string, unknown>> {
    const { image } = await this.find(ref);
    const d = image.details;
    const c = d.config;
    const size = await this.sizeOf(d);
    const created = c.created ?? rfc3339(this.createdMs(image));
    const out: Record<string, unknown> = {
      Id: image.id,
      RepoTags: this.repoTags(image),
      RepoDigests: this.repoDigests(image),
      Parent: '',
      Comment: c.comment ?? '',
      Created: created,
      DockerVersion: c.dockerVersion ?? '',
      Author: c.author ?? '',
      Config: dockerImageConfig(c.config),
      Architecture: c.architecture,
      ...(c.variant === undefined ? {} : { Variant: c.variant }),
      Os: c.os,
      Size: size,
      GraphDriver: { Name: 'overlay2', Data: null },
      RootFS: { Type: 'layers', Layers: [...c.diffIds] },
      Metadata: { LastTagTime: this.lastTagTime(image) },
      Descriptor: { mediaType: d.target.mediaType, digest: d.target.digest, size: d.target.size },
    };
    if (!apiVersionAtLeast144) {
      out['VirtualSize'] = size;
      out['Container'] = '';
      out['ContainerConfig'] = dockerImageConfig({});
    }
    return out;
  }

  private lastTagTime(img: LocalImage): string {
    let t = 0;
    for (const r of img.records) {
      const at = Number(r.labels[LAST_TAG_LABEL] ?? '');
      if (Number.isFinite(at) && at > t) t = at;
    }
    return t === 0 ? ZERO_TIME : rfc3339(t);
  }

  /** `GET /images/{name}/history`: newest first. */
  async history(ref: string): Promise<HistoryItem[]> {
    const { image } = await this.find(ref);
    const d = image.details;
    const c = d.config;
    const rows: Omit<HistoryItem, 'Id' | 'Tags'>[] = [];
    let layer = 0;
    const entries = c.history.length > 0 ? c.history : c.diffIds.map(() => ({}) as Record<string, never>);
    for (const h of entries) {
      const empty = 'empty_layer' in h && h.empty_layer === true;
      let size = 0;
      if (!empty) {
        const chain = d.chainIds[layer];
        if (chain !== undefined) size = await this.layerSize(chain, d.layers[layer]?.size ?? 0);
        layer++;
      }
      const created = 'created' in h && typeof h.created === 'string' ? Date.parse(h.created) : NaN;
      rows.push({
        Created: Number.isNaN(created) ? 0 : Math.floor(created / 1000),
        CreatedBy: 'created_by' in h && typeof h.created_by === 'string' ? h.created_by : '',
        Size: size,
        Comment: 'comment' in h && typeof h.comment === 'string' ? h.comment : '',
      });
    }
    rows.reverse();
    const tags = this.repoTags(image);
    return rows.map((r, i) => ({ Id: i === 0 ? image.id : '<missing>', ...r, Tags: i === 0 && tags.length > 0 ? tags : null }));
  }

  // ---------------------------------------------------------------- names

  /** A name for a new tag: `repo` with `tag` (default latest); the normalised record name. */
  static tagName(repo: string, tag: string | undefined): string {
    const parsed = parseReference(repo);
    if (parsed.digest !== undefined) throw invalid('refusing to create a tag with a digest reference');
    if (tag !== undefined && tag !== '') return formatReference(withTag(parsed, tag));
    return formatReference(withDefaultTag(parsed));
  }

  /**
   * Point `name` at a target. What the name pointed at before keeps a
   * dangling record when nothing else names it (Docker's behaviour when a
   * tag moves to a new image).
   */
  async setName(name: string, target: ImageDescriptor, opts: { tagged?: boolean; intermediate?: boolean } = {}): Promise<void> {
    const labels: Record<string, string> = opts.tagged === true ? { [LAST_TAG_LABEL]: String(Date.now()) } : {};
    if (opts.intermediate === true) labels[INTERMEDIATE_LABEL] = '1';
    const before = await getRecord(this.client, name);
    if (before !== undefined && before.target.digest === target.digest) return;
    await putRecord(this.client, name, target, labels);
    if (before !== undefined) await this.keepDangling(before.target);
    // A dangling record of the same target is not needed any more.
    if (!name.startsWith(DANGLING_PREFIX)) {
      await deleteRecord(this.client, `${DANGLING_PREFIX}${target.digest}`, false).catch((e: unknown) => {
        if (!isKind(e, ErrorKind.NotFound)) throw e;
      });
    }
  }

  /** Keep an image that lost a name: a dangling record, unless another name leads to the same image. */
  async keepDangling(target: ImageDescriptor): Promise<void> {
    let id: string;
    try {
      id = (await this.reader.details(target)).configDesc.digest;
    } catch {
      return;
    }
    const img = (await this.images()).find((i) => i.id === id);
    if (img !== undefined && img.records.length > 0) return;
    await putRecord(this.client, `${DANGLING_PREFIX}${target.digest}`, target);
  }

  /** `POST /images/{name}/tag`. */
  async tag(source: string, repo: string, tag: string | undefined): Promise<string> {
    const { image, record } = await this.find(source);
    const name = ImageService.tagName(repo, tag);
    const target = record?.target ?? image.records[0]?.target;
    if (target === undefined) throw notFound(`No such image: ${source}`);
    await this.setName(name, target, { tagged: true });
    const familiar = tagOf(name) ?? name;
    this.events.emit('image', 'tag', image.id, { name: familiar });
    return familiar;
  }

  /** The records of an image as they are now. */
  private async recordsOf(img: LocalImage): Promise<ImageRecord[]> {
    return (await this.images()).find((i) => i.id === img.id)?.records.slice() ?? [];
  }

  /**
   * `DELETE /images/{name}`, with Docker's rules: a name is untagged (the
   * image goes with its last name); an ID deletes the image with all its
   * names when they are in one repository (or with force); an image a
   * container uses is kept (409), a running container's even with force.
   */
  async remove(ref: string, opts: { force: boolean; noprune?: boolean }, inUse: ImageUse): Promise<DeleteItem[]> {
    const { image, record, byId } = await this.find(ref);
    const out: DeleteItem[] = [];
    const id = image.id;
    const tagged = image.records.filter((r) => !r.name.startsWith(DANGLING_PREFIX));
    let removedName = false;
    if (!byId && record !== undefined) {
      if (!opts.force && tagged.length <= 1) {
        const use = inUse(id);
        if (use !== undefined) {
          throw conflict(`conflict: unable to remove repository reference ${JSON.stringify(ref)} (must force) - container ${shortId(use.containerId)} is using its referenced image ${shortId(id)}`);
        }
      }
      const rest = image.records.filter((r) => r.name !== record.name && !r.name.startsWith(DANGLING_PREFIX));
      if (rest.length > 0) {
        await deleteRecord(this.client, record.name, false);
        out.push({ Untagged: displayName(record.name) });
        this.events.emit('image', 'untag', id, { name: displayName(record.name) });
        return out;
      }
      removedName = true;
    } else if (!opts.force) {
      const repos = new Set(tagged.map((r) => {
        const p = tryParse(r.name);
        return p === undefined ? r.name : `${p.domain}/${p.path}`;
      }));
      if (repos.size > 1) {
        throw conflict(`conflict: unable to delete ${shortId(id)} (must be forced) - image is referenced in multiple repositories`);
      }
    }
    const use = inUse(id);
    if (use !== undefined && (use.running || !opts.force)) {
      const state = use.running ? 'running' : 'stopped';
      throw conflict(`conflict: unable to delete ${shortId(id)} (must be forced) - image is being used by ${state} container ${shortId(use.containerId)}`);
    }
    if (use !== undefined) {
      // Forced, the container is stopped: the name goes, the image stays for the container.
      const target = (record ?? tagged[0] ?? image.records[0])?.target;
      for (const r of removedName && record !== undefined ? [record] : tagged) {
        await deleteRecord(this.client, r.name, false);
        out.push({ Untagged: displayName(r.name) });
        this.events.emit('image', 'untag', id, { name: displayName(r.name) });
      }
      if (target !== undefined) await this.keepDangling(target);
      return out;
    }
    const records = await this.recordsOf(image);
    for (const [i, r] of records.entries()) {
      const last = i === records.length - 1;
      await deleteRecord(this.client, r.name, last);
      if (!r.name.startsWith(DANGLING_PREFIX)) {
        out.push({ Untagged: displayName(r.name) });
        this.events.emit('image', 'untag', id, { name: displayName(r.name) });
      }
    }
    out.push({ Deleted: id });
    this.events.emit('image', 'delete', id, { name: id });
    for (const c of image.details.chainIds) this.usage.delete(c);
    return out;
  }

  /** `POST /images/prune`: images without names (or, with dangling=false, every image) no container uses. */
  async prune(filters: ReadonlyMap<string, readonly string[]>, inUse: ImageUse): Promise<PruneReport> {
    checkFilterKeys(filters, ['dangling', 'label', 'label!', 'until']);
    const danglingOnly = boolFilter(filters, 'dangling') ?? true;
    const until = (filters.get('until') ?? []).map((v) => parseTimestamp(v, 'until'));
    const labels = filters.get('label') ?? [];
    const notLabels = filters.get('label!') ?? [];
    const deleted: DeleteItem[] = [];
    let reclaimed = 0;
    for (const img of await this.images()) {
      const tags = this.repoTags(img);
      if (danglingOnly && tags.length > 0) continue;
      if (inUse(img.id) !== undefined) continue;
      const created = this.createdMs(img);
      if (until.some((u) => created >= u)) continue;
      const l = img.details.config.config['Labels'];
      const lbl = typeof l === 'object' && l !== null ? l as Record<string, string> : {};
      if (labels.length > 0 && !labelsMatch(lbl, labels)) continue;
      if (notLabels.length > 0 && notLabels.some((w) => labelsMatch(lbl, [w]))) continue;
      const size = await this.sizeOf(img.details);
      try {
        const items = await this.remove(img.id, { force: true }, inUse);
        deleted.push(...items);
        reclaimed += size;
      } catch (e) {
        this.log.warn('prune: image not removed', { id: img.id, error: e instanceof Error ? e.message : String(e) });
      }
    }
    this.events.emit('image', 'prune', '', { reclaimed: String(reclaimed) });
    return { ImagesDeleted: deleted.length > 0 ? deleted : null, SpaceReclaimed: reclaimed };
  }

  // ---------------------------------------------------------------- create

  /**
   * A one-layer image from an uncompressed layer tar (`docker import`, the
   * built-in image): layer, config and manifest written to the content
   * store under a lease, the layer unpacked, then the record.
   */
  async createImage(n: NewImage): Promise<ResolvedImage> {
    const lease = await Lease.create(this.client, 'create');
    let spool: { dir: string; file: string } | undefined;
    try {
      // Every blob joins the lease before it is written, so that no collection takes it before the record exists.
      let layerSource: Buffer | AsyncIterable<Uint8Array>;
      let layerDigest: string;
      if (Buffer.isBuffer(n.layer)) {
        layerSource = n.layer;
        layerDigest = sha256Of(n.layer);
      } else {
        const dir = await mkdtemp(join(this.tempDir, 'berthd-layer-'));
        spool = { dir, file: join(dir, 'layer.tar') };
        layerDigest = await spoolTo(n.layer, spool.file);
        layerSource = createReadStream(spool.file);
      }
      await lease.add('content', layerDigest);
      const layerInfo = await writeContent(this.client, layerSource, { expected: layerDigest });
      const platform = n.platform ?? this.platform;
      const history: Record<string, unknown> = { created: n.created };
      if (n.createdBy !== undefined) history['created_by'] = n.createdBy;
      if (n.comment !== undefined) history['comment'] = n.comment;
      const config: Record<string, unknown> = {
        created: n.created,
        ...(n.author === undefined ? {} : { author: n.author }),
        ...(n.configComment === undefined ? {} : { comment: n.configComment }),
        architecture: platform.architecture,
        ...(platform.variant === undefined || platform.variant === '' ? {} : { variant: platform.variant }),
        os: platform.os,
        config: n.runConfig,
        rootfs: { type: 'layers', diff_ids: [layerInfo.digest] },
        history: [history],
      };
      const configBytes = Buffer.from(JSON.stringify(config));
      await lease.add('content', sha256Of(configBytes));
      const configInfo = await writeContent(this.client, configBytes, { expected: sha256Of(configBytes) });
      const layer: ImageDescriptor = { mediaType: MediaType.OciLayer, digest: layerInfo.digest, size: layerInfo.size };
      const configDesc: ImageDescriptor = { mediaType: MediaType.OciConfig, digest: configInfo.digest, size: configInfo.size };
      const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers: [layer] }));
      await lease.add('content', sha256Of(manifest));
      const manifestInfo = await writeContent(this.client, manifest, {
        expected: sha256Of(manifest),
        labels: { [`${GC_REF_CONTENT}config`]: configDesc.digest, [`${GC_REF_CONTENT}l.0`]: layer.digest },
      });
      const target: ImageDescriptor = { mediaType: MediaType.OciManifest, digest: manifestInfo.digest, size: manifestInfo.size };
      const details = await this.reader.details(target);
      await this.unpack(details, lease);
      await this.setName(n.name ?? `${DANGLING_PREFIX}${target.digest}`, target);
      const img: LocalImage = { id: configDesc.digest, records: [], details };
      return this.resolved(img, undefined);
    } finally {
      await lease.end();
      if (spool !== undefined) await rm(spool.dir, { recursive: true, force: true });
    }
  }
  // ---------------------------------------------------------------- registries and archives

  /** Every record name with its target digest (to see what an operation moved). */
  private async targets(): Promise<Map<string, ImageDescriptor>> {
    return new Map((await listRecords(this.client)).map((r) => [r.name, r.target]));
  }

  /** Names that moved to another target keep what they pointed at as a dangling image if nothing else names it. */
  private async afterMove(before: ReadonlyMap<string, ImageDescriptor>): Promise<void> {
    const after = await this.targets();
    for (const [name, old] of before) {
      const now = after.get(name);
      if (now !== undefined && now.digest !== old.digest) {
        this.reader.forget(now.digest);
        await this.keepDangling(old);
      }
    }
    for (const [name, t] of after) {
      if (name.startsWith(DANGLING_PREFIX)) continue;
      if (after.has(`${DANGLING_PREFIX}${t.digest}`)) {
        await deleteRecord(this.client, `${DANGLING_PREFIX}${t.digest}`, false).catch(() => undefined);
      }
    }
  }

  /**
   * `POST /images/create?fromImage=`: pull through the supervisor's Transfer
   * service, reporting Docker's progress lines. `started` is called before
   * the first line (once the registry has the manifest); an error before
   * that is the request's answer, after it a line of the stream.
   */
  async pull(ref: string, opts: PullOptions, emit: Emit, started: () => void): Promise<ResolvedImage> {
    const parsed = withDefaultTag(parseReference(ref));
    const name = formatReference(parsed);
    const familiar = familiarString(parsed);
    const before = await this.targets();
    const had = before.get(name);
    const reporter = new PullReporter(emit);
    let begun = false;
    const begin = (): void => {
      if (begun) return;
      begun = true;
      started();
      emit({ status: `Pulling from ${parsed.path}`, id: parsed.digest ?? parsed.tag ?? 'latest' });
    };
    const credentials = transferAuth(opts.auth);
    let result;
    try {
      result = await transferPull(this.client, name, {
        ...(credentials === undefined ? {} : { credentials }),
        insecure: isInsecure(parsed.domain, this.insecureRegistries),
        platform: opts.platform ?? formatPlatform(this.platform),
        snapshotter: SNAPSHOTTER,
        ...(opts.signal === undefined ? {} : { signal: opts.signal }),
        onProgress: (p) => {
          if (!begun) {
            reporter.on(p);
            if (reporter.resolved) begin();
            return;
          }
          reporter.on(p);
        },
      });
    } catch (e) {
      throw pullError(e, parsed);
    }
    begin();
    this.reader.forget(result.target.digest);
    await this.afterMove(before);
    const img = await this.find(result.name);
    await this.unpack(img.image.details);
    emit({ status: `Digest: ${result.target.digest}` });
    const fresh = had === undefined || had.digest !== result.target.digest;
    emit({ status: fresh ? `Status: Downloaded newer image for ${familiar}` : `Status: Image is up to date for ${familiar}` });
    this.events.emit('image', 'pull', familiar, { name: familiar });
    return this.resolved(img.image, img.record);
  }

  /**
   * `POST /images/{name}/push`: the tag given, or every tag of the
   * repository, through the Transfer service; Docker's lines, then the
   * digest line and its aux message per tag.
   */
  async push(repo: string, tag: string | undefined, opts: PushOptions, emit: Emit, started: () => void): Promise<void> {
    const parsed = parseReference(repo);
    const base = { domain: parsed.domain, path: parsed.path };
    let names: string[];
    if (parsed.digest !== undefined) throw invalid(`cannot push a digest reference: ${repo}`);
    const wanted = tag !== undefined && tag !== '' ? tag : parsed.tag;
    if (wanted !== undefined) {
      const n = formatReference(withTag(base, wanted));
      if (await getRecord(this.client, n) === undefined) throw notFound(`An image does not exist locally with the tag: ${familiarName(parsed)}`);
      names = [n];
    } else {
      const repoName = `${base.domain}/${base.path}:`;
      names = (await listRecords(this.client)).map((r) => r.name).filter((n) => n.startsWith(repoName)).sort();
      if (names.length === 0) throw notFound(`An image does not exist locally with the tag: ${familiarName(parsed)}`);
    }
    started();
    emit({ status: `The push refers to repository [${familiarName(parsed)}]` });
    const credentials = transferAuth(opts.auth);
    for (const n of names) {
      const r = withDefaultTag(parseReference(n));
      const reporter = new PushReporter(emit);
      const res = await transferPush(this.client, n, n, {
        ...(credentials === undefined ? {} : { credentials }),
        insecure: isInsecure(base.domain, this.insecureRegistries),
        ...(opts.platform === undefined ? {} : { platform: opts.platform }),
        ...(opts.signal === undefined ? {} : { signal: opts.signal }),
        onProgress: (p) => reporter.on(p),
      });
      const t = r.tag ?? 'latest';
      emit({ status: `${t}: digest: ${res.digest} size: ${res.size}` });
      emit({ progressDetail: {}, aux: { Tag: t, Digest: res.digest, Size: res.size } });
      this.events.emit('image', 'push', familiarString(r), { name: familiarString(r) });
    }
  }

  /** The record names to export for `docker save` of these references. */
  async saveNames(refs: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (const ref of refs) {
      const { image, record } = await this.find(ref);
      const name = record?.name ?? image.records.find((r) => !r.name.startsWith(DANGLING_PREFIX))?.name ?? image.records[0]?.name;
      if (name === undefined) throw notFound(`No such image: ${ref}`);
      if (!out.includes(name)) out.push(name);
      this.events.emit('image', 'save', image.id, { name: displayName(name) });
    }
    return out;
  }

  /** `docker save`: the images as one tar (manifest.json beside an OCI layout), streamed. */
  save(names: readonly string[], opts: { platform?: string; signal?: AbortSignal } = {}): Readable {
    return exportArchive(this.client, names, {
      format: 'docker',
      platform: opts.platform ?? formatPlatform(this.platform),
      ...(opts.signal === undefined ? {} : { signal: opts.signal }),
    });
  }

  /** `docker load`: every image of the archive recorded and unpacked; a line per image loaded. */
  async load(input: Readable, opts: { platform?: string; signal?: AbortSignal }, emit: Emit): Promise<void> {
    const before = await this.targets();
    const res = await importArchive(this.client, input, {
      platform: opts.platform ?? formatPlatform(this.platform),
      snapshotter: SNAPSHOTTER,
      ...(opts.signal === undefined ? {} : { signal: opts.signal }),
    });
    await this.afterMove(before);
    const shownIds = new Set<string>();
    for (const i of res.images) {
      const tag = tagOf(i.name);
      let id: string | undefined;
      const rec = await getRecord(this.client, i.name);
      if (rec !== undefined) {
        try {
          id = (await this.reader.details(rec.target)).configDesc.digest;
        } catch {
          id = undefined;
        }
      }
      if (tag !== undefined) {
        emit({ stream: `Loaded image: ${tag}\n` });
      } else if (id !== undefined && !shownIds.has(id)) {
        emit({ stream: `Loaded image ID: ${id}\n` });
      }
      if (id !== undefined) shownIds.add(id);
      this.events.emit('image', 'load', id ?? i.digest, { name: tag ?? id ?? i.digest });
    }
  }

  /**
   * `docker import`: a rootfs tar (plain or compressed) as a one-layer image
   * named `repo:tag` (or unnamed), with `changes` applied to its config.
   */
  async importRootfs(input: AsyncIterable<Uint8Array>, opts: ImportOptions): Promise<ResolvedImage> {
    const name = opts.repo === undefined || opts.repo === '' ? undefined : ImageService.tagName(opts.repo, opts.tag);
    const runConfig = applyChanges({}, opts.changes ?? []);
    const comment = opts.message !== undefined && opts.message !== '' ? opts.message : `Imported from ${opts.source ?? '-'}`;
    const platform = opts.platform === undefined || opts.platform === '' ? this.platform : parsePlatformSpec(opts.platform);
    const img = await this.createImage({
      layer: decompress(input),
      runConfig,
      created: new Date().toISOString(),
      comment,
      configComment: comment,
      ...(name === undefined ? {} : { name }),
      platform,
    });
    this.events.emit('image', 'import', img.id, name === undefined ? {} : { name: tagOf(name) ?? name });
    return img;
  }
}

const sha256Of = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Write a stream to a file, returning the sha256 digest of its bytes. */
async function spoolTo(source: AsyncIterable<Uint8Array>, file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(source, async function* (chunks: AsyncIterable<Uint8Array>) {
    for await (const c of chunks) {
      hash.update(c);
      yield c;
    }
  }, createWriteStream(file, { mode: 0o600 }));
  return `sha256:${hash.digest('hex')}`;
}

/** Record label: when the name was last set by a tag (ms since the epoch). */
const LAST_TAG_LABEL = 'io.berth.image.last-tag-time';

/** A failed pull in Docker's words: the registry has no such image, or refused. */
function pullError(e: unknown, ref: ImageReference): unknown {
  if (!(e instanceof Error)) return e;
  const msg = e.message;
  const familiar = familiarString(ref);
  if (isKind(e, ErrorKind.NotFound) || /manifest unknown|not found|NAME_UNKNOWN/i.test(msg)) {
    return notFound(`manifest for ${familiar} not found: manifest unknown: manifest unknown`, e);
  }
  if (isKind(e, ErrorKind.PermissionDenied) || /unauthorized|denied|401|403/i.test(msg)) {
    return new BerthError(ErrorKind.NotFound, `pull access denied for ${familiarName(ref)}, repository does not exist or may require 'docker login': denied: requested access to the resource is denied`, { cause: e });
  }
  return e;
}

/** A reference as Docker shows it in `No such image: …`. */
function displayRef(s: string): string {
  if (HEX_PREFIX.test(s) || s.startsWith('sha256:')) return s;
  const p = tryParse(s);
  return p === undefined ? s : familiarString(withDefaultTag(p));
}

/** A record name as users see it. */
function displayName(name: string): string {
  if (name.startsWith(DANGLING_PREFIX)) return name.slice(DANGLING_PREFIX.length);
  const p = tryParse(name);
  return p === undefined ? name : familiarString(p);
}

/** An image's `config` section in the shape Docker's ImageInspect gives it. */
export function dockerImageConfig(c: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return {
    Hostname: '',
    Domainname: '',
    User: '',
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    Tty: false,
    OpenStdin: false,
    StdinOnce: false,
    Env: null,
    Cmd: null,
    Image: '',
    Volumes: null,
    WorkingDir: '',
    Entrypoint: null,
    OnBuild: null,
    Labels: null,
    ...c,
  };
}
