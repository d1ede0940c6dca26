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
  readonly dirs: readonly string[];
  readonly re: RegExp;
}

const SYNTAX = new Set(Array.from('^$\\.*+?()[]{}|/'));
/** A regular expression for one literal character. */
const lit = (ch: string): string => (SYNTAX.has(ch) ? `\\${ch}` : ch);

function compile(pattern: string): RegExp {
  let re = '^';
  const chars = Array.from(pattern);
  let inClass = false;
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i] ?? '';
    if (inClass) {
      if (ch === ']') {
        inClass = false;
        re += ']';
      } else if (ch === '\\') {
        const nx = chars[++i];
        if (nx === undefined) throw invalid(`syntax error in pattern ${JSON.stringify(pattern)}`);
        re += nx === '-' ? '\\-' : lit(nx);
      } else if (ch === '[' || ch === '/') {
        re += lit(ch);
      } else {
        re += ch;
      }
      continue;
    }
    if (ch === '*') {
      if (chars[i + 1] === '*') {
        i++;
        if (chars[i + 1] === '/') i++;
        re += i + 1 >= chars.length ? '.*' : '(.*/)?';
      } else {
        re += '[^/]*';
      }
    } else if (ch === '?') {
      re += '[^/]';
    } else if (ch === '[') {
      inClass = true;
      re += '[';
      if (chars[i + 1] === '^') {
        re += '^';
        i++;
      }
      if (chars[i + 1] === ']') throw invalid(`syntax error in pattern ${JSON.stringify(pattern)}`);
    } else if (ch === ']') {
      throw invalid(`syntax error in pattern ${JSON.stringify(pattern)}`);
    } else if (ch === '\\') {
      const nx = chars[++i];
      re += nx === undefined ? '\\\\' : lit(nx);
    } else {
      re += lit(ch);
    }
  }
  if (inClass) throw invalid(`syntax error in pattern ${JSON.stringify(pattern)}`);
  re += '$';
  try {
    return new RegExp(re, 'su');
  } catch (err) {
    throw invalid(`syntax error in pattern ${JSON.stringify(pattern)}`, err);
  }
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
      out.push({ text, exclusion, dirs: text.split('/'), re: compile(text) });
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
    const parents = f.split('/').slice(0, -1);
    let matched = false;
    for (const p of this.patterns) {
      if (p.exclusion !== matched) continue;
      let hit = p.re.test(f);
      for (let i = 1; !hit && i <= parents.length; i++) hit = p.re.test(parents.slice(0, i).join('/'));
      if (hit) matched = !p.exclusion;
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

/**
 * Lists what a build context directory sends, in lexical walk order:
 * everything not excluded by the patterns (directories excluded but with
 * `!` exceptions below are walked, the exceptions kept). The Dockerfile and
 * .dockerignore are always listed. Symlinks are listed, not followed.
 */
export async function contextFiles(
  root: string,
  patterns: readonly string[],
  options: ContextOptions = {},
): Promise<ContextEntry[]> {
  const pm = new PatternMatcher(patterns);
  const keep = new Set(['.dockerignore', cleanPath(options.dockerfile ?? 'Dockerfile')]);
  const out: ContextEntry[] = [];
  const seen = new Set<string>();
  const walk = async (rel: string): Promise<void> => {
    const dir = rel === '' ? root : path.join(root, rel);
    const names = (await readdir(dir)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(path.join(root, p));
      const type: ContextEntry['type'] = st.isDirectory()
        ? 'directory'
        : st.isFile()
          ? 'file'
          : st.isSymbolicLink()
            ? 'symlink'
            : 'other';
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
    try {
      const st = await lstat(path.join(root, k));
      if (st.isFile()) out.push({ path: k, type: 'file', buildOnly: true });
    } catch {
      // absent: nothing to send
    }
  }
  return out;
}
