/**
 * containerd.services.streaming.v1.Streaming: the side channels of a
 * transfer. A client opens Stream, sends StreamInit{id} and, once the
 * daemon has answered with an empty Any, names that id in a Transfer
 * request (progress, registry credentials, archive bytes). Streams live in
 * a per-namespace registry until the client goes away or the transfer that
 * used them closes them.
 *
 * Byte streams (archive import and export) follow containerd's protocol:
 * the receiver grants bytes with WindowUpdate, the sender sends Data
 * messages of at most 32 KiB within the granted window, and the sender
 * closing its side is the end of the data.
 */
import { Writable } from 'node:stream';
import { BerthError, ErrorKind, alreadyExists, invalid, notFound } from '@berth/base';
import { GRPCPlugin, pluginType } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { GrpcService } from '../grpc.js';
import type { Protos } from '../protos.js';
import { anyMessage, str } from '../wire.js';
import type { AnyMessage, Wire } from '../wire.js';

export const STREAM_INIT = 'containerd.services.streaming.v1.StreamInit';
export const EMPTY = 'google.protobuf.Empty';
export const DATA = 'containerd.types.transfer.Data';
export const WINDOW_UPDATE = 'containerd.types.transfer.WindowUpdate';

/** Largest Data message, and the window a receiver grants at a time (containerd's figures). */
export const MAX_DATA = 32 * 1024;
export const WINDOW = 2 * MAX_DATA;

/** A registered stream, as a transfer sees it. */
export interface TransferStream {
  readonly id: string;
  /** The client's next message; undefined once it half-closed or the stream was closed. */
  recv(): Promise<AnyMessage | undefined>;
  send(msg: AnyMessage): Promise<void>;
  /** End the stream (the client sees a normal end); idempotent. */
  close(): void;
  /** Aborted when the client goes away or the stream is closed. */
  readonly signal: AbortSignal;
}

class RegisteredStream implements TransferStream {
  private readonly ac = new AbortController();
  private readonly closedP: Promise<void>;
  private markClosed!: () => void;

  constructor(
    readonly id: string,
    private readonly requests: AsyncIterator<Wire>,
    private readonly write: (msg: object) => Promise<void>,
    callSignal: AbortSignal,
  ) {
    this.closedP = new Promise<void>((resolve) => {
      this.markClosed = resolve;
    });
    if (callSignal.aborted) this.close();
    else callSignal.addEventListener('abort', () => this.close(), { once: true });
  }

  get signal(): AbortSignal {
    return this.ac.signal;
  }

  /** Resolves once close() was called or the client went away. */
  get closed(): Promise<void> {
    return this.closedP;
  }

  async recv(): Promise<AnyMessage | undefined> {
    if (this.ac.signal.aborted) return undefined;
    const next = await Promise.race([this.requests.next(), this.closedP.then(() => undefined)]);
    if (next === undefined || next.done === true) return undefined;
    return anyMessage(next.value, `stream ${this.id} message`) ?? { type_url: '', value: Buffer.alloc(0) };
  }

  async send(msg: AnyMessage): Promise<void> {
    if (this.ac.signal.aborted) throw new BerthError(ErrorKind.Canceled, `stream ${this.id} is closed`);
    await this.write(msg);
  }

  close(): void {
    if (this.ac.signal.aborted) return;
    this.ac.abort();
    this.markClosed();
  }
}

/** The streams the Streaming service registered, by namespace and id. */
export class StreamManager {
  private readonly streams = new Map<string, RegisteredStream>();

  private static key(ns: string, id: string): string {
    return `${ns}\n${id}`;
  }

  /** Used by the Streaming service only. */
  register(ns: string, s: RegisteredStream): void {
    const key = StreamManager.key(ns, s.id);
    if (this.streams.has(key)) throw alreadyExists(`stream ${JSON.stringify(s.id)}`);
    this.streams.set(key, s);
    void s.closed.then(() => {
      if (this.streams.get(key) === s) this.streams.delete(key);
    });
  }

  /** The stream a transfer names; NotFound when no client opened it in this namespace. */
  get(ns: string, id: string, what: string): TransferStream {
    const s = this.streams.get(StreamManager.key(ns, id));
    if (s === undefined) throw notFound(`${what} stream ${JSON.stringify(id)}: no such stream in namespace ${ns}`);
    return s;
  }

  /** Close every stream (shutdown). */
  close(): void {
    for (const s of [...this.streams.values()]) s.close();
  }
}

export const StreamingPlugin = pluginType<StreamManager>('io.containerd.streaming.v1');

export const streamManagerPlugin: PluginRecord<StreamManager> = {
  type: StreamingPlugin,
  id: 'manager',
  requires: [],
  init: () => new StreamManager(),
};

export const streamingService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'streaming',
  requires: [StreamingPlugin],
  init: (ic) => {
    const manager = ic.get(StreamingPlugin);
    const protos = ic.protos;
    return {
      service: 'containerd.services.streaming.v1.Streaming',
      bidiStream: {
        Stream: async (requests, ctx, out) => {
          const ns = ctx.namespace();
          const it = requests[Symbol.asyncIterator]();
          const first = await it.next();
          if (first.done === true) return;
          const init = anyMessage(first.value, 'stream init');
          const decoded = init === undefined ? undefined : protos.unpack(init);
          if (decoded === undefined || decoded.typeName !== STREAM_INIT) {
            throw invalid(`stream: the first message must be a ${STREAM_INIT}, not ${JSON.stringify(init?.type_url ?? '')}`);
          }
          const id = str(decoded.value, 'id', 'stream init');
          if (id === '') throw invalid('stream init: id must be set');
          const s = new RegisteredStream(id, it, (m) => out.write(m), ctx.signal);
          manager.register(ns, s);
          try {
            // The answer comes once the stream can be found by a transfer.
            await out.write(protos.pack(EMPTY, {}));
            await s.closed;
          } finally {
            s.close();
          }
        },
      },
      close: () => manager.close(),
    };
  },
};

// ---------------------------------------------------------------------------
// Byte streams over a registered stream

/**
 * The bytes a client sends on a stream (Data messages), granting the window
 * as they are consumed: at most about two windows are in flight however
 * slowly the consumer reads. Ends when the client half-closes.
 */
export async function* receiveBytes(protos: Protos, s: TransferStream): AsyncGenerator<Buffer> {
  let window = 0;
  for (;;) {
    if (window < WINDOW) {
      await s.send(protos.pack(WINDOW_UPDATE, { update: WINDOW }));
      window += WINDOW;
    }
    const msg = await s.recv();
    if (msg === undefined) {
      if (s.signal.aborted) throw new BerthError(ErrorKind.Canceled, `stream ${s.id}: the client went away before the end of the data`);
      return;
    }
    const m = protos.unpack(msg);
    if (m === undefined || m.typeName !== DATA) continue; // containerd ignores other objects
    const data = m.value['data'];
    if (!Buffer.isBuffer(data)) throw invalid(`stream ${s.id}: a Data message without bytes`);
    window -= data.length;
    if (data.length > 0) yield data;
  }
}

/**
 * A Writable whose bytes go to the client as Data messages within the
 * window it grants. Ending it does not close the stream: the caller does,
 * once it has nothing more to say.
 */
export function sendBytes(protos: Protos, s: TransferStream): Writable {
  let window = 0;
  let wake: (() => void) | undefined;
  let ended = false;
  void (async () => {
    try {
      for (;;) {
        const msg = await s.recv();
        if (msg === undefined) break;
        const m = protos.unpack(msg);
        if (m === undefined || m.typeName !== WINDOW_UPDATE) continue;
        const update = m.value['update'];
        if (typeof update === 'number' && update > 0) window += update;
        wake?.();
      }
    } catch {
      // The write side reports the failure.
    }
    ended = true;
    wake?.();
  })();
  const granted = (): Promise<void> => new Promise<void>((resolve) => {
    wake = () => {
      wake = undefined;
      resolve();
    };
  });
  const writeChunk = async (chunk: Buffer): Promise<void> => {
    let off = 0;
    while (off < chunk.length) {
      while (window <= 0) {
        if (ended || s.signal.aborted) throw new BerthError(ErrorKind.Canceled, `stream ${s.id}: the client stopped reading`);
        await granted();
      }
      const n = Math.min(MAX_DATA, window, chunk.length - off);
      await s.send(protos.pack(DATA, { data: chunk.subarray(off, off + n) }));
      window -= n;
      off += n;
    }
  };
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      writeChunk(chunk).then(() => cb(), (e: unknown) => cb(e instanceof Error ? e : new Error(String(e))));
    },
  });
}
