/**
 * Docker's multiplexed stream format (non-TTY attach, exec and logs): frames of an
 * 8-byte header `[stream, 0, 0, 0, size uint32 BE]` and `size` bytes of payload;
 * stream 0 is stdin, 1 stdout, 2 stderr, 3 an error from the daemon. The demuxer
 * waits for 'drain' on the destination before reading on, so a slow consumer slows
 * the source instead of filling memory.
 */
import type { Writable } from 'node:stream';

export const STDIN = 0;
export const STDOUT = 1;
export const STDERR = 2;
export const SYSTEMERR = 3;

export class StdcopyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StdcopyError';
  }
}

/** One frame header for `payload` on `stream`. */
export function frame(stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = stream;
  h.writeUInt32BE(payload.length, 4);
  return Buffer.concat([h, payload]);
}

async function writeTo(out: Writable, chunk: Buffer): Promise<void> {
  if (chunk.length === 0) return;
  if (out.write(chunk)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      out.off('drain', onDrain);
      out.off('error', onError);
      out.off('close', onClose);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onDrain = (): void => done();
    const onError = (err: Error): void => done(err);
    const onClose = (): void => done();
    out.on('drain', onDrain);
    out.on('error', onError);
    out.on('close', onClose);
  });
}

export interface DemuxResult {
  readonly stdoutBytes: number;
  readonly stderrBytes: number;
}

/**
 * Copies a multiplexed stream to stdout and stderr until the source ends. A frame of
 * stream 3 (a daemon error) rejects with its text. The destinations are not ended.
 */
export async function demux(source: AsyncIterable<Uint8Array>, stdout: Writable, stderr: Writable): Promise<DemuxResult> {
  let pending: Buffer = Buffer.alloc(0);
  let out = 0;
  let err = 0;
  for await (const chunk of source) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk]);
    while (pending.length >= 8) {
      const kind = pending[0] as number;
      const size = pending.readUInt32BE(4);
      if (pending.length < 8 + size) break;
      const payload = pending.subarray(8, 8 + size);
      pending = pending.subarray(8 + size);
      switch (kind) {
        case STDIN:
        case STDOUT:
          await writeTo(stdout, payload);
          out += size;
          break;
        case STDERR:
          await writeTo(stderr, payload);
          err += size;
          break;
        case SYSTEMERR:
          throw new StdcopyError(`error from daemon in stream: ${payload.toString('utf8')}`);
        default:
          throw new StdcopyError(`unrecognized input header: ${kind}`);
      }
    }
  }
  if (pending.length > 0) throw new StdcopyError(`stream ended inside a frame (${pending.length} bytes left)`);
  return { stdoutBytes: out, stderrBytes: err };
}

/** Copies a raw (TTY) stream to `out` until the source ends, without ending `out`. */
export async function copyRaw(source: AsyncIterable<Uint8Array>, out: Writable): Promise<number> {
  let n = 0;
  for await (const chunk of source) {
    await writeTo(out, Buffer.from(chunk));
    n += chunk.length;
  }
  return n;
}

export { writeTo };
