/**
 * containerd's filter syntax, used by List and Subscribe calls:
 *
 *   selectors := selector ("," selector)*        all must match
 *   selector  := fieldpath [operator value]      no operator: the field is present
 *   fieldpath := field ("." field)*
 *   field     := quoted | [A-Za-z0-9_-]+
 *   operator  := "==" | "!=" | "~="
 *   value     := quoted | [^\s,]+  (not starting with a quote, "." or ",")
 *   quoted    := "..." (Go escapes); after ~= also /.../ and |...|
 *
 * As in containerd, "/" and "|" open a quoted token wherever they appear, so
 * a value with slashes is written quoted: topic=="/tasks/exit".
 *
 * A list of filter strings matches when any one of them matches. The object
 * side is an Adaptor: a function from a field path to the field's value, or
 * undefined when the field is absent.
 */
import { invalid } from '@berth/base';

export type Adaptor = (fieldpath: readonly string[]) => string | undefined;

export interface Filter {
  match(adaptor: Adaptor): boolean;
}

export const always: Filter = { match: () => true };

type Operator = 'present' | '==' | '!=' | '~=';

interface Selector {
  readonly fieldpath: readonly string[];
  readonly op: Operator;
  readonly value: string;
  readonly re: RegExp | undefined;
}

function matchSelector(s: Selector, adaptor: Adaptor): boolean {
  const v = adaptor(s.fieldpath);
  switch (s.op) {
    case 'present': return v !== undefined;
    case '==': return v !== undefined && v === s.value;
    case '!=': return (v ?? '') !== s.value;
    case '~=': return s.re !== undefined && s.re.test(v ?? '');
  }
}

// ---- scanner ----

type TokenKind = 'eof' | 'field' | 'quoted' | 'value' | 'operator' | 'separator' | 'illegal';
interface Token { kind: TokenKind; pos: number; text: string; err?: string }

const isSpace = (c: string): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';
const isFieldChar = (c: string): boolean => /^[A-Za-z0-9_-]$/.test(c);
const isQuote = (c: string): boolean => c === '"' || c === '/' || c === '|';
const isOperatorChar = (c: string): boolean => c === '=' || c === '!' || c === '~';

class Scanner {
  private pos = 0;
  private valueNext = false;
  constructor(private readonly input: string) {}

  private peekChar(at = this.pos): string {
    return this.input[at] ?? '';
  }

  scan(): Token {
    while (isSpace(this.peekChar())) this.pos++;
    const start = this.pos;
    const c = this.peekChar();
    if (c === '') return { kind: 'eof', pos: start, text: '' };
    if (c === '\0') {
      this.pos++;
      return { kind: 'illegal', pos: start, text: c, err: 'unexpected null' };
    }
    if (c === ',' || c === '.') {
      this.pos++;
      this.valueNext = false;
      return { kind: 'separator', pos: start, text: c };
    }
    if (isQuote(c)) return this.quoted(start, c);
    if (isOperatorChar(c)) {
      while (isOperatorChar(this.peekChar())) this.pos++;
      this.valueNext = true;
      return { kind: 'operator', pos: start, text: this.input.slice(start, this.pos) };
    }
    if (this.valueNext) {
      this.valueNext = false;
      while (this.pos < this.input.length && !isSpace(this.peekChar()) && this.peekChar() !== ',') this.pos++;
      return { kind: 'value', pos: start, text: this.input.slice(start, this.pos) };
    }
    if (isFieldChar(c)) {
      while (isFieldChar(this.peekChar())) this.pos++;
      return { kind: 'field', pos: start, text: this.input.slice(start, this.pos) };
    }
    this.pos++;
    return { kind: 'illegal', pos: start, text: c, err: `unexpected character ${JSON.stringify(c)}` };
  }

  private quoted(start: number, delim: string): Token {
    this.pos++;
    for (;;) {
      const c = this.peekChar();
      if (c === '' || c === '\n') {
        return { kind: 'illegal', pos: start, text: this.input.slice(start, this.pos), err: 'quoted literal not terminated' };
      }
      this.pos++;
      if (c === '\\') {
        if (this.peekChar() === '') continue;
        this.pos++;
        continue;
      }
      if (c === delim) return { kind: 'quoted', pos: start, text: this.input.slice(start, this.pos) };
    }
  }
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', '"': '"',
};

/**
 * Unquote a token. "..." takes Go's escapes, where \xHH and \ooo are
 * bytes (the result is decoded as UTF-8, as Go strings are bytes); in /.../
 * and |...| only the delimiter is escaped, the rest is left to the regexp.
 */
function unquote(text: string): string {
  const delim = text[0] ?? '';
  const body = text.slice(1, -1);
  if (delim === '/' || delim === '|') return body.split(`\\${delim}`).join(delim);
  const bytes: number[] = [];
  const pushText = (s: string): void => { for (const b of Buffer.from(s, 'utf8')) bytes.push(b); };
  for (let i = 0; i < body.length; i++) {
    const c = String.fromCodePoint(body.codePointAt(i) ?? 0);
    if (c !== '\\') {
      pushText(c);
      i += c.length - 1;
      continue;
    }
    const e = body[++i] ?? '';
    const simple = SIMPLE_ESCAPES[e];
    if (simple !== undefined) {
      pushText(simple);
      continue;
    }
    const hexLen = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    if (hexLen > 0) {
      const hex = body.slice(i + 1, i + 1 + hexLen);
      if (!new RegExp(`^[0-9A-Fa-f]{${hexLen}}$`).test(hex)) throw new Error('illegal numeric escape sequence');
      const n = parseInt(hex, 16);
      if (e === 'x') bytes.push(n);
      else if (n > 0x10ffff || (n >= 0xd800 && n < 0xe000)) throw new Error('illegal numeric escape sequence');
      else pushText(String.fromCodePoint(n));
      i += hexLen;
      continue;
    }
    if (/^[0-7]$/.test(e)) {
      const oct = body.slice(i, i + 3);
      if (!/^[0-7]{3}$/.test(oct) || parseInt(oct, 8) > 255) throw new Error('illegal numeric escape sequence');
      bytes.push(parseInt(oct, 8));
      i += 2;
      continue;
    }
    throw new Error('illegal escape sequence');
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Go's RE2 accepts a leading (?flags); JavaScript wants them as RegExp flags. */
function compileRegexp(src: string): RegExp {
  const m = /^\(\?([imsU]+)\)/.exec(src);
  let flags = '';
  let body = src;
  if (m !== null) {
    const given = m[1] ?? '';
    if (given.includes('U')) throw new Error('flag U is not supported');
    flags = [...new Set(given)].join('');
    body = src.slice(m[0].length);
  }
  return new RegExp(body, flags);
}

// ---- parser ----

class Parser {
  private readonly scanner: Scanner;
  private lookahead: Token | undefined;

  constructor(private readonly input: string) {
    this.scanner = new Scanner(input);
  }

  private peek(): Token {
    this.lookahead ??= this.scanner.scan();
    return this.lookahead;
  }

  private next(): Token {
    const t = this.peek();
    this.lookahead = undefined;
    return t;
  }

  private error(pos: number, msg: string): Error {
    const where = pos < this.input.length
      ? `[${this.input.slice(0, pos)} >|${this.input.slice(pos, pos + 1)}|< ${this.input.slice(pos + 1)}]`
      : `[${this.input}]`;
    return invalid(`filters: parse error: ${where}: ${msg}`);
  }

  parse(): Filter {
    const all: Selector[] = [this.selector()];
    for (;;) {
      const t = this.peek();
      if (t.kind === 'eof') break;
      if (t.kind === 'separator' && t.text === ',') {
        this.next();
        all.push(this.selector());
        continue;
      }
      throw this.error(t.pos, `unexpected input: ${t.text}`);
    }
    return { match: (a) => all.every((s) => matchSelector(s, a)) };
  }

  private selector(): Selector {
    const fieldpath = this.fieldpath();
    const t = this.peek();
    if (t.kind === 'eof' || (t.kind === 'separator' && t.text === ',')) {
      return { fieldpath, op: 'present', value: '', re: undefined };
    }
    const opTok = this.next();
    if (opTok.kind === 'illegal') throw this.error(opTok.pos, opTok.err ?? 'illegal token');
    if (opTok.kind !== 'operator') throw this.error(opTok.pos, 'expected an operator ("=="|"!="|"~=")');
    if (opTok.text !== '==' && opTok.text !== '!=' && opTok.text !== '~=') {
      throw this.error(opTok.pos, `unsupported operator ${JSON.stringify(opTok.text)}`);
    }
    const op: Operator = opTok.text;
    const v = this.next();
    let value: string;
    switch (v.kind) {
      case 'value':
      case 'field':
        value = v.text;
        break;
      case 'quoted':
        if (op !== '~=' && v.text[0] !== '"') throw this.error(v.pos, 'invalid quote encountered');
        try {
          value = unquote(v.text);
        } catch (e) {
          throw this.error(v.pos, `unquoting failed: ${e instanceof Error ? e.message : String(e)}`);
        }
        break;
      case 'illegal':
        throw this.error(v.pos, v.err ?? 'illegal token');
      case 'eof':
        throw this.error(v.pos, 'unexpected EOF');
      default:
        throw this.error(v.pos, 'expected value or quoted');
    }
    let re: RegExp | undefined;
    if (op === '~=') {
      try {
        re = compileRegexp(value);
      } catch (e) {
        throw this.error(v.pos, `invalid regular expression ${JSON.stringify(value)}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return { fieldpath, op, value, re };
  }

  private fieldpath(): string[] {
    const fields = [this.field()];
    while (this.peek().kind === 'separator' && this.peek().text === '.') {
      this.next();
      fields.push(this.field());
    }
    return fields;
  }

  private field(): string {
    const t = this.next();
    switch (t.kind) {
      case 'field':
        return t.text;
      case 'quoted':
        if (t.text[0] !== '"') throw this.error(t.pos, 'invalid quote encountered');
        try {
          return unquote(t.text);
        } catch (e) {
          throw this.error(t.pos, `unquoting failed: ${e instanceof Error ? e.message : String(e)}`);
        }
      case 'illegal':
        throw this.error(t.pos, t.err ?? 'illegal token');
      default:
        throw this.error(t.pos, 'expected field or quoted');
    }
  }
}

/** Parse one filter string (all selectors must match). The empty string matches everything. */
export function parseFilter(s: string): Filter {
  if (s === '') return always;
  return new Parser(s).parse();
}

/** Parse a list of filter strings: any one matching is a match; an empty list matches everything. */
export function parseFilters(list: readonly string[]): Filter {
  if (list.length === 0) return always;
  const fs = list.map(parseFilter);
  return { match: (a) => fs.some((f) => f.match(a)) };
}

/** A map field (labels): the rest of the path, joined with dots, is the key. */
export function mapField(rest: readonly string[], map: Readonly<Record<string, string>>): string | undefined {
  if (rest.length === 0) return undefined;
  const key = rest.join('.');
  return Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined;
}

/** A string field is present when it is not empty. */
export function present(v: string): string | undefined {
  return v === '' ? undefined : v;
}
