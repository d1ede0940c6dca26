// Decompression of layer blobs (gzip, zstd, none), chosen by the stream's magic
// bytes, and the meter that hashes the uncompressed stream and stops a bomb.
import { createHash } from 'node:crypto';
import { Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress } from 'fzstd';
import { BerthError, ErrorKind, invalid, notImplemented } from '@berth/base';

export type Compression = 'gzip' | 'zstd' | 'none';

/** The compression a layer media type declares, or undefined if it is not a layer type. */
export function compressionOfMediaType(mediaType: string): Compression | undefined {
  const mt = mediaType.trim().toLowerCase();
  if (/^application\/vnd\.oci\.image\.layer\.(nondistributable\.)?v1\.tar$/.test(mt)) return 'none';
  if (/^application\/vnd\.oci\.image\.layer\.(nondistributable\.)?v1\.tar\+gzip$/.test(mt)) return 'gzip';
  if (/^application\/vnd\.oci\.image\.layer\.(nondistributable\.)?v1\.tar\+zstd$/.test(mt)) return 'zstd';
  if (mt === 'application/vnd.docker.image.rootfs.diff.tar.gzip') return 'gzip';
  if (mt === 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip') return 'gzip';
  if (mt === 'application/vnd.docker.image.rootfs.diff.tar') return 'none';
  if (mt === 'application/x-tar' || mt === 'application/tar') return 'none';
  return undefined;
}

/** The compression of a stream from its first bytes (at least 6 are needed to be sure). */
export function detectCompression(head: Uint8Array): Compression {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length >= 3 && b[0] === 0x1f && b[1] === 0x8b && b[2] === 0x08) return 'gzip';
  if (b.length >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (b.length >= 6 && b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) {
    throw notImplemented('layer is xz-compressed, which is not supported (gzip, zstd or none)');
  }
  if (b.length >= 3 && b.subarray(0, 3).toString('latin1') === 'BZh') {
    throw notImplemented('layer is bzip2-compressed, which is not supported (gzip, zstd or none)');
  }
  return 'none';
}

/** Cuts chunks into slices of at most `max` bytes, so no single step can expand too far. */
async function* slices(source: AsyncIterable<Uint8Array>, max: number): AsyncGenerator<Buffer> {
  for await (const c of source) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
    for (let i = 0; i < b.length; i += max) yield b.subarray(i, Math.min(i + max, b.length));
  }
}

class Counted {
  bytes = 0;
  constructor(private readonly source: AsyncIterable<Uint8Array>) {}
  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for await (const c of this.source) {
      this.bytes += c.length;
      yield c;
    }
  }
}

async function* gunzip(input: Counted): AsyncGenerator<Buffer> {
  const gz = createGunzip({ chunkSize: 64 * 1024 });
  const feed = Readable.from(slices(input, 16 * 1024), { objectMode: false });
  pipeline(feed, gz, () => {
    // errors reach the consumer through gz
  });
  try {
    for await (const c of gz) yield c as Buffer;
  } catch (err) {
    if (err instanceof BerthError) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    throw invalid(`gzip: ${msg} (after ${input.bytes} compressed bytes)`, err);
  } finally {
    feed.destroy();
    gz.destroy();
  }
}

async function* unzstd(input: Counted): AsyncGenerator<Buffer> {
  let out: Buffer[] = [];
  const fail = (err: unknown): BerthError => {
    const msg = err instanceof Error ? err.message : String(err);
    return invalid(`zstd: ${msg} (after ${input.bytes} compressed bytes)`, err);
  };
  const d = new Decompress((chunk) => {
    if (chunk.length > 0) out.push(Buffer.from(chunk));
  });
  // A 4 KiB slice can expand to at most ~128 MiB (RLE blocks), which bounds memory.
  for await (const s of slices(input, 4096)) {
    try {
      d.push(s);
    } catch (err) {
      throw fail(err);
    }
    if (out.length > 0) {
      const ready = out;
      out = [];
      yield* ready;
    }
  }
  try {
    d.push(new Uint8Array(0), true);
  } catch (err) {
    throw fail(err);
  }
  yield* out;
}

export interface DecompressOptions {
  /** The descriptor's media type; informative, since the magic bytes decide. */
  mediaType?: string;
}

/**
 * Decompresses a layer stream by its magic bytes (gzip, zstd or none). A media type
 * that names another compression than the bytes show is not an error, as with Docker;
 * the blob's digest is what vouches for it.
 */
export async function* decompress(
  source: AsyncIterable<Uint8Array>,
  options: DecompressOptions = {},
): AsyncGenerator<Buffer, void, undefined> {
  if (options.mediaType !== undefined && compressionOfMediaType(options.mediaType) === undefined) {
    throw invalid(`media type ${JSON.stringify(options.mediaType)} is not a layer type`);
  }
  const it = source[Symbol.asyncIterator]();
  const held: Buffer[] = [];
  let have = 0;
  let done = false;
  while (have < 6) {
    const r = await it.next();
    if (r.done === true) {
      done = true;
      break;
    }
    const v = r.value;
    const b = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    held.push(b);
    have += b.length;
  }
  const rest = async function* (): AsyncGenerator<Buffer> {
    try {
      yield* held;
      while (!done) {
        const r = await it.next();
        if (r.done === true) return;
        const v = r.value;
        yield Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      }
    } finally {
      if (!done) await it.return?.();
    }
  };
  const input = new Counted(rest());
  switch (detectCompression(Buffer.concat(held, have))) {
    case 'gzip':
      yield* gunzip(input);
      return;
    case 'zstd':
      yield* unzstd(input);
      return;
    case 'none':
      for await (const c of input) yield c as Buffer;
      return;
  }
}

export const DEFAULT_MAX_LAYER_BYTES = 64 * 1024 ** 3;

/**
 * Passes a stream through, hashing it (sha256) and counting it; fails with
 * ResourceExhausted once more than `maxBytes` have passed.
 */
export class Meter {
  private readonly hash = createHash('sha256');
  size = 0;
  constructor(readonly maxBytes: number = DEFAULT_MAX_LAYER_BYTES) {}

  async *measure(source: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer, void, undefined> {
    for await (const c of source) {
      const b = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      this.size += b.length;
      if (this.size > this.maxBytes) {
        throw new BerthError(
          ErrorKind.ResourceExhausted,
          `layer: uncompressed size exceeds the limit of ${this.maxBytes} bytes`,
        );
      }
      this.hash.update(b);
      yield b;
    }
  }

  /** sha256:<hex> of what has passed so far. */
  digest(): string {
    return `sha256:${this.hash.copy().digest('hex')}`;
  }
}
