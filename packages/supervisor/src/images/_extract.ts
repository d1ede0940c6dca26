/**
 * Single-pass pull, the main thread's side: a layer's bytes, as they
 * download, go to the content store's ingest and (through a LiveLayer) to a
 * LayerExtractor, which feeds them to the extraction thread
 * (extract-worker.ts) with flow control.
 */
import { Worker } from 'node:worker_threads';
import { BerthError, internal } from '@berth/base';
import type { ApplyResult, Mount } from '@berth/images';
import { applyTarget } from '../services/diff.js';
import type { FromExtractor, ToExtractor } from './extract-worker.js';

/** Bytes sent to the extraction thread and not yet taken by it. */
const WORKER_WINDOW = 4 << 20;

/** A live stream was given up before it was whole (its store write ended without reading it all): read the stored blob instead. */
export class StreamAbandoned extends Error {
  constructor(digest: string) {
    super(`layer ${digest}: the download stream was not read to its end`);
    this.name = 'StreamAbandoned';
  }
}

/** Extracts layers in a worker thread, one at a time; close() ends the thread. */
export class LayerExtractor {
  private worker: Worker | undefined;
  private current: ((m: FromExtractor | { t: 'exit'; error: Error }) => void) | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  /** Start the thread now, so that its modules are loaded by the time the first layer comes. */
  warm(): void {
    this.start();
  }

  private start(): Worker {
    if (this.worker !== undefined) return this.worker;
    // The extraction closes descriptors the native addon opened: not the thread's to track.
    const w = new Worker(new URL('./extract-worker.js', import.meta.url), { trackUnmanagedFds: false });
    w.on('message', (m: FromExtractor) => this.current?.(m));
    const gone = (error: Error): void => {
      if (this.worker === w) this.worker = undefined;
      this.current?.({ t: 'exit', error });
    };
    w.on('error', (e) => gone(e));
    w.on('exit', (code) => gone(internal(`the layer extraction thread exited (code ${code})`)));
    this.worker = w;
    return w;
  }

  /** Apply a layer stream (compressed or not) onto a snapshot's mounts, in the extraction thread. */
  apply(source: AsyncIterable<Uint8Array>, mounts: readonly Mount[], mediaType: string): Promise<ApplyResult> {
    const run = this.queue.then(() => this.applyNow(source, mounts, mediaType));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async applyNow(source: AsyncIterable<Uint8Array>, mounts: readonly Mount[], mediaType: string): Promise<ApplyResult> {
    const target = applyTarget(mounts);
    const w = this.start();
    let inflight = 0;
    let roomWaiter: (() => void) | undefined;
    let outcome: { ok: ApplyResult } | { error: Error } | undefined;
    let settle!: () => void;
    const finished = new Promise<void>((resolve) => {
      settle = resolve;
    });
    const wakeSender = (): void => {
      const r = roomWaiter;
      roomWaiter = undefined;
      r?.();
    };
    this.current = (m) => {
      switch (m.t) {
        case 'ack':
          inflight -= m.bytes;
          if (inflight <= WORKER_WINDOW) wakeSender();
          return;
        case 'done':
          outcome ??= { ok: { size: m.size, digest: m.digest, entries: m.entries } };
          break;
        case 'error':
          outcome ??= { error: new BerthError(m.kind, m.message) };
          break;
        case 'exit':
          outcome ??= { error: m.error };
          break;
      }
      wakeSender();
      settle();
    };
    const post = (m: ToExtractor, transfer?: ArrayBuffer[]): void => w.postMessage(m, transfer);
    post({ t: 'start', dir: target.dir, mode: target.mode, ...(mediaType === '' ? {} : { mediaType }) });
    let sourceError: { error: unknown } | undefined;
    try {
      for await (const c of source) {
        if (outcome !== undefined) break; // the extraction failed: stop reading
        const copy = new Uint8Array(c); // the source may reuse or pool its buffers
        inflight += copy.length;
        post({ t: 'data', chunk: copy }, [copy.buffer as ArrayBuffer]);
        while (inflight > WORKER_WINDOW && outcome === undefined) {
          await new Promise<void>((resolve) => {
            roomWaiter = resolve;
          });
        }
      }
      if (outcome === undefined) post({ t: 'end' });
    } catch (e) {
      sourceError = { error: e };
      if (outcome === undefined) post({ t: 'abort', message: e instanceof Error ? e.message : String(e) });
    }
    await finished;
    this.current = undefined;
    if (sourceError !== undefined) throw sourceError.error;
    if (outcome === undefined) throw internal('layer extraction ended without a result');
    if ('error' in outcome) throw outcome.error;
    return outcome.ok;
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w !== undefined) await w.terminate();
  }
}

/** The bytes a pull may hold for layers whose extraction has not started yet. */
export class LiveBudget {
  constructor(public left: number) {}
}

/**
 * One layer's download as a second stream, for its extraction. Until the
 * unpack claims it, chunks are held against the pull's budget; past the
 * budget the stream is dropped (the layer is then read back from the
 * store). Once claimed, the download waits when the extraction falls more
 * than a window behind.
 */
export class LiveLayer {
  private chunks: Buffer[] = [];
  private queued = 0;
  private state: 'buffering' | 'claimed' | 'dropped' | 'done' = 'buffering';
  private ended = false;
  private failure: { error: unknown } | undefined;
  private wake: (() => void) | undefined;
  private drained: (() => void) | undefined;

  constructor(readonly digest: string, private readonly budget: LiveBudget, private readonly window = 8 << 20) {}

  /** A downloaded chunk (already hashed into the download's digest check). */
  async push(chunk: Buffer): Promise<void> {
    if (this.state === 'buffering') {
      if (this.budget.left < chunk.length) {
        this.drop();
        return;
      }
      this.budget.left -= chunk.length;
      this.chunks.push(chunk);
      this.queued += chunk.length;
      return;
    }
    if (this.state !== 'claimed') return;
    this.chunks.push(chunk);
    this.queued += chunk.length;
    this.poke();
    while (this.queued > this.window && this.state === 'claimed') {
      await new Promise<void>((resolve) => {
        this.drained = resolve;
      });
    }
  }

  /** The download ended cleanly: every byte was pushed and its digest matched. */
  end(): void {
    this.ended = true;
    this.poke();
  }

  fail(error: unknown): void {
    this.failure ??= { error };
    this.poke();
  }

  private drop(): void {
    if (this.state === 'buffering') this.budget.left += this.queued;
    this.state = 'dropped';
    this.chunks = [];
    this.queued = 0;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** The stream for the extraction, once; undefined when it was dropped or claimed already. */
  claim(): AsyncIterable<Buffer> | undefined {
    if (this.state !== 'buffering') return undefined;
    this.budget.left += this.queued;
    this.state = 'claimed';
    return this.stream();
  }

  private async *stream(): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        if (this.failure !== undefined) throw this.failure.error;
        const c = this.chunks.shift();
        if (c !== undefined) {
          this.queued -= c.length;
          if (this.queued <= this.window) {
            const d = this.drained;
            this.drained = undefined;
            d?.();
          }
          yield c;
          continue;
        }
        if (this.ended) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      // Read to the end, failed, or given up by the extraction: the download goes on into the store alone.
      this.state = 'done';
      this.chunks = [];
      this.queued = 0;
      const d = this.drained;
      this.drained = undefined;
      d?.();
    }
  }

  /** The chunks of a download, passed on unchanged, and pushed to this layer's second stream. */
  async *tee(source: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
    let clean = false;
    try {
      for await (const c of source) {
        const b = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
        await this.push(b);
        yield b;
      }
      clean = true;
      this.end();
    } catch (e) {
      this.fail(e);
      throw e;
    } finally {
      if (!clean) this.fail(new StreamAbandoned(this.digest));
    }
  }
}
