/**
 * The bridge between grpc-js and our services: a service is a plain record of
 * handlers that take parsed-on-demand request objects and a call context, and
 * return response objects. Errors are translated to gRPC status here, once.
 */
import type {
  Metadata, Server, ServerDuplexStream, ServerUnaryCall, ServerWritableStream, sendUnaryData, UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { Logger } from '@berth/base';
import { Bug, failedPrecondition, invalid, BerthError, ErrorKind } from '@berth/base';
import { isClientError, toGrpcError } from './errors.js';
import type { Protos } from './protos.js';
import { isRecord, validateIdentifier } from './wire.js';
import type { Wire } from './wire.js';

/** The gRPC metadata key carrying the namespace of a call. */
export const NAMESPACE_METADATA_KEY = 'containerd-namespace';

export interface CallContext {
  readonly method: string;
  readonly metadata: Metadata;
  /** Aborted when the client cancels or goes away. */
  readonly signal: AbortSignal;
  /** The call's namespace; FailedPrecondition "namespace is required" when absent. */
  namespace(): string;
  /** The call's namespace if one was sent (validated). */
  optionalNamespace(): string | undefined;
}

/** Where a server-streaming handler writes; write() resolves when the transport can take more. */
export interface StreamSink {
  write(message: object): Promise<void>;
}

export type UnaryHandler = (request: Wire, ctx: CallContext) => object | Promise<object>;
export type ServerStreamHandler = (request: Wire, ctx: CallContext, out: StreamSink) => Promise<void>;
/**
 * Both sides stream: requests arrive in order through `requests` (it ends
 * when the client half-closes, and throws when it cancels); responses go to
 * `out`. The call ends with OK when the handler returns, with its error's
 * status when it throws. A handler may return before reading every request.
 */
export type BidiStreamHandler = (requests: AsyncIterable<Wire>, ctx: CallContext, out: StreamSink) => Promise<void>;

/** What a plugin of type io.containerd.grpc.v1 produces. Methods without a handler answer UNIMPLEMENTED. */
export interface GrpcService {
  /** Full proto name, e.g. containerd.services.containers.v1.Containers. */
  readonly service: string;
  readonly unary?: Readonly<Record<string, UnaryHandler>>;
  readonly serverStream?: Readonly<Record<string, ServerStreamHandler>>;
  readonly bidiStream?: Readonly<Record<string, BidiStreamHandler>>;
  close?(): void | Promise<void>;
}

function namespaceFrom(md: Metadata): string | undefined {
  const [v] = md.get(NAMESPACE_METADATA_KEY);
  if (v === undefined) return undefined;
  const ns = typeof v === 'string' ? v : v.toString('utf8');
  if (ns === '') return undefined;
  try {
    validateIdentifier(ns);
  } catch (e) {
    throw invalid(`namespace validation: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  return ns;
}

function context(method: string, md: Metadata, signal: AbortSignal): CallContext {
  return {
    method,
    metadata: md,
    signal,
    namespace: () => {
      const ns = namespaceFrom(md);
      if (ns === undefined) throw failedPrecondition('namespace is required');
      return ns;
    },
    optionalNamespace: () => namespaceFrom(md),
  };
}

function logFailure(log: Logger, method: string, err: unknown): void {
  const { code, details } = toGrpcError(err);
  if (isClientError(err)) log.debug('call failed', { method, code: status[code], error: details });
  else log.error('call failed', { method, code: status[code], error: details, stack: err instanceof Error ? err.stack : undefined });
}

/** A sink over a writable call: write() waits for 'drain' and fails once the client has gone. */
function sinkFor(call: ServerWritableStream<Wire, object> | ServerDuplexStream<Wire, object>, method: string, signal: AbortSignal): StreamSink {
  const canceled = (): BerthError => new BerthError(ErrorKind.Canceled, `${method}: client went away`);
  return {
    write: (message) => new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        reject(canceled());
        return;
      }
      if (call.write(message)) {
        resolve();
        return;
      }
      const onAbort = (): void => {
        call.off('drain', onDrain);
        reject(canceled());
      };
      const onDrain = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      call.once('drain', onDrain);
      signal.addEventListener('abort', onAbort, { once: true });
    }),
  };
}

/** The requests of a duplex call; leaving the loop early does not end the call. */
async function* requestsOf(call: ServerDuplexStream<Wire, object>, method: string, signal: AbortSignal): AsyncGenerator<Wire> {
  try {
    for await (const req of call.iterator({ destroyOnReturn: false })) {
      if (!isRecord(req)) throw new Bug(`${method}: the proto loader produced a ${typeof req} for a request`);
      yield req;
    }
  } catch (e) {
    if (signal.aborted) throw new BerthError(ErrorKind.Canceled, `${method}: client went away`, { cause: e });
    throw e;
  }
  if (signal.aborted) throw new BerthError(ErrorKind.Canceled, `${method}: client went away`);
}

/** Register one service's handlers on the server. */
export function bindService(server: Server, protos: Protos, svc: GrpcService, log: Logger): void {
  const def = protos.service(svc.service);
  const impl: UntypedServiceImplementation = {};
  for (const [name, m] of Object.entries(def)) {
    const method = `/${svc.service}/${name}`;
    const unary = svc.unary?.[name];
    const stream = svc.serverStream?.[name];
    const bidi = svc.bidiStream?.[name];
    if (m.requestStream) {
      if (unary !== undefined || stream !== undefined) throw new Bug(`${method} takes a client stream: its handler belongs in bidiStream`);
      if (bidi === undefined) continue;
      if (!m.responseStream) throw new Bug(`${method}: client-streaming calls with one response have no handler shape`);
      impl[name] = (call: ServerDuplexStream<Wire, object>): void => {
        const ac = new AbortController();
        call.once('cancelled', () => ac.abort());
        Promise.resolve()
          .then(() => bidi(requestsOf(call, method, ac.signal), context(method, call.metadata, ac.signal), sinkFor(call, method, ac.signal)))
          .then(
            () => call.end(),
            (err: unknown) => {
              if (ac.signal.aborted) return;
              logFailure(log, method, err);
              call.emit('error', toGrpcError(err));
            },
          );
      };
      continue;
    }
    if (bidi !== undefined) throw new Bug(`${method} does not take a client stream: its handler is not a bidiStream one`);
    if (!m.responseStream && unary !== undefined) {
      impl[name] = (call: ServerUnaryCall<Wire, object>, callback: sendUnaryData<object>): void => {
        const ac = new AbortController();
        call.once('cancelled', () => ac.abort());
        Promise.resolve()
          .then(() => unary(call.request, context(method, call.metadata, ac.signal)))
          .then(
            (res) => callback(null, res),
            (err: unknown) => {
              logFailure(log, method, err);
              callback(toGrpcError(err));
            },
          );
      };
    } else if (m.responseStream && stream !== undefined) {
      impl[name] = (call: ServerWritableStream<Wire, object>): void => {
        const ac = new AbortController();
        call.once('cancelled', () => ac.abort());
        const sink = sinkFor(call, method, ac.signal);
        Promise.resolve()
          .then(() => stream(call.request, context(method, call.metadata, ac.signal), sink))
          .then(
            () => call.end(),
            (err: unknown) => {
              if (ac.signal.aborted) return;
              logFailure(log, method, err);
              call.emit('error', toGrpcError(err));
            },
          );
      };
    } else if (unary !== undefined || stream !== undefined) {
      throw new Bug(`${method}: handler shape does not match the proto (server streaming: ${String(m.responseStream)})`);
    }
  }
  for (const name of [...Object.keys(svc.unary ?? {}), ...Object.keys(svc.serverStream ?? {}), ...Object.keys(svc.bidiStream ?? {})]) {
    if (!(name in def)) throw new Bug(`${svc.service} has no method ${name}`);
  }
  server.addService(def, impl);
}
