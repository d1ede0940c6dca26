/**
 * Volume commands: volume create, ls, inspect, rm, prune.
 */
import { encodeFilters } from '../api.js';
import { StatusError, filtersOf, forEachName } from '../command.js';
import type { Command } from '../command.js';
import { ESCAPED_JSON, goString, humanSize, parseFormat, render } from '../format.js';
import { confirm, typedInspect } from './containers.js';

const FORMAT_HELP =
  "Format output using a custom template:\n'table': Print output in table format with column headers (default)\n'table TEMPLATE': Print output in table format using the given Go template\n'json': Print in JSON format\n'TEMPLATE': Print output using the given Go template";

interface Volume {
  Name: string;
  Driver: string;
  Mountpoint: string;
  Scope?: string;
  Labels?: Record<string, string> | null;
  UsageData?: { Size: number; RefCount: number } | null;
}

/** `key=value` options into an object (docker's map flags). */
function mapOf(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const i = v.indexOf('=');
    if (i < 0) out[v] = '';
    else out[v.slice(0, i)] = v.slice(i + 1);
  }
  return out;
}

export const create: Command = {
  name: 'create',
  usage: 'volume create [OPTIONS] [VOLUME]',
  description: 'Create a volume',
  args: { max: 1 },
  flags: [
    { long: 'driver', short: 'd', kind: 'string', help: 'Specify volume driver name', default: 'local' },
    { long: 'label', kind: 'list', help: 'Set metadata for a volume' },
    { long: 'name', kind: 'string', help: 'Specify volume name', hidden: true },
    { long: 'opt', short: 'o', kind: 'list', type: 'map', help: 'Set driver specific options' },
  ],
  async run(ctx, flags, args) {
    let name = flags.str('name');
    const arg = args[0];
    if (arg !== undefined) {
      if (name !== '' && name !== arg) throw new StatusError(1, 'conflicting options: cannot specify a volume-name through both --name and as a positional arg');
      name = arg;
    }
    const client = await ctx.client();
    const v = await client.json<Volume>('POST', '/volumes/create', {
      body: { Name: name, Driver: flags.str('driver'), DriverOpts: mapOf(flags.list('opt')), Labels: mapOf(flags.list('label')) },
    });
    ctx.out(`${v.Name}\n`);
    return 0;
  },
};

const LS_HEADERS = {
  Name: 'VOLUME NAME',
  Driver: 'DRIVER',
  Scope: 'SCOPE',
  Mountpoint: 'MOUNTPOINT',
  Labels: 'LABELS',
  Links: 'LINKS',
  Size: 'SIZE',
  Group: 'GROUP',
  Availability: 'AVAILABILITY',
  Status: 'STATUS',
  Label: () => 'LABEL',
};

function volumeRow(v: Volume): Record<string | symbol, unknown> {
  const labels = v.Labels ?? {};
  return {
    Availability: 'N/A',
    Driver: v.Driver,
    Group: 'N/A',
    Labels: Object.entries(labels).map(([k, x]) => `${k}=${x}`).join(','),
    Links: v.UsageData === undefined || v.UsageData === null ? 'N/A' : String(v.UsageData.RefCount),
    Mountpoint: v.Mountpoint,
    Name: v.Name,
    Scope: v.Scope ?? 'local',
    Size: v.UsageData === undefined || v.UsageData === null ? 'N/A' : humanSize(v.UsageData.Size),
    Status: 'N/A',
    Label: (k: unknown) => labels[goString(k)] ?? '',
    [ESCAPED_JSON]: true,
  };
}

export const ls: Command = {
  name: 'ls',
  usage: 'volume ls [OPTIONS]',
  description: 'List volumes',
  args: { exact: 0 },
  flags: [
    { long: 'filter', short: 'f', kind: 'list', type: 'filter', help: 'Provide filter values (e.g. "dangling=true")' },
    { long: 'format', kind: 'string', help: FORMAT_HELP },
    { long: 'quiet', short: 'q', kind: 'bool', help: 'Only display volume names' },
  ],
  async run(ctx, flags) {
    const client = await ctx.client();
    const r = await client.json<{ Volumes?: Volume[] | null }>('GET', '/volumes', { query: { filters: encodeFilters(filtersOf(flags.list('filter'))) } });
    const list = [...(r.Volumes ?? [])].sort((a, b) => (a.Name < b.Name ? -1 : a.Name > b.Name ? 1 : 0));
    let format = flags.str('format');
    if (flags.bool('quiet') && format === '') format = '{{.Name}}';
    ctx.out(render(parseFormat(format, 'table {{.Driver}}\t{{.Name}}'), list.map(volumeRow), LS_HEADERS));
    return 0;
  },
};

export const inspect: Command = typedInspect('volume', 'inspect', 'Display detailed information on one or more volumes', 'volume inspect [OPTIONS] VOLUME [VOLUME...]');

export const rm: Command = {
  name: 'rm',
  usage: 'volume rm [OPTIONS] VOLUME [VOLUME...]',
  description: 'Remove one or more volumes',
  args: { min: 1 },
  flags: [{ long: 'force', short: 'f', kind: 'bool', help: 'Force the removal of one or more volumes' }],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    return forEachName(ctx, args, async (name) => {
      await client.call('DELETE', `/volumes/${encodeURIComponent(name)}`, { query: { force: flags.bool('force') || undefined } });
      return name;
    });
  },
};

export const prune: Command = {
  name: 'prune',
  usage: 'volume prune [OPTIONS]',
  description: 'Remove unused local volumes',
  args: { exact: 0 },
  flags: [
    { long: 'all', short: 'a', kind: 'bool', help: 'Remove all unused volumes, not just anonymous ones' },
    { long: 'filter', kind: 'list', type: 'filter', help: 'Provide filter values (e.g. "label=<label>")' },
    { long: 'force', short: 'f', kind: 'bool', help: 'Do not prompt for confirmation' },
  ],
  async run(ctx, flags) {
    const all = flags.bool('all');
    const warning = all
      ? 'WARNING! This will remove all local volumes not used by at least one container.'
      : 'WARNING! This will remove anonymous local volumes not used by at least one container.';
    if (!flags.bool('force') && !(await confirm(ctx, warning))) return 0;
    const filters = filtersOf(flags.list('filter'));
    if (all) {
      if (filters.has('all')) throw new StatusError(125, 'conflicting options: cannot specify both --all and --filter all=1');
      filters.set('all', ['true']);
    }
    const client = await ctx.client();
    const r = await client.json<{ VolumesDeleted?: string[] | null; SpaceReclaimed?: number }>('POST', '/volumes/prune', {
      query: { filters: encodeFilters(filters) },
    });
    const deleted = r.VolumesDeleted ?? [];
    if (deleted.length > 0) ctx.out(`Deleted Volumes:\n${deleted.map((d) => `${d}\n`).join('')}\n`);
    ctx.out(`Total reclaimed space: ${humanSize(r.SpaceReclaimed ?? 0)}\n`);
    return 0;
  },
};
