// The builder's word processor: variable substitution, quotes and escapes
// applied to one Dockerfile word, as the builder does before it uses the
// value (shell-like, but no command substitution, globbing or arithmetic).
import { invalid } from '@berth/base';

/** Looks a variable up: its value, or undefined when it is not set. */
export type VarLookup = (name: string) => string | undefined;

export interface LexOptions {
  /** Keep quote characters in the result (they still group words). */
  readonly rawQuotes?: boolean;
  /** Keep escape characters in the result (they still escape). */
  readonly rawEscapes?: boolean;
  /** Leave references to unset variables as written. */
  readonly skipUnsetEnv?: boolean;
}

export interface WordResult {
  readonly result: string;
  /** Words after splitting unquoted substitutions on whitespace. */
  readonly words: string[];
  /** Names looked up and found set. */
  readonly matched: Set<string>;
  /** Names looked up and not set. */
  readonly unmatched: Set<string>;
}

const MAX_NESTING = 64;
const SPECIAL_PARAMS = '@*#?-$!0';

const isSpace = (ch: string): boolean => /^\s$/u.test(ch);
const isDigit = (ch: string): boolean => ch >= '0' && ch <= '9';
const isNameChar = (ch: string): boolean => /^[\p{L}\p{Nd}_]$/u.test(ch);

/** Collects words: unquoted whitespace from substitutions splits them. */
class Words {
  private readonly words: string[] = [];
  private word = '';
  private inWord = false;

  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord) {
        if (this.word.length > 0) this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
      return;
    }
    this.addRaw(ch);
  }
  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }
  addRaw(s: string): void {
    this.word += s;
    this.inWord = true;
  }
  get(): string[] {
    const out = [...this.words];
    if (this.word.length > 0) out.push(this.word);
    return out;
  }
}

class Scanner {
  private readonly chars: string[];
  private pos = 0;
  constructor(text: string) {
    this.chars = Array.from(text);
  }
  peek(): string | undefined {
    return this.chars[this.pos];
  }
  next(): string | undefined {
    const ch = this.chars[this.pos];
    if (ch !== undefined) this.pos++;
    return ch;
  }
}

class WordProcessor {
  private readonly sc: Scanner;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();
  private depth = 0;

  constructor(
    text: string,
    private readonly escape: string,
    private readonly env: VarLookup,
    private readonly opts: LexOptions,
  ) {
    this.sc = new Scanner(text);
  }

  private getEnv(name: string): string | undefined {
    const v = this.env(name);
    if (v === undefined) this.unmatched.add(name);
    else this.matched.add(name);
    return v;
  }

  /** Processes until stop (consumed) or the end; returns text and words. */
  process(stop: string | undefined): { text: string; words: string[] } {
    if (++this.depth > MAX_NESTING) throw invalid('syntax error: substitutions nested too deeply');
    try {
      let out = '';
      const words = new Words();
      for (let ch = this.sc.peek(); ch !== undefined; ch = this.sc.peek()) {
        if (stop !== undefined && ch === stop) {
          this.sc.next();
          return { text: out, words: words.get() };
        }
        if (ch === '$') {
          const v = this.dollar();
          out += v;
          words.addString(v);
        } else if (ch === "'") {
          const v = this.singleQuote();
          out += v;
          words.addRaw(v);
        } else if (ch === '"') {
          const v = this.doubleQuote();
          out += v;
          words.addRaw(v);
        } else {
          this.sc.next();
          if (ch === this.escape) {
            if (this.opts.rawEscapes === true) {
              out += ch;
              words.addRaw(ch);
            }
            const esc = this.sc.next();
            if (esc === undefined) break;
            out += esc;
            words.addRaw(esc);
          } else {
            out += ch;
            words.addChar(ch);
          }
        }
      }
      if (stop !== undefined) {
        throw invalid(`unexpected end of statement while looking for matching ${stop}`);
      }
      return { text: out, words: words.get() };
    } finally {
      this.depth--;
    }
  }

  private singleQuote(): string {
    const raw = this.opts.rawQuotes === true;
    let out = raw ? "'" : '';
    this.sc.next();
    for (;;) {
      const ch = this.sc.next();
      if (ch === undefined) {
        throw invalid('unexpected end of statement while looking for matching single-quote');
      }
      if (ch === "'") return raw ? `${out}'` : out;
      out += ch;
    }
  }

  private doubleQuote(): string {
    const raw = this.opts.rawQuotes === true;
    let out = raw ? '"' : '';
    this.sc.next();
    for (;;) {
      const ch = this.sc.peek();
      if (ch === undefined) {
        throw invalid('unexpected end of statement while looking for matching double-quote');
      }
      if (ch === '"') {
        this.sc.next();
        return raw ? `${out}"` : out;
      }
      if (ch === '$') {
        out += this.dollar();
        continue;
      }
      this.sc.next();
      if (ch === this.escape) {
        const nx = this.sc.peek();
        if (nx === undefined) continue;
        if (nx === '"' || nx === '$' || nx === this.escape) {
          if (this.opts.rawEscapes === true) out += ch;
          out += this.sc.next() ?? '';
          continue;
        }
      }
      out += ch;
    }
  }

  private name(): string {
    let name = '';
    for (let ch = this.sc.peek(); ch !== undefined; ch = this.sc.peek()) {
      if (name === '' && isDigit(ch)) {
        while (this.sc.peek() !== undefined && isDigit(this.sc.peek() ?? '')) name += this.sc.next() ?? '';
        return name;
      }
      if (name === '' && SPECIAL_PARAMS.includes(ch)) {
        this.sc.next();
        return ch;
      }
      if (!isNameChar(ch)) break;
      name += this.sc.next() ?? '';
    }
    return name;
  }

  private dollar(): string {
    this.sc.next();
    if (this.sc.peek() !== '{') {
      const name = this.name();
      if (name === '') return '$';
      const v = this.getEnv(name);
      if (v === undefined && this.opts.skipUnsetEnv === true) return `$${name}`;
      return v ?? '';
    }
    this.sc.next();
    const first = this.sc.peek();
    if (first === undefined) throw invalid("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw invalid('syntax error: bad substitution');
    const name = this.name();
    const ch = this.sc.next();
    if (ch === undefined) throw invalid("syntax error: missing '}'");
    if (ch === '}') {
      const v = this.getEnv(name);
      if (v === undefined && this.opts.skipUnsetEnv === true) return `\${${name}}`;
      return v ?? '';
    }
    let colon = false;
    let modifier: string | undefined = ch;
    if (ch === ':') {
      colon = true;
      modifier = this.sc.next();
    }
    if (modifier !== '-' && modifier !== '+' && modifier !== '?') {
      if (colon) throw invalid(`unsupported modifier (${modifier ?? ''}) in substitution`);
      throw invalid(`missing ':' in substitution`);
    }
    let word: string;
    try {
      word = this.process('}').text;
    } catch (err) {
      if (this.sc.peek() === undefined) throw invalid("syntax error: missing '}'");
      throw err;
    }
    const value = this.getEnv(name);
    if (value === undefined && this.opts.skipUnsetEnv === true) {
      return `\${${name}${colon ? ':' : ''}${modifier}${word}}`;
    }
    const present = colon ? value !== undefined && value !== '' : value !== undefined;
    switch (modifier) {
      case '-':
        return present ? (value ?? '') : word;
      case '+':
        return present ? word : '';
      default:
        if (!present) throw invalid(`${name}: ${word === '' ? 'is not allowed to be unset' : word}`);
        return value ?? '';
    }
  }
}

/** The builder's lexer for one escape character. */
export class Lexer {
  constructor(
    readonly escape: string = '\\',
    readonly options: LexOptions = {},
  ) {}

  with(options: LexOptions): Lexer {
    return new Lexer(this.escape, { ...this.options, ...options });
  }

  /** Substitutes, removes quotes and escapes; no word splitting. */
  processWord(word: string, env: VarLookup): string {
    return this.run(word, env).result;
  }

  /** As processWord, then splits on unquoted whitespace. */
  processWords(word: string, env: VarLookup): string[] {
    return this.run(word, env).words;
  }

  run(word: string, env: VarLookup): WordResult {
    const p = new WordProcessor(word, this.escape, env, this.options);
    const { text, words } = p.process(undefined);
    return { result: text, words, matched: p.matched, unmatched: p.unmatched };
  }
}

/** A lookup over a map. */
export function lookupIn(map: ReadonlyMap<string, string | undefined>): VarLookup {
  return (name) => map.get(name);
}

/** A lookup that finds nothing. */
export const NO_VARS: VarLookup = () => undefined;
