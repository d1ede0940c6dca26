/**
 * Container commands that are one or two API calls each: ps, rm, stop, restart,
 * kill, pause, unpause, rename, wait, port, top, diff, export, inspect, logs,
 * stats, update, prune.
 */
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { ApiError, encodeFilters } from '../api.js';
import type { Client } from '../api.js';
import { StatusError, daemonMessage, filtersOf, forEachName } from '../command.js';
import type { Command, Context } from '../command.js';
import {
  ESCAPED_JSON,
  ago,
  bytesSize,
  ellipsis,
  goJson,
  goString,
  goTime,
  humanSize,
  inspectJson,
  parseFormat,
  render,
  shortId,
  tabulate,
  timestampArg,
  Template,
} from '../format.js';
import { copyRaw, demux } from '../stdcopy.js';
import { parseBytes, parseCpus, parseRestart } from './opts.js';

// ---------------------------------------------------------------------------
// ps

interface PortJson {
  IP?: string;
  PrivatePort: number;
  PublicPort?: number;
  Type: string;
}

interface ContainerSummary {
  Id: string;
  Names?: string[] | null;
  Image: string;
  ImageID?: string;
  Command: string;
  Created: number;
  Ports?: PortJson[] | null;
  SizeRw?: number;
  SizeRootFs?: number;
  Labels?: Record<string, string> | null;
  State: string;
  Status: string;
  Mounts?: Array<{ Type?: string; Name?: string; Source?: string; Driver?: string }> | null;
  NetworkSettings?: { Networks?: Record<string, unknown> | null } | null;
}

const joinHostPort = (ip: string, port: string): string => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

/** The PORTS column: consecutive ports grouped into ranges, as docker shows them. */
export function displayPorts(ports: readonly PortJson[]): string {
  const sorted = [...ports].sort(
    (a, b) =>
      a.PrivatePort - b.PrivatePort ||
      (a.PublicPort ?? 0) - (b.PublicPort ?? 0) ||
      a.Type.localeCompare(b.Type) ||
      (a.IP ?? '').localeCompare(b.IP ?? ''),
  );
  const groups = new Map<string, { first: number; last: number }>();
  const order: string[] = [];
  const result: string[] = [];
  const mappings: string[] = [];
  const form = (key: string, first: number, last: number): string => {
    const slash = key.lastIndexOf('/');
    const ip = slash >= 0 ? key.slice(0, slash) : '';
    const type = slash >= 0 ? key.slice(slash + 1) : key;
    let g = first === last ? String(first) : `${first}-${last}`;
    if (ip !== '') g = `${joinHostPort(ip, g)}->${g}`;
    return `${g}/${type}`;
  };
  for (const p of sorted) {
    let key = p.Type;
    if (p.IP !== undefined && p.IP !== '') {
      if (p.PublicPort !== p.PrivatePort) {
        mappings.push(`${joinHostPort(p.IP, String(p.PublicPort ?? 0))}->${p.PrivatePort}/${p.Type}`);
        continue;
      }
      key = `${p.IP}/${p.Type}`;
    }
    const g = groups.get(key);
    if (g === undefined) {
      groups.set(key, { first: p.PrivatePort, last: p.PrivatePort });
      order.push(key);
    } else if (p.PrivatePort === g.last + 1) g.last = p.PrivatePort;
    else {
      result.push(form(key, g.first, g.last));
      groups.set(key, { first: p.PrivatePort, last: p.PrivatePort });
    }
  }
  for (const k of order) {
    const g = groups.get(k);
    if (g !== undefined) result.push(form(k, g.first, g.last));
  }
  return [...result, ...mappings].join(', ');
}

const labelsString = (l: Record<string, string> | null | undefined): string =>
  Object.keys(l ?? {})
    .sort()
    .map((k) => `${k}=${(l ?? {})[k] ?? ''}`)
    .join(',');

function psRow(c: ContainerSummary, trunc: boolean, now: number): Record<string, unknown> {
  const names = (c.Names ?? []).map((n) => n.replace(/^\//, '')).filter((n) => !trunc || !n.includes('/'));
  const cmd = trunc ? ellipsis(c.Command, 20) : c.Command;
  const mounts = (c.Mounts ?? []).map((m) => {
    const name = m.Name !== undefined && m.Name !== '' ? m.Name : m.Source ?? '';
    return trunc ? ellipsis(name, 15) : name;
  });
  const size =
    (c.SizeRootFs ?? 0) > 0
        ? `${humanSize(c.SizeRw ?? 0, 3)} (virtual ${humanSize(c.SizeRootFs ?? 0, 3)})`
        : humanSize(c.SizeRw ?? 0, 3);
  let image = c.Image;
  if (trunc && image.startsWith('sha256:')) image = shortId(image);
  return {
    Command: JSON.stringify(cmd),
    CreatedAt: goTime(c.Created),
    ID: trunc ? shortId(c.Id) : c.Id,
    Image: image,
    Labels: labelsString(c.Labels),
    LocalVolumes: String((c.Mounts ?? []).filter((m) => m.Driver === 'local').length),
    Mounts: mounts.join(','),
    Names: names.join(','),
    Networks: Object.keys(c.NetworkSettings?.Networks ?? {}).sort().join(','),
    Platform: null,
    Ports: displayPorts(c.Ports ?? []),
    RunningFor: ago(c.Created, now),
    Size: size,
    State: c.State,
    Status: c.Status,
    Label: (k: unknown) => (c.Labels ?? {})[goString(k)] ?? '',
    [ESCAPED_JSON]: true,
  };
}

const PS_HEADERS = {
  ID: 'CONTAINER ID',
  Image: 'IMAGE',
  Command: 'COMMAND',
  CreatedAt: 'CREATED AT',
  RunningFor: 'CREATED',
  Ports: 'PORTS',
  State: 'STATE',
  Status: 'STATUS',
  Size: 'SIZE',
  Names: 'NAMES',
  Labels: 'LABELS',
  Mounts: 'MOUNTS',
  Networks: 'NETWORKS',
  LocalVolumes: 'LOCAL VOLUMES',
  Platform: 'PLATFORM',
  Label: () => 'LABEL',
};

const FILTER = { long: 'filter', short: 'f', kind: 'list', type: 'filter', help: 'Filter output based on conditions provided' } as const;
const FORMAT_HELP =
  "Format output using a custom template:\n'table': Print output in table format with column headers (default)\n'table TEMPLATE': Print output in table format using the given Go template\n'json': Print in JSON format\n'TEMPLATE': Print output using the given Go template";

export const ps: Command = {
  name: 'ps',
  aliases: ['ls', 'list'],
  usage: 'ps [OPTIONS]',
  description: 'List containers',
  args: { exact: 0 },
  flags: [
    { long: 'all', short: 'a', kind: 'bool', help: 'Show all containers (default shows just running)' },
    FILTER,
    { long: 'format', kind: 'string', help: FORMAT_HELP },
    { long: 'last', short: 'n', kind: 'int', help: 'Show n last created containers (includes all states)', default: -1 },
    { long: 'latest', short: 'l', kind: 'bool', help: 'Show the latest created container (includes all states)' },
    { long: 'no-trunc', kind: 'bool', help: "Don't truncate output" },
    { long: 'quiet', short: 'q', kind: 'bool', help: 'Only display container IDs' },
    { long: 'size', short: 's', kind: 'bool', help: 'Display total file sizes' },
  ],
  async run(ctx, flags) {
    const client = await ctx.client();
    let format = flags.str('format');
    const quiet = flags.bool('quiet');
    if (quiet && format === '') format = '{{.ID}}';
    const withSize = flags.bool('size') || format.includes('.Size') || format === 'json' || format.includes('json .');
    let limit = flags.int('last') ?? -1;
    if (flags.bool('latest')) limit = 1;
    const list = await client.json<ContainerSummary[]>('GET', '/containers/json', {
      query: {
        all: flags.bool('all') || limit > 0 ? true : undefined,
        limit: limit > 0 ? limit : undefined,
        size: withSize ? true : undefined,
        filters: encodeFilters(filtersOf(flags.list('filter'))),
      },
    });
    const def = `table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}${flags.bool('size') ? '\t{{.Size}}' : ''}`;
    const spec = parseFormat(format, def);
    const now = Date.now();
    ctx.out(render(spec, list.map((c) => psRow(c, !flags.bool('no-trunc'), now)), PS_HEADERS));
    return 0;
  },
};

// ---------------------------------------------------------------------------
// simple lifecycle commands

export const rm: Command = {
  name: 'rm',
  aliases: ['remove'],
  usage: 'rm [OPTIONS] CONTAINER [CONTAINER...]',
  description: 'Remove one or more containers',
  args: { min: 1 },
  flags: [
    { long: 'force', short: 'f', kind: 'bool', help: 'Force the removal of a running container (uses SIGKILL)' },
    { long: 'link', short: 'l', kind: 'bool', help: 'Remove the specified link' },
    { long: 'volumes', short: 'v', kind: 'bool', help: 'Remove anonymous volumes associated with the container' },
  ],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    return forEachName(ctx, args, async (name) => {
      await client.call('DELETE', `/containers/${encodeURIComponent(name)}`, {
        query: { force: flags.bool('force') || undefined, v: flags.bool('volumes') || undefined, link: flags.bool('link') || undefined },
      });
      return name;
    });
  },
};

const STOP_FLAGS = [
  { long: 'signal', short: 's', kind: 'string', help: 'Signal to send to the container' },
  { long: 'timeout', short: 't', kind: 'int', help: 'Seconds to wait before killing the container' },
] as const;

/** stop and restart: the same flags, one endpoint each. */
function stopLike(action: 'stop' | 'restart', description: string): Command {
  return {
    name: action,
    usage: `${action} [OPTIONS] CONTAINER [CONTAINER...]`,
    description,
    args: { min: 1 },
    flags: [...STOP_FLAGS, { long: 'time', kind: 'int', help: 'Seconds to wait before killing the container', hidden: true }],
    async run(ctx, flags, args) {
      const client = await ctx.client();
      const t = flags.int('timeout') ?? flags.int('time');
      return forEachName(ctx, args, async (name) => {
        await client.call('POST', `/containers/${encodeURIComponent(name)}/${action}`, { query: { t, signal: flags.string('signal') } });
        return name;
      });
    },
  };
}

export const stop: Command = stopLike('stop', 'Stop one or more running containers');
export const restart: Command = stopLike('restart', 'Restart one or more containers');

export const kill: Command = {
  name: 'kill',
  usage: 'kill [OPTIONS] CONTAINER [CONTAINER...]',
  description: 'Kill one or more running containers',
  args: { min: 1 },
  flags: [{ long: 'signal', short: 's', kind: 'string', help: 'Signal to send to the container' }],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    return forEachName(ctx, args, async (name) => {
      await client.call('POST', `/containers/${encodeURIComponent(name)}/kill`, { query: { signal: flags.string('signal') } });
      return name;
    });
  },
};

function simple(name: 'pause' | 'unpause', description: string): Command {
  return {
    name,
    usage: `${name} CONTAINER [CONTAINER...]`,
    description,
    args: { min: 1 },
    flags: [],
    async run(ctx, _flags, args) {
      const client = await ctx.client();
      return forEachName(ctx, args, async (c) => {
        await client.call('POST', `/containers/${encodeURIComponent(c)}/${name}`);
        return c;
      });
    },
  };
}

export const pause = simple('pause', 'Pause all processes within one or more containers');
export const unpause = simple('unpause', 'Unpause all processes within one or more containers');

export const rename: Command = {
  name: 'rename',
  usage: 'rename CONTAINER NEW_NAME',
  description: 'Rename a container',
  args: { exact: 2 },
  flags: [],
  async run(ctx, _flags, args) {
    const [old = '', name = ''] = args;
    if (name.trim() === '') throw new StatusError(1, 'Error: neither old nor new names may be empty');
    const client = await ctx.client();
    try {
      await client.call('POST', `/containers/${encodeURIComponent(old)}/rename`, { query: { name } });
    } catch (err) {
      throw new StatusError(1, `${daemonMessage(err)}\nError: failed to rename container named ${old}`);
    }
    return 0;
  },
};

export const wait: Command = {
  name: 'wait',
  usage: 'wait CONTAINER [CONTAINER...]',
  description: 'Block until one or more containers stop, then print their exit codes',
  args: { min: 1 },
  flags: [],
  async run(ctx, _flags, args) {
    const client = await ctx.client();
    return forEachName(ctx, args, async (name) => {
      const r = await client.json<{ StatusCode: number; Error?: { Message?: string } | null }>(
        'POST',
        `/containers/${encodeURIComponent(name)}/wait`,
      );
      if (r.Error?.Message !== undefined && r.Error.Message !== '') throw new Error(r.Error.Message);
      return String(r.StatusCode);
    });
  },
};

interface PortBinding {
  HostIp?: string;
  HostPort?: string;
}

export const port: Command = {
  name: 'port',
  usage: 'port CONTAINER [PRIVATE_PORT[/PROTO]]',
  description: 'List port mappings or a specific mapping for the container',
  args: { min: 1, max: 2 },
  flags: [],
  async run(ctx, _flags, args) {
    const [name = '', want] = args;
    const client = await ctx.client();
    const c = await client.json<{ NetworkSettings?: { Ports?: Record<string, PortBinding[] | null> | null } }>(
      'GET',
      `/containers/${encodeURIComponent(name)}/json`,
    );
    const ports = c.NetworkSettings?.Ports ?? {};
    const show = (b: PortBinding): string => joinHostPort(b.HostIp === undefined || b.HostIp === '' ? '0.0.0.0' : b.HostIp, b.HostPort ?? '');
    if (want !== undefined) {
      const key = want.includes('/') ? want : `${want}/tcp`;
      const bindings = ports[key];
      if (bindings === undefined || bindings === null || bindings.length === 0) {
        throw new StatusError(1, `Error: No public port '${want}' published for ${name}`);
      }
      for (const b of bindings) ctx.out(`${show(b)}\n`);
      return 0;
    }
    const keys = Object.keys(ports).sort((a, b) => parseInt(a, 10) - parseInt(b, 10) || a.localeCompare(b));
    for (const k of keys) for (const b of ports[k] ?? []) ctx.out(`${k} -> ${show(b)}\n`);
    return 0;
  },
};

export const top: Command = {
  name: 'top',
  usage: 'top CONTAINER [ps OPTIONS]',
  description: 'Display the running processes of a container',
  args: { min: 1 },
  stopAtPositional: true,
  flags: [],
  async run(ctx, _flags, args) {
    const [name = '', ...psArgs] = args;
    const client = await ctx.client();
    const r = await client.json<{ Titles: string[]; Processes: string[][] }>('GET', `/containers/${encodeURIComponent(name)}/top`, {
      query: { ps_args: psArgs.length > 0 ? psArgs.join(' ') : undefined },
    });
    const lines = [r.Titles.join('\t'), ...(r.Processes ?? []).map((p) => p.join('\t'))];
    ctx.out(tabulate(lines, 20));
    return 0;
  },
};

export const diff: Command = {
  name: 'diff',
  usage: 'diff CONTAINER',
  description: "Inspect changes to files or directories on a container's filesystem",
  args: { exact: 1 },
  flags: [],
  async run(ctx, _flags, args) {
    const client = await ctx.client();
    const changes = await client.json<Array<{ Kind: number; Path: string }> | null>('GET', `/containers/${encodeURIComponent(args[0] ?? '')}/changes`);
    for (const c of changes ?? []) ctx.out(`${['C', 'A', 'D'][c.Kind] ?? '?'} ${c.Path}\n`);
    return 0;
  },
};

/** Streams a response body to `-o file` or to stdout (refusing a terminal). */
export async function saveStream(ctx: Context, body: AsyncIterable<Uint8Array> & NodeJS.ReadableStream, output: string): Promise<void> {
  if (output !== '') {
    await pipeline(body, createWriteStream(output));
    return;
  }
  if (ctx.stdout.isTTY === true) {
    throw new StatusError(1, `cowardly refusing to save to a terminal. Use the -o flag or redirect`);
  }
  await copyRaw(body, ctx.stdout);
}

export const exportCmd: Command = {
  name: 'export',
  usage: 'export [OPTIONS] CONTAINER',
  description: "Export a container's filesystem as a tar archive",
  args: { exact: 1 },
  flags: [{ long: 'output', short: 'o', kind: 'string', help: 'Write to a file, instead of STDOUT' }],
  async run(ctx, flags, args) {
    const output = flags.str('output');
    if (output === '' && ctx.stdout.isTTY === true) {
      throw new StatusError(1, 'cowardly refusing to save to a terminal. Use the -o flag or redirect');
    }
    const client = await ctx.client();
    const res = await client.request('GET', `/containers/${encodeURIComponent(args[0] ?? '')}/export`);
    await saveStream(ctx, res, output);
    return 0;
  },
};

// ---------------------------------------------------------------------------
// inspect

type InspectType = 'container' | 'image' | 'network' | 'volume';

async function inspectOne(client: Client, name: string, type: string, size: boolean): Promise<unknown> {
  const enc = encodeURIComponent(name);
  const tries: Array<[InspectType, string]> = [
    ['container', `/containers/${enc}/json`],
    ['image', `/images/${enc}/json`],
    ['network', `/networks/${enc}`],
    ['volume', `/volumes/${enc}`],
  ];
  const selected = type === '' ? tries : tries.filter(([t]) => t === type);
  for (const [t, path] of selected) {
    try {
      return await client.json<unknown>('GET', path, { query: { size: t === 'container' && size ? true : undefined } });
    } catch (err) {
      if (type === '' && err instanceof ApiError && (err.status === 404 || err.status === 400)) continue;
      throw err;
    }
  }
  throw new Error(`Error: No such object: ${name}`);
}

/** Prints inspect results: JSON or one template line per object; errors at the end. */
export async function printInspect(
  ctx: Context,
  names: readonly string[],
  format: string,
  get: (name: string) => Promise<unknown>,
): Promise<number> {
  const template = format === '' || format === 'json' ? undefined : new Template(format.replace(/\\t/g, '\t').replace(/\\n/g, '\n'));
  const items: unknown[] = [];
  const errors: string[] = [];
  for (const n of names) {
    try {
      items.push(await get(n));
    } catch (err) {
      errors.push(daemonMessage(err));
    }
  }
  if (template === undefined) {
    if (format === 'json') for (const i of items) ctx.out(`${goJson(i)}\n`);
    else ctx.out(inspectJson(items));
  } else {
    for (const i of items) ctx.out(`${template.execute(i)}\n`);
  }
  if (errors.length > 0) throw new StatusError(1, errors.join('\n'));
  return 0;
}

export const inspect: Command = {
  name: 'inspect',
  usage: 'inspect [OPTIONS] NAME|ID [NAME|ID...]',
  description: 'Return low-level information on Docker objects',
  args: { min: 1 },
  flags: [
    { long: 'format', short: 'f', kind: 'string', help: FORMAT_HELP },
    { long: 'size', short: 's', kind: 'bool', help: 'Display total file sizes if the type is container' },
    { long: 'type', kind: 'string', help: 'Only inspect objects of the given type' },
  ],
  async run(ctx, flags, args) {
    const type = flags.str('type');
    if (type !== '' && !['container', 'image', 'network', 'volume'].includes(type)) {
      throw new StatusError(1, `"${type}" is not a valid value for --type`);
    }
    const client = await ctx.client();
    return printInspect(ctx, args, flags.str('format'), (n) => inspectOne(client, n, type, flags.bool('size')));
  },
};

export function typedInspect(type: InspectType, name: string, description: string, usage: string): Command {
  return {
    name: 'inspect',
    usage,
    description,
    args: { min: 1 },
    flags: [
      { long: 'format', short: 'f', kind: 'string', help: FORMAT_HELP },
      ...(type === 'container' ? [{ long: 'size', short: 's', kind: 'bool', help: 'Display total file sizes' } as const] : []),
    ],
    async run(ctx, flags, args) {
      void name;
      const client = await ctx.client();
      const size = type === 'container' && flags.bool('size');
      return printInspect(ctx, args, flags.str('format'), (n) => inspectOne(client, n, type, size));
    },
  };
}

// ---------------------------------------------------------------------------
// logs

/** Copies a container's log or attach stream: raw for a TTY, demultiplexed otherwise. */
export async function copyOutput(ctx: Context, body: AsyncIterable<Uint8Array>, tty: boolean): Promise<void> {
  if (tty) await copyRaw(body, ctx.stdout);
  else await demux(body, ctx.stdout, ctx.stderr);
}

export const logs: Command = {
  name: 'logs',
  usage: 'logs [OPTIONS] CONTAINER',
  description: 'Fetch the logs of a container',
  args: { exact: 1 },
  flags: [
    { long: 'details', kind: 'bool', help: 'Show extra details provided to logs' },
    { long: 'follow', short: 'f', kind: 'bool', help: 'Follow log output' },
    { long: 'since', kind: 'string', help: 'Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)' },
    { long: 'tail', short: 'n', kind: 'string', help: 'Number of lines to show from the end of the logs', default: 'all' },
    { long: 'timestamps', short: 't', kind: 'bool', help: 'Show timestamps' },
    { long: 'until', kind: 'string', help: 'Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)' },
  ],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    const name = encodeURIComponent(args[0] ?? '');
    const c = await client.json<{ Config?: { Tty?: boolean } }>('GET', `/containers/${name}/json`);
    const res = await client.request('GET', `/containers/${name}/logs`, {
      query: {
        stdout: true,
        stderr: true,
        follow: flags.bool('follow') || undefined,
        timestamps: flags.bool('timestamps') || undefined,
        details: flags.bool('details') || undefined,
        since: flags.changed('since') ? timeArg(flags.str('since'), 'since') : undefined,
        until: flags.changed('until') ? timeArg(flags.str('until'), 'until') : undefined,
        tail: flags.str('tail'),
      },
    });
    await copyOutput(ctx, res, c.Config?.Tty === true);
    return 0;
  },
};

function timeArg(v: string, flag: string): string {
  try {
    return timestampArg(v);
  } catch (err) {
    throw new StatusError(125, `invalid value for "${flag}": ${(err as Error).message}`);
  }
}

export { timeArg };

// ---------------------------------------------------------------------------
// stats

interface StatsJson {
  id?: string;
  name?: string;
  read?: string;
  cpu_stats?: { cpu_usage?: { total_usage?: number; percpu_usage?: number[] | null }; system_cpu_usage?: number; online_cpus?: number };
  precpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number };
  memory_stats?: { usage?: number; limit?: number; stats?: Record<string, number> };
  networks?: Record<string, { rx_bytes?: number; tx_bytes?: number }> | null;
  blkio_stats?: { io_service_bytes_recursive?: Array<{ op: string; value: number }> | null };
  pids_stats?: { current?: number };
}

/** One row of `docker stats`, computed as the docker CLI computes it. */
export function statsRow(s: StatsJson, container: string): Record<string, unknown> {
  const cpuDelta = (s.cpu_stats?.cpu_usage?.total_usage ?? 0) - (s.precpu_stats?.cpu_usage?.total_usage ?? 0);
  const sysDelta = (s.cpu_stats?.system_cpu_usage ?? 0) - (s.precpu_stats?.system_cpu_usage ?? 0);
  const online = s.cpu_stats?.online_cpus ?? s.cpu_stats?.cpu_usage?.percpu_usage?.length ?? 1;
  const cpu = sysDelta > 0 && cpuDelta > 0 && (s.precpu_stats?.system_cpu_usage ?? 0) > 0 ? (cpuDelta / sysDelta) * online * 100 : 0;
  const m = s.memory_stats ?? {};
  let mem = m.usage ?? 0;
  const st = m.stats ?? {};
  const inactive = st.total_inactive_file ?? st.inactive_file;
  if (inactive !== undefined && inactive < mem) mem -= inactive;
  const limit = m.limit ?? 0;
  let rx = 0;
  let tx = 0;
  for (const n of Object.values(s.networks ?? {})) {
    rx += n.rx_bytes ?? 0;
    tx += n.tx_bytes ?? 0;
  }
  let rd = 0;
  let wr = 0;
  for (const e of s.blkio_stats?.io_service_bytes_recursive ?? []) {
    if (e.op.toLowerCase() === 'read') rd += e.value;
    if (e.op.toLowerCase() === 'write') wr += e.value;
  }
  const id = (s.id ?? container).slice(0, 12);
  return {
    BlockIO: `${humanSize(rd, 3)} / ${humanSize(wr, 3)}`,
    CPUPerc: `${cpu.toFixed(2)}%`,
    Container: container,
    ID: id,
    MemPerc: `${(limit > 0 ? (mem / limit) * 100 : 0).toFixed(2)}%`,
    MemUsage: `${bytesSize(mem)} / ${bytesSize(limit)}`,
    Name: (s.name ?? '').replace(/^\//, '') || '--',
    NetIO: `${humanSize(rx, 3)} / ${humanSize(tx, 3)}`,
    PIDs: String(s.pids_stats?.current ?? 0),
  };
}

const STATS_HEADERS = {
  Container: 'CONTAINER',
  ID: 'CONTAINER ID',
  Name: 'NAME',
  CPUPerc: 'CPU %',
  MemUsage: 'MEM USAGE / LIMIT',
  MemPerc: 'MEM %',
  NetIO: 'NET I/O',
  BlockIO: 'BLOCK I/O',
  PIDs: 'PIDS',
};

export const stats: Command = {
  name: 'stats',
  usage: 'stats [OPTIONS] [CONTAINER...]',
  description: 'Display a live stream of container(s) resource usage statistics',
  flags: [
    { long: 'all', short: 'a', kind: 'bool', help: 'Show all containers (default shows just running)' },
    { long: 'format', kind: 'string', help: FORMAT_HELP },
    { long: 'no-stream', kind: 'bool', help: 'Disable streaming stats and only pull the first result' },
    { long: 'no-trunc', kind: 'bool', help: "Don't truncate output" },
  ],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    let names = args;
    if (names.length === 0) {
      const list = await client.json<ContainerSummary[]>('GET', '/containers/json', { query: { all: flags.bool('all') || undefined } });
      names = list.map((c) => c.Id);
    }
    const spec = parseFormat(flags.str('format'), 'table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}');
    const sample = async (): Promise<{ rows: Array<Record<string, unknown>>; errors: string[] }> => {
      const rows: Array<Record<string, unknown>> = [];
      const errors: string[] = [];
      await Promise.all(
        names.map(async (n, i) => {
          try {
            const s = await client.json<StatsJson>('GET', `/containers/${encodeURIComponent(n)}/stats`, { query: { stream: false } });
            const row = statsRow(s, n);
            if (flags.bool('no-trunc')) row.ID = s.id ?? n;
            rows[i] = row;
          } catch (err) {
            errors.push(daemonMessage(err));
          }
        }),
      );
      return { rows: rows.filter((r) => r !== undefined), errors };
    };
    if (flags.bool('no-stream')) {
      const { rows, errors } = await sample();
      if (errors.length > 0 && args.length > 0) throw new StatusError(1, errors.join('\n'));
      ctx.out(render(spec, rows, STATS_HEADERS));
      return 0;
    }
    for (;;) {
      const { rows, errors } = await sample();
      if (errors.length > 0 && args.length > 0) throw new StatusError(1, errors.join('\n'));
      ctx.out(`\x1b[2J\x1b[H${render(spec, rows, STATS_HEADERS)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  },
};

// ---------------------------------------------------------------------------
// update

export const update: Command = {
  name: 'update',
  usage: 'update [OPTIONS] CONTAINER [CONTAINER...]',
  description: 'Update configuration of one or more containers',
  args: { min: 1 },
  flags: [
    { long: 'blkio-weight', kind: 'int', help: 'Block IO (relative weight), between 10 and 1000, or 0 to disable', type: 'uint16' },
    { long: 'cpu-period', kind: 'int', help: 'Limit CPU CFS (Completely Fair Scheduler) period' },
    { long: 'cpu-quota', kind: 'int', help: 'Limit CPU CFS (Completely Fair Scheduler) quota' },
    { long: 'cpu-shares', short: 'c', kind: 'int', help: 'CPU shares (relative weight)' },
    { long: 'cpus', kind: 'string', type: 'decimal', help: 'Number of CPUs' },
    { long: 'cpuset-cpus', kind: 'string', help: 'CPUs in which to allow execution (0-3, 0,1)' },
    { long: 'cpuset-mems', kind: 'string', help: 'MEMs in which to allow execution (0-3, 0,1)' },
    { long: 'memory', short: 'm', kind: 'string', type: 'bytes', help: 'Memory limit' },
    { long: 'memory-reservation', kind: 'string', type: 'bytes', help: 'Memory soft limit' },
    { long: 'memory-swap', kind: 'string', type: 'bytes', help: "Swap limit equal to memory plus swap: -1 to enable unlimited swap" },
    { long: 'pids-limit', kind: 'int', help: 'Tune container pids limit (set -1 for unlimited)' },
    { long: 'restart', kind: 'string', help: 'Restart policy to apply when a container exits' },
  ],
  async run(ctx, flags, args) {
    const body: Record<string, unknown> = {};
    const bytes = (f: string, key: string): void => {
      if (flags.changed(f)) body[key] = parseBytes(flags.str(f), f);
    };
    bytes('memory', 'Memory');
    bytes('memory-reservation', 'MemoryReservation');
    if (flags.changed('memory-swap')) body.MemorySwap = flags.str('memory-swap') === '-1' ? -1 : parseBytes(flags.str('memory-swap'), 'memory-swap');
    if (flags.changed('cpus')) body.NanoCpus = parseCpus(flags.str('cpus'));
    if (flags.changed('cpu-shares')) body.CpuShares = flags.int('cpu-shares');
    if (flags.changed('cpu-period')) body.CpuPeriod = flags.int('cpu-period');
    if (flags.changed('cpu-quota')) body.CpuQuota = flags.int('cpu-quota');
    if (flags.changed('cpuset-cpus')) body.CpusetCpus = flags.str('cpuset-cpus');
    if (flags.changed('cpuset-mems')) body.CpusetMems = flags.str('cpuset-mems');
    if (flags.changed('blkio-weight')) body.BlkioWeight = flags.int('blkio-weight');
    if (flags.changed('pids-limit')) body.PidsLimit = flags.int('pids-limit');
    if (flags.changed('restart')) body.RestartPolicy = parseRestart(flags.str('restart'));
    if (Object.keys(body).length === 0) throw new StatusError(1, 'you must provide one or more flags when using this command');
    const client = await ctx.client();
    const warnings: string[] = [];
    const code = await forEachName(
      ctx,
      args,
      async (name) => {
        const r = await client.json<{ Warnings?: string[] | null }>('POST', `/containers/${encodeURIComponent(name)}/update`, { body });
        warnings.push(...(r?.Warnings ?? []));
        return name;
      },
      () => 'Error: failed to update containers',
    );
    for (const w of warnings) ctx.err(`${w}\n`);
    return code;
  },
};

// ---------------------------------------------------------------------------
// prune

/** Asks the docker-style [y/N] question on stdin; true on y/yes. */
export async function confirm(ctx: Context, message: string): Promise<boolean> {
  ctx.out(`${message}\nAre you sure you want to continue? [y/N] `);
  const line = await new Promise<string>((resolve) => {
    let buf = '';
    const onData = (d: Buffer | string): void => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) finish(buf.slice(0, nl));
    };
    const finish = (s: string): void => {
      ctx.stdin.off('data', onData);
      ctx.stdin.off('end', onEnd);
      ctx.stdin.pause();
      resolve(s);
    };
    const onEnd = (): void => finish(buf);
    ctx.stdin.on('data', onData);
    ctx.stdin.on('end', onEnd);
    ctx.stdin.resume();
  });
  const a = line.trim().toLowerCase();
  return a === 'y' || a === 'yes';
}

export const prune: Command = {
  name: 'prune',
  usage: 'container prune [OPTIONS]',
  description: 'Remove all stopped containers',
  args: { exact: 0 },
  flags: [
    { long: 'filter', kind: 'list', type: 'filter', help: 'Provide filter values (e.g. "until=<timestamp>")' },
    { long: 'force', short: 'f', kind: 'bool', help: 'Do not prompt for confirmation' },
  ],
  async run(ctx, flags) {
    if (!flags.bool('force') && !(await confirm(ctx, 'WARNING! This will remove all stopped containers.'))) return 0;
    const client = await ctx.client();
    const r = await client.json<{ ContainersDeleted?: string[] | null; SpaceReclaimed?: number }>('POST', '/containers/prune', {
      query: { filters: encodeFilters(filtersOf(flags.list('filter'))) },
    });
    const deleted = r.ContainersDeleted ?? [];
    if (deleted.length > 0) ctx.out(`Deleted Containers:\n${deleted.map((d) => `${d}\n`).join('')}\n`);
    ctx.out(`Total reclaimed space: ${humanSize(r.SpaceReclaimed ?? 0)}\n`);
    return 0;
  },
};

