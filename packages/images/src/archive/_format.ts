// The tar header layout (POSIX ustar, with the GNU and pax extensions) shared by the
// reader and the writer. Names and link targets are raw bytes; inside this module and
// its users they travel as Buffers, or as latin1 strings (one char per byte) where a
// string is handier, so that names which are not UTF-8 survive untouched.

export const BLOCK = 512;

export const F = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

export type Field = keyof typeof F;

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export const TYPEFLAG: Record<TarEntryType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

export function field(block: Buffer, f: Field): Buffer {
  const [off, len] = F[f];
  return block.subarray(off, off + len);
}

/** The bytes of a NUL-terminated (or full-width) string field. */
export function cstring(b: Buffer): Buffer {
  const nul = b.indexOf(0);
  return nul < 0 ? b : b.subarray(0, nul);
}

export function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

export function checksums(block: Buffer): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : (block[i] as number);
    unsigned += v;
    signed += v >= 0x80 ? v - 0x100 : v;
  }
  return { unsigned, signed };
}

/**
 * A numeric field: octal digits (leading spaces allowed, ended by space or NUL) or,
 * when the first byte has its high bit set, GNU base-256 (two's complement, big endian).
 * Returns undefined when the field is malformed; a bigint when out of the safe range.
 */
export function parseNumber(b: Buffer): number | bigint | undefined {
  if (b.length === 0) return 0;
  const first = b[0] as number;
  if (first & 0x80) {
    let v = BigInt(first & 0x7f);
    const negative = first === 0xff;
    if (negative) v = BigInt(0xff);
    for (let i = 1; i < b.length; i++) v = (v << 8n) | BigInt(b[i] as number);
    if (negative) v -= 1n << BigInt(8 * b.length);
    return Number.isSafeInteger(Number(v)) ? Number(v) : v;
  }
  let i = 0;
  while (i < b.length && b[i] === 0x20) i++;
  let v = 0;
  let digits = 0;
  for (; i < b.length; i++) {
    const c = b[i] as number;
    if (c >= 0x30 && c <= 0x37) {
      v = v * 8 + (c - 0x30);
      digits++;
    } else break;
  }
  for (; i < b.length; i++) {
    const c = b[i] as number;
    if (c !== 0 && c !== 0x20) return undefined;
  }
  if (digits > 0 && !Number.isSafeInteger(v)) return undefined;
  return v;
}

/** Writes `v` as octal if it fits `len - 1` digits, else as base-256; false if neither fits. */
export function putNumber(block: Buffer, f: Field, v: number): boolean {
  const [off, len] = F[f];
  if (!Number.isInteger(v)) return false;
  if (v >= 0 && v < 8 ** (len - 1)) {
    block.write(v.toString(8).padStart(len - 1, '0'), off, len - 1, 'latin1');
    block[off + len - 1] = 0;
    return true;
  }
  // base-256: room for len-1 bytes of magnitude plus the marker bit
  let big = BigInt(v);
  const limit = 1n << BigInt(8 * (len - 1));
  if (big >= limit || big < -limit) return false;
  if (big < 0n) big += 1n << BigInt(8 * len);
  for (let i = len - 1; i >= 0; i--) {
    block[off + i] = Number(big & 0xffn);
    big >>= 8n;
  }
  block[off] = ((block[off] as number) | 0x80) & 0xff;
  if (v < 0) block[off] = 0xff;
  return true;
}

/** One pax record, "<len> <key>=<value>\n", where len counts the whole record. */
export function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), 'latin1'), body]);
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

export function isUtf8(b: Buffer): boolean {
  try {
    utf8Strict.decode(b);
    return true;
  } catch {
    return false;
  }
}

/** Splits raw path bytes (latin1 string) into its components, as given. */
export function latin1(b: Buffer): string {
  return b.toString('latin1');
}

/** Quotes a raw name (latin1 string) for error messages: JSON-escaped, UTF-8 where valid. */
export function quote(raw: string | Buffer): string {
  const b = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
  return JSON.stringify(isUtf8(b) ? b.toString('utf8') : b.toString('latin1'));
}
