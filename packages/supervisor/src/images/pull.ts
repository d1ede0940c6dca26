/**
 * Server-side pull: what the engine asks for when a user pulls an image.
 *
 *   resolve + download (registry client, layers in parallel)  ─┐
 *        into the namespace's content store, verified          │ overlapped
 *   unpack, in layer order, each layer once the ones below it  │
 *        are committed: prepare on the parent chain ID, apply  │
 *        (in a worker thread, from the download itself when    │
 *        it can, else from the stored blob), check the diffID, ─┘
 *        commit as its chain ID once the blob is stored
 *   label the blobs (distribution source, gc refs, the snapshot)
 *   create or update the image record
 *
 * Every blob the pull touches is held in the content store for the whole
 * pull, so a delete in the meantime cannot take it from under the unpack.
 */
import { ErrorKind, BerthError, invalid, isKind } from '@berth/base';
import {
  RegistryClient, compressionOfMediaType, formatReference, parseDockerReference, pull, readBlob, writeBlob,
} from '@berth/images';
import type {
  CredentialsProvider, ImageDescriptor, ImagePlatform, PullProgress, PullStatus, RegistryCredentials,
} from '@berth/images';
import type { MetadataContentStore } from '../services/content.js';
import { DEFAULT_SNAPSHOTTER, snapshotterFor } from '../services/snapshots.js';
import {
  ImageLease, diffIdsOf, indexRefs, labelBlob, manifestLayers, manifestRefs, recordImage, unpackLayers, withItem, GC_REF_SNAPSHOT,
} from './_unpack.js';
import type { PullDeps } from './_unpack.js';
import { LayerExtractor, LiveBudget, LiveLayer, StreamAbandoned } from './_extract.js';

export { pullDepsOf } from './_unpack.js';
export type { PullCollector, PullDeps } from './_unpack.js';

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
  /**
   * Extract layers in a worker thread, each from its download as it arrives
   * when its turn has come (default true); false: each layer is read back
   * from the content store once stored and extracted on this thread.
   */
  readonly singlePass?: boolean;
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

/** Bytes a pull holds in memory for layers downloading ahead of their extraction. */
const LIVE_BUDGET = 64 << 20;

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

async function exists(content: MetadataContentStore, digest: string): Promise<boolean> {
  try {
    await content.local.info(digest);
    return true;
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

  const lease = new ImageLease(deps.gc, ns, 'pull');
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
  // Single pass: each layer's download, as a second stream, once it starts (undefined: stored without one).
  const singlePass = opts.singlePass ?? true;
  const extractor = singlePass ? new LayerExtractor() : undefined;
  extractor?.warm();
  const budget = new LiveBudget(LIVE_BUDGET);
  const liveByDigest = new Map<string, Deferred<LiveLayer | undefined>>();
  const liveOf = (digest: string): Deferred<LiveLayer | undefined> => {
    let d = liveByDigest.get(digest);
    if (d === undefined) {
      d = deferred<LiveLayer | undefined>();
      if (downloadFailed !== undefined) d.reject(downloadFailed.error);
      liveByDigest.set(digest, d);
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
    const top = await unpackLayers(sn, store, m.layers, diffIds, lease, {
      ready: (d) => readyOf(d).promise,
      emit,
      signal: ac.signal,
      ...(extractor === undefined ? {} : {
        live: async (d: string) => (await liveOf(d).promise)?.claim(),
        fallback: (e: unknown) => e instanceof StreamAbandoned,
        apply: (source, mounts, mediaType) => extractor.apply(source, mounts, mediaType),
      }),
    });
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
          let body: AsyncIterable<Uint8Array> = stream;
          if (extractor !== undefined && compressionOfMediaType(desc.mediaType) !== undefined) {
            const live = new LiveLayer(desc.digest, budget);
            liveOf(desc.digest).resolve(live);
            body = live.tee(stream);
          }
          await writeBlob(store, body, desc, { labels: { [source]: parsed.path }, signal: ac.signal });
        },
      },
      onProgress: (ev) => {
        emit(ev);
        // Reported once the blob is in the store: its unpack may start.
        const stored = ev.status === 'done' || ev.status === 'exists';
        if (stored) {
          readyOf(ev.digest).resolve();
          liveOf(ev.digest).resolve(undefined); // no-op when its download made one
        }
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
      for (const d of liveByDigest.values()) d.reject(e);
      await unpacking.catch(() => undefined);
      // When the unpack failed first, the downloads failed because it stopped them.
      throw unpackFailed !== undefined && unpackFailed.error !== e ? unpackFailed.error : e;
    }
    const unpacked = await unpacking;

    // Labels as containerd's pull leaves them.
    const m = result.manifests;
    const label = async (digest: string, extra: Record<string, string>): Promise<void> => {
      const info = await store.info(digest);
      await labelBlob(store, digest, { ...extra, [source]: withItem(info.labels[source], parsed.path) });
    };
    if (m.index !== undefined) await label(m.index.descriptor.digest, indexRefs(m.index.index.manifests));
    await label(m.manifest.descriptor.digest, manifestRefs(m.manifest.manifest));
    await label(unpacked.configDigest, { [`${GC_REF_SNAPSHOT}${sn.name}`]: unpacked.top });
    for (const l of new Set(result.layers.map((x) => x.digest))) await label(l, {});

    const target = result.target;
    const img = recordImage(deps.images, ns, formatReference(result.ref), target);
    return { name: img.name, target, chainId: unpacked.top };
  } catch (e) {
    if (opts.signal?.aborted === true && !(e instanceof BerthError && e.kind === ErrorKind.Canceled)) {
      throw new BerthError(ErrorKind.Canceled, `pull ${ref} canceled`, { cause: e });
    }
    throw e;
  } finally {
    opts.signal?.removeEventListener('abort', onOuterAbort);
    await extractor?.close();
    for (const release of holds) release();
    lease.end();
  }
}
