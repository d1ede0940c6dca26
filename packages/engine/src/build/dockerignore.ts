// .dockerignore: Docker's pattern rules (filepath.Match syntax plus `**`,
// `!` exceptions where the last matching pattern wins, a path excluded
// when it or a parent directory matches) and the listing of a context
// directory as it would be sent.
import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { invalid } from '@berth/base';

/** Cleans a slash path as Go's path.Clean does. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const s = out.join('/');
  if (rooted) return `/${s}`;
  return s === '' ? '.' : s;
}

/** Reads a .dockerignore: comments, blanks, `!`, cleaned relative patterns. */
export function parseDockerignore(text: string): string[] {
  const out: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i] ?? '';
    if (i === 0 && line.startsWith('\uFEFF')) line = line.slice(1);
    if (line.startsWith('#')) continue;
    let pattern = line.trim();
    if (pattern === '') continue;
    const invert = pattern.startsWith('!');
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern.length > 0) {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
    }
    out.push(invert ? `!${pattern}` : pattern);
  }
  return out;
}

export interface Pattern {
  readonly text: string;
  readonly exclusion: boolean;
  /** Whether the pattern matches a slash path, or with parents one of its parent directories. */
  readonly test: (path: string, parents?: boolean) => boolean;
}

// One step of a compiled pattern. A `**` followed by more pattern ("gs")
// matches nothing or anything ending in a slash; a trailing `**` ("all")
// matches anything.
type Token =
  | { readonly t: 'lit'; readonly ch: string }
  | { readonly t: 'one' }
  | { readonly t: 'star' }
  | { readonly t: 'gs' }
  | { readonly t: 'all' }
  | { readonly t: 'class'; readonly negate: boolean; readonly ranges: readonly (readonly [string, string])[] };

function tokenize(pattern: string): Token[] {
  const bad = (): Error => invalid(`syntax error in pattern ${JSON.stringify(pattern)}`);
  const chars = Array.from(pattern);
  const out: Token[] = [];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i] ?? '';
    if (ch === '*') {
      if (chars[i + 1] !== '*') {
        out.push({ t: 'star' });
        continue;
      }
      i++;
      if (chars[i + 1] === '/') i++;
      const tok: Token = i + 1 >= chars.length ? { t: 'all' } : { t: 'gs' };
      // `**/**/` is `**/`: consecutive globstars add nothing.
      if (out[out.length - 1]?.t !== 'gs' || tok.t !== 'gs') out.push(tok);
    } else if (ch === '?') {
      out.push({ t: 'one' });
    } else if (ch === '[') {
      let negate = false;
      if (chars[i + 1] === '^') {
        negate = true;
        i++;
      }
      const ranges: [string, string][] = [];
      const esc = (): string => {
        let c = chars[++i];
        if (c === undefined || c === '-' || c === ']') throw bad();
        if (c === '\\') {
          c = chars[++i];
          if (c === undefined) throw bad();
        }
        return c;
      };
      for (;;) {
        if (chars[i + 1] === ']' && ranges.length > 0) {
          i++;
          break;
        }
        const lo = esc();
        let hi = lo;
        if (chars[i + 1] === '-') {
          i++;
          hi = esc();
        }
        ranges.push([lo, hi]);
      }
      out.push({ t: 'class', negate, ranges });
    } else if (ch === '\\' && i + 1 < chars.length) {
      out.push({ t: 'lit', ch: chars[++i] ?? '' });
    } else {
      out.push({ t: 'lit', ch });
    }
  }
  return out;
}

/**
 * Matches a path against tokens by simulating the automaton: time linear
 * in pattern times path, whatever the pattern (no backtracking). With
 * parents, a match of any parent directory (a prefix ending before a
 * slash) counts too.
 */
function matchTokens(tokens: readonly Token[], path: string, parents: boolean): boolean {
  const m = tokens.length;
  let at = new Uint8Array(m + 1);
  let inside = new Uint8Array(m + 1);
  const close = (s: Uint8Array): void => {
    for (let j = 0; j < m; j++) {
      const t = tokens[j]?.t;
      if (s[j] === 1 && (t === 'star' || t === 'all' || t === 'gs')) s[j + 1] = 1;
    }
  };
  at[0] = 1;
  close(at);
  for (const c of path) {
    if (parents && c === '/' && at[m] === 1) return true;
    const nat = new Uint8Array(m + 1);
    const nin = new Uint8Array(m + 1);
    let any = false;
    for (let j = 0; j < m; j++) {
      const tok = tokens[j] as Token;
      if (tok.t === 'gs' && (at[j] === 1 || inside[j] === 1)) {
        nin[j] = 1;
        if (c === '/') nat[j + 1] = 1;
        any = true;
        continue;
      }
      if (at[j] !== 1) continue;
      switch (tok.t) {
        case 'lit':
          if (c === tok.ch) nat[j + 1] = 1;
          break;
        case 'one':
          if (c !== '/') nat[j + 1] = 1;
          break;
        case 'star':
          if (c !== '/') nat[j] = 1;
          break;
        case 'all':
          nat[j] = 1;
          break;
        case 'class': {
          const hit = tok.ranges.some(([lo, hi]) => c >= lo && c <= hi);
          if (hit !== tok.negate) nat[j + 1] = 1;
          break;
        }
        default:
          break;
      }
    }
    close(nat);
    at = nat;
    inside = nin;
    if (!any && !at.includes(1)) return false;
  }
  return at[m] === 1;
}

/** Compiled .dockerignore patterns. */
export class PatternMatcher {
  readonly patterns: readonly Pattern[];

  constructor(patterns: readonly string[]) {
    const out: Pattern[] = [];
    for (const p of patterns) {
      let text = p.trim();
      if (text === '') continue;
      text = cleanPath(text);
      let exclusion = false;
      if (text.startsWith('!')) {
        if (text.length === 1) throw invalid('illegal exclusion pattern: "!"');
        exclusion = true;
        text = text.slice(1);
      }
      const tokens = tokenize(text);
      out.push({ text, exclusion, test: (path, parents = false) => matchTokens(tokens, path, parents) });
    }
    this.patterns = out;
  }

  get hasExclusions(): boolean {
    return this.patterns.some((p) => p.exclusion);
  }

  /**
   * Whether a context-relative slash path is excluded: the last pattern
   * matching it or one of its parent directories decides.
   */
  matches(file: string): boolean {
    const f = cleanPath(file);
    let matched = false;
    for (const p of this.patterns) {
      if (p.exclusion !== matched) continue;
      if (p.test(f, true)) matched = !p.exclusion;
    }
    return matched;
  }

  /** Whether an excluded directory must still be walked for `!` exceptions below it. */
  mayReinclude(dir: string): boolean {
    const prefix = `${dir}/`;
    return this.patterns.some((p) => p.exclusion && `${p.text}/`.startsWith(prefix));
  }
}

export interface ContextEntry {
  /** Context-relative slash path. */
  readonly path: string;
  readonly type: 'file' | 'directory' | 'symlink' | 'other';
  /**
   * Set for the Dockerfile and .dockerignore when the patterns exclude
   * them: sent so the builder can read them, hidden from COPY and ADD.
   */
  readonly buildOnly?: true;
}

export interface ContextOptions {
  /** Context-relative path of the Dockerfile; default `Dockerfile`. */
  readonly dockerfile?: string;
}

/** A build context's tree: a directory's entries, and one path's type. */
export interface ContextTree {
  /** The entries of the directory at `rel` ("" is the root). */
  list(rel: string): Promise<{ name: string; type: ContextEntry['type'] }[]>;
  /** The type of the entry at `rel`, undefined when there is none. */
  typeOf(rel: string): Promise<ContextEntry['type'] | undefined>;
}

const typeOfStats = (st: { isDirectory(): boolean; isFile(): boolean; isSymbolicLink(): boolean }): ContextEntry['type'] =>
  st.isDirectory() ? 'directory' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';

/** A directory on disk as a context tree. */
export function directoryTree(root: string): ContextTree {
  return {
    async list(rel) {
      const dir = rel === '' ? root : path.join(root, rel);
      const out: { name: string; type: ContextEntry['type'] }[] = [];
      for (const name of await readdir(dir)) out.push({ name, type: typeOfStats(await lstat(path.join(dir, name))) });
      return out;
    },
    async typeOf(rel) {
      try {
        return typeOfStats(await lstat(path.join(root, rel)));
      } catch {
        return undefined;
      }
    },
  };
}

/**
 * A listing (slash paths relative to the root, as a context tar holds
 * them) as a context tree; parents a listing leaves implicit are
 * directories.
 */
export function listedTree(entries: Iterable<{ path: string; type: ContextEntry['type'] }>): ContextTree {
  const types = new Map<string, ContextEntry['type']>();
  const children = new Map<string, Set<string>>([['', new Set()]]);
  const add = (p: string, type: ContextEntry['type']): void => {
    if (p === '') return;
    const slash = p.lastIndexOf('/');
    const parent = slash < 0 ? '' : p.slice(0, slash);
    if (!types.has(parent) && parent !== '') add(parent, 'directory');
    let c = children.get(parent);
    if (c === undefined) {
      c = new Set();
      children.set(parent, c);
    }
    c.add(slash < 0 ? p : p.slice(slash + 1));
    types.set(p, type);
  };
  for (const e of entries) add(e.path, e.type);
  return {
    async list(rel) {
      return [...(children.get(rel) ?? [])].map((name) => {
        const p = rel === '' ? name : `${rel}/${name}`;
        return { name, type: types.get(p) ?? 'other' };
      });
    },
    async typeOf(rel) {
      return rel === '' ? 'directory' : types.get(rel);
    },
  };
}

/**
 * Lists what a build context sends, in lexical walk order: everything not
 * excluded by the patterns (directories excluded but with `!` exceptions
 * below are walked, the exceptions kept). The Dockerfile and .dockerignore
 * are always listed. Symlinks are listed, not followed. `root` is a
 * directory or a context tree.
 */
export async function contextFiles(
  root: string | ContextTree,
  patterns: readonly string[],
  options: ContextOptions = {},
): Promise<ContextEntry[]> {
  const tree = typeof root === 'string' ? directoryTree(root) : root;
  const pm = new PatternMatcher(patterns);
  const keep = new Set(['.dockerignore', cleanPath(options.dockerfile ?? 'Dockerfile')]);
  const out: ContextEntry[] = [];
  const seen = new Set<string>();
  const walk = async (rel: string): Promise<void> => {
    const entries = (await tree.list(rel)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const { name, type } of entries) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const excluded = pm.matches(p);
      if (excluded) {
        if (keep.has(p)) {
          out.push({ path: p, type, buildOnly: true });
          seen.add(p);
        } else if (type === 'directory' && pm.mayReinclude(p)) {
          await walk(p);
        }
        continue;
      }
      out.push({ path: p, type });
      seen.add(p);
      if (type === 'directory') await walk(p);
    }
  };
  await walk('');
  // A Dockerfile below an excluded directory that was not walked.
  for (const k of keep) {
    if (seen.has(k) || k.startsWith('../') || k === '..') continue;
    if (await tree.typeOf(k) === 'file') out.push({ path: k, type: 'file', buildOnly: true });
  }
  return out;
}
