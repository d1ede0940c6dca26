/**
 * `berth network create/ls/inspect/rm/prune/connect/disconnect`, with the docker
 * CLI's flags, output and errors, over the Engine API's /networks routes.
 */
import { ApiError, encodeFilters } from '../api.js';
import { StatusError, daemonMessage, filtersOf } from '../command.js';
import type { Command } from '../command.js';
import { goJson, parseFormat, render } from '../format.js';
import { confirm, printInspect } from './containers.js';

const FORMAT_HELP =
  "Format output using a custom template:\n'table': Print output in table format with column headers (default)\n'table TEMPLATE': Print output in table format using the given Go template\n'json': Print in JSON format\n'TEMPLATE': Print output using the given Go template";

// ---------------------------------------------------------------------------
// create

/** `key=value` list flags into a map (`key` alone maps to ""). */
function keyValues(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq < 0) out[v] = '';
    else out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

function parseCidr(s: string): { addr: bigint; bits: number; prefix: number } | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(s.slice(0, slash));
  const prefix = Number(s.slice(slash + 1));
  if (ip === undefined || !/^\d+$/.test(s.slice(slash + 1)) || prefix > ip.bits) return undefined;
  return { addr: ip.addr, bits: ip.bits, prefix };
}

function parseIp(s: string): { addr: bigint; bits: number } | undefined {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (v4 !== null) {
    const o = v4.slice(1).map(Number);
    if (o.some((x) => x > 255)) return undefined;
    return { addr: o.reduce((a, x) => (a << 8n) | BigInt(x), 0n), bits: 32 };
  }
  if (!s.includes(':') || !/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  const [head = '', tail, extra] = s.split('::');
  if (extra !== undefined) return undefined;
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  if (tail === undefined && h.length !== 8) return undefined;
  if (h.length + t.length > 8) return undefined;
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (!groups.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  return { addr: groups.reduce((a, g) => (a << 16n) | BigInt(parseInt(g, 16)), 0n), bits: 128 };
}

/** Whether an address (or the start of a range) lies in a subnet. */
function inSubnet(subnet: string, addr: string): boolean {
  const s = parseCidr(subnet);
  const a = parseIp(addr.includes('/') ? addr.slice(0, addr.indexOf('/')) : addr);
  if (s === undefined || a === undefined || s.bits !== a.bits) return false;
  const shift = BigInt(s.bits - s.prefix);
  return s.addr >> shift === a.addr >> shift;
}

interface IpamConfig {
  Subnet: string;
  IPRange?: string;
  Gateway?: string;
  AuxiliaryAddresses?: Record<string, string>;
}

/** Pairs --subnet, --ip-range, --gateway and --aux-address the way the docker CLI does. */
export function consolidateIpam(subnets: readonly string[], ranges: readonly string[], gateways: readonly string[], aux: Record<string, string>): IpamConfig[] {
  if (subnets.length < ranges.length || subnets.length < gateways.length) {
    throw new StatusError(1, 'every ip-range or gateway must have a corresponding subnet');
  }
  const configs = new Map<string, IpamConfig>();
  for (const s of subnets) {
    for (const other of configs.keys()) {
      if (inSubnet(other, s) || inSubnet(s, other)) throw new StatusError(1, `multiple overlapping subnet configuration is not allowed`);
    }
    configs.set(s, { Subnet: s });
  }
  for (const r of ranges) {
    let match = false;
    for (const [s, c] of configs) {
      if (!inSubnet(s, r)) continue;
      if (c.IPRange !== undefined) throw new StatusError(1, `cannot configure multiple ranges (${r}, ${c.IPRange}) on the same subnet (${s})`);
      c.IPRange = r;
      match = true;
    }
    if (!match) throw new StatusError(1, `no matching subnet for range ${r}`);
  }
  for (const g of gateways) {
    let match = false;
    for (const [s, c] of configs) {
      if (!inSubnet(s, g)) continue;
      if (c.Gateway !== undefined) throw new StatusError(1, `cannot configure multiple gateways (${g}, ${c.Gateway}) for the same subnet (${s})`);
      c.Gateway = g;
      match = true;
    }
    if (!match) throw new StatusError(1, `no matching subnet for gateway ${g}`);
  }
  for (const [key, a] of Object.entries(aux)) {
    let match = false;
    for (const [s, c] of configs) {
      if (!inSubnet(s, a)) continue;
      c.AuxiliaryAddresses = { ...(c.AuxiliaryAddresses ?? {}), [key]: a };
      match = true;
    }
    if (!match) throw new StatusError(1, `no matching subnet for aux-address ${a}`);
  }
  return [...configs.values()];
}

/** Flags that take comma-separated lists as well as repeats (pflag's StringSlice). */
const slice = (values: readonly string[]): string[] => values.flatMap((v) => v.split(',')).filter((v) => v !== '');

export const create: Command = {
  name: 'create',
  usage: 'network create [OPTIONS] NETWORK',
  description: 'Create a network',
  args: { exact: 1 },
  flags: [
    { long: 'attachable', kind: 'bool', help: 'Enable manual container attachment' },
    { long: 'aux-address', kind: 'list', type: 'map', help: 'Auxiliary IPv4 or IPv6 addresses used by Network driver (default map[])' },
    { long: 'config-from', kind: 'string', help: 'The network from which to copy the configuration' },
    { long: 'config-only', kind: 'bool', help: 'Create a configuration only network' },
    { long: 'driver', short: 'd', kind: 'string', help: 'Driver to manage the Network', default: 'bridge' },
    { long: 'gateway', kind: 'list', type: 'strings', help: 'IPv4 or IPv6 Gateway for the master subnet' },
    { long: 'ingress', kind: 'bool', help: 'Create swarm routing-mesh network' },
    { long: 'internal', kind: 'bool', help: 'Restrict external access to the network' },
    { long: 'ip-range', kind: 'list', type: 'strings', help: 'Allocate container ip from a sub-range' },
    { long: 'ipam-driver', kind: 'string', help: 'IP Address Management Driver', default: 'default' },
    { long: 'ipam-opt', kind: 'list', type: 'map', help: 'Set IPAM driver specific options (default map[])' },
    { long: 'ipv4', kind: 'bool', help: 'Enable or disable IPv4 address assignment', default: true },
    { long: 'ipv6', kind: 'bool', help: 'Enable or disable IPv6 address assignment' },
    { long: 'label', kind: 'list', help: 'Set metadata on a network' },
    { long: 'opt', short: 'o', kind: 'list', type: 'map', help: 'Set driver specific options (default map[])' },
    { long: 'scope', kind: 'string', help: "Control the network's scope" },
    { long: 'subnet', kind: 'list', type: 'strings', help: 'Subnet in CIDR format that represents a network segment' },
  ],
  async run(ctx, flags, args) {
    const name = args[0] ?? '';
    const ipam = consolidateIpam(
      slice(flags.list('subnet')),
      slice(flags.list('ip-range')),
      slice(flags.list('gateway')),
      keyValues(flags.list('aux-address')),
    );
    const body: Record<string, unknown> = {
      Name: name,
      Driver: flags.str('driver'),
      Options: keyValues(flags.list('opt')),
      IPAM: { Driver: flags.str('ipam-driver'), Config: ipam, Options: keyValues(flags.list('ipam-opt')) },
      Internal: flags.bool('internal'),
      Attachable: flags.bool('attachable'),
      Ingress: flags.bool('ingress'),
      ConfigOnly: flags.bool('config-only'),
      Labels: keyValues(flags.list('label')),
      // daemons before API 1.44 only refuse a duplicate name when asked to
      CheckDuplicate: true,
    };
    if (flags.changed('ipv6')) body.EnableIPv6 = flags.bool('ipv6');
    if (flags.changed('ipv4')) body.EnableIPv4 = flags.bool('ipv4');
    if (flags.changed('scope')) body.Scope = flags.str('scope');
    if (flags.changed('config-from')) body.ConfigFrom = { Network: flags.str('config-from') };
    const client = await ctx.client();
    const r = await client.json<{ Id?: string; Warning?: string }>('POST', '/networks/create', { body });
    if (r.Warning !== undefined && r.Warning !== '') ctx.err(`${r.Warning}\n`);
    ctx.out(`${r.Id ?? ''}\n`);
    return 0;
  },
};

// ---------------------------------------------------------------------------
// ls

interface NetworkSummary {
  Name?: string;
  Id?: string;
  Created?: string;
  Scope?: string;
  Driver?: string;
  EnableIPv4?: boolean;
  EnableIPv6?: boolean;
  Internal?: boolean;
  Labels?: Record<string, string> | null;
}

/** Go's time.Time String() of an RFC 3339 time, keeping its offset (`+0000 UTC` for Z). */
export function goTimeString(rfc3339: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/.exec(rfc3339);
  if (m === null) return rfc3339;
  const frac = (m[3] ?? '').replace(/0+$/, '');
  const zone = m[4] === 'Z' ? '+0000 UTC' : `${(m[4] as string).replace(':', '')} ${(m[4] as string).replace(':', '')}`;
  return `${m[1] as string} ${m[2] as string}${frac === '' ? '' : `.${frac}`} ${zone}`;
}

/** Natural order, as the docker CLI sorts network names (digits compare as numbers). */
export function naturalLess(a: string, b: string): number {
  const re = /(\d+)|(\D+)/g;
  const pa = a.match(re) ?? [];
  const pb = b.match(re) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i] as string;
    const y = pb[i] as string;
    const nx = /^\d/.test(x);
    const ny = /^\d/.test(y);
    if (nx && ny) {
      const d = Number(x) - Number(y);
      if (d !== 0) return d;
      if (x.length !== y.length) return x.length - y.length;
    } else if (x !== y) return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}

const labelsString = (labels: Record<string, string> | null | undefined): string =>
  Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');

/** A network as the ls template sees it (the docker CLI's networkContext, keys in JSON order). */
function networkRow(n: NetworkSummary, trunc: boolean): Record<string, unknown> {
  const id = n.Id ?? '';
  const labels = n.Labels ?? {};
  return {
    CreatedAt: goTimeString(n.Created ?? ''),
    Driver: n.Driver ?? '',
    ID: trunc ? id.slice(0, 12) : id,
    IPv4: String(n.EnableIPv4 === true),
    IPv6: String(n.EnableIPv6 === true),
    Internal: String(n.Internal === true),
    Labels: labelsString(labels),
    Name: n.Name ?? '',
    Scope: n.Scope ?? '',
    Label: (key: unknown): string => labels[String(key)] ?? '',
  };
}

const NETWORK_HEADERS = {
  ID: 'NETWORK ID', Name: 'NAME', Driver: 'DRIVER', Scope: 'SCOPE', IPv4: 'IPV4', IPv6: 'IPV6', Internal: 'INTERNAL', Labels: 'LABELS', CreatedAt: 'CREATED AT',
  Label: (): string => 'LABEL',
};

export const ls: Command = {
  name: 'ls',
  usage: 'network ls [OPTIONS]',
  description: 'List networks',
  args: { exact: 0 },
  flags: [
    { long: 'filter', short: 'f', kind: 'list', type: 'filter', help: 'Provide filter values (e.g. "driver=bridge")' },
    { long: 'format', kind: 'string', help: FORMAT_HELP },
    { long: 'no-trunc', kind: 'bool', help: 'Do not truncate the output' },
    { long: 'quiet', short: 'q', kind: 'bool', help: 'Only display network IDs' },
  ],
  async run(ctx, flags) {
    const client = await ctx.client();
    const list = await client.json<NetworkSummary[] | null>('GET', '/networks', { query: { filters: encodeFilters(filtersOf(flags.list('filter'))) } });
    const sorted = [...(list ?? [])].sort((a, b) => naturalLess(a.Name ?? '', b.Name ?? ''));
    let format = flags.str('format');
    if (flags.bool('quiet')) format = '{{.ID}}';
    const rows = sorted.map((n) => networkRow(n, !flags.bool('no-trunc')));
    ctx.out(render(parseFormat(format, 'table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}'), rows, NETWORK_HEADERS));
    return 0;
  },
};

// ---------------------------------------------------------------------------
// inspect, rm, prune

export const inspect: Command = {
  name: 'inspect',
  usage: 'network inspect [OPTIONS] NETWORK [NETWORK...]',
  description: 'Display detailed information on one or more networks',
  args: { min: 1 },
  flags: [
    { long: 'format', short: 'f', kind: 'string', help: FORMAT_HELP },
    { long: 'verbose', short: 'v', kind: 'bool', help: 'Verbose output for diagnostics' },
  ],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    const verbose = flags.bool('verbose') || undefined;
    const get = (n: string): Promise<unknown> => client.json<unknown>('GET', `/networks/${encodeURIComponent(n)}`, { query: { verbose } });
    if (flags.str('format') !== 'json') return printInspect(ctx, args, flags.str('format'), get);
    // `--format json`: one compact array, as the docker CLI prints it
    const items: unknown[] = [];
    const errors: string[] = [];
    for (const n of args) {
      try {
        items.push(await get(n));
      } catch (err) {
        errors.push(daemonMessage(err));
      }
    }
    ctx.out(`${goJson(items)}\n`);
    if (errors.length > 0) throw new StatusError(1, errors.join('\n'));
    return 0;
  },
};

export const rm: Command = {
  name: 'rm',
  usage: 'network rm NETWORK [NETWORK...]',
  description: 'Remove one or more networks',
  args: { min: 1 },
  flags: [{ long: 'force', short: 'f', kind: 'bool', help: 'Do not error if the network does not exist' }],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    let status = 0;
    for (const name of args) {
      try {
        await client.call('DELETE', `/networks/${encodeURIComponent(name)}`);
        ctx.out(`${name}\n`);
      } catch (err) {
        if (flags.bool('force') && err instanceof ApiError && err.status === 404) continue;
        if (!(err instanceof ApiError)) throw err;
        ctx.err(`Error response from daemon: ${err.message}\n`);
        status = 1;
      }
    }
    // the docker CLI ends with its StatusError's text
    if (status !== 0) throw new StatusError(status, `exit status ${status}`);
    return 0;
  },
};

export const prune: Command = {
  name: 'prune',
  usage: 'network prune [OPTIONS]',
  description: 'Remove all unused networks',
  args: { exact: 0 },
  flags: [
    { long: 'filter', kind: 'list', type: 'filter', help: 'Provide filter values (e.g. "until=<timestamp>")' },
    { long: 'force', short: 'f', kind: 'bool', help: 'Do not prompt for confirmation' },
  ],
  async run(ctx, flags) {
    if (!flags.bool('force') && !(await confirm(ctx, 'WARNING! This will remove all custom networks not used by at least one container.'))) return 0;
    const client = await ctx.client();
    const r = await client.json<{ NetworksDeleted?: string[] | null }>('POST', '/networks/prune', {
      query: { filters: encodeFilters(filtersOf(flags.list('filter'))) },
    });
    const deleted = r.NetworksDeleted ?? [];
    if (deleted.length > 0) ctx.out(`Deleted Networks:\n${deleted.map((d) => `${d}\n`).join('')}\n`);
    return 0;
  },
};

// ---------------------------------------------------------------------------
// connect, disconnect

export const connect: Command = {
  name: 'connect',
  usage: 'network connect [OPTIONS] NETWORK CONTAINER',
  description: 'Connect a container to a network',
  args: { exact: 2 },
  flags: [
    { long: 'alias', kind: 'list', type: 'strings', help: 'Add network-scoped alias for the container' },
    { long: 'driver-opt', kind: 'list', type: 'strings', help: 'driver options for the network' },
    { long: 'gw-priority', kind: 'int', help: 'Highest gw-priority provides the default gateway. Accepts positive and negative values.' },
    { long: 'ip', kind: 'string', help: 'IPv4 address (e.g., "172.30.100.104")' },
    { long: 'ip6', kind: 'string', help: 'IPv6 address (e.g., "2001:db8::33")' },
    { long: 'link', kind: 'list', help: 'Add link to another container' },
    { long: 'link-local-ip', kind: 'list', type: 'strings', help: 'Add a link-local address for the container' },
  ],
  async run(ctx, flags, args) {
    const [network = '', container = ''] = args;
    const ipv4 = flags.str('ip');
    const ipv6 = flags.str('ip6');
    const linkLocal = slice(flags.list('link-local-ip'));
    const endpoint: Record<string, unknown> = {};
    if (ipv4 !== '' || ipv6 !== '' || linkLocal.length > 0) {
      endpoint.IPAMConfig = {
        ...(ipv4 !== '' ? { IPv4Address: ipv4 } : {}),
        ...(ipv6 !== '' ? { IPv6Address: ipv6 } : {}),
        ...(linkLocal.length > 0 ? { LinkLocalIPs: linkLocal } : {}),
      };
    }
    const aliases = slice(flags.list('alias'));
    if (aliases.length > 0) endpoint.Aliases = aliases;
    const links = flags.list('link');
    if (links.length > 0) endpoint.Links = links;
    const driverOpts = slice(flags.list('driver-opt'));
    if (driverOpts.length > 0) endpoint.DriverOpts = keyValues(driverOpts);
    if (flags.changed('gw-priority')) endpoint.GwPriority = flags.int('gw-priority');
    const client = await ctx.client();
    await client.call('POST', `/networks/${encodeURIComponent(network)}/connect`, { body: { Container: container, EndpointConfig: endpoint } });
    return 0;
  },
};

export const disconnect: Command = {
  name: 'disconnect',
  usage: 'network disconnect [OPTIONS] NETWORK CONTAINER',
  description: 'Disconnect a container from a network',
  args: { exact: 2 },
  flags: [{ long: 'force', short: 'f', kind: 'bool', help: 'Force the container to disconnect from a network' }],
  async run(ctx, flags, args) {
    const [network = '', container = ''] = args;
    const client = await ctx.client();
    await client.call('POST', `/networks/${encodeURIComponent(network)}/disconnect`, { body: { Container: container, Force: flags.bool('force') } });
    return 0;
  },
};
