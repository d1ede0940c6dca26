/**
 * `docker import --change` / `docker commit --change`: the Dockerfile
 * instructions that set image config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
 * ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR), applied to a config section.
 */
import { invalid } from '@berth/base';

type RunConfig = Record<string, unknown>;

/** `["a","b"]` (JSON form) or a shell command (run with /bin/sh -c). */
function commandOf(rest: string): string[] {
  const t = rest.trim();
  if (t.startsWith('[')) {
    try {
      const v: unknown = JSON.parse(t);
      if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
    } catch {
      // not JSON: the shell form
    }
  }
  return ['/bin/sh', '-c', t];
}

/** Words of a value, with double or single quotes grouping. */
function words(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | undefined;
  let any = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i] ?? '';
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      any = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      any = true;
    } else if (/\s/.test(c)) {
      if (cur !== '' || any) out.push(cur);
      cur = '';
      any = false;
    } else {
      cur += c;
    }
  }
  if (quote !== undefined) throw invalid(`unmatched quote in ${JSON.stringify(s)}`);
  if (cur !== '' || any) out.push(cur);
  return out;
}

/** `k=v k2="v 2"` or the old `k v` form. */
function pairs(rest: string, what: string): Array<[string, string]> {
  const ws = words(rest);
  if (ws.length === 0) throw invalid(`${what} requires at least one argument`);
  if (!ws[0]?.includes('=')) {
    const [k, ...v] = rest.trim().split(/\s+/);
    if (k === undefined || v.length === 0) throw invalid(`${what} must have two arguments`);
    return [[k, rest.trim().slice(k.length).trim()]];
  }
  return ws.map((w) => {
    const i = w.indexOf('=');
    if (i <= 0) throw invalid(`${what}: ${JSON.stringify(w)} is not key=value`);
    return [w.slice(0, i), w.slice(i + 1)];
  });
}

/** Apply the changes to a copy of `base`. */
export function applyChanges(base: Readonly<RunConfig>, changes: readonly string[]): RunConfig {
  const c: RunConfig = { ...base };
  for (const raw of changes) {
    const line = raw.trim();
    if (line === '') continue;
    const m = /^(\S+)\s*(.*)$/s.exec(line);
    const instr = (m?.[1] ?? '').toUpperCase();
    const rest = m?.[2] ?? '';
    switch (instr) {
      case 'CMD':
        c['Cmd'] = commandOf(rest);
        break;
      case 'ENTRYPOINT':
        c['Entrypoint'] = commandOf(rest);
        break;
      case 'ENV': {
        const env = Array.isArray(c['Env']) ? (c['Env'] as string[]).slice() : [];
        for (const [k, v] of pairs(rest, 'ENV')) {
          const i = env.findIndex((e) => e.split('=')[0] === k);
          if (i >= 0) env[i] = `${k}=${v}`;
          else env.push(`${k}=${v}`);
        }
        c['Env'] = env;
        break;
      }
      case 'LABEL': {
        const labels = typeof c['Labels'] === 'object' && c['Labels'] !== null ? { ...(c['Labels'] as Record<string, string>) } : {};
        for (const [k, v] of pairs(rest, 'LABEL')) labels[k] = v;
        c['Labels'] = labels;
        break;
      }
      case 'EXPOSE': {
        const ports = typeof c['ExposedPorts'] === 'object' && c['ExposedPorts'] !== null ? { ...(c['ExposedPorts'] as Record<string, object>) } : {};
        for (const p of words(rest)) {
          if (!/^\d+(-\d+)?(\/(tcp|udp|sctp))?$/i.test(p)) throw invalid(`EXPOSE: invalid port ${JSON.stringify(p)}`);
          ports[p.includes('/') ? p.toLowerCase() : `${p}/tcp`] = {};
        }
        c['ExposedPorts'] = ports;
        break;
      }
      case 'VOLUME': {
        const vols = typeof c['Volumes'] === 'object' && c['Volumes'] !== null ? { ...(c['Volumes'] as Record<string, object>) } : {};
        const list = rest.trim().startsWith('[') ? commandOf(rest) : words(rest);
        for (const v of list) vols[v] = {};
        c['Volumes'] = vols;
        break;
      }
      case 'USER':
        c['User'] = rest.trim();
        break;
      case 'WORKDIR':
        c['WorkingDir'] = rest.trim();
        break;
      case 'STOPSIGNAL':
        c['StopSignal'] = rest.trim();
        break;
      case 'ONBUILD':
        c['OnBuild'] = [...(Array.isArray(c['OnBuild']) ? c['OnBuild'] as string[] : []), rest.trim()];
        break;
      default:
        throw invalid(`${instr} is not a valid change command`);
    }
  }
  return c;
}
