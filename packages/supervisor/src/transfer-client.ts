/**
 * The engine's side of containerd's Transfer service: pull, push, import and
 * export as containerd 1.7+ clients do them. Each opens the side streams it
 * needs with the Streaming service (progress, registry credentials, archive
 * bytes), then makes one Transfer call naming them. Results come from the
 * progress stream ("saved", "pushed content"), so every operation but export
 * opens one whether or not the caller watches progress.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { BerthError, ErrorKind, internal, invalid, unavailable } from '@berth/base';
import { hostPlatform, parsePlatformSpec } from '@berth/images';
import type { ImagePlatform } from '@berth/images';
import { SERVICES, fromGrpcError } from './client.js';
import type { ContainerdClient, Message } from './client.js';
import type { AnyMessage } from './wire.js';

const STREAM_INIT = 'containerd.services.streaming.v1.StreamInit';
const T = 'containerd.types.transfer.';
const MAX_DATA = 32 * 1024;
const WINDOW = 2 * MAX_DATA;
/** How long to wait, once a transfer returned, for the progress events it sent before. */
const PROGRESS_DRAIN_MS = 10_000;

export interface TransferDescriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

/** One Progress message: per blob (name `layer-sha256:…`, event waiting/downloading/complete…) or overall. */
export interface TransferProgress {
  readonly event: string;
  readonly name: string;
  readonly parents: readonly string[];
  readonly progress: number;
  readonly total: number;
  readonly desc?: TransferDescriptor;
}

export type RegistryAuth =
  | { readonly username: string; readonly password: string }
  | { readonly identityToken: string };

export interface TransferCommonOptions {
  /** Default: the client's namespace. */
  readonly namespace?: string;
  readonly onProgress?: (p: TransferProgress) => void;
  readonly signal?: AbortSignal;
}

export interface TransferPullOptions extends TransferCommonOptions {
  /** The image record's name (default: the normalised reference). */
  readonly name?: string;
  readonly credentials?: RegistryAuth;
  /** Plain HTTP to the registry. */
  readonly insecure?: boolean;
  /** `os/arch[/variant]`; default: the daemon's. */
  readonly platform?: string;
  /** Default: the daemon's (overlayfs). */
  readonly snapshotter?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface TransferPushOptions extends TransferCommonOptions {
  readonly credentials?: RegistryAuth;
  readonly insecure?: boolean;
  /** Push only this platform's manifest of a multi-platform image. */
  readonly platform?: string;
}

export interface TransferImportOptions extends TransferCommonOptions {
  /** A name for the (first) image; also the repository for OCI layouts whose ref.name is a bare tag. */
  readonly name?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly platform?: string;
  readonly snapshotter?: string;
}

export interface TransferExportOptions {
  readonly namespace?: string;
  /** Which manifest of a multi-platform image; default: the daemon's platform. */
  readonly platform?: string;
  /** 'docker' (default): manifest.json beside the OCI layout; 'oci': the layout alone. */
  readonly format?: 'docker' | 'oci';
  readonly onProgress?: (p: TransferProgress) => void;
  readonly signal?: AbortSignal;
}

function streamId(prefix: string): string {
  return `${prefix}-${Date.now()}-${randomBytes(6).toString('base64url')}`;
}

function platformMessage(spec: string): Message {
  let p: ImagePlatform;
  try {
    p = parsePlatformSpec(spec);
  } catch (e) {
    throw invalid(`platform ${JSON.stringify(spec)}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  return { os: p.os, architecture: p.architecture, variant: p.variant ?? '' };
}

class StreamClosed extends BerthError {
  constructor(id: string) {
    super(ErrorKind.Unavailable, `stream ${id}: the daemon closed it`);
  }
}

/** One Streaming.Stream call: messages in arrival order, sends with backpressure. */
class ClientStream {
  private readonly queue: AnyMessage[] = [];
  private waiter: ((m: AnyMessage | undefined) => void) | undefined;
  private failer: ((e: Error) => void) | undefined;
  private ended = false;
  private error: Error | undefined;
  private canceled = false;
  private readonly drains: Array<(err: Error | undefined) => void> = [];

  private constructor(readonly id: string, private readonly call: ClientDuplexStream<Message, Message>) {
    call.on('data', (m: Message) => {
      const msg = { type_url: typeof m['type_url'] === 'string' ? m['type_url'] : '', value: Buffer.isBuffer(m['value']) ? m['value'] : Buffer.alloc(0) };
      const w = this.waiter;
      if (w !== undefined) {
        this.waiter = undefined;
        this.failer = undefined;
        w(msg);
      } else {
        this.queue.push(msg);
      }
    });
    call.on('end', () => this.finish(undefined));
    call.on('error', (e: Error) => this.finish(this.canceled ? undefined : fromGrpcError(e)));
    call.on('drain', () => {
      for (const d of this.drains.splice(0)) d(undefined);
    });
  }

  /** Open a stream and wait until the daemon registered it. */
  static async open(client: ContainerdClient, prefix: string, namespace: string | undefined): Promise<ClientStream> {
    const id = streamId(prefix);
    const s = new ClientStream(id, client.duplex(SERVICES.streaming, 'Stream', namespace === undefined ? {} : { namespace }));
    try {
      await s.send(client.types.pack(STREAM_INIT, { id }));
      const ack = await s.next();
      if (ack === undefined) throw unavailable(`stream ${id}: the daemon closed it before accepting it`);
    } catch (e) {
      s.cancel();
      throw e;
    }
    return s;
  }

  private finish(err: Error | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.error = err;
    const w = this.waiter;
    const f = this.failer;
    this.waiter = undefined;
    this.failer = undefined;
    if (err !== undefined && f !== undefined) f(err);
    else w?.(undefined);
    for (const d of this.drains.splice(0)) d(err ?? new StreamClosed(this.id));
  }

  /** The next message; undefined once the daemon ended the stream. */
  next(): Promise<AnyMessage | undefined> {
    const m = this.queue.shift();
    if (m !== undefined) return Promise.resolve(m);
    if (this.ended) return this.error === undefined ? Promise.resolve(undefined) : Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.waiter = resolve;
      this.failer = reject;
    });
  }

  send(msg: AnyMessage): Promise<void> {
    if (this.ended) return Promise.reject(this.error ?? new StreamClosed(this.id));
    if (this.call.write({ type_url: msg.type_url, value: msg.value })) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.drains.push((err) => (err === undefined ? resolve() : reject(err)));
    });
  }

  /** Half-close: the end of what this side sends. */
  end(): void {
    if (!this.ended) this.call.end();
  }

  cancel(): void {
    this.canceled = true;
    this.call.cancel();
    this.finish(undefined);
  }
}

function descriptorOf(v: unknown): TransferDescriptor | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const d = v as Record<string, unknown>;
  if (typeof d['digest'] !== 'string' || d['digest'] === '') return undefined;
  return { mediaType: typeof d['media_type'] === 'string' ? d['media_type'] : '', digest: d['digest'], size: typeof d['size'] === 'number' ? d['size'] : 0 };
}

/**
 * The values of the `${T}<type>` messages the daemon sends on `s` (others skipped),
 * until it closes the stream; a failing stream ends it too unless `endOnError` is false.
 */
async function* received(
  client: ContainerdClient,
  s: ClientStream,
  type: string,
  endOnError = true,
): AsyncGenerator<Record<string, unknown>> {
  for (;;) {
    let msg: AnyMessage | undefined;
    try {
      msg = await s.next();
    } catch (err) {
      if (endOnError) return;
      throw err;
    }
    if (msg === undefined) return;
    const m = client.types.unpack(msg);
    if (m !== undefined && m.typeName === `${T}${type}`) yield m.value;
  }
}

/** Reads Progress messages until the daemon closes the stream. */
async function consumeProgress(client: ContainerdClient, s: ClientStream, on: (p: TransferProgress) => void): Promise<void> {
  for await (const v of received(client, s, 'Progress')) {
    const desc = descriptorOf(v['desc']);
    on({
      event: typeof v['event'] === 'string' ? v['event'] : '',
      name: typeof v['name'] === 'string' ? v['name'] : '',
      parents: Array.isArray(v['parents']) ? v['parents'].filter((x): x is string => typeof x === 'string') : [],
      progress: typeof v['progress'] === 'number' ? v['progress'] : 0,
      total: typeof v['total'] === 'number' ? v['total'] : 0,
      ...(desc === undefined ? {} : { desc }),
    });
  }
}

/** Answers the daemon's credential requests until it closes the stream. */
async function serveAuth(client: ContainerdClient, s: ClientStream, creds: RegistryAuth): Promise<void> {
  for await (const _request of received(client, s, 'AuthRequest')) {
    const answer = 'identityToken' in creds
      ? { authType: 'REFRESH', secret: creds.identityToken }
      : { authType: 'CREDENTIALS', username: creds.username, secret: creds.password };
    await s.send(client.types.pack(`${T}AuthResponse`, answer)).catch(() => undefined);
  }
}

/** The streams of one transfer, all canceled at the end whatever happened. */
class Session {
  readonly streams: ClientStream[] = [];
  private readonly background: Array<Promise<void>> = [];
  private progressDone: Promise<void> | undefined;

  constructor(readonly client: ContainerdClient, readonly namespace: string | undefined) {}

  async open(prefix: string): Promise<ClientStream> {
    const s = await ClientStream.open(this.client, prefix, this.namespace);
    this.streams.push(s);
    return s;
  }

  async progress(on: (p: TransferProgress) => void): Promise<string> {
    const s = await this.open('progress');
    this.progressDone = consumeProgress(this.client, s, on);
    return s.id;
  }

  async auth(creds: RegistryAuth | undefined): Promise<string> {
    if (creds === undefined) return '';
    const s = await this.open('auth');
    this.background.push(serveAuth(this.client, s, creds));
    return s.id;
  }

  /** The Transfer call; resolves once the progress it reported has been delivered too. */
  async transfer(source: AnyMessage, destination: AnyMessage, progressStream: string, signal: AbortSignal | undefined): Promise<void> {
    let failure: unknown;
    try {
      await this.client.callCancellable(SERVICES.transfer, 'Transfer', {
        source, destination, options: { progress_stream: progressStream },
      }, { ...(this.namespace === undefined ? {} : { namespace: this.namespace }), ...(signal === undefined ? {} : { signal }) });
    } catch (e) {
      failure = e;
    }
    if (this.progressDone !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.progressDone, new Promise<void>((resolve) => { timer = setTimeout(resolve, PROGRESS_DRAIN_MS); })]);
      clearTimeout(timer);
    }
    if (failure !== undefined) throw failure;
  }

  close(): void {
    for (const s of this.streams) s.cancel();
  }
}

function imageStore(client: ContainerdClient, fields: Message): AnyMessage {
  return client.types.pack(`${T}ImageStore`, fields);
}

function registry(client: ContainerdClient, reference: string, authStream: string, insecure: boolean | undefined): AnyMessage {
  return client.types.pack(`${T}OCIRegistry`, {
    reference,
    resolver: { auth_stream: authStream, default_scheme: insecure === true ? 'http' : '' },
  });
}

function unpackFor(platform: string | undefined, snapshotter: string | undefined): Message {
  const p = platform === undefined ? hostPlatform() : undefined;
  return {
    platform: platform !== undefined ? platformMessage(platform) : { os: p?.os ?? '', architecture: p?.architecture ?? '', variant: p?.variant ?? '' },
    snapshotter: snapshotter ?? '',
  };
}

/** Pull `reference` from its registry into the daemon: content, unpacked snapshots, image record. */
export async function pull(
  client: ContainerdClient, reference: string, opts: TransferPullOptions = {},
): Promise<{ name: string; target: TransferDescriptor }> {
  const session = new Session(client, opts.namespace);
  try {
    let saved: { name: string; target: TransferDescriptor } | undefined;
    const progress = await session.progress((p) => {
      if (p.event === 'saved' && p.desc !== undefined) saved = { name: p.name, target: p.desc };
      opts.onProgress?.(p);
    });
    const auth = await session.auth(opts.credentials);
    const src = registry(client, reference, auth, opts.insecure);
    const dst = imageStore(client, {
      name: opts.name ?? '',
      labels: { ...(opts.labels ?? {}) },
      platforms: opts.platform === undefined ? [] : [platformMessage(opts.platform)],
      unpacks: [unpackFor(opts.platform, opts.snapshotter)],
    });
    await session.transfer(src, dst, progress, opts.signal);
    if (saved === undefined) throw internal(`pull ${reference}: the daemon reported no saved image`);
    return saved;
  } finally {
    session.close();
  }
}

/** Push the image record `imageName` to `reference`. */
export async function push(
  client: ContainerdClient, imageName: string, reference: string, opts: TransferPushOptions = {},
): Promise<{ digest: string; size: number; mediaType: string }> {
  const session = new Session(client, opts.namespace);
  try {
    let pushed: TransferDescriptor | undefined;
    const progress = await session.progress((p) => {
      if (p.event === 'pushed content' && p.desc !== undefined) pushed = p.desc;
      opts.onProgress?.(p);
    });
    const auth = await session.auth(opts.credentials);
    const src = imageStore(client, { name: imageName, platforms: opts.platform === undefined ? [] : [platformMessage(opts.platform)] });
    const dst = registry(client, reference, auth, opts.insecure);
    await session.transfer(src, dst, progress, opts.signal);
    if (pushed === undefined) throw internal(`push ${imageName} to ${reference}: the daemon reported no pushed digest`);
    return { digest: pushed.digest, size: pushed.size, mediaType: pushed.mediaType };
  } finally {
    session.close();
  }
}

/** Sends `input` as Data messages within the window the daemon grants, then half-closes. */
async function sendData(client: ContainerdClient, s: ClientStream, input: Readable): Promise<void> {
  let window = 0;
  let closed = false;
  let wake: (() => void) | undefined;
  void (async () => {
    for await (const v of received(client, s, 'WindowUpdate')) {
      const update = v['update'];
      if (typeof update === 'number' && update > 0) window += update;
      wake?.();
    }
    closed = true;
    wake?.();
  })();
  for await (const chunk of input) {
    const buf = Buffer.isBuffer(chunk) ? chunk : typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
    let off = 0;
    while (off < buf.length) {
      while (window <= 0) {
        if (closed) throw new StreamClosed(s.id);
        await new Promise<void>((resolve) => {
          wake = () => {
            wake = undefined;
            resolve();
          };
        });
      }
      const n = Math.min(MAX_DATA, window, buf.length - off);
      await s.send(client.types.pack(`${T}Data`, { data: buf.subarray(off, off + n) }));
      window -= n;
      off += n;
    }
  }
  s.end();
}

/** Import a docker-save or OCI-layout tar; every image in it is recorded (and unpacked). */
export async function importArchive(
  client: ContainerdClient, input: Readable, opts: TransferImportOptions = {},
): Promise<{ images: Array<{ name: string; digest: string }> }> {
  const session = new Session(client, opts.namespace);
  const ac = new AbortController();
  const onAbort = (): void => ac.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const images: Array<{ name: string; digest: string }> = [];
    const progress = await session.progress((p) => {
      if (p.event === 'saved' && p.desc !== undefined) images.push({ name: p.name, digest: p.desc.digest });
      opts.onProgress?.(p);
    });
    const data = await session.open('import');
    const src = client.types.pack(`${T}ImageImportStream`, { stream: data.id, media_type: 'application/x-tar' });
    const dst = imageStore(client, {
      name: opts.name ?? '',
      labels: { ...(opts.labels ?? {}) },
      platforms: opts.platform === undefined ? [] : [platformMessage(opts.platform)],
      unpacks: [unpackFor(opts.platform, opts.snapshotter)],
    });
    // The input failing (not the daemon hanging up) stops the transfer.
    let inputError: unknown;
    const sending = sendData(client, data, input).catch((e: unknown) => {
      if (e instanceof StreamClosed) return;
      inputError = e;
      data.cancel();
      ac.abort();
    });
    try {
      await session.transfer(src, dst, progress, ac.signal);
    } catch (e) {
      await sending;
      throw inputError ?? e;
    }
    return { images };
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    session.close();
  }
}

/**
 * Export images as one tar (docker-save compatible by default). The bytes
 * arrive as the daemon writes them, with backpressure; a failure of the
 * transfer is emitted as an error on the stream, after the bytes received.
 */
export function exportArchive(client: ContainerdClient, names: readonly string[], opts: TransferExportOptions = {}): Readable {
  const session = new Session(client, opts.namespace);
  const ac = new AbortController();
  const onAbort = (): void => ac.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let data: ClientStream | undefined;
  let window = 0;
  let paused = false;
  let done = false;
  const grant = (): void => {
    if (data === undefined || paused || done || window >= WINDOW) return;
    window += WINDOW;
    data.send(client.types.pack(`${T}WindowUpdate`, { update: WINDOW })).catch(() => undefined);
  };
  const out = new Readable({
    read() {
      paused = false;
      grant();
    },
    destroy(err, cb) {
      done = true;
      ac.abort();
      opts.signal?.removeEventListener('abort', onAbort);
      session.close();
      cb(err);
    },
  });
  void (async () => {
    const [first, ...rest] = names;
    if (first === undefined) throw invalid('export: no images named');
    const progress = opts.onProgress === undefined ? '' : await session.progress(opts.onProgress);
    data = await session.open('export');
    const src = client.types.pack(`${T}ImageStore`, { name: first, extra_references: rest.map((name) => ({ name })) });
    const dst = client.types.pack(`${T}ImageExportStream`, {
      stream: data.id,
      media_type: 'application/x-tar',
      platforms: opts.platform === undefined ? [] : [platformMessage(opts.platform)],
      skip_compatibility_manifest: opts.format === 'oci',
    });
    const transferring = session.transfer(src, dst, progress, ac.signal);
    transferring.catch(() => undefined);
    grant();
    for await (const v of received(client, data, 'Data', false)) {
      const bytes = v['data'];
      if (!Buffer.isBuffer(bytes)) continue;
      window -= bytes.length;
      if (!out.push(bytes)) paused = true;
      else grant();
    }
    await transferring;
    if (!out.destroyed) out.push(null);
    opts.signal?.removeEventListener('abort', onAbort);
    session.close();
  })().catch((e: unknown) => {
    if (!out.destroyed) out.destroy(e instanceof Error ? e : new Error(String(e)));
  });
  return out;
}
