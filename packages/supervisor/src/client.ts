/**
 * A client of containerd's gRPC API (berth-containerd's or containerd's own),
 * over the same protos the daemon serves: what the engine uses to talk to its
 * supervisor. Messages are plain objects with the protos' field names
 * (snake_case), 64-bit integers as numbers, enums as names, bytes as Buffers.
 * Errors come back as BerthError with the kind the gRPC code stands for.
 */
import { Client, Metadata, credentials, status } from '@grpc/grpc-js';
import type { ClientDuplexStream, ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import { BerthError, ErrorKind } from '@berth/base';
import { Protos } from './protos.js';

export type Message = Record<string, unknown>;

export const SERVICES = {
  version: 'containerd.services.version.v1.Version',
  namespaces: 'containerd.services.namespaces.v1.Namespaces',
  introspection: 'containerd.services.introspection.v1.Introspection',
  containers: 'containerd.services.containers.v1.Containers',
  events: 'containerd.services.events.v1.Events',
  tasks: 'containerd.services.tasks.v1.Tasks',
  leases: 'containerd.services.leases.v1.Leases',
  snapshots: 'containerd.services.snapshots.v1.Snapshots',
  diff: 'containerd.services.diff.v1.Diff',
  content: 'containerd.services.content.v1.Content',
  images: 'containerd.services.images.v1.Images',
  transfer: 'containerd.services.transfer.v1.Transfer',
  streaming: 'containerd.services.streaming.v1.Streaming',
} as const;

const KIND_OF_CODE: Partial<Record<number, ErrorKind>> = {
  [status.INVALID_ARGUMENT]: ErrorKind.InvalidArgument,
  [status.NOT_FOUND]: ErrorKind.NotFound,
  [status.ALREADY_EXISTS]: ErrorKind.AlreadyExists,
  [status.FAILED_PRECONDITION]: ErrorKind.FailedPrecondition,
  [status.PERMISSION_DENIED]: ErrorKind.PermissionDenied,
  [status.UNAVAILABLE]: ErrorKind.Unavailable,
  [status.UNIMPLEMENTED]: ErrorKind.NotImplemented,
  [status.DEADLINE_EXCEEDED]: ErrorKind.DeadlineExceeded,
  [status.CANCELLED]: ErrorKind.Canceled,
  [status.RESOURCE_EXHAUSTED]: ErrorKind.ResourceExhausted,
};

/** A gRPC error as a BerthError (the containerd suffix such as `: not found` is dropped). */
export function fromGrpcError(err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  const e = err as Partial<ServiceError>;
  if (typeof e?.code !== 'number') return new BerthError(ErrorKind.Internal, String((err as Error)?.message ?? err), { cause: err });
  const kind = KIND_OF_CODE[e.code] ?? ErrorKind.Internal;
  let details = e.details ?? e.message ?? '';
  details = details.replace(/: (not found|already exists|invalid argument|failed precondition|conflict|unavailable|not implemented)$/, '');
  return new BerthError(kind, details, { cause: err });
}

let sharedProtos: Protos | undefined;

export interface ClientOptions {
  /** The namespace sent with every call unless one is given to the call. */
  readonly namespace?: string;
  /** Deadline of unary calls, ms (default 60 s). */
  readonly timeoutMs?: number;
}

export class ContainerdClient {
  private readonly client: Client;
  private readonly protos: Protos;
  readonly namespace: string;
  private readonly timeoutMs: number;

  constructor(readonly address: string, opts: ClientOptions = {}) {
    sharedProtos ??= Protos.load();
    this.protos = sharedProtos;
    this.namespace = opts.namespace ?? 'default';
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.client = new Client(`unix:${address}`, credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 << 20,
      'grpc.max_send_message_length': 64 << 20,
    });
  }

  /** The protos, to pack and unpack Any payloads. */
  get types(): Protos {
    return this.protos;
  }

  private method(service: string, name: string) {
    const def = this.protos.service(service)[name];
    if (def === undefined) throw new BerthError(ErrorKind.NotImplemented, `no method ${service}/${name} in the loaded protos`);
    return def;
  }

  private metadata(namespace: string | undefined, lease?: string): Metadata {
    const md = new Metadata();
    md.set('containerd-namespace', namespace ?? this.namespace);
    // What the call creates joins this lease (containerd's `containerd-lease` metadata).
    if (lease !== undefined && lease !== '') md.set('containerd-lease', lease);
    return md;
  }

  /** A unary call. */
  call<T extends Message = Message>(service: string, name: string, request: Message, opts: { namespace?: string; timeoutMs?: number; lease?: string } = {}): Promise<T> {
    const m = this.method(service, name);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest<Message, Message>(
        m.path, (v) => m.requestSerialize(v), (b) => m.responseDeserialize(b) as Message,
        request, this.metadata(opts.namespace, opts.lease), { deadline: Date.now() + (opts.timeoutMs ?? this.timeoutMs) },
        (err: ServiceError | null, res?: Message) => (err ? reject(fromGrpcError(err)) : resolve((res ?? {}) as T)),
      );
    });
  }

  /**
   * A unary call for long operations (transfers): no deadline unless
   * timeoutMs is given, canceled when the signal aborts (a Canceled error).
   */
  callCancellable<T extends Message = Message>(
    service: string, name: string, request: Message, opts: { namespace?: string; timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<T> {
    const m = this.method(service, name);
    const signal = opts.signal;
    if (signal?.aborted === true) return Promise.reject(new BerthError(ErrorKind.Canceled, `${service}/${name} canceled`));
    return new Promise((resolve, reject) => {
      const call = this.client.makeUnaryRequest<Message, Message>(
        m.path, (v) => m.requestSerialize(v), (b) => m.responseDeserialize(b) as Message,
        request, this.metadata(opts.namespace), opts.timeoutMs === undefined ? {} : { deadline: Date.now() + opts.timeoutMs },
        (err: ServiceError | null, res?: Message) => {
          signal?.removeEventListener('abort', onAbort);
          if (err) reject(fromGrpcError(err));
          else resolve((res ?? {}) as T);
        },
      );
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** A server-streaming call; errors on the stream are raw gRPC errors (see fromGrpcError). */
  stream(service: string, name: string, request: Message, opts: { namespace?: string } = {}): ClientReadableStream<Message> {
    const m = this.method(service, name);
    return this.client.makeServerStreamRequest<Message, Message>(
      m.path, (v) => m.requestSerialize(v), (b) => m.responseDeserialize(b) as Message, request, this.metadata(opts.namespace),
    );
  }

  /** A bidirectional call. */
  duplex(service: string, name: string, opts: { namespace?: string } = {}): ClientDuplexStream<Message, Message> {
    const m = this.method(service, name);
    return this.client.makeBidiStreamRequest<Message, Message>(
      m.path, (v) => m.requestSerialize(v), (b) => m.responseDeserialize(b) as Message, this.metadata(opts.namespace),
    );
  }

  /** A client-streaming call: write the requests, end, get the one answer. */
  upload<T extends Message = Message>(service: string, name: string, requests: AsyncIterable<Message> | Iterable<Message>, opts: { namespace?: string } = {}): Promise<T> {
    const m = this.method(service, name);
    return new Promise((resolve, reject) => {
      const call = this.client.makeClientStreamRequest<Message, Message>(
        m.path, (v) => m.requestSerialize(v), (b) => m.responseDeserialize(b) as Message, this.metadata(opts.namespace),
        (err: ServiceError | null, res?: Message) => (err ? reject(fromGrpcError(err)) : resolve((res ?? {}) as T)),
      );
      void (async () => {
        try {
          for await (const r of requests) {
            if (!call.write(r)) await new Promise<void>((ok) => call.once('drain', ok));
          }
          call.end();
        } catch (e) {
          call.cancel();
          reject(e);
        }
      })();
    });
  }

  /** Wait until the daemon answers (or the deadline passes). */
  async ready(timeoutMs = 10_000): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(fromGrpcError(err)) : resolve()));
    });
  }

  close(): void {
    this.client.close();
  }
}
