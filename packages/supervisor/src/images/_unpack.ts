/**
 * What pull and import share once an image's blobs are in the content
 * store: the lease that holds them, the unpack of the layers into a
 * snapshotter by chain ID, the labels that keep everything alive for the
 * garbage collector, and the image record.
 */
import { randomBytes } from 'node:crypto';
import { ErrorKind, failedPrecondition, invalid, isKind } from '@berth/base';
import { chainIds } from '@berth/images';
import type { ApplyResult, ContentStore, ImageDescriptor, Mount, Snapshotter } from '@berth/images';
import { pluginType } from '../plugin.js';
import type { PluginSet } from '../plugin.js';
import { ContentPlugin } from '../services/content.js';
import type { MetadataContentStore } from '../services/content.js';
import { applyToMounts } from '../services/diff.js';
import { ImagesPlugin } from '../services/images.js';
import type { ImageRecord, ImageStore } from '../services/images.js';
import { SnapshotterPlugin } from '../services/snapshots.js';
import type { NamespacedSnapshotter } from '../services/snapshots.js';

/**
 * The garbage collector, as far as pull and import use it: a lease holds
 * what they create until the image record and its labels reference it, and
 * snapshot changes go through snapshotMutation so that a collection does
 * not act on a reading they made stale.
 */
export interface PullCollector {
  readonly leases: {
    create(namespace: string, id: string, labels: Readonly<Record<string, string>>): { readonly id: string };
    addResource(namespace: string, id: string, r: { readonly id: string; readonly type: string }): unknown;
    delete(namespace: string, id: string): void;
  };
  schedule(): void;
  snapshotMutation<T>(fn: () => Promise<T>): Promise<T>;
}

/** What pull and import work on: the daemon's content store, image store and snapshotters (and its collector, when one runs). */
export interface PullDeps {
  readonly content: MetadataContentStore;
  readonly images: ImageStore;
  readonly snapshotters: ReadonlyMap<string, Snapshotter>;
  readonly gc?: PullCollector;
}

/** containerd's garbage collector plugin type. */
const GCPluginType = pluginType<PullCollector>('io.containerd.gc.v1');

/** The deps from a daemon's loaded plugins. */
export function pullDepsOf(plugins: PluginSet): PullDeps {
  const [gc] = plugins.getAll(GCPluginType).values();
  return {
    content: plugins.get(ContentPlugin),
    images: plugins.get(ImagesPlugin),
    snapshotters: plugins.getAll(SnapshotterPlugin),
    ...(gc === undefined ? {} : { gc }),
  };
}

/** How long a lease lives if its owner never ends it (containerd's client default). */
const LEASE_EXPIRY_MS = 24 * 60 * 60 * 1000;

/** An operation's lease: what is added stays until end(); without a collector, nothing to do. */
export class ImageLease {
  readonly id: string | undefined;

  constructor(private readonly gc: PullCollector | undefined, private readonly ns: string, what: string) {
    if (gc === undefined) return;
    const expire = new Date(Date.now() + LEASE_EXPIRY_MS).toISOString();
    this.id = gc.leases.create(ns, `${what}-${Date.now()}-${randomBytes(6).toString('hex')}`, { 'containerd.io/gc.expire': expire }).id;
  }

  add(type: string, id: string): void {
    if (this.gc !== undefined && this.id !== undefined) this.gc.leases.addResource(this.ns, this.id, { id, type });
  }

  snapshots<T>(fn: () => Promise<T>): Promise<T> {
    return this.gc === undefined ? fn() : this.gc.snapshotMutation(fn);
  }

  end(): void {
    if (this.gc === undefined || this.id === undefined) return;
    try {
      this.gc.leases.delete(this.ns, this.id);
    } finally {
      this.gc.schedule();
    }
  }
}

export const GC_REF_CONTENT = 'containerd.io/gc.ref.content.';
export const GC_REF_SNAPSHOT = 'containerd.io/gc.ref.snapshot.';

function parseJsonObject(bytes: Buffer, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw invalid(`${what}: not JSON: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid(`${what}: not a JSON object`);
  return parsed as Record<string, unknown>;
}

/** The config's diff IDs (bottom layer first), checked. */
export function diffIdsOf(config: Buffer, digest: string): string[] {
  const rootfs = parseJsonObject(config, `config ${digest}`)['rootfs'];
  const ids = typeof rootfs === 'object' && rootfs !== null ? (rootfs as Record<string, unknown>)['diff_ids'] : undefined;
  if (!Array.isArray(ids) || !ids.every((d): d is string => typeof d === 'string')) {
    throw invalid(`config ${digest}: rootfs.diff_ids must be a list of digests`);
  }
  return ids;
}

export function manifestLayers(bytes: Buffer, digest: string): { config: ImageDescriptor; layers: ImageDescriptor[] } {
  const o = parseJsonObject(bytes, `manifest ${digest}`) as { config?: ImageDescriptor; layers?: ImageDescriptor[] };
  if (o.config === undefined || !Array.isArray(o.layers)) throw invalid(`manifest ${digest}: no config or layers`);
  return { config: o.config, layers: o.layers };
}

/** A comma-separated label value with `item` in it. */
export function withItem(current: string | undefined, item: string): string {
  const items = current === undefined || current === '' ? [] : current.split(',');
  return items.includes(item) ? items.join(',') : [...items, item].join(',');
}

/** One step of an unpack, for progress reports. */
export interface UnpackEvent {
  readonly digest: string;
  readonly kind: 'layer';
  readonly status: 'extracting' | 'extracted' | 'unpacked';
  readonly current: number;
  readonly total: number;
}

export interface UnpackOptions {
  /** Resolves once the layer blob is stored (default: it is already). */
  readonly ready?: (digest: string) => Promise<void>;
  /**
   * The layer's bytes as they download, when they can be had: asked before
   * the layer is stored; undefined means read the stored blob. The snapshot
   * is committed only once ready() says the blob's digest matched.
   */
  readonly live?: (digest: string) => Promise<AsyncIterable<Uint8Array> | undefined>;
  /** Whether a live stream's failure means: start again from the stored blob. */
  readonly fallback?: (e: unknown) => boolean;
  /** Applies a layer stream onto a snapshot's mounts (default: applyToMounts, on this thread). */
  readonly apply?: (source: AsyncIterable<Uint8Array>, mounts: readonly Mount[], mediaType: string) => Promise<ApplyResult>;
  readonly emit?: (ev: UnpackEvent) => void;
  readonly signal?: AbortSignal;
}

/**
 * Unpack the image's layers into a snapshotter, in order, as each becomes
 * available: a layer whose chain ID is committed already is skipped; any
 * other is applied onto a fresh active snapshot over the previous chain ID,
 * checked against its diff ID, and committed under its chain ID. A failure
 * removes the active snapshot; what was committed below stays (it is whole).
 * Returns the top layer's chain ID.
 */
export async function unpackLayers(
  sn: NamespacedSnapshotter,
  content: ContentStore,
  layers: readonly ImageDescriptor[],
  diffIds: readonly string[],
  lease: ImageLease,
  opts: UnpackOptions = {},
): Promise<string> {
  const resource = `snapshots/${sn.name}`;
  if (layers.length !== diffIds.length) {
    throw invalid(`the manifest has ${layers.length} layers but the config's rootfs.diff_ids has ${diffIds.length}`);
  }
  const chain = chainIds(diffIds);
  for (const [i, layer] of layers.entries()) {
    const name = chain[i] ?? '';
    const parent = i === 0 ? '' : chain[i - 1] ?? '';
    lease.add(resource, name);
    if (await committed(sn, name)) {
      opts.emit?.({ digest: layer.digest, kind: 'layer', status: 'unpacked', current: layer.size, total: layer.size });
      continue;
    }
    let live = opts.live === undefined ? undefined : await opts.live(layer.digest);
    if (live === undefined) await opts.ready?.(layer.digest);
    opts.signal?.throwIfAborted();
    opts.emit?.({ digest: layer.digest, kind: 'layer', status: 'extracting', current: 0, total: layer.size });
    const apply = opts.apply ?? applyToMounts;
    for (;;) {
      const key = `extract-${Date.now()}-${randomBytes(6).toString('hex')} ${name}`;
      let done = false;
      lease.add(resource, key);
      try {
        const mounts = await lease.snapshots(() => sn.prepare(key, parent));
        let applied;
        if (live !== undefined) {
          try {
            applied = await apply(live, mounts, layer.mediaType);
          } catch (e) {
            if (opts.fallback?.(e) !== true) {
              // Bytes that do not match their digest say more than what extracting them did.
              await opts.ready?.(layer.digest);
              throw e;
            }
            live = undefined;
            continue; // this snapshot goes (finally below); the next one takes the stored blob
          }
          // The bytes were extracted as they came; the blob's digest is checked as it is stored.
          await opts.ready?.(layer.digest);
        } else {
          await opts.ready?.(layer.digest);
          const reader = await content.reader(layer.digest);
          try {
            applied = await apply(reader.stream(), mounts, layer.mediaType);
          } finally {
            await reader.close();
          }
        }
        if (applied.digest !== diffIds[i]) {
          throw failedPrecondition(`layer ${i} (${layer.digest}): its content has diff ID ${applied.digest}, the config says ${diffIds[i] ?? ''}`);
        }
        opts.signal?.throwIfAborted();
        try {
          await lease.snapshots(() => sn.commit(name, key));
          done = true;
        } catch (e) {
          // Another unpack of the same layers committed it first.
          if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
        }
        break;
      } finally {
        if (!done) await lease.snapshots(() => sn.remove(key)).catch(() => undefined);
      }
    }
    opts.emit?.({ digest: layer.digest, kind: 'layer', status: 'extracted', current: layer.size, total: layer.size });
  }
  const top = chain[chain.length - 1];
  if (top === undefined) throw invalid('the image has no layers');
  return top;
}

export async function committed(sn: NamespacedSnapshotter, name: string): Promise<boolean> {
  try {
    return (await sn.stat(name)).kind === 'committed';
  } catch (e) {
    if (isKind(e, ErrorKind.NotFound)) return false;
    throw e;
  }
}

/** Set labels on a blob (the ones given; a label already right is not rewritten). */
export async function labelBlob(
  store: ContentStore, digest: string, want: Readonly<Record<string, string>>,
): Promise<void> {
  const info = await store.info(digest);
  const paths = Object.keys(want).filter((k) => info.labels[k] !== want[k]).map((k) => `labels.${k}`);
  if (paths.length > 0) await store.update(digest, want, paths);
}

/** The gc.ref labels of a manifest: its config and layers. */
export function manifestRefs(m: { readonly config: ImageDescriptor; readonly layers: readonly ImageDescriptor[] }): Record<string, string> {
  const refs: Record<string, string> = { [`${GC_REF_CONTENT}config`]: m.config.digest };
  for (const [i, l] of m.layers.entries()) refs[`${GC_REF_CONTENT}l.${i}`] = l.digest;
  return refs;
}

/** The gc.ref labels of an index: its manifests. */
export function indexRefs(manifests: readonly ImageDescriptor[]): Record<string, string> {
  const refs: Record<string, string> = {};
  for (const [i, d] of manifests.entries()) refs[`${GC_REF_CONTENT}m.${i}`] = d.digest;
  return refs;
}

/** Create the image record, or point an existing one at the new target. */
export function recordImage(
  images: ImageStore, ns: string, name: string, target: ImageDescriptor, labels: Readonly<Record<string, string>> = {},
): ImageRecord {
  const record = {
    name,
    labels: { ...labels },
    target: { mediaType: target.mediaType, digest: target.digest, size: target.size, annotations: { ...(target.annotations ?? {}) } },
  };
  try {
    return images.create(ns, record);
  } catch (e) {
    if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
    return images.update(ns, record, ['target']);
  }
}
