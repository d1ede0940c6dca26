/**
 * System commands: version, info, system df, events, system prune.
 */
import { MAX_API_VERSION, encodeFilters } from '../api.js';
import { filtersOf } from '../command.js';
import type { Command, Context } from '../command.js';
import { CLI_VERSION } from '../version.js';
import { Template, ago, bytesSize, ellipsis, humanSize, shortId, tabulate } from '../format.js';
import { timeArg, confirm } from './containers.js';
import { pruneImages } from './images.js';

const goArch = (): string => ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' })[process.arch as string] ?? process.arch;

/** Go's time.ANSIC layout of an RFC 3339 time: `Mon Jan  2 15:04:05 2006`. */
function ansic(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()] ?? ''} ${months[d.getUTCMonth()] ?? ''} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

interface ServerVersion {
  Version?: string;
  ApiVersion?: string;
  MinAPIVersion?: string;
  GitCommit?: string;
  GoVersion?: string;
  Os?: string;
  Arch?: string;
  KernelVersion?: string;
  Experimental?: boolean;
  BuildTime?: string;
  Platform?: { Name?: string } | null;
  Components?: Array<{ Name: string; Version: string; Details?: Record<string, string> | null }> | null;
}

export const version: Command = {
  name: 'version',
  usage: 'version [OPTIONS]',
  description: 'Show the Berth version information',
  args: { exact: 0 },
  flags: [{ long: 'format', short: 'f', kind: 'string', help: 'Format output using a custom template' }],
  async run(ctx, flags) {
    let server: ServerVersion | undefined;
    let serverErr: unknown;
    let apiVersion: string = MAX_API_VERSION;
    try {
      const client = await ctx.client();
      apiVersion = client.version;
      server = await client.json<ServerVersion>('GET', '/version');
    } catch (err) {
      serverErr = err;
    }
    const clientInfo = {
      Version: CLI_VERSION,
      ApiVersion: apiVersion,
      DefaultAPIVersion: MAX_API_VERSION,
      GitCommit: '',
      NodeVersion: process.version,
      Os: process.platform,
      Arch: goArch(),
      BuildTime: '',
      Context: 'default',
    };
    const format = flags.str('format');
    if (format !== '') {
      ctx.out(`${new Template(format).execute({ Client: clientInfo, Server: server ?? null })}\n`);
      if (serverErr !== undefined) throw serverErr;
      return 0;
    }
    const lines = [
      'Client:',
      ` Version:           ${CLI_VERSION}`,
      ` API version:       ${apiVersion}${apiVersion !== MAX_API_VERSION ? ` (downgraded from ${MAX_API_VERSION})` : ''}`,
      ` Node version:      ${process.version}`,
      ` OS/Arch:           ${process.platform}/${goArch()}`,
      ` Context:           default`,
    ];
    ctx.out(`${lines.join('\n')}\n`);
    if (server === undefined) throw serverErr;
    const platform = server.Platform?.Name ?? '';
    const out = ['', `Server:${platform === '' ? '' : ` ${platform}`}`];
    const comps = server.Components ?? [];
    if (comps.length === 0) {
      comps.push({
        Name: 'Engine',
        Version: server.Version ?? '',
        Details: {
          ApiVersion: server.ApiVersion ?? '',
          MinAPIVersion: server.MinAPIVersion ?? '',
          GoVersion: server.GoVersion ?? '',
          GitCommit: server.GitCommit ?? '',
          BuildTime: server.BuildTime ?? '',
          Os: server.Os ?? '',
          Arch: server.Arch ?? '',
          Experimental: String(server.Experimental ?? false),
        },
      });
    }
    for (const c of comps) {
      out.push(` ${c.Name}:`);
      const d = c.Details ?? {};
      if (c.Name === 'Engine') {
        out.push(
          `  Version:          ${c.Version}`,
          `  API version:      ${d.ApiVersion ?? ''} (minimum version ${d.MinAPIVersion ?? ''})`,
          `  Go version:       ${d.GoVersion ?? ''}`,
          `  Git commit:       ${d.GitCommit ?? ''}`,
          `  Built:            ${ansic(server.BuildTime ?? d.BuildTime ?? '')}`,
          `  OS/Arch:          ${d.Os ?? ''}/${d.Arch ?? ''}`,
          `  Experimental:     ${d.Experimental ?? 'false'}`,
        );
      } else {
        out.push(`  Version:          ${c.Version}`);
        for (const k of Object.keys(d).sort()) out.push(`  ${`${k}:`.padEnd(18)}${d[k] ?? ''}`);
      }
    }
    ctx.out(`${out.join('\n')}\n`);
    return 0;
  },
};

interface InfoJson {
  [k: string]: unknown;
  Containers?: number;
  ContainersRunning?: number;
  ContainersPaused?: number;
  ContainersStopped?: number;
  Images?: number;
  ServerVersion?: string;
  Driver?: string;
  DriverStatus?: Array<[string, string]> | null;
  LoggingDriver?: string;
  CgroupDriver?: string;
  CgroupVersion?: string;
  Plugins?: { Volume?: string[] | null; Network?: string[] | null; Log?: string[] | null };
  Swarm?: { LocalNodeState?: string };
  Runtimes?: Record<string, unknown>;
  DefaultRuntime?: string;
  InitBinary?: string;
  ContainerdCommit?: { ID?: string };
  RuncCommit?: { ID?: string };
  InitCommit?: { ID?: string };
  SecurityOptions?: string[] | null;
  KernelVersion?: string;
  OperatingSystem?: string;
  OSType?: string;
  Architecture?: string;
  NCPU?: number;
  MemTotal?: number;
  Name?: string;
  ID?: string;
  DockerRootDir?: string;
  Debug?: boolean;
  NFd?: number;
  NGoroutines?: number;
  SystemTime?: string;
  NEventsListener?: number;
  ExperimentalBuild?: boolean;
  RegistryConfig?: { InsecureRegistryCIDRs?: string[] | null; IndexConfigs?: Record<string, { Secure?: boolean }> };
  LiveRestoreEnabled?: boolean;
  Warnings?: string[] | null;
  Labels?: string[] | null;
}

export const info: Command = {
  name: 'info',
  usage: 'info [OPTIONS]',
  description: 'Display system-wide information',
  args: { exact: 0 },
  flags: [{ long: 'format', short: 'f', kind: 'string', help: 'Format output using a custom template' }],
  async run(ctx, flags) {
    const client = await ctx.client();
    const i = await client.json<InfoJson>('GET', '/info');
    const format = flags.str('format');
    if (format !== '') {
      const data = { ...i, ClientInfo: { Version: CLI_VERSION, Context: 'default', Debug: false } };
      ctx.out(`${new Template(format === 'json' ? '{{json .}}' : format).execute(data)}\n`);
      return 0;
    }
    const l: string[] = ['Client:', ` Version:    ${CLI_VERSION}`, ' Context:    default', ' Debug Mode: false', '', 'Server:'];
    l.push(
      ` Containers: ${i.Containers ?? 0}`,
      `  Running: ${i.ContainersRunning ?? 0}`,
      `  Paused: ${i.ContainersPaused ?? 0}`,
      `  Stopped: ${i.ContainersStopped ?? 0}`,
      ` Images: ${i.Images ?? 0}`,
      ` Server Version: ${i.ServerVersion ?? ''}`,
      ` Storage Driver: ${i.Driver ?? ''}`,
    );
    for (const [k, v] of i.DriverStatus ?? []) l.push(`  ${k}: ${v}`);
    l.push(` Logging Driver: ${i.LoggingDriver ?? ''}`, ` Cgroup Driver: ${i.CgroupDriver ?? ''}`, ` Cgroup Version: ${i.CgroupVersion ?? ''}`);
    l.push(' Plugins:', `  Volume: ${(i.Plugins?.Volume ?? []).join(' ')}`, `  Network: ${(i.Plugins?.Network ?? []).join(' ')}`, `  Log: ${(i.Plugins?.Log ?? []).join(' ')}`);
    l.push(` Swarm: ${i.Swarm?.LocalNodeState ?? 'inactive'}`);
    l.push(` Runtimes: ${Object.keys(i.Runtimes ?? {}).sort().join(' ')}`, ` Default Runtime: ${i.DefaultRuntime ?? ''}`, ` Init Binary: ${i.InitBinary ?? ''}`);
    l.push(` containerd version: ${i.ContainerdCommit?.ID ?? ''}`, ` runc version: ${i.RuncCommit?.ID ?? ''}`, ` init version: ${i.InitCommit?.ID ?? ''}`);
    const sec = i.SecurityOptions ?? [];
    if (sec.length > 0) {
      l.push(' Security Options:');
      for (const s of sec) {
        const parts = s.split(',').map((p) => p.split('='));
        const name = parts.find(([k]) => k === 'name')?.[1] ?? s;
        l.push(`  ${name}`);
        for (const [k, v] of parts) if (k !== 'name') l.push(`   ${k === 'profile' ? 'Profile' : k}: ${v ?? ''}`);
      }
    }
    l.push(
      ` Kernel Version: ${i.KernelVersion ?? ''}`,
      ` Operating System: ${i.OperatingSystem ?? ''}`,
      ` OSType: ${i.OSType ?? ''}`,
      ` Architecture: ${i.Architecture ?? ''}`,
      ` CPUs: ${i.NCPU ?? 0}`,
      ` Total Memory: ${bytesSize(i.MemTotal ?? 0)}`,
      ` Name: ${i.Name ?? ''}`,
      ` ID: ${i.ID ?? ''}`,
      ` Docker Root Dir: ${i.DockerRootDir ?? ''}`,
      ` Debug Mode: ${String(i.Debug ?? false)}`,
      ...(i.Debug === true
        ? [
            `  File Descriptors: ${i.NFd ?? 0}`,
            `  Goroutines: ${i.NGoroutines ?? 0}`,
            `  System Time: ${i.SystemTime ?? ''}`,
            `  EventsListeners: ${i.NEventsListener ?? 0}`,
          ]
        : []),
      ` Experimental: ${String(i.ExperimentalBuild ?? false)}`,
    );
    if ((i.Labels ?? []).length > 0) {
      l.push(' Labels:');
      for (const lab of i.Labels ?? []) l.push(`  ${lab}`);
    }
    const insecure = i.RegistryConfig?.InsecureRegistryCIDRs ?? [];
    const insecureIdx = Object.entries(i.RegistryConfig?.IndexConfigs ?? {})
      .filter(([, v]) => v.Secure === false)
      .map(([k]) => k);
    if (insecure.length + insecureIdx.length > 0) {
      l.push(' Insecure Registries:');
      for (const r of [...insecureIdx, ...insecure]) l.push(`  ${r}`);
    }
    l.push(` Live Restore Enabled: ${String(i.LiveRestoreEnabled ?? false)}`, '');
    ctx.out(`${l.join('\n')}\n`);
    for (const w of i.Warnings ?? []) ctx.err(`${w}\n`);
    return 0;
  },
};

// ---------------------------------------------------------------------------
// df

interface DfJson {
  LayersSize?: number;
  Images?: Array<{ Id: string; RepoTags?: string[] | null; Created: number; Size: number; SharedSize: number; Containers: number }> | null;
  Containers?: Array<{ Id: string; Names?: string[]; Image: string; Command: string; Created: number; State: string; Status: string; SizeRw?: number; Mounts?: unknown[] | null }> | null;
  Volumes?: Array<{ Name: string; UsageData?: { Size: number; RefCount: number } | null }> | null;
  BuildCache?: Array<{ ID: string; Type: string; Size: number; CreatedAt: string; LastUsedAt?: string | null; UsageCount: number; Shared: boolean; InUse: boolean }> | null;
}

const pct = (part: number, total: number): string => (total > 0 ? ` (${Math.trunc((part * 100) / total)}%)` : '');

export const df: Command = {
  name: 'df',
  usage: 'system df [OPTIONS]',
  description: 'Show disk usage',
  args: { exact: 0 },
  flags: [
    { long: 'format', kind: 'string', help: 'Format output using a custom template' },
    { long: 'verbose', short: 'v', kind: 'bool', help: 'Show detailed information on space usage' },
  ],
  async run(ctx, flags) {
    const client = await ctx.client();
    const d = await client.json<DfJson>('GET', '/system/df');
    const imgs = d.Images ?? [];
    const ctrs = d.Containers ?? [];
    const vols = d.Volumes ?? [];
    const cache = d.BuildCache ?? [];
    const layers = d.LayersSize ?? 0;
    let usedImg = 0;
    for (const i of imgs) if (i.Containers !== 0 && i.Size !== -1 && i.SharedSize !== -1) usedImg += i.Size - i.SharedSize;
    const active = (s: string): boolean => /running|paused|restarting/.test(s);
    const ctrSize = ctrs.reduce((a, c) => a + (c.SizeRw ?? 0), 0);
    const ctrRecl = ctrs.filter((c) => !active(c.State)).reduce((a, c) => a + (c.SizeRw ?? 0), 0);
    const volSize = vols.reduce((a, v) => a + Math.max(0, v.UsageData?.Size ?? 0), 0);
    const volRecl = vols.filter((v) => (v.UsageData?.RefCount ?? 0) === 0).reduce((a, v) => a + Math.max(0, v.UsageData?.Size ?? 0), 0);
    const cacheSize = cache.filter((c) => !c.Shared).reduce((a, c) => a + c.Size, 0);
    const cacheRecl = cache.filter((c) => !c.InUse && !c.Shared).reduce((a, c) => a + c.Size, 0);
    const rows = [
      { Type: 'Images', TotalCount: String(imgs.length), Active: String(imgs.filter((i) => i.Containers > 0).length), Size: humanSize(layers), Reclaimable: `${humanSize(layers - usedImg)}${pct(layers - usedImg, layers)}` },
      { Type: 'Containers', TotalCount: String(ctrs.length), Active: String(ctrs.filter((c) => active(c.State)).length), Size: humanSize(ctrSize), Reclaimable: `${humanSize(ctrRecl)}${pct(ctrRecl, ctrSize)}` },
      { Type: 'Local Volumes', TotalCount: String(vols.length), Active: String(vols.filter((v) => (v.UsageData?.RefCount ?? 0) > 0).length), Size: humanSize(volSize), Reclaimable: `${humanSize(volRecl)}${pct(volRecl, volSize)}` },
      { Type: 'Build Cache', TotalCount: String(cache.length), Active: String(cache.filter((c) => c.InUse).length), Size: humanSize(cacheSize), Reclaimable: humanSize(cacheRecl) },
    ];
    const format = flags.str('format');
    if (format !== '' && !flags.bool('verbose')) {
      const t = new Template(format === 'json' ? '{{json .}}' : format.replace(/^table /, ''));
      const lines = rows.map((r) => t.execute(r));
      if (format.startsWith('table ')) {
        const head = t.execute({ Type: 'TYPE', TotalCount: 'TOTAL', Active: 'ACTIVE', Size: 'SIZE', Reclaimable: 'RECLAIMABLE' });
        ctx.out(tabulate([head, ...lines]));
      } else ctx.out(lines.map((x) => `${x}\n`).join(''));
      return 0;
    }
    if (!flags.bool('verbose')) {
      ctx.out(tabulate(['TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE', ...rows.map((r) => `${r.Type}\t${r.TotalCount}\t${r.Active}\t${r.Size}\t${r.Reclaimable}`)]));
      return 0;
    }
    const now = Date.now();
    const imgLines = ['REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS'];
    for (const i of imgs) {
      const tags = (i.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
      const list = tags.length > 0 ? tags.slice(0, 1) : ['<none>:<none>'];
      for (const t of list) {
        const c = t.lastIndexOf(':');
        imgLines.push(
          `${t.slice(0, c)}\t${t.slice(c + 1)}\t${shortId(i.Id)}\t${ago(i.Created, now)}\t${humanSize(i.Size, 3)}\t${i.SharedSize === -1 ? 'N/A' : humanSize(i.SharedSize)}\t${i.Size === -1 || i.SharedSize === -1 ? 'N/A' : humanSize(i.Size - i.SharedSize)}\t${i.Containers}`,
        );
      }
    }
    const ctrLines = ['CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES'];
    for (const c of ctrs) {
      ctrLines.push(
        `${shortId(c.Id)}\t${c.Image}\t${JSON.stringify(ellipsis(c.Command, 20))}\t${(c.Mounts ?? []).length}\t${humanSize(c.SizeRw ?? 0, 3)}\t${ago(c.Created, now)}\t${c.Status}\t${(c.Names ?? []).map((n) => n.replace(/^\//, '')).join(',')}`,
      );
    }
    const volLines = ['VOLUME NAME\tLINKS\tSIZE'];
    for (const v of vols) volLines.push(`${v.Name}\t${v.UsageData?.RefCount ?? 0}\t${humanSize(Math.max(0, v.UsageData?.Size ?? 0))}`);
    const cacheLines = ['CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED'];
    for (const c of cache) {
      cacheLines.push(
        `${c.ID.slice(0, 12)}\t${c.Type}\t${humanSize(c.Size)}\t${ago(Date.parse(c.CreatedAt) / 1000, now)}\t${c.LastUsedAt ? ago(Date.parse(c.LastUsedAt) / 1000, now) : ''}\t${c.UsageCount}\t${String(c.Shared)}`,
      );
    }
    ctx.out(
      `Images space usage:\n\n${tabulate(imgLines)}\nContainers space usage:\n\n${tabulate(ctrLines)}\nLocal Volumes space usage:\n\n${tabulate(volLines)}\nBuild cache usage: ${humanSize(cacheSize)}\n\n${tabulate(cacheLines)}`,
    );
    return 0;
  },
};

// ---------------------------------------------------------------------------
// events

interface EventJson {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> | null };
  time?: number;
  timeNano?: number;
  [k: string]: unknown;
}

/**
 * An event as docker's `{{json .}}` writes it: the fields in the order of its
 * message type (the deprecated status/id/from first, when set), attributes sorted.
 */
function eventJson(e: EventJson, nano: string | undefined): string {
  const parts: string[] = [];
  for (const k of ['status', 'id', 'from']) {
    const v = e[k];
    if (typeof v === 'string' && v !== '') parts.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
  }
  const attrs = e.Actor?.Attributes;
  const sorted = attrs === undefined || attrs === null ? null : Object.fromEntries(Object.entries(attrs).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  parts.push(
    `"Type":${JSON.stringify(e.Type ?? '')}`,
    `"Action":${JSON.stringify(e.Action ?? '')}`,
    `"Actor":{"ID":${JSON.stringify(e.Actor?.ID ?? '')},"Attributes":${JSON.stringify(sorted)}}`,
    `"scope":${JSON.stringify(typeof e.scope === 'string' ? e.scope : '')}`,
  );
  if (e.time !== undefined && e.time !== 0) parts.push(`"time":${e.time}`);
  if (nano !== undefined && nano !== '0') parts.push(`"timeNano":${nano}`);
  return `{${parts.join(',')}}`;
}

/** `2006-01-02T15:04:05.000000000Z07:00` for a time in nanoseconds. */
function rfc3339NanoFixed(nanos: bigint): string {
  const ms = Number(nanos / 1_000_000n);
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const local = new Date(ms + off * 60_000);
  const base = local.toISOString().slice(0, 19);
  const frac = (nanos % 1_000_000_000n).toString().padStart(9, '0');
  const zone = off === 0 ? 'Z' : `${off > 0 ? '+' : '-'}${String(Math.trunc(Math.abs(off) / 60)).padStart(2, '0')}:${String(Math.abs(off) % 60).padStart(2, '0')}`;
  return `${base}.${frac}${zone}`;
}

/** The non-empty lines of a stream. */
async function* lines(source: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  let pending = '';
  const dec = new TextDecoder();
  for await (const c of source) {
    pending += dec.decode(c, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const l = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (l !== '') yield l;
    }
  }
  if (pending.trim() !== '') yield pending.trim();
}

/** docker's default event line; `timeNano` as its exact decimal text when known. */
export function formatEvent(e: EventJson, timeNano?: string): string {
  let s = '';
  if (timeNano !== undefined && timeNano !== '0') s += rfc3339NanoFixed(BigInt(timeNano));
  else if (e.timeNano !== undefined && e.timeNano !== 0) s += rfc3339NanoFixed(BigInt(Math.round(e.timeNano)));
  else if (e.time !== undefined && e.time !== 0) s += rfc3339NanoFixed(BigInt(e.time) * 1_000_000_000n);
  s += ` ${e.Type ?? ''} ${e.Action ?? ''} ${e.Actor?.ID ?? ''}`;
  const attrs = e.Actor?.Attributes ?? {};
  const keys = Object.keys(attrs).sort();
  if (keys.length > 0) s += ` (${keys.map((k) => `${k}=${attrs[k] ?? ''}`).join(', ')})`;
  return s;
}

export const events: Command = {
  name: 'events',
  usage: 'events [OPTIONS]',
  description: 'Get real time events from the server',
  args: { exact: 0 },
  flags: [
    { long: 'filter', short: 'f', kind: 'list', type: 'filter', help: 'Filter output based on conditions provided' },
    { long: 'format', kind: 'string', help: 'Format output using a custom template' },
    { long: 'since', kind: 'string', help: 'Show all events created since timestamp' },
    { long: 'until', kind: 'string', help: 'Stream events until this timestamp' },
  ],
  async run(ctx, flags) {
    const client = await ctx.client();
    const res = await client.request('GET', '/events', {
      query: {
        since: flags.changed('since') ? timeArg(flags.str('since'), 'since') : undefined,
        until: flags.changed('until') ? timeArg(flags.str('until'), 'until') : undefined,
        filters: encodeFilters(filtersOf(flags.list('filter'))),
      },
    });
    const format = flags.str('format');
    const t = format === '' ? undefined : new Template(format === 'json' ? '{{json .}}' : format);
    // timeNano does not fit a double: it is read from the text, and `{{json .}}` prints the text
    const rawJson = format === 'json' || /^\{\{\s*json\s+\.\s*\}\}$/.test(format);
    for await (const line of lines(res)) {
      const e = JSON.parse(line) as EventJson;
      const nano = /"timeNano"\s*:\s*(\d+)/.exec(line)?.[1];
      ctx.out(`${t === undefined ? formatEvent(e, nano) : rawJson ? eventJson(e, nano) : t.execute(e)}\n`);
    }
    return 0;
  },
};

// ---------------------------------------------------------------------------
// system prune

export const systemPrune: Command = {
  name: 'prune',
  usage: 'system prune [OPTIONS]',
  description: 'Remove unused data',
  args: { exact: 0 },
  flags: [
    { long: 'all', short: 'a', kind: 'bool', help: 'Remove all unused images not just dangling ones' },
    { long: 'filter', kind: 'list', type: 'filter', help: 'Provide filter values (e.g. "label=<key>=<value>")' },
    { long: 'force', short: 'f', kind: 'bool', help: 'Do not prompt for confirmation' },
    { long: 'volumes', kind: 'bool', help: 'Prune anonymous volumes' },
  ],
  async run(ctx: Context, flags) {
    const all = flags.bool('all');
    const items = [
      '  - all stopped containers',
      '  - all networks not used by at least one container',
      ...(flags.bool('volumes') ? ['  - all anonymous volumes not used by at least one container'] : []),
      all ? '  - all images without at least one container associated to them' : '  - all dangling images',
      all ? '  - all build cache' : '  - unused build cache',
    ];
    if (!flags.bool('force') && !(await confirm(ctx, `WARNING! This will remove:\n${items.join('\n')}\n`))) return 0;
    const client = await ctx.client();
    const filters = encodeFilters(filtersOf(flags.list('filter')));
    let space = 0;
    const c = await client.json<{ ContainersDeleted?: string[] | null; SpaceReclaimed?: number }>('POST', '/containers/prune', { query: { filters } });
    space += c.SpaceReclaimed ?? 0;
    if ((c.ContainersDeleted ?? []).length > 0) ctx.out(`Deleted Containers:\n${(c.ContainersDeleted ?? []).map((x) => `${x}\n`).join('')}\n`);
    const n = await client.json<{ NetworksDeleted?: string[] | null }>('POST', '/networks/prune', { query: { filters } });
    if ((n.NetworksDeleted ?? []).length > 0) ctx.out(`Deleted Networks:\n${(n.NetworksDeleted ?? []).map((x) => `${x}\n`).join('')}\n`);
    if (flags.bool('volumes')) {
      const v = await client.json<{ VolumesDeleted?: string[] | null; SpaceReclaimed?: number }>('POST', '/volumes/prune', { query: { filters } });
      space += v.SpaceReclaimed ?? 0;
      if ((v.VolumesDeleted ?? []).length > 0) ctx.out(`Deleted Volumes:\n${(v.VolumesDeleted ?? []).map((x) => `${x}\n`).join('')}\n`);
    }
    const img = await pruneImages(client, all, flags.list('filter'));
    space += img.space;
    if (img.lines.length > 0) ctx.out(`Deleted Images:\n${img.lines.join('')}\n`);
    try {
      const b = await client.json<{ CachesDeleted?: string[] | null; SpaceReclaimed?: number }>('POST', '/build/prune', { query: { all: all || undefined, filters } });
      space += b.SpaceReclaimed ?? 0;
      if ((b.CachesDeleted ?? []).length > 0) ctx.out(`Deleted build cache objects:\n${(b.CachesDeleted ?? []).map((x) => `${x}\n`).join('')}\n`);
    } catch {
      // a daemon without a builder has no cache to prune
    }
    ctx.out(`Total reclaimed space: ${humanSize(space)}\n`);
    return 0;
  },
};

