// A streaming tar reader: ustar, pax extended headers (local and global), GNU long
// names and links. Pulls bytes only as its consumer asks for them (an async iterator
// over entries, each with a body that is an async iterable of chunks), so a slow
// consumer slows the download instead of filling memory.
import { BerthError, ErrorKind, invalid, notImplemented } from '@berth/base';
import {
  BLOCK,
  checksums,
  cstring,
  field,
  isZeroBlock,
  parseNumber,
  quote,
  type TarEntryType,
} from './_format.js';

export interface TarHeader {
  type: TarEntryType;
  /** The path as raw bytes (pax path, GNU long name or ustar prefix/name). */
  rawPath: Buffer;
  /** The path decoded as UTF-8 (invalid bytes replaced), for display and lookups. */
  path: string;
  /** Link target of a symlink or hard link, raw bytes; empty otherwise. */
  rawLinkpath: Buffer;
  linkpath: string;
  /** Permission bits with setuid, setgid and sticky (07777). */
  mode: number;
  /** The mode field as written (some writers add the file type bits). */
  rawMode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow (0 for every type but file). */
  size: number;
  /** Seconds since the epoch; pax headers may give fractions. */
  mtime: number;
  atime?: number;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from SCHILY.xattr.* pax records. */
  xattrs: Map<string, Buffer>;
  /** Offset of the entry's first header in the tar stream. */
  offset: number;
}

export interface TarEntry extends TarHeader {
  /**
   * The data, readable once, before the iterator moves on; whatever is left unread is
   * skipped when the next entry is requested.
   */
  body: AsyncIterable<Buffer>;
}

export interface TarReadOptions {
  /** Refuse archives with more entries than this. Default 4,000,000. */
  maxEntries?: number;
  /** Refuse pax headers and GNU long names larger than this. Default 1 MiB. */
  maxMetaBytes?: number;
  /** Refuse an entry that declares more data than this. Default: no limit. */
  maxEntrySize?: number;
  /**
   * After the end-of-archive marker, read (and ignore) the rest of the stream, so that
   * whatever measures the stream sees all of it. Default true.
   */
  drain?: boolean;
}

export const DEFAULT_MAX_ENTRIES = 4_000_000;
export const DEFAULT_MAX_META_BYTES = 1 << 20;

/** Pulls bytes from an async iterable of chunks, counting the offset. */
export class ByteSource {
  private readonly it: AsyncIterator<Uint8Array>;
  private rest: Buffer = Buffer.alloc(0);
  private failure: unknown;
  private ended = false;
  offset = 0;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Up to `max` bytes (at least one), or null at the end of the stream. */
  async some(max: number): Promise<Buffer | null> {
    while (this.rest.length === 0) {
      if (this.failure !== undefined) throw this.failure;
      if (this.ended) return null;
      let r: IteratorResult<Uint8Array>;
      try {
        r = await this.it.next();
      } catch (err) {
        this.failure = err;
        throw err;
      }
      if (r.done === true) {
        this.ended = true;
        return null;
      }
      const v = r.value;
      this.rest = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    }
    const out = this.rest.length <= max ? this.rest : this.rest.subarray(0, max);
    this.rest = this.rest.subarray(out.length);
    this.offset += out.length;
    return out;
  }

  /** Exactly `n` bytes, or fewer if the stream ends first. */
  async exact(n: number): Promise<Buffer> {
    const first = await this.some(n);
    if (first === null) return Buffer.alloc(0);
    if (first.length === n) return first;
    const parts = [first];
    let got = first.length;
    while (got < n) {
      const b = await this.some(n - got);
      if (b === null) break;
      parts.push(b);
      got += b.length;
    }
    return Buffer.concat(parts, got);
  }

  /** Skips `n` bytes; returns how many were skipped (fewer at the end of the stream). */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      const b = await this.some(Math.min(left, 1 << 20));
      if (b === null) break;
      left -= b.length;
    }
    return n - left;
  }

  /** Stops the upstream iterator (on an early exit). */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.rest = Buffer.alloc(0);
    try {
      await this.it.return?.();
    } catch {
      // the upstream's own failure was (or will be) reported where it happened
    }
  }
}

type Pax = Map<string, Buffer>;

function truncated(what: string, need: number, at: number, ended: number): BerthError {
  return invalid(
    `tar: truncated archive: ${what} needs ${need} bytes from offset ${at}, the stream ends at offset ${ended}`,
  );
}

function parsePax(data: Buffer, offset: number): Pax {
  const out: Pax = new Map();
  let i = 0;
  while (i < data.length) {
    // GNU tar pads the pax data with NULs in some versions: tolerate trailing NULs only
    if (data[i] === 0 && isZeroBlock(data.subarray(i))) break;
    const sp = data.indexOf(0x20, i);
    const lenText = sp < 0 ? '' : data.subarray(i, sp).toString('latin1');
    if (!/^[0-9]{1,9}$/.test(lenText)) {
      throw invalid(`tar: malformed pax record at offset ${offset + i}: bad length`);
    }
    const len = Number(lenText);
    const end = i + len;
    if (len <= lenText.length + 1 || end > data.length || data[end - 1] !== 0x0a) {
      throw invalid(`tar: malformed pax record at offset ${offset + i}: length ${len} does not fit`);
    }
    const rec = data.subarray(sp + 1, end - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw invalid(`tar: malformed pax record at offset ${offset + i}: no key`);
    const key = rec.subarray(0, eq).toString('utf8');
    out.set(key, Buffer.from(rec.subarray(eq + 1)));
    i = end;
  }
  return out;
}

const DECIMAL = /^[0-9]{1,16}$/;
const TIME = /^-?[0-9]{1,16}(\.[0-9]{1,9})?$/;

function paxInt(pax: Pax, key: string, offset: number): number | undefined {
  const v = pax.get(key);
  if (v === undefined || v.length === 0) return undefined;
  const s = v.toString('latin1');
  if (!DECIMAL.test(s) || !Number.isSafeInteger(Number(s))) {
    throw invalid(`tar: pax record ${key}=${quote(v)} at offset ${offset} is not a valid number`);
  }
  return Number(s);
}

function paxTime(pax: Pax, key: string, offset: number): number | undefined {
  const v = pax.get(key);
  if (v === undefined || v.length === 0) return undefined;
  const s = v.toString('latin1');
  if (!TIME.test(s)) {
    throw invalid(`tar: pax record ${key}=${quote(v)} at offset ${offset} is not a valid time`);
  }
  return Number(s);
}

function headerNumber(block: Buffer, f: 'mode' | 'uid' | 'gid' | 'size' | 'mtime' | 'devmajor' | 'devminor', offset: number): number {
  const v = parseNumber(field(block, f));
  if (v === undefined || typeof v === 'bigint') {
    throw invalid(`tar: header at offset ${offset}: field ${f} is not a valid number (${quote(field(block, f))})`);
  }
  return v;
}

const utf8 = (b: Buffer): string => b.toString('utf8');

/**
 * Reads a tar stream entry by entry. The caller must be done with an entry's body
 * before asking for the next entry. Errors are BerthErrors naming the offset (and the
 * entry, when there is one).
 */
export async function* readTar(
  source: AsyncIterable<Uint8Array>,
  options: TarReadOptions = {},
): AsyncGenerator<TarEntry, void, undefined> {
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const maxMeta = options.maxMetaBytes ?? DEFAULT_MAX_META_BYTES;
  const maxEntrySize = options.maxEntrySize ?? Number.MAX_SAFE_INTEGER;
  const src = new ByteSource(source);
  let global: Pax = new Map();
  let local: Pax = new Map();
  let longName: Buffer | undefined;
  let longLink: Buffer | undefined;
  let metaStart: number | undefined;
  let count = 0;
  let finished = false;

  const readMeta = async (size: number, kind: string, at: number): Promise<Buffer> => {
    if (size > maxMeta) {
      throw new BerthError(
        ErrorKind.ResourceExhausted,
        `tar: ${kind} at offset ${at} has ${size} bytes, more than the limit of ${maxMeta}`,
      );
    }
    const data = await src.exact(size);
    if (data.length < size) throw truncated(kind, size, at + BLOCK, src.offset);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if ((await src.skip(pad)) < pad) throw truncated(`${kind} padding`, pad, at + BLOCK + size, src.offset);
    return data;
  };

  try {
    for (;;) {
      const at = src.offset;
      const block = await src.exact(BLOCK);
      if (block.length === 0) {
        throw invalid(`tar: archive ends at offset ${at} without an end-of-archive marker`);
      }
      if (block.length < BLOCK) throw truncated('header', BLOCK, at, src.offset);

      if (isZeroBlock(block)) {
        if (metaStart !== undefined) {
          throw invalid(`tar: extended header at offset ${metaStart} is followed by the end of the archive`);
        }
        const second = await src.exact(BLOCK);
        if (second.length > 0 && second.length < BLOCK) throw truncated('end-of-archive marker', BLOCK, at + BLOCK, src.offset);
        if (second.length === BLOCK && !isZeroBlock(second)) {
          throw invalid(`tar: a single zero block at offset ${at} is followed by data`);
        }
        finished = true;
        if (options.drain ?? true) while ((await src.some(1 << 20)) !== null);
        return;
      }

      const sums = checksums(block);
      const stored = parseNumber(field(block, 'chksum'));
      if (stored !== sums.unsigned && stored !== sums.signed) {
        throw invalid(
          `tar: header at offset ${at} has a bad checksum (stored ${String(stored)}, computed ${sums.unsigned}): not a tar archive, or corrupt`,
        );
      }

      const typeflag = String.fromCharCode(block[156] as number);
      const magic = field(block, 'magic').toString('latin1');
      const ustar = magic === 'ustar\0';
      const gnu = magic === 'ustar ';
      const declared = headerNumber(block, 'size', at);
      if (declared < 0) throw invalid(`tar: header at offset ${at} has a negative size`);

      switch (typeflag) {
        case 'x':
          metaStart ??= at;
          for (const [k, v] of parsePax(await readMeta(declared, 'pax header', at), at + BLOCK)) local.set(k, v);
          continue;
        case 'g':
          metaStart ??= at;
          for (const [k, v] of parsePax(await readMeta(declared, 'global pax header', at), at + BLOCK)) {
            if (v.length === 0) global.delete(k);
            else global.set(k, v);
          }
          // a global header alone is not an entry
          if (metaStart === at) metaStart = undefined;
          continue;
        case 'L':
          metaStart ??= at;
          longName = Buffer.from(cstring(await readMeta(declared, 'GNU long name', at)));
          continue;
        case 'K':
          metaStart ??= at;
          longLink = Buffer.from(cstring(await readMeta(declared, 'GNU long link name', at)));
          continue;
        default:
          break;
      }

      const pax: Pax = new Map([...global, ...local]);
      const offset = metaStart ?? at;
      local = new Map();
      metaStart = undefined;

      let rawPath: Buffer;
      const paxPath = pax.get('path');
      if (paxPath !== undefined) rawPath = paxPath;
      else if (longName !== undefined) rawPath = longName;
      else {
        const name = cstring(field(block, 'name'));
        const prefix = ustar ? cstring(field(block, 'prefix')) : Buffer.alloc(0);
        rawPath = prefix.length > 0 ? Buffer.concat([prefix, Buffer.from('/'), name]) : Buffer.from(name);
      }
      const rawLinkpath = pax.get('linkpath') ?? longLink ?? Buffer.from(cstring(field(block, 'linkname')));
      longName = undefined;
      longLink = undefined;
      const what = `entry ${quote(rawPath)} at offset ${offset}`;
      const where = `tar: ${what}`;
      if (rawPath.length === 0) throw invalid(`tar: entry at offset ${offset} has an empty name`);
      if (rawPath.includes(0) || rawLinkpath.includes(0)) throw invalid(`${where}: name contains a NUL byte`);
      for (const k of pax.keys()) {
        if (k.startsWith('GNU.sparse.')) throw notImplemented(`${where}: sparse files (pax ${k}) are not supported`);
      }

      let type: TarEntryType;
      switch (typeflag) {
        case '0':
        case '\0':
        case '7':
          type = rawPath[rawPath.length - 1] === 0x2f && typeflag !== '7' ? 'dir' : 'file';
          break;
        case '1': type = 'hardlink'; break;
        case '2': type = 'symlink'; break;
        case '3': type = 'char'; break;
        case '4': type = 'block'; break;
        case '5': type = 'dir'; break;
        case '6': type = 'fifo'; break;
        case 'S':
          throw notImplemented(`${where}: GNU sparse files are not supported`);
        default:
          throw invalid(`${where}: unsupported entry type ${JSON.stringify(typeflag)}`);
      }

      const size = type === 'file' ? (paxInt(pax, 'size', offset) ?? declared) : 0;
      if (size > maxEntrySize) {
        throw new BerthError(
          ErrorKind.ResourceExhausted,
          `${where}: declares ${size} bytes of data, more than the limit of ${maxEntrySize}`,
        );
      }
      count++;
      if (count > maxEntries) {
        throw new BerthError(ErrorKind.ResourceExhausted, `${where}: more than ${maxEntries} entries in the archive`);
      }

      const xattrs = new Map<string, Buffer>();
      for (const [k, v] of pax) if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
      const atime = paxTime(pax, 'atime', offset);
      const header: TarHeader = {
        type,
        rawPath,
        path: utf8(rawPath),
        rawLinkpath: type === 'symlink' || type === 'hardlink' ? rawLinkpath : Buffer.alloc(0),
        linkpath: type === 'symlink' || type === 'hardlink' ? utf8(rawLinkpath) : '',
        mode: headerNumber(block, 'mode', at) & 0o7777,
        rawMode: headerNumber(block, 'mode', at),
        uid: paxInt(pax, 'uid', offset) ?? headerNumber(block, 'uid', at),
        gid: paxInt(pax, 'gid', offset) ?? headerNumber(block, 'gid', at),
        size,
        mtime: paxTime(pax, 'mtime', offset) ?? headerNumber(block, 'mtime', at),
        uname: pax.get('uname')?.toString('utf8') ?? cstring(field(block, 'uname')).toString('utf8'),
        gname: pax.get('gname')?.toString('utf8') ?? cstring(field(block, 'gname')).toString('utf8'),
        devmajor: ustar || gnu ? headerNumber(block, 'devmajor', at) : 0,
        devminor: ustar || gnu ? headerNumber(block, 'devminor', at) : 0,
        xattrs,
        offset,
      };
      if (atime !== undefined) header.atime = atime;
      if (header.uid < 0 || header.gid < 0) throw invalid(`${where}: negative uid or gid`);

      // The body: pulled from the source on demand, never more than `size` bytes.
      const dataAt = src.offset;
      let remaining = size;
      let state: 'fresh' | 'reading' | 'closed' = 'fresh';
      const body = async function* (): AsyncGenerator<Buffer, void, undefined> {
        while (remaining > 0) {
          if (state === 'closed') throw invalid(`${where}: body read after the reader moved on`);
          const b = await src.some(Math.min(remaining, 1 << 20));
          if (b === null) throw truncated(`${what}: data`, size, dataAt, src.offset);
          remaining -= b.length;
          yield b;
        }
      };
      const entry: TarEntry = {
        ...header,
        body: {
          [Symbol.asyncIterator]: () => {
            if (state !== 'fresh') throw invalid(`${where}: body can be read only once`);
            state = 'reading';
            return body();
          },
        },
      };
      yield entry;
      state = 'closed';
      if (remaining > 0) {
        const skipped = await src.skip(remaining);
        if (skipped < remaining) throw truncated(`${what}: data`, size, dataAt, src.offset);
        remaining = 0;
      }
      const pad = (BLOCK - (size % BLOCK)) % BLOCK;
      if ((await src.skip(pad)) < pad) throw truncated(`${what}: padding`, pad, dataAt + size, src.offset);
    }
  } finally {
    if (!finished) await src.close();
  }
}
