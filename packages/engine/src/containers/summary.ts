/**
 * `GET /containers/json`: Docker's ContainerSummary, its status sentence,
 * and every filter `docker ps` offers.
 */
import { invalid } from '@berth/base';
import { parseTimeNano } from './record.js';
import type { ContainerRecord } from './record.js';

/** Docker's human duration (go-units HumanDuration). */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.floor(s / 60);
  if (m === 1) return 'About a minute';
  if (m < 60) return `${m} minutes`;
  const h = Math.round(s / 3600);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  if (h < 24 * 7 * 2) return `${Math.floor(h / 24)} days`;
  if (h < 24 * 30 * 2) return `${Math.floor(h / 24 / 7)} weeks`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24 / 30)} months`;
  return `${Math.floor(h / 24 / 365)} years`;
}

export function statusText(c: ContainerRecord, nowMs = Date.now()): string {
  const st = c.State;
  const since = (t: string): string => humanDuration(nowMs - parseTimeNano(t) / 1e6);
  if (st.Status === 'removing') return 'Removal In Progress';
  if (st.Dead) return 'Dead';
  if (st.Restarting) return `Restarting (${st.ExitCode}) ${since(st.FinishedAt)} ago`;
  if (st.Running) {
    let s = `Up ${since(st.StartedAt)}`;
    if (st.Paused) s += ' (Paused)';
    else if (st.Health !== undefined && st.Health.Status !== 'none') s += st.Health.Status === 'starting' ? ' (health: starting)' : ` (${st.Health.Status})`;
    return s;
  }
  if (st.FinishedAt.startsWith('0001-')) return 'Created';
  return `Exited (${st.ExitCode}) ${since(st.FinishedAt)} ago`;
}

function quoteArg(a: string): string {
  return /[\s"'\\]/.test(a) || a === '' ? JSON.stringify(a) : a;
}

/** `docker ps` PORTS: published bindings, and exposed ports that have none. */
function portsOf(c: ContainerRecord): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const published = (c.NetworkSettings['Ports'] as Record<string, { HostIp: string; HostPort: string }[] | null> | undefined) ?? {};
  const keys = new Set([...Object.keys(c.Config.ExposedPorts ?? {}), ...Object.keys(published)]);
  for (const key of keys) {
    const [port, proto] = key.split('/');
    const priv = Number(port);
    if (!Number.isInteger(priv)) continue;
    const type = proto ?? 'tcp';
    const binds = c.State.Running ? published[key] ?? null : null;
    if (binds === null || binds.length === 0) {
      out.push({ PrivatePort: priv, Type: type });
      continue;
    }
    for (const b of binds) out.push({ IP: b.HostIp === '' ? '0.0.0.0' : b.HostIp, PrivatePort: priv, PublicPort: Number(b.HostPort), Type: type });
  }
  return out;
}

export function summary(c: ContainerRecord): Record<string, unknown> {
  const cmd = [c.Path, ...c.Args].map(quoteArg).join(' ');
  const networkMode = c.HostConfig.NetworkMode ?? 'default';
  return {
    Id: c.Id,
    Names: [c.Name],
    Image: c.Config.Image ?? '',
    ImageID: c.Image,
    Command: cmd,
    Created: Math.floor(parseTimeNano(c.Created) / 1e9),
    Ports: portsOf(c),
    Labels: c.Config.Labels ?? {},
    State: c.State.Status,
    Status: statusText(c),
    HostConfig: { NetworkMode: networkMode === '' ? 'default' : networkMode },
    NetworkSettings: { Networks: (c.NetworkSettings['Networks'] as Record<string, unknown> | undefined) ?? {} },
    Mounts: c.Mounts.map((m) => ({
      Type: m.Type, Name: m.Name ?? '', Source: m.Source, Destination: m.Destination, Driver: m.Driver ?? '',
      Mode: m.Mode, RW: m.RW, Propagation: m.Propagation,
    })),
  };
}

const FILTERS = new Set(['id', 'name', 'label', 'status', 'exited', 'ancestor', 'before', 'since', 'volume', 'network', 'health', 'isolation', 'is-task', 'publish', 'expose']);
const STATUSES = new Set(['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead']);

function labelMatch(labels: Record<string, string>, f: string): boolean {
  const eq = f.indexOf('=');
  if (eq < 0) return f in labels;
  const k = f.slice(0, eq);
  return labels[k] === f.slice(eq + 1);
}

/**
 * The containers `docker ps` shows for these options, newest first.
 * `imageMatches` tells whether a container's image is (a child of) an ancestor reference.
 */
export function filterContainers(all: readonly ContainerRecord[], opts: {
  all: boolean; limit: number | undefined; filters: Map<string, string[]>;
  resolveContainer: (ref: string) => ContainerRecord; imageMatches: (c: ContainerRecord, ref: string) => boolean;
}): ContainerRecord[] {
  for (const k of opts.filters.keys()) if (!FILTERS.has(k)) throw invalid(`invalid filter '${k}'`);
  const f = opts.filters;
  for (const s of f.get('status') ?? []) if (!STATUSES.has(s)) throw invalid(`invalid filter 'status=${s}'`);
  for (const s of f.get('health') ?? []) if (!['starting', 'healthy', 'unhealthy', 'none'].includes(s)) throw invalid(`Unrecognised filter value for health: ${s}`);
  const exited = (f.get('exited') ?? []).map((v) => {
    if (!/^-?\d+$/.test(v)) throw invalid(`invalid filter 'exited=${v}'`);
    return Number(v);
  });
  const before = (f.get('before') ?? []).map((r) => parseTimeNano(opts.resolveContainer(r).Created));
  const since = (f.get('since') ?? []).map((r) => parseTimeNano(opts.resolveContainer(r).Created));
  let list = [...all].sort((a, b) => parseTimeNano(b.Created) - parseTimeNano(a.Created));
  const showAll = opts.all || f.has('status') || f.has('exited') || (opts.limit !== undefined && opts.limit > 0) || before.length > 0 || since.length > 0;
  list = list.filter((c) => {
    if (!showAll && !c.State.Running && !c.State.Restarting) return false;
    const ids = f.get('id');
    if (ids !== undefined && !ids.some((p) => c.Id.startsWith(p))) return false;
    const names = f.get('name');
    if (names !== undefined && !names.some((n) => {
      try {
        return new RegExp(n.replace(/^\//, '')).test(c.Name.slice(1));
      } catch {
        throw invalid(`invalid filter 'name=${n}'`);
      }
    })) return false;
    const labels = f.get('label');
    if (labels !== undefined && !labels.every((l) => labelMatch(c.Config.Labels ?? {}, l))) return false;
    const statuses = f.get('status');
    if (statuses !== undefined && !statuses.includes(c.State.Status)) return false;
    if (exited.length > 0 && (c.State.Running || c.State.FinishedAt.startsWith('0001-') || !exited.includes(c.State.ExitCode))) return false;
    const anc = f.get('ancestor');
    if (anc !== undefined && !anc.some((a) => opts.imageMatches(c, a))) return false;
    const created = parseTimeNano(c.Created);
    if (before.some((t) => created >= t)) return false;
    if (since.some((t) => created <= t)) return false;
    const vols = f.get('volume');
    if (vols !== undefined && !vols.some((v) => c.Mounts.some((m) => m.Name === v || m.Destination === v || m.Source === v))) return false;
    const nets = f.get('network');
    if (nets !== undefined && !nets.some((n) => n in ((c.NetworkSettings['Networks'] as Record<string, unknown> | undefined) ?? {}))) return false;
    const health = f.get('health');
    if (health !== undefined && !health.includes(c.State.Health?.Status ?? 'none')) return false;
    if (f.has('publish') || f.has('expose')) {
      const want = [...(f.get('publish') ?? []), ...(f.get('expose') ?? [])];
      const exposed = Object.keys(c.Config.ExposedPorts ?? {});
      if (!want.some((p) => exposed.includes(p.includes('/') ? p : `${p}/tcp`))) return false;
    }
    return true;
  });
  if (opts.limit !== undefined && opts.limit > 0) list = list.slice(0, opts.limit);
  return list;
}
