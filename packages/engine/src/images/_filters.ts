/**
 * `docker images` filters: which keys exist, Docker's errors for the others,
 * and the glob of `reference=` (Go's path.Match: `*` and `?` stop at `/`).
 */
import { invalid } from '@berth/base';

/** Reject keys a list does not know, as dockerd does. */
export function checkFilterKeys(filters: ReadonlyMap<string, readonly string[]>, allowed: readonly string[]): void {
  for (const k of filters.keys()) if (!allowed.includes(k)) throw invalid(`invalid filter '${k}'`);
}

/** The one boolean value of a filter (`dangling=true`), undefined when absent. */
export function boolFilter(filters: ReadonlyMap<string, readonly string[]>, key: string): boolean | undefined {
  const vs = filters.get(key);
  if (vs === undefined || vs.length === 0) return undefined;
  let out: boolean | undefined;
  for (const v of vs) {
    const l = v.toLowerCase();
    const b = l === 'true' || l === '1' ? true : l === 'false' || l === '0' ? false : undefined;
    if (b === undefined) throw invalid(`invalid filter '${key}=${v}'`);
    if (out !== undefined && out !== b) throw invalid(`invalid filter '${key}': true and false given`);
    out = b;
  }
  return out;
}

/** Whether labels satisfy every `key`, `key=value` and `key!=value` given. */
export function labelsMatch(labels: Readonly<Record<string, string>>, wanted: readonly string[]): boolean {
  for (const w of wanted) {
    const ne = w.indexOf('!=');
    const eq = w.indexOf('=');
    if (ne > 0 && (eq < 0 || ne < eq)) {
      const k = w.slice(0, ne);
      if (Object.hasOwn(labels, k) && labels[k] === w.slice(ne + 2)) return false;
      continue;
    }
    if (eq < 0) {
      if (!Object.hasOwn(labels, w)) return false;
    } else if (!Object.hasOwn(labels, w.slice(0, eq)) || labels[w.slice(0, eq)] !== w.slice(eq + 1)) {
      return false;
    }
  }
  return true;
}

/** Go's path.Match as a regular expression; a malformed pattern is a 400. */
export function globRegExp(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] ?? '';
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      const n = pattern[++i];
      if (n === undefined) throw invalid(`invalid filter 'reference=${pattern}': syntax error in pattern`);
      re += n.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
    } else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) throw invalid(`invalid filter 'reference=${pattern}': syntax error in pattern`);
      let cls = pattern.slice(i + 1, end);
      if (cls.startsWith('^')) cls = `^${cls.slice(1)}`;
      re += `[${cls.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else {
      re += c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
    }
  }
  return new RegExp(`${re}$`);
}

/** Docker's `until`/`before`-style timestamps: unix seconds (with fraction), RFC 3339, or a duration ago (`10m`). */
export function parseTimestamp(v: string, key: string, now = Date.now()): number {
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  const dur = /^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$/.exec(v);
  if (dur !== null) {
    const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
    return now - Number(dur[1]) * (unit[dur[2] ?? 's'] ?? 1000);
  }
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw invalid(`invalid filter '${key}=${v}': cannot parse as a timestamp`);
  return t;
}
