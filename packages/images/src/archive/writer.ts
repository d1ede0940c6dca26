// A tar writer: ustar headers, with a pax extended header for whatever does not fit
// (long names and link targets, big sizes and ids, extended attributes). Waits for
// 'drain' when its output is full, and hashes what it writes (sha256).
import { createHash, type Hash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { invalid, unavailable } from '@berth/base';
import { BLOCK, F, TYPEFLAG, isUtf8, paxRecord, putNumber, type TarEntryType } from './_format.js';

export interface TarWriteEntry {
  type: TarEntryType;
  /** A string is written as UTF-8; a Buffer as the raw bytes it holds. */
  path: string | Buffer;
  linkpath?: string | Buffer;
  mode: number;
  uid?: number;
  gid?: number;
  /** Data bytes, for files; the body must yield exactly this many. */
  size?: number;
  /** Seconds since the epoch (whole seconds are written). */
  mtime?: number;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: ReadonlyMap<string, Buffer>;
}

export interface TarWriteResult {
  /** Bytes written, end-of-archive marker included. */
  size: number;
  /** sha256:<hex> of those bytes. */
  digest: string;
}

const ZEROS = Buffer.alloc(BLOCK * 2);

const toBytes = (v: string | Buffer): Buffer => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v);

async function drained(out: Writable): Promise<void> {
  if (out.destroyed) throw unavailable('tar writer: output closed');
  await new Promise<void>((resolve, reject) => {
    const done = (err?: unknown): void => {
      out.off('drain', onDrain);
      out.off('error', onError);
      out.off('close', onClose);
      if (err === undefined) resolve();
      else reject(err instanceof Error ? err : new Error(String(err)));
    };
    const onDrain = (): void => done();
    const onError = (err: unknown): void => done(err);
    const onClose = (): void => done(unavailable('tar writer: output closed'));
    out.on('drain', onDrain);
    out.on('error', onError);
    out.on('close', onClose);
  });
}

export class TarWriter {
  private readonly hash: Hash = createHash('sha256');
  private written = 0;
  private finished = false;
  private paxCount = 0;

  constructor(private readonly out: Writable) {}

  private async write(b: Buffer): Promise<void> {
    if (b.length === 0) return;
    this.hash.update(b);
    this.written += b.length;
    if (!this.out.write(b)) await drained(this.out);
  }

  /** Writes one entry: its header(s), then the body (for files). */
  async add(entry: TarWriteEntry, body?: AsyncIterable<Uint8Array> | Uint8Array): Promise<void> {
    if (this.finished) throw invalid('tar writer: add after finish');
    const path = toBytes(entry.path);
    const what = `tar writer: entry ${JSON.stringify(path.toString('utf8'))}`;
    if (path.length === 0 || path.includes(0)) throw invalid(`${what}: empty name or NUL in name`);
    const link = entry.linkpath === undefined ? Buffer.alloc(0) : toBytes(entry.linkpath);
    if (link.includes(0)) throw invalid(`${what}: NUL in link name`);
    const size = entry.type === 'file' ? (entry.size ?? 0) : 0;
    if (!Number.isSafeInteger(size) || size < 0) throw invalid(`${what}: bad size ${size}`);
    const mtime = Math.floor(entry.mtime ?? 0);

    const block = Buffer.alloc(BLOCK);
    const pax: Buffer[] = [];
    let binary = false;

    // name: as is if it fits, else split into prefix/name at a slash, else pax
    if (path.length <= F.name[1]) {
      path.copy(block, F.name[0]);
    } else {
      let split = -1;
      for (let i = Math.min(path.length - 1, F.prefix[1]); i > 0; i--) {
        if (path[i] === 0x2f && path.length - i - 1 <= F.name[1] && path.length - i - 1 > 0) {
          split = i;
          break;
        }
      }
      if (split > 0) {
        path.copy(block, F.prefix[0], 0, split);
        path.copy(block, F.name[0], split + 1);
      } else {
        pax.push(paxRecord('path', path));
        if (!isUtf8(path)) binary = true;
        path.copy(block, F.name[0], 0, F.name[1]);
      }
    }
    if (link.length > F.linkname[1]) {
      pax.push(paxRecord('linkpath', link));
      if (!isUtf8(link)) binary = true;
      link.copy(block, F.linkname[0], 0, F.linkname[1]);
    } else {
      link.copy(block, F.linkname[0]);
    }

    putNumber(block, 'mode', entry.mode & 0o7777);
    const ids: Array<['uid' | 'gid', number]> = [['uid', entry.uid ?? 0], ['gid', entry.gid ?? 0]];
    for (const [k, v] of ids) {
      if (!Number.isSafeInteger(v) || v < 0) throw invalid(`${what}: bad ${k} ${v}`);
      if (v >= 8 ** 7) pax.push(paxRecord(k, Buffer.from(String(v))));
      else putNumber(block, k, v);
    }
    if (size >= 8 ** 11) pax.push(paxRecord('size', Buffer.from(String(size))));
    else putNumber(block, 'size', size);
    if (mtime < 0 || mtime >= 8 ** 11) pax.push(paxRecord('mtime', Buffer.from(String(mtime))));
    else putNumber(block, 'mtime', mtime);
    block[F.typeflag[0]] = TYPEFLAG[entry.type].charCodeAt(0);
    block.write('ustar\x0000', F.magic[0], 8, 'latin1');
    for (const [k, v] of [['uname', entry.uname ?? ''], ['gname', entry.gname ?? '']] as const) {
      const b = Buffer.from(v, 'utf8');
      if (b.length > F[k][1] || !/^[\x20-\x7e]*$/.test(v)) pax.push(paxRecord(k, b));
      else b.copy(block, F[k][0]);
    }
    if (entry.type === 'char' || entry.type === 'block') {
      for (const k of ['devmajor', 'devminor'] as const) {
        const v = entry[k] ?? 0;
        if (!putNumber(block, k, v)) throw invalid(`${what}: ${k} ${v} does not fit`);
      }
    }
    if (entry.xattrs !== undefined) {
      for (const [k, v] of [...entry.xattrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        if (k.length === 0 || k.includes('=') || k.includes('\0')) throw invalid(`${what}: bad xattr name ${JSON.stringify(k)}`);
        pax.push(paxRecord(`SCHILY.xattr.${k}`, v));
      }
    }
    if (binary) pax.unshift(paxRecord('hdrcharset', Buffer.from('BINARY')));

    if (pax.length > 0) {
      const data = Buffer.concat(pax);
      const ph = Buffer.alloc(BLOCK);
      const base = path.subarray(path.lastIndexOf(0x2f, path.length - 2) + 1);
      Buffer.concat([Buffer.from(`PaxHeaders.${this.paxCount++}/`), base]).copy(ph, F.name[0], 0, F.name[1]);
      putNumber(ph, 'mode', 0o644);
      putNumber(ph, 'uid', 0);
      putNumber(ph, 'gid', 0);
      putNumber(ph, 'size', data.length);
      putNumber(ph, 'mtime', Math.min(Math.max(mtime, 0), 8 ** 11 - 1));
      ph[F.typeflag[0]] = 'x'.charCodeAt(0);
      ph.write('ustar\x0000', F.magic[0], 8, 'latin1');
      finishChecksum(ph);
      await this.write(ph);
      await this.write(data);
      await this.write(ZEROS.subarray(0, (BLOCK - (data.length % BLOCK)) % BLOCK));
    }
    finishChecksum(block);
    await this.write(block);

    if (size > 0 || body !== undefined) {
      let got = 0;
      const chunks: AsyncIterable<Uint8Array> | Uint8Array[] =
        body === undefined ? [] : body instanceof Uint8Array ? [body] : body;
      for await (const c of chunks) {
        got += c.length;
        if (got > size) throw invalid(`${what}: body is longer than the declared ${size} bytes`);
        const b = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
        await this.write(b);
      }
      if (got !== size) throw invalid(`${what}: body has ${got} bytes, the header declared ${size}`);
      await this.write(ZEROS.subarray(0, (BLOCK - (size % BLOCK)) % BLOCK));
    }
  }

  /** Writes the end-of-archive marker (two zero blocks); the output is left open. */
  async finish(): Promise<TarWriteResult> {
    if (!this.finished) {
      await this.write(ZEROS);
      this.finished = true;
    }
    return { size: this.written, digest: `sha256:${this.hash.copy().digest('hex')}` };
  }
}

function finishChecksum(block: Buffer): void {
  block.fill(0x20, F.chksum[0], F.chksum[0] + F.chksum[1]);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i] as number;
  block.write(sum.toString(8).padStart(6, '0'), F.chksum[0], 6, 'latin1');
  block[F.chksum[0] + 6] = 0;
  block[F.chksum[0] + 7] = 0x20;
}
