/**
 * The layer extraction thread: decompression, the diff ID's hash and the
 * confined extraction (applyLayer, with its synchronous file-system calls)
 * run here, off the supervisor's event loop, so that downloads and gRPC
 * keep going while a layer is written out.
 *
 * One layer at a time. Messages in: `start` (target directory and mode),
 * `data` (compressed bytes, in order), `end`, `abort`. Messages out: `ack`
 * (bytes taken, for flow control), then `done` with the result or `error`.
 */
import { parentPort } from 'node:worker_threads';
import { BerthError, ErrorKind } from '@berth/base';
import { applyLayer } from '@berth/images';
import type { ApplyMode } from '@berth/images';

export type ToExtractor =
  | { readonly t: 'start'; readonly dir: string; readonly mode: ApplyMode; readonly mediaType?: string }
  | { readonly t: 'data'; readonly chunk: Uint8Array }
  | { readonly t: 'end' }
  | { readonly t: 'abort'; readonly message: string };

export type FromExtractor =
  | { readonly t: 'ack'; readonly bytes: number }
  | { readonly t: 'done'; readonly size: number; readonly digest: string; readonly entries: number }
  | { readonly t: 'error'; readonly kind: ErrorKind; readonly message: string };

/** The bytes of the layer being extracted, as the main thread sends them. */
class Feed {
  private readonly chunks: Uint8Array[] = [];
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly ack: (bytes: number) => void) {}

  push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.poke();
  }

  end(): void {
    this.ended = true;
    this.poke();
  }

  fail(e: Error): void {
    this.failure = e;
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure;
      const c = this.chunks.shift();
      if (c !== undefined) {
        this.ack(c.length);
        yield c;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

function send(m: FromExtractor): void {
  parentPort?.postMessage(m);
}

let feed: Feed | undefined;

parentPort?.on('message', (m: ToExtractor) => {
  switch (m.t) {
    case 'start': {
      const f = new Feed((bytes) => send({ t: 'ack', bytes }));
      feed = f;
      applyLayer(f, m.dir, { mode: m.mode, ...(m.mediaType === undefined ? {} : { mediaType: m.mediaType }) }).then(
        (r) => send({ t: 'done', size: r.size, digest: r.digest, entries: r.entries }),
        (e: unknown) => send({
          t: 'error',
          kind: e instanceof BerthError ? e.kind : ErrorKind.Internal,
          message: e instanceof Error ? e.message : String(e),
        }),
      ).finally(() => {
        if (feed === f) feed = undefined;
      });
      return;
    }
    case 'data':
      feed?.push(m.chunk);
      return;
    case 'end':
      feed?.end();
      return;
    case 'abort':
      feed?.fail(new BerthError(ErrorKind.Canceled, m.message));
      return;
  }
});
