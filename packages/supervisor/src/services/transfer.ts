/**
 * containerd.services.transfer.v1.Transfer: one call that moves images
 * between a source and a destination, each an Any naming its kind:
 *
 *   OCIRegistry       -> ImageStore          pull (pullImage), unpacked
 *   ImageStore        -> OCIRegistry         push
 *   ImageImportStream -> ImageStore          import a docker-save / OCI layout tar
 *   ImageStore        -> ImageExportStream   export as a tar (docker-save compatible)
 *
 * The side channels are streams the client opened with the Streaming
 * service: progress (Progress messages, closed when the transfer ends),
 * registry credentials (AuthRequest out, AuthResponse back, asked once per
 * registry host when the registry challenges) and archive bytes (Data and
 * WindowUpdate, see streaming.ts).
 */
import { finished } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { ErrorKind, invalid, isKind, notFound, notImplemented, unavailable } from '@berth/base';
import {
  RegistryClient, formatReference, hostPlatform, isIndexType, parseDockerReference, parseIndex, parseReference, push,
  readBlob, selectPlatform, withDigest, withTag,
} from '@berth/images';
import type {
  AuthChallenge, ContentStore, CredentialsProvider, ImageDescriptor, ImagePlatform, ImageReference, PushProgress, RegistryClientOptions,
  RegistryCredentials, RegistryResponse, SendOptions,
} from '@berth/images';
import { GRPCPlugin } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { GrpcService } from '../grpc.js';
import type { Protos } from '../protos.js';
import { GCPlugin } from '../gc/types.js';
import { ContentPlugin } from './content.js';
import { ImagesPlugin } from './images.js';
import type { ImageRecord } from './images.js';
import { SnapshotterPlugin } from './snapshots.js';
import { StreamingPlugin, receiveBytes, sendBytes } from './streaming.js';
import type { StreamManager, TransferStream } from './streaming.js';
import { pullImage } from '../images/pull.js';
import type { PullImageProgress } from '../images/pull.js';
import { importImages } from '../images/import.js';
import { exportImages } from '../images/export.js';
import type { PullDeps } from '../images/_unpack.js';
import { anyMessage, isRecord, optRecord, str, strMap } from '../wire.js';
import type { AnyMessage, Wire } from '../wire.js';

const T = 'containerd.types.transfer.';
export const TransferTypes = {
  OCIRegistry: `${T}OCIRegistry`,
  ImageStore: `${T}ImageStore`,
  ImageImportStream: `${T}ImageImportStream`,
  ImageExportStream: `${T}ImageExportStream`,
  Progress: `${T}Progress`,
  AuthRequest: `${T}AuthRequest`,
  AuthResponse: `${T}AuthResponse`,
} as const;

// ---------------------------------------------------------------------------
// Requests, parsed

interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant: string;
}

interface ImageRef {
  readonly name: string;
  readonly isPrefix: boolean;
  readonly addDigest: boolean;
}

interface ImageStoreSpec {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly platforms: Platform[];
  readonly extraReferences: ImageRef[];
  readonly unpacks: Array<{ platform: Platform | undefined; snapshotter: string }>;
}

interface RegistrySpec {
  readonly reference: string;
  readonly authStream: string;
  readonly headers: Record<string, string>;
  readonly defaultScheme: string;
}

function list(o: Wire, key: string, what: string): Wire[] {
  const v = o[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every(isRecord)) throw invalid(`${what}.${key}: expected a list of messages`);
  return v;
}

function platformOf(o: Wire, what: string): Platform {
  return { os: str(o, 'os', what), architecture: str(o, 'architecture', what), variant: str(o, 'variant', what) };
}

function imagePlatform(p: Platform): ImagePlatform {
  if (p.os === '' || p.architecture === '') throw invalid(`platform ${JSON.stringify(p)}: os and architecture must be set`);
  return p.variant === '' ? { os: p.os, architecture: p.architecture } : p;
}

function parseImageStore(v: Wire): ImageStoreSpec {
  const what = 'ImageStore';
  return {
    name: str(v, 'name', what),
    labels: strMap(v, 'labels', what),
    platforms: list(v, 'platforms', what).map((p) => platformOf(p, `${what}.platforms`)),
    extraReferences: list(v, 'extra_references', what).map((r) => ({
      name: str(r, 'name', `${what}.extra_references`),
      isPrefix: r['is_prefix'] === true,
      addDigest: r['add_digest'] === true,
    })),
    unpacks: list(v, 'unpacks', what).map((u) => {
      const p = optRecord(u['platform'], `${what}.unpacks.platform`);
      return { platform: p === undefined ? undefined : platformOf(p, `${what}.unpacks.platform`), snapshotter: str(u, 'snapshotter', `${what}.unpacks`) };
    }),
  };
}

function parseRegistry(v: Wire): RegistrySpec {
  const what = 'OCIRegistry';
  const resolver = optRecord(v['resolver'], `${what}.resolver`) ?? {};
  const scheme = str(resolver, 'default_scheme', `${what}.resolver`);
  if (scheme !== '' && scheme !== 'http' && scheme !== 'https') {
    throw invalid(`${what}.resolver.default_scheme: ${JSON.stringify(scheme)} is not http or https`);
  }
  const reference = str(v, 'reference', what);
  if (reference === '') throw invalid(`${what}.reference must be set`);
  return {
    reference,
    authStream: str(resolver, 'auth_stream', `${what}.resolver`),
    headers: strMap(resolver, 'headers', `${what}.resolver`),
    defaultScheme: scheme,
  };
}

/** A name an image record may have: a reference, normalised (`app` -> docker.io/library/app:latest). */
function imageName(s: string, what: string): string {
  try {
    return formatReference(parseDockerReference(s));
  } catch (e) {
    throw invalid(`${what} ${JSON.stringify(s)} is not a valid image name: ${e instanceof Error ? e.message : String(e)}`, e);
  }
}

// ---------------------------------------------------------------------------
// Progress

export interface ProgressEvent {
  readonly event: string;
  readonly name?: string;
  readonly parents?: readonly string[];
  readonly progress?: number;
  readonly total?: number;
  readonly desc?: ImageDescriptor;
}

/**
 * Progress messages on the client's stream, sent in order; a client that
 * stops listening does not fail the transfer. close() sends what is queued
 * and ends the stream.
 */
class ProgressSink {
  private chain: Promise<void> = Promise.resolve();
  private broken = false;

  constructor(private readonly protos: Protos, private readonly stream: TransferStream | undefined) {}

  get active(): boolean {
    return this.stream !== undefined;
  }

  /** Queue a step that runs in order with the queued sends. */
  then(step: () => Promise<void>): void {
    if (this.stream === undefined) return;
    this.chain = this.chain.then(step).catch(() => undefined);
  }

  /** Queue an event. */
  emit(ev: ProgressEvent): void {
    this.then(() => this.send(ev));
  }

  /** Send an event now (from a queued step). */
  async send(ev: ProgressEvent): Promise<void> {
    const s = this.stream;
    if (s === undefined || this.broken) return;
    const d = ev.desc;
    try {
      await s.send(this.protos.pack(TransferTypes.Progress, {
        event: ev.event,
        name: ev.name ?? '',
        parents: [...(ev.parents ?? [])],
        progress: ev.progress ?? 0,
        total: ev.total ?? 0,
        ...(d === undefined ? {} : { desc: { media_type: d.mediaType, digest: d.digest, size: d.size, annotations: { ...(d.annotations ?? {}) } } }),
      }));
    } catch {
      this.broken = true;
    }
  }

  async close(): Promise<void> {
    await this.chain;
    this.stream?.close();
  }
}

/** Adds the media types of what a manifest or index lists (and its own) to `into`; best effort, for progress. */
async function learnMediaTypes(store: ContentStore, digest: string, into: Map<string, string>): Promise<void> {
  try {
    const o: unknown = JSON.parse((await readBlob(store, digest)).toString('utf8'));
    if (!isRecord(o)) return;
    const descs = [o['config'], ...(Array.isArray(o['layers']) ? o['layers'] : []), ...(Array.isArray(o['manifests']) ? o['manifests'] : [])];
    for (const d of descs) {
      if (isRecord(d) && typeof d['digest'] === 'string' && typeof d['mediaType'] === 'string') into.set(d['digest'], d['mediaType']);
    }
    if (typeof o['mediaType'] === 'string' && !into.has(digest)) into.set(digest, o['mediaType']);
  } catch {
    // A blob that cannot be read here shows without media types.
  }
}

const refKey = (kind: string, digest: string): string => `${kind}-${digest}`;

/** The event names containerd's transfer service uses, from the pull and unpack steps. */
const PULL_EVENTS: Readonly<Record<PullImageProgress['status'], string>> = {
  waiting: 'waiting',
  downloading: 'downloading',
  verifying: 'downloading',
  done: 'complete',
  exists: 'already exists',
  extracting: 'extracting',
  extracted: 'extracted',
  unpacked: 'extracted',
};

const PUSH_EVENTS: Readonly<Record<PushProgress['status'], string>> = {
  waiting: 'waiting',
  uploading: 'uploading',
  exists: 'already exists',
  mounted: 'complete',
  done: 'complete',
};

/** Turns pullImage's events into Progress messages: names as containerd's ref keys, parents, media types. */
class PullProgress {
  private indexKey: string | undefined;
  private manifestKey: string | undefined;
  private rootSeen = false;
  private unpacking = false;
  private readonly mediaTypes = new Map<string, string>();

  constructor(
    private readonly sink: ProgressSink,
    private readonly deps: PullDeps,
    private readonly ns: string,
    private readonly name: string,
    private readonly reference: string,
  ) {}

  private learn(digest: string): void {
    this.sink.then(() => learnMediaTypes(this.deps.content.namespace(this.ns), digest, this.mediaTypes));
  }

  on(ev: PullImageProgress): void {
    if (!this.sink.active) return;
    const kind = ev.kind;
    if (!this.rootSeen && (kind === 'index' || kind === 'manifest')) {
      this.rootSeen = true;
      this.sink.emit({ event: `Pulling from ${this.reference}` });
      this.sink.emit({ event: 'fetching image content', name: this.name });
    }
    const key = refKey(kind, ev.digest);
    if (kind === 'index') this.indexKey ??= key;
    if (kind === 'manifest') this.manifestKey ??= key;
    let parents: string[];
    if (kind === 'index') parents = [this.name];
    else if (kind === 'manifest') parents = [this.indexKey ?? this.name];
    else parents = [this.manifestKey ?? this.name];
    if (ev.status === 'extracting' && !this.unpacking) {
      this.unpacking = true;
      this.sink.emit({ event: 'unpacking', name: this.name });
    }
    const event = PULL_EVENTS[ev.status];
    this.sink.then(() => this.sink.send({
      event,
      name: key,
      parents,
      progress: ev.current,
      total: ev.total,
      desc: { mediaType: this.mediaTypes.get(ev.digest) ?? '', digest: ev.digest, size: ev.total },
    }));
    if ((kind === 'index' || kind === 'manifest') && (ev.status === 'done' || ev.status === 'exists')) this.learn(ev.digest);
  }
}

// ---------------------------------------------------------------------------
// Registry access: credentials from the auth stream, headers, plain HTTP

/** A registry client that sends the resolver's headers with every request. */
class HeaderRegistryClient extends RegistryClient {
  constructor(private readonly extra: Readonly<Record<string, string>>, opts: RegistryClientOptions) {
    super(opts);
  }

  override send(domain: string, opts: SendOptions): Promise<RegistryResponse> {
    return super.send(domain, { ...opts, headers: { ...this.extra, ...(opts.headers ?? {}) } });
  }
}

function formatChallenge(c: AuthChallenge): string {
  const scheme = c.scheme.charAt(0).toUpperCase() + c.scheme.slice(1);
  const params = Object.entries(c.params).map(([k, v]) => `${k}="${v.replace(/["\\]/g, '\\$&')}"`);
  return params.length === 0 ? scheme : `${scheme} ${params.join(',')}`;
}

/**
 * Credentials asked on the client's auth stream, once per registry host (the
 * registry client asks only when the registry challenged). One question at
 * a time, as containerd's callback does.
 */
function authStreamCredentials(
  protos: Protos, stream: TransferStream, reference: string, challenge: (domain: string) => Promise<AuthChallenge | null>,
): CredentialsProvider {
  const answers = new Map<string, Promise<RegistryCredentials | undefined>>();
  let turn: Promise<unknown> = Promise.resolve();
  const ask = async (domain: string): Promise<RegistryCredentials | undefined> => {
    const c = await challenge(domain).catch(() => null);
    await stream.send(protos.pack(TransferTypes.AuthRequest, {
      host: domain, reference, wwwauthenticate: c === null ? [] : [formatChallenge(c)],
    }));
    for (;;) {
      const msg = await stream.recv();
      if (msg === undefined) throw unavailable(`registry ${domain}: the auth stream ${JSON.stringify(stream.id)} closed before answering`);
      const m = protos.unpack(msg);
      if (m === undefined || m.typeName !== TransferTypes.AuthResponse) continue;
      const type = str(m.value, 'authType', 'AuthResponse');
      const secret = str(m.value, 'secret', 'AuthResponse');
      switch (type) {
        case 'NONE':
        case '':
          return undefined;
        case 'CREDENTIALS':
          return { username: str(m.value, 'username', 'AuthResponse'), password: secret };
        case 'REFRESH':
          throw notImplemented(`registry ${domain}: identity-token (refresh token) credentials are not supported; use a username and password`);
        case 'HEADER':
          throw notImplemented(`registry ${domain}: Authorization-header credentials are not supported; use a username and password`);
        default:
          throw invalid(`registry ${domain}: auth response type ${JSON.stringify(type)} is not known`);
      }
    }
  };
  return (domain) => {
    let p = answers.get(domain);
    if (p === undefined) {
      p = turn.then(() => ask(domain));
      turn = p.catch(() => undefined);
      answers.set(domain, p);
    }
    return p;
  };
}

// ---------------------------------------------------------------------------
// The four transfers

interface Context {
  readonly protos: Protos;
  readonly deps: PullDeps;
  readonly streams: StreamManager;
  readonly ns: string;
  readonly signal: AbortSignal;
  readonly progress: ProgressSink;
  /** Streams this transfer took: closed when it ends. */
  readonly used: TransferStream[];
}

function takeStream(c: Context, id: string, what: string): TransferStream {
  if (id === '') throw invalid(`${what} stream must be named`);
  const s = c.streams.get(c.ns, id, what);
  c.used.push(s);
  return s;
}

/** Set labels on a record (merged into what it has). */
function addLabels(c: Context, name: string, labels: Readonly<Record<string, string>>): void {
  const keys = Object.keys(labels);
  if (keys.length === 0) return;
  const rec = c.deps.images.get(c.ns, name);
  c.deps.images.update(c.ns, { name, labels: { ...labels }, target: rec.target }, keys.map((k) => `labels.${k}`));
}

/** Create or repoint a record; labels merged. */
function record(c: Context, name: string, target: ImageRecord['target'], labels: Readonly<Record<string, string>>): ImageRecord {
  try {
    c.deps.images.create(c.ns, { name, labels: { ...labels }, target });
  } catch (e) {
    if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
    c.deps.images.update(c.ns, { name, labels: {}, target }, ['target']);
    addLabels(c, name, labels);
  }
  return c.deps.images.get(c.ns, name);
}

function exists(c: Context, name: string): boolean {
  try {
    c.deps.images.get(c.ns, name);
    return true;
  } catch (e) {
    if (isKind(e, ErrorKind.NotFound)) return false;
    throw e;
  }
}

function targetOf(rec: ImageRecord): ImageDescriptor {
  return { mediaType: rec.target.mediaType, digest: rec.target.digest, size: rec.target.size };
}

async function pullTransfer(c: Context, src: RegistrySpec, dst: ImageStoreSpec): Promise<void> {
  const auth = src.authStream === '' ? undefined : takeStream(c, src.authStream, 'auth');
  const ref = parseDockerReference(src.reference);
  const refName = formatReference(ref);
  const name = dst.name === '' ? refName : imageName(dst.name, 'ImageStore.name');
  const insecure = src.defaultScheme === 'http';
  const fallback = dst.platforms[0];
  const unpacks = dst.unpacks.length > 0 ? dst.unpacks : [{ platform: undefined, snapshotter: '' }];
  const challenger = new RegistryClient(insecure ? { insecureRegistries: [ref.domain] } : {});
  const credentials = auth === undefined ? undefined : authStreamCredentials(c.protos, auth, refName, (d) => challenger.challenge(d));
  const headers = Object.keys(src.headers).filter((h) => h.toLowerCase() !== 'user-agent');
  if (headers.length > 0) {
    // pullImage makes its own registry client: extra headers have no way in yet.
    throw notImplemented(`pull: resolver headers (${headers.join(', ')}) are not supported`);
  }
  const hadRefRecord = exists(c, refName);
  c.progress.emit({ event: `Resolving from ${refName}` });
  const events = new PullProgress(c.progress, c.deps, c.ns, name, refName);
  let target: ImageDescriptor | undefined;
  try {
    for (const u of unpacks) {
      const p = u.platform ?? fallback;
      const res = await pullImage(c.deps, c.ns, refName, {
        ...(credentials === undefined ? {} : { credentials }),
        ...(insecure ? { insecure } : {}),
        ...(p === undefined ? {} : { platform: imagePlatform(p) }),
        ...(u.snapshotter === '' ? {} : { snapshotter: u.snapshotter }),
        onProgress: (ev) => events.on(ev),
        signal: c.signal,
      });
      target = res.target;
    }
  } finally {
    challenger.close();
  }
  if (target === undefined) throw invalid('pull: nothing to pull');
  const desc = { mediaType: target.mediaType, digest: target.digest, size: target.size, annotations: {} };
  const rec = record(c, name, desc, dst.labels);
  if (name !== refName && !hadRefRecord) c.deps.images.delete(c.ns, refName);
  c.progress.emit({ event: 'saved', name: rec.name, desc: targetOf(rec) });
  c.progress.emit({ event: `Completed pull from ${refName}` });
}

async function pushTransfer(c: Context, src: ImageStoreSpec, dst: RegistrySpec): Promise<void> {
  if (src.name === '') throw invalid('push: ImageStore.name must name the image to push');
  const auth = dst.authStream === '' ? undefined : takeStream(c, dst.authStream, 'auth');
  const rec = c.deps.images.get(c.ns, src.name);
  const ref: ImageReference = parseReference(dst.reference);
  const refName = formatReference(ref);
  const store = c.deps.content.namespace(c.ns);
  let root = targetOf(rec);
  const want = src.platforms[0];
  if (want !== undefined && isIndexType(root.mediaType)) {
    // One platform of a multi-platform image, as `push --platform` does.
    const index = parseIndex(await readBlob(store, root.digest), `image ${rec.name}: index ${root.digest}`);
    const chosen = selectPlatform(index.manifests, imagePlatform(want));
    if (chosen === undefined) throw notFound(`push ${rec.name}: its index has no manifest for ${want.os}/${want.architecture}`);
    root = { mediaType: chosen.mediaType, digest: chosen.digest, size: chosen.size };
  }
  const insecure = dst.defaultScheme === 'http';
  let client: HeaderRegistryClient | undefined;
  const credentials = auth === undefined ? undefined : authStreamCredentials(c.protos, auth, refName, (d) => client?.challenge(d) ?? Promise.resolve(null));
  client = new HeaderRegistryClient(dst.headers, {
    ...(credentials === undefined ? {} : { credentials }),
    ...(insecure ? { insecureRegistries: [ref.domain] } : {}),
  });
  const onAbort = (): void => client?.close();
  c.signal.addEventListener('abort', onAbort, { once: true });
  c.progress.emit({ event: `Pushing to ${refName}` });
  c.progress.emit({ event: 'pushing content', name: rec.name, desc: root });
  const mediaTypes = new Map<string, string>([[root.digest, root.mediaType]]);
  await learnMediaTypes(store, root.digest, mediaTypes);
  if (isIndexType(root.mediaType)) {
    for (const [d, t] of [...mediaTypes]) if (d !== root.digest && !isIndexType(t)) await learnMediaTypes(store, d, mediaTypes);
  }
  // Blobs under one manifest name it as their parent; under an index, the image.
  const blobParent = isIndexType(root.mediaType) ? rec.name : refKey('manifest', root.digest);
  try {
    const res = await push(client, ref, {
      descriptor: root,
      store: {
        read: async (d: ImageDescriptor): Promise<Readable> => {
          const r = await store.reader(d.digest);
          const s = r.stream();
          s.once('close', () => void r.close());
          return s;
        },
      },
      onProgress: (ev) => c.progress.emit({
        event: PUSH_EVENTS[ev.status],
        name: refKey(ev.kind, ev.digest),
        parents: [ev.kind === 'config' || ev.kind === 'layer' ? blobParent : rec.name],
        progress: ev.current,
        total: ev.total,
        desc: { mediaType: mediaTypes.get(ev.digest) ?? '', digest: ev.digest, size: ev.total },
      }),
    });
    const pushed = { ...root, digest: res.digest };
    c.progress.emit({ event: 'pushed content', name: rec.name, desc: pushed });
    c.progress.emit({ event: `Completed push to ${refName}`, desc: pushed });
  } finally {
    c.signal.removeEventListener('abort', onAbort);
    client.close();
  }
}

/** The names the ImageStore gives imported images, beyond the archive's own. */
function importNames(dst: ImageStoreSpec, imported: ReadonlyArray<{ name: string; target: ImageDescriptor }>): Array<{ name: string; target: ImageDescriptor }> {
  const first = imported[0];
  const out: Array<{ name: string; target: ImageDescriptor }> = [];
  if (first === undefined) return out;
  const named = new Set(imported.map((i) => i.name));
  if (dst.name !== '') {
    const n = imageName(dst.name, 'ImageStore.name');
    if (!named.has(n)) out.push({ name: n, target: first.target });
  }
  for (const r of dst.extraReferences) {
    if (r.name === '') continue;
    if (!r.isPrefix) {
      out.push({ name: imageName(r.name, 'ImageStore.extra_references.name'), target: first.target });
      continue;
    }
    // A prefix: each imported image's tag (or digest) under that repository.
    let base: ImageReference;
    try {
      base = parseReference(r.name);
    } catch (e) {
      throw invalid(`ImageStore.extra_references: prefix ${JSON.stringify(r.name)} is not a repository name`, e);
    }
    for (const i of imported) {
      let tag: string | undefined;
      try {
        tag = parseReference(i.name).tag;
      } catch {
        tag = undefined;
      }
      if (tag !== undefined) out.push({ name: formatReference(withTag({ domain: base.domain, path: base.path }, tag)), target: i.target });
      if (r.addDigest || tag === undefined) out.push({ name: formatReference(withDigest({ domain: base.domain, path: base.path }, i.target.digest)), target: i.target });
    }
  }
  return out;
}

function unpackOf(dst: ImageStoreSpec): { platform?: ImagePlatform; snapshotter?: string } {
  if (dst.unpacks.length > 1) throw notImplemented('import: more than one unpack configuration is not supported');
  const u = dst.unpacks[0];
  const p = u?.platform ?? dst.platforms[0];
  return {
    ...(p === undefined ? {} : { platform: imagePlatform(p) }),
    ...(u === undefined || u.snapshotter === '' ? {} : { snapshotter: u.snapshotter }),
  };
}

async function importTransfer(c: Context, src: Wire, dst: ImageStoreSpec): Promise<void> {
  const data = takeStream(c, str(src, 'stream', 'ImageImportStream'), 'import data');
  const unpack = unpackOf(dst);
  const baseName = dst.name === '' ? undefined : imageName(dst.name, 'ImageStore.name');
  c.progress.emit({ event: 'importing' });
  const imported = await importImages(c.deps, c.ns, receiveBytes(c.protos, data), {
    ...unpack,
    ...(baseName === undefined ? {} : { baseName }),
  });
  const all = [...imported.map((i) => ({ name: i.name, target: i.target })), ...importNames(dst, imported)];
  const seen = new Set<string>();
  for (const i of all) {
    if (seen.has(i.name)) continue;
    seen.add(i.name);
    const desc = { mediaType: i.target.mediaType, digest: i.target.digest, size: i.target.size, annotations: {} };
    const rec = record(c, i.name, desc, dst.labels);
    c.progress.emit({ event: 'saved', name: rec.name, desc: targetOf(rec) });
  }
  c.progress.emit({ event: 'Completed import' });
}

async function exportTransfer(c: Context, src: ImageStoreSpec, dst: Wire): Promise<void> {
  const what = 'ImageExportStream';
  const data = takeStream(c, str(dst, 'stream', what), 'export data');
  if (dst['all_platforms'] === true) throw notImplemented('export: all platforms is not supported; name one platform');
  const names = [src.name, ...src.extraReferences.map((r) => r.name)].filter((n) => n !== '');
  if (names.length === 0) throw invalid('export: ImageStore.name must name an image');
  const platforms = list(dst, 'platforms', what).map((p) => platformOf(p, `${what}.platforms`));
  const p = platforms[0] ?? src.platforms[0];
  c.progress.emit({ event: 'exporting', name: names[0] ?? '' });
  const out = sendBytes(c.protos, data);
  let result: Awaited<ReturnType<typeof exportImages>>;
  try {
    result = await exportImages(c.deps, c.ns, names, out, {
      format: dst['skip_compatibility_manifest'] === true ? 'oci' : 'docker',
      platform: p === undefined ? hostPlatform() : imagePlatform(p),
    });
  } catch (e) {
    out.destroy();
    throw e;
  }
  await finished(out).catch(() => undefined);
  for (const i of result.images) c.progress.emit({ event: 'exported', name: i.name, desc: i.manifest });
  c.progress.emit({ event: 'Completed export' });
}

function unpackAny(protos: Protos, v: unknown, what: string): { typeName: string; value: Wire } {
  const any: AnyMessage | undefined = anyMessage(v, what);
  if (any === undefined) throw invalid(`${what} must be set`);
  const m = protos.unpack(any);
  if (m === undefined) throw notImplemented(`transfer: ${what} type ${JSON.stringify(any.type_url)} is not supported`);
  return m;
}

export const transferService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'transfer',
  requires: [ContentPlugin, ImagesPlugin, SnapshotterPlugin, GCPlugin, StreamingPlugin],
  init: (ic) => {
    const [gc] = ic.getAll(GCPlugin).values();
    const deps: PullDeps = {
      content: ic.get(ContentPlugin),
      images: ic.get(ImagesPlugin),
      snapshotters: ic.getAll(SnapshotterPlugin),
      ...(gc === undefined ? {} : { gc }),
    };
    const streams = ic.get(StreamingPlugin);
    const protos = ic.protos;
    return {
      service: 'containerd.services.transfer.v1.Transfer',
      unary: {
        Transfer: async (req: Wire, ctx) => {
          const ns = ctx.namespace();
          const src = unpackAny(protos, req['source'], 'source');
          const dst = unpackAny(protos, req['destination'], 'destination');
          const options = optRecord(req['options'], 'options') ?? {};
          const used: TransferStream[] = [];
          const progressId = str(options, 'progress_stream', 'options');
          let progressStream: TransferStream | undefined;
          if (progressId !== '') {
            progressStream = streams.get(ns, progressId, 'progress');
            used.push(progressStream);
          }
          const c: Context = { protos, deps, streams, ns, signal: ctx.signal, progress: new ProgressSink(protos, progressStream), used };
          // A canceled transfer ends its streams: whatever waits on them stops.
          const onAbort = (): void => {
            for (const s of used) s.close();
          };
          ctx.signal.addEventListener('abort', onAbort, { once: true });
          try {
            const pair = `${src.typeName} -> ${dst.typeName}`;
            if (src.typeName === TransferTypes.OCIRegistry && dst.typeName === TransferTypes.ImageStore) {
              await pullTransfer(c, parseRegistry(src.value), parseImageStore(dst.value));
            } else if (src.typeName === TransferTypes.ImageStore && dst.typeName === TransferTypes.OCIRegistry) {
              await pushTransfer(c, parseImageStore(src.value), parseRegistry(dst.value));
            } else if (src.typeName === TransferTypes.ImageImportStream && dst.typeName === TransferTypes.ImageStore) {
              await importTransfer(c, src.value, parseImageStore(dst.value));
            } else if (src.typeName === TransferTypes.ImageStore && dst.typeName === TransferTypes.ImageExportStream) {
              await exportTransfer(c, parseImageStore(src.value), dst.value);
            } else {
              throw notImplemented(`transfer ${pair} is not supported`);
            }
          } finally {
            ctx.signal.removeEventListener('abort', onAbort);
            await c.progress.close();
            for (const s of used) s.close();
          }
          return {};
        },
      },
    };
  },
};
