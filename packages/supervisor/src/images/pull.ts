/**
 * Server-side pull: what the engine asks for when a user pulls an image.
 *
 *   resolve + download (registry client, layers in parallel)  ─┐
 *        into the namespace's content store, verified          │ overlapped
 *   unpack, in layer order, each layer once it and the ones    │
 *        below it are stored: prepare on the parent chain ID,  ─┘
 *        apply, check the diffID, commit as its chain ID
 *   label the blobs (distribution source, gc refs, the snapshot)
 *   create or update the image record
 *
 * Every blob the pull touches is held in the content store for the whole
 * pull, so a delete in the meantime cannot take it from under the unpack.
 */
import { randomBytes } from 'node:crypto';
import { ErrorKind, BerthError, failedPrecondition, invalid, isKind } from '@berth/base';
import {
  RegistryClient, chainIds, formatReference, parseDockerReference, pull, readBlob, writeBlob,
} from '@berth/images';
import type {
  CredentialsProvider, ImageDescriptor, ImagePlatform, PullProgress, PullStatus, RegistryCredentials, Snapshotter,
} from '@berth/images';
import { pluginType } from '../plugin.js';
import type { PluginSet } from '../plugin.js';
import { ContentPlugin } from '../services/content.js';
import type { MetadataContentStore } from '../services/content.js';
import { applyToMounts } from '../services/diff.js';
import { ImagesPlugin } from '../services/images.js';
import type { ImageRecord, ImageStore } from '../services/images.js';
import { DEFAULT_SNAPSHOTTER, SnapshotterPlugin, snapshotterFor } from '../services/snapshots.js';
import type { NamespacedSnapshotter } from '../services/snapshots.js';

/**
 * The garbage collector, as far as a pull uses it: a lease holds what the
 * pull creates until the image record and its labels reference it, and
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

/** What a pull works on: the daemon's content store, image store and snapshotters (and its collector, when one runs). */
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

/** How long a pull's lease lives if the pull never ends it (containerd's client default). */
const LEASE_EXPIRY_MS = 24 * 60 * 60 * 1000;

/** A pull's lease: what is added stays until end(); without a collector, nothing to do. */
class PullLease {
  private readonly id: string | undefined;

  constructor(private readonly gc: PullCollector | undefined, private readonly ns: string) {
    if (gc === undefined) return;
    const expire = new Date(Date.now() + LEASE_EXPIRY_MS).toISOString();
    this.id = gc.leases.create(ns, `pull-${Date.now()}-${randomBytes(6).toString('hex')}`, { 'containerd.io/gc.expire': expire }).id;
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

export type PullImageStatus = PullStatus | 'extracting' | 'extracted' | 'unpacked';

/**
 * One step of a pull. Downloads report as the registry client does
 * (waiting, downloading, verifying, done, exists); each layer then reports
 * extracting and extracted, or unpacked when its snapshot already existed.
 */
export interface PullImageProgress {
  readonly digest: string;
  readonly kind: PullProgress['kind'];
  readonly status: PullImageStatus;
  readonly current: number;
  readonly total: number;
  /** When the event happened (performance.now(), ms). */
  readonly at: number;
}

export interface PullImageOptions {
  /** For the reference's registry; a function is asked per registry domain. */
  readonly credentials?: RegistryCredentials | CredentialsProvider;
  /** Reach the reference's registry over plain HTTP (loopback always is). */
  readonly insecure?: boolean;
  /** `os/arch[/variant]` or a platform; default: the host's. */
  readonly platform?: string | ImagePlatform;
  /** Default: overlayfs. */
  readonly snapshotter?: string;
  /** Layers downloaded at once (default 3). */
  readonly concurrency?: number;
  readonly onProgress?: (ev: PullImageProgress) => void;
  readonly signal?: AbortSignal;
}

export interface PullImageResult {
  /** The image record's name: the normalised reference (`docker.io/library/busybox:latest`). */
  readonly name: string;
  /** What the name points at: the index, or the manifest when there is none. */
  readonly target: ImageDescriptor;
  /** The committed snapshot of the whole rootfs (the top layer's chain ID). */
  readonly chainId: string;
}

const DISTRIBUTION_SOURCE = 'containerd.io/distribution.source.';
const GC_REF_CONTENT = 'containerd.io/gc.ref.content.';
const GC_REF_SNAPSHOT = 'containerd.io/gc.ref.snapshot.';

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // a rejection nobody waits for is not an unhandled one
  return { promise, resolve, reject };
}

/** The config's diff IDs (bottom layer first), checked. */
function diffIdsOf(config: Buffer, digest: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(config.toString('utf8'));
  } catch (e) {
    throw invalid(`config ${digest}: not JSON: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const rootfs = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>)['rootfs'] : undefined;
  const ids = typeof rootfs === 'object' && rootfs !== null ? (rootfs as Record<string, unknown>)['diff_ids'] : undefined;
  if (!Array.isArray(ids) || !ids.every((d): d is string => typeof d === 'string')) {
    throw invalid(`config ${digest}: rootfs.diff_ids must be a list of digests`);
  }
  return ids;
}

function manifestLayers(bytes: Buffer, digest: string): { config: ImageDescriptor; layers: ImageDescriptor[] } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw invalid(`manifest ${digest}: not JSON: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const o = parsed as { config?: ImageDescriptor; layers?: ImageDescriptor[] };
  if (o.config === undefined || !Array.isArray(o.layers)) throw invalid(`manifest ${digest}: no config or layers`);
  return { config: o.config, layers: o.layers };
}

/** A comma-separated label value with `item` in it. */
function withItem(current: string | undefined, item: string): string {
  const items = current === undefined || current === '' ? [] : current.split(',');
  return items.includes(item) ? items.join(',') : [...items, item].join(',');
}

/**
 * Unpack the image's layers into a snapshotter, in order, as each becomes
 * available: a layer whose chain ID is committed already is skipped; any
 * other is applied onto a fresh active snapshot over the previous chain ID,
 * checked against its diff ID, and committed under its chain ID. A failure
 * removes the active snapshot; what was committed below stays (it is whole).
 */
async function unpackLayers(
  sn: NamespacedSnapshotter,
  content: ReturnType<MetadataContentStore['namespace']>,
  layers: readonly ImageDescriptor[],
  diffIds: readonly string[],
  ready: (digest: string) => Promise<void>,
  emit: (ev: Omit<PullImageProgress, 'at'>) => void,
  signal: AbortSignal,
  lease: PullLease,
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
      emit({ digest: layer.digest, kind: 'layer', status: 'unpacked', current: layer.size, total: layer.size });
      continue;
    }
    await ready(layer.digest);
    signal.throwIfAborted();
    const key = `extract-${Date.now()}-${randomBytes(6).toString('hex')} ${name}`;
    emit({ digest: layer.digest, kind: 'layer', status: 'extracting', current: 0, total: layer.size });
    let done = false;
    lease.add(resource, key);
    try {
      const mounts = await lease.snapshots(() => sn.prepare(key, parent));
      const reader = await content.reader(layer.digest);
      let applied;
      try {
        applied = await applyToMounts(reader.stream(), mounts, layer.mediaType);
      } finally {
        await reader.close();
      }
      if (applied.digest !== diffIds[i]) {
        throw failedPrecondition(`layer ${i} (${layer.digest}): its content has diff ID ${applied.digest}, the config says ${diffIds[i] ?? ''}`);
      }
      signal.throwIfAborted();
      try {
        await lease.snapshots(() => sn.commit(name, key));
        done = true;
      } catch (e) {
        // Another pull of the same layers committed it first.
        if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
      }
    } finally {
      if (!done) await lease.snapshots(() => sn.remove(key)).catch(() => undefined);
    }
    emit({ digest: layer.digest, kind: 'layer', status: 'extracted', current: layer.size, total: layer.size });
  }
  const top = chain[chain.length - 1];
  if (top === undefined) throw invalid('the image has no layers');
  return top;
}

async function exists(content: MetadataContentStore, digest: string): Promise<boolean> {
  try {
    await content.local.info(digest);
    return true;
  } catch (e) {
    if (isKind(e, ErrorKind.NotFound)) return false;
    throw e;
  }
}

async function committed(sn: NamespacedSnapshotter, name: string): Promise<boolean> {
  try {
    return (await sn.stat(name)).kind === 'committed';
  } catch (e) {
    if (isKind(e, ErrorKind.NotFound)) return false;
    throw e;
  }
}

/**
 * Pull `ref` into namespace `ns`: content, unpacked snapshots, image record.
 * Nothing of a failed layer is committed; blobs already verified stay in
 * the content store (a retry does not fetch them again).
 */
export async function pullImage(deps: PullDeps, ns: string, ref: string, opts: PullImageOptions = {}): Promise<PullImageResult> {
  const parsed = parseDockerReference(ref);
  const source = `${DISTRIBUTION_SOURCE}${parsed.domain}`;
  const creds = opts.credentials;
  const client = new RegistryClient({
    ...(creds === undefined ? {} : { credentials: typeof creds === 'function' ? creds : (domain: string) => (domain === parsed.domain ? creds : undefined) }),
    ...(opts.insecure === true ? { insecureRegistries: [parsed.domain] } : {}),
  });
  const store = deps.content.namespace(ns);
  const sn = snapshotterFor(deps.snapshotters, opts.snapshotter ?? DEFAULT_SNAPSHOTTER, ns);
  const emit = (ev: Omit<PullImageProgress, 'at'>): void => opts.onProgress?.({ ...ev, at: performance.now() });

  const lease = new PullLease(deps.gc, ns);
  const holds: Array<() => void> = [];
  const held = new Set<string>();
  const hold = (digest: string): void => {
    if (held.has(digest)) return;
    held.add(digest);
    lease.add('content', digest);
    lease.add('ingests', digest);
    holds.push(deps.content.hold(digest));
  };
  const readyByDigest = new Map<string, Deferred<void>>();
  let downloadFailed: { error: unknown } | undefined;
  const readyOf = (digest: string): Deferred<void> => {
    let d = readyByDigest.get(digest);
    if (d === undefined) {
      d = deferred<void>();
      if (downloadFailed !== undefined) d.reject(downloadFailed.error);
      readyByDigest.set(digest, d);
    }
    return d;
  };
  const ac = new AbortController();
  const onOuterAbort = (): void => ac.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });

  // The manifest and config as the download reports them; the unpack starts once both are stored.
  let manifestDigest: string | undefined;
  const configStored = deferred<string>();

  const unpacking = (async () => {
    const configDigest = await configStored.promise;
    if (manifestDigest === undefined) throw invalid('the config arrived before its manifest');
    const m = manifestLayers(await readBlob(store, manifestDigest), manifestDigest);
    const diffIds = diffIdsOf(await readBlob(store, configDigest), configDigest);
    const top = await unpackLayers(sn, store, m.layers, diffIds, (d) => readyOf(d).promise, emit, ac.signal, lease);
    return { top, configDigest };
  })();
  // An unpack that fails stops the downloads at once.
  let unpackFailed: { error: unknown } | undefined;
  unpacking.catch((e: unknown) => {
    unpackFailed = { error: e };
    ac.abort(e);
  });

  try {
    const pulling = pull(client, parsed, {
      ...(opts.platform === undefined ? {} : { platform: opts.platform }),
      ...(opts.concurrency === undefined ? {} : { concurrency: opts.concurrency }),
      signal: ac.signal,
      store: {
        has: async (desc) => {
          hold(desc.digest);
          let found = deps.content.find(ns, desc.digest) !== undefined;
          if (!found && await exists(deps.content, desc.digest)) {
            // Stored for another namespace: made visible here without a byte fetched.
            await writeBlob(store, (async function* () { /* nothing to write */ })(), desc, { labels: { [source]: parsed.path } });
            found = true;
          }
          return found;
        },
        write: async (desc, stream) => {
          hold(desc.digest);
          await writeBlob(store, stream, desc, { labels: { [source]: parsed.path }, signal: ac.signal });
        },
      },
      onProgress: (ev) => {
        emit(ev);
        // Reported once the blob is in the store: its unpack may start.
        const stored = ev.status === 'done' || ev.status === 'exists';
        if (stored) readyOf(ev.digest).resolve();
        if (ev.kind === 'manifest' && stored) manifestDigest = ev.digest;
        if (ev.kind === 'config' && stored) configStored.resolve(ev.digest);
      },
    });
    let result;
    try {
      result = await pulling;
    } catch (e) {
      downloadFailed = { error: e };
      configStored.reject(e);
      for (const d of readyByDigest.values()) d.reject(e);
      await unpacking.catch(() => undefined);
      // When the unpack failed first, the downloads failed because it stopped them.
      throw unpackFailed !== undefined && unpackFailed.error !== e ? unpackFailed.error : e;
    }
    const unpacked = await unpacking;

    // Labels as containerd's pull leaves them.
    const m = result.manifests;
    const label = async (digest: string, extra: Record<string, string>): Promise<void> => {
      const info = await store.info(digest);
      const want: Record<string, string> = { ...extra, [source]: withItem(info.labels[source], parsed.path) };
      const paths = Object.keys(want).filter((k) => info.labels[k] !== want[k]).map((k) => `labels.${k}`);
      if (paths.length > 0) await store.update(digest, want, paths);
    };
    if (m.index !== undefined) {
      const refs: Record<string, string> = {};
      for (const [i, d] of m.index.index.manifests.entries()) refs[`${GC_REF_CONTENT}m.${i}`] = d.digest;
      await label(m.index.descriptor.digest, refs);
    }
    const manifestRefs: Record<string, string> = { [`${GC_REF_CONTENT}config`]: m.config.descriptor.digest };
    for (const [i, l] of m.manifest.manifest.layers.entries()) manifestRefs[`${GC_REF_CONTENT}l.${i}`] = l.digest;
    await label(m.manifest.descriptor.digest, manifestRefs);
    await label(unpacked.configDigest, { [`${GC_REF_SNAPSHOT}${sn.name}`]: unpacked.top });
    for (const l of new Set(result.layers.map((x) => x.digest))) await label(l, {});

    const target = result.target;
    const record = {
      name: formatReference(result.ref),
      labels: {},
      target: { mediaType: target.mediaType, digest: target.digest, size: target.size, annotations: { ...(target.annotations ?? {}) } },
    };
    let img: ImageRecord;
    try {
      img = deps.images.create(ns, record);
    } catch (e) {
      if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
      img = deps.images.update(ns, record, ['target']);
    }
    return { name: img.name, target, chainId: unpacked.top };
  } catch (e) {
    if (opts.signal?.aborted === true && !(e instanceof BerthError && e.kind === ErrorKind.Canceled)) {
      throw new BerthError(ErrorKind.Canceled, `pull ${ref} canceled`, { cause: e });
    }
    throw e;
  } finally {
    opts.signal?.removeEventListener('abort', onOuterAbort);
    for (const release of holds) release();
    lease.end();
  }
}
