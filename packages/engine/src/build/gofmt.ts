/**
 * Go's text forms that dockerd writes into image history lines: `%q` of
 * strings, string slices and ints (a rune literal), and time.Duration's
 * String(). `docker history` shows these lines as they are, so they are
 * reproduced exactly.
 */

const SHORT_ESCAPES: Readonly<Record<number, string>> = {
  0x07: '\\a', 0x08: '\\b', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t', 0x0b: '\\v', 0x5c: '\\\\',
};

/** Whether Go's strconv.IsPrint would say so, close enough for text in Dockerfiles. */
function printable(cp: number): boolean {
  if (cp < 0x20 || cp === 0x7f) return false;
  if (cp >= 0x80 && cp < 0xa0) return false;
  if (cp === 0xad) return false;
  if (cp >= 0xd800 && cp < 0xe000) return false;
  if (cp === 0xfeff || cp === 0xfffe || cp === 0xffff) return false;
  if (cp >= 0x2028 && cp <= 0x202e) return false;
  if (cp >= 0x2060 && cp <= 0x206f) return false;
  return cp <= 0x10ffff;
}

function escapeCodePoint(cp: number, quote: number): string {
  if (cp === quote) return `\\${String.fromCodePoint(cp)}`;
  const short = SHORT_ESCAPES[cp];
  if (short !== undefined) return short;
  if (printable(cp)) return String.fromCodePoint(cp);
  if (cp < 0x80) return `\\x${cp.toString(16).padStart(2, '0')}`;
  if (cp <= 0xffff) return `\\u${cp.toString(16).padStart(4, '0')}`;
  return `\\U${cp.toString(16).padStart(8, '0')}`;
}

/** strconv.Quote: a double-quoted Go string literal. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0) ?? 0xfffd;
    // A lone surrogate stands for bytes that were not UTF-8; Go writes U+FFFD's bytes as \x escapes.
    out += cp >= 0xd800 && cp < 0xe000 ? '\\ufffd' : escapeCodePoint(cp, 0x22);
  }
  return `${out}"`;
}

/** `%q` of an int: a single-quoted rune literal ('\x03', 'A'). */
export function goQuoteRune(n: number): string {
  const cp = Number.isInteger(n) && n >= 0 && n <= 0x10ffff && !(n >= 0xd800 && n < 0xe000) ? n : 0xfffd;
  return `'${escapeCodePoint(cp, 0x27)}'`;
}

/** `%q` of a []string: ["a" "b"]. */
export function goQuoteList(a: readonly string[]): string {
  return `[${a.map(goQuote).join(' ')}]`;
}

/** The digits of `v / 10^prec` with the fraction's trailing zeros dropped ("1.5", "2"). */
function decimal(v: number, prec: number): string {
  const unit = 10 ** prec;
  const whole = Math.floor(v / unit);
  const frac = (v % unit).toString().padStart(prec, '0').replace(/0+$/, '');
  return frac === '' ? `${whole}` : `${whole}.${frac}`;
}

/** time.Duration.String() of a count of nanoseconds: "0s", "1.5s", "1m30s", "1h0m0s", "500ms", "2µs". */
export function goDuration(ns: number): string {
  const sign = ns < 0 ? '-' : '';
  const u = Math.abs(Math.trunc(ns));
  if (u === 0) return '0s';
  if (u < 1_000) return `${sign}${u}ns`;
  if (u < 1_000_000) return `${sign}${decimal(u, 3)}µs`;
  if (u < 1_000_000_000) return `${sign}${decimal(u, 6)}ms`;
  const secNs = u % 60_000_000_000;
  const minutes = Math.floor(u / 60_000_000_000);
  const s = `${decimal(secNs, 9)}s`;
  if (minutes === 0) return `${sign}${s}`;
  const m = minutes % 60;
  const h = Math.floor(minutes / 60);
  return h === 0 ? `${sign}${m}m${s}` : `${sign}${h}h${m}m${s}`;
}
