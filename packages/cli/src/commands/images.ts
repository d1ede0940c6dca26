/**
 * Image commands: images, pull, push, tag, rmi, history, save, load, import, prune.
 */
import { createReadStream, statSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { encodeFilters } from '../api.js';
import type { Client } from '../api.js';
import { StatusError, filtersOf, forEachName } from '../command.js';
import type { Command, Context } from '../command.js';
import { ESCAPED_JSON, ago, ellipsis, goTime, humanSize, parseFormat, render, shortId } from '../format.js';
import { JsonMessageError, displayJsonMessages } from '../progress.js';
import { familiarName, fullString, parseReference, registryAuthHeader } from './auth.js';
import { confirm, saveStream } from './containers.js';

const FORMAT_HELP =
  "Format output using a custom template:\n'table': Print output in table format with column headers (default)\n'table TEMPLATE': Print output in table format using the given Go template\n'json': Print in JSON format\n'TEMPLATE': Print output using the given Go template";

interface ImageSummary {
  Id: string;
  ParentId?: string;
  RepoTags?: string[] | null;
  RepoDigests?: string[] | null;
  Created: number;
  Size: number;
  SharedSize?: number;
  VirtualSize?: number;
  Containers?: number;
  Labels?: Record<string, string> | null;
}

function splitRepo(ref: string, sep: '@' | ':'): [string, string] {
  const i = sep === '@' ? ref.indexOf('@') : ref.lastIndexOf(':');
  if (i < 0 || (sep === ':' && ref.lastIndexOf('/') > i)) return [ref, ''];
  return [ref.slice(0, i), ref.slice(i + 1)];
}

function imageRows(img: ImageSummary, withDigests: boolean, trunc: boolean, now: number): Array<Record<string, unknown>> {
  const tags = new Map<string, string[]>();
  const digests = new Map<string, string[]>();
  for (const t of img.RepoTags ?? []) {
    if (t === '<none>:<none>') continue;
    const [repo, tag] = splitRepo(t, ':');
    const name = safeFamiliar(repo);
    tags.set(name, [...(tags.get(name) ?? []), tag]);
  }
  for (const d of img.RepoDigests ?? []) {
    if (d === '<none>@<none>') continue;
    const [repo, dg] = splitRepo(d, '@');
    const name = safeFamiliar(repo);
    digests.set(name, [...(digests.get(name) ?? []), dg]);
  }
  const base = {
    Containers: img.Containers === undefined || img.Containers < 0 ? 'N/A' : String(img.Containers),
    CreatedAt: goTime(img.Created),
    CreatedSince: ago(img.Created, now),
    ID: trunc ? shortId(img.Id) : img.Id,
    SharedSize: img.SharedSize === undefined || img.SharedSize < 0 ? 'N/A' : humanSize(img.SharedSize),
    Size: humanSize(img.Size, 3),
    UniqueSize: img.SharedSize === undefined || img.SharedSize < 0 ? 'N/A' : humanSize(img.Size - img.SharedSize),
    VirtualSize: humanSize(img.VirtualSize ?? img.Size),
  };
  const row = (repo: string, tag: string, digest: string): Record<string, unknown> => ({
    Containers: base.Containers,
    CreatedAt: base.CreatedAt,
    CreatedSince: base.CreatedSince,
    Digest: digest,
    ID: base.ID,
    Repository: repo,
    SharedSize: base.SharedSize,
    Size: base.Size,
    Tag: tag,
    UniqueSize: base.UniqueSize,
    VirtualSize: base.VirtualSize,
    [ESCAPED_JSON]: true,
  });
  const rows: Array<Record<string, unknown>> = [];
  if (tags.size === 0 && digests.size === 0) return [row('<none>', '<none>', '<none>')];
  for (const [repo, ts] of tags) {
    const ds = digests.get(repo) ?? [];
    digests.delete(repo);
    if (!withDigests || ds.length === 0) {
      for (const t of ts) rows.push(row(repo, t, '<none>'));
    } else for (const d of ds) for (const t of ts) rows.push(row(repo, t, d));
  }
  for (const [repo, ds] of digests) for (const d of ds) rows.push(row(repo, '<none>', d));
  return rows;
}

function safeFamiliar(repo: string): string {
  try {
    return familiarName(parseReference(repo));
  } catch {
    return repo;
  }
}

const IMAGE_HEADERS = {
  Containers: 'CONTAINERS',
  CreatedAt: 'CREATED AT',
  CreatedSince: 'CREATED',
  Digest: 'DIGEST',
  ID: 'IMAGE ID',
  Repository: 'REPOSITORY',
  SharedSize: 'SHARED SIZE',
  Size: 'SIZE',
  Tag: 'TAG',
  UniqueSize: 'UNIQUE SIZE',
  VirtualSize: 'VIRTUAL SIZE',
};

export const images: Command = {
  name: 'images',
  aliases: ['ls', 'list'],
  usage: 'images [OPTIONS] [REPOSITORY[:TAG]]',
  description: 'List images',
  args: { max: 1 },
  flags: [
    { long: 'all', short: 'a', kind: 'bool', help: 'Show all images (default hides intermediate images)' },
    { long: 'digests', kind: 'bool', help: 'Show digests' },
    { long: 'filter', short: 'f', kind: 'list', type: 'filter', help: 'Filter output based on conditions provided' },
    { long: 'format', kind: 'string', help: FORMAT_HELP },
    { long: 'no-trunc', kind: 'bool', help: "Don't truncate output" },
    { long: 'quiet', short: 'q', kind: 'bool', help: 'Only show image IDs' },
  ],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    const filters = filtersOf(flags.list('filter'));
    if (args[0] !== undefined) filters.set('reference', [args[0]]);
    const list = await client.json<ImageSummary[]>('GET', '/images/json', {
      query: { all: flags.bool('all') || undefined, filters: encodeFilters(filters) },
    });
    let format = flags.str('format');
    if (flags.bool('quiet') && format === '') format = '{{.ID}}';
    const def = flags.bool('digests')
      ? 'table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}'
      : 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}';
    const now = Date.now();
    const withDigests = flags.bool('digests') || format.includes('.Digest');
    const rows = list.flatMap((i) => imageRows(i, withDigests, !flags.bool('no-trunc'), now));
    ctx.out(render(parseFormat(format, def), rows, IMAGE_HEADERS));
    return 0;
  },
};

/** Shows a JSON-message stream the docker way; a message error becomes exit 1. */
export async function showStream(ctx: Context, body: AsyncIterable<Uint8Array>, out = ctx.stdout, onAux?: (a: unknown) => void): Promise<void> {
  const tty = (out as { isTTY?: boolean }).isTTY === true;
  const cols = (out as { columns?: number }).columns ?? 80;
  try {
    await displayJsonMessages(body, out, tty, cols, onAux);
  } catch (err) {
    if (err instanceof JsonMessageError) throw new StatusError(1, err.message);
    throw err;
  }
}

/** Pulls an image (POST /images/create), showing progress on `out` unless quiet. */
export async function pullImage(
  ctx: Context,
  client: Client,
  ref: string,
  opts: { platform?: string | undefined; quiet?: boolean; allTags?: boolean; out?: NodeJS.WritableStream },
): Promise<string> {
  const r = parseReference(ref);
  const tagOrDigest = r.digest ?? r.tag ?? (opts.allTags === true ? undefined : 'latest');
  const res = await client.request('POST', '/images/create', {
    query: {
      fromImage: familiarName(r),
      tag: tagOrDigest,
      platform: opts.platform !== undefined && opts.platform !== '' ? opts.platform : undefined,
    },
    headers: { 'X-Registry-Auth': registryAuthHeader(ctx, r) },
  });
  if (opts.quiet === true) {
    for await (const chunk of res) void chunk;
    // errors inside the stream still have to surface
  } else {
    await showStream(ctx, res, (opts.out ?? ctx.stdout) as Context['stdout']);
  }
  return opts.allTags === true ? `${r.domain}/${r.path}` : fullString(r);
}

export const pull: Command = {
  name: 'pull',
  usage: 'pull [OPTIONS] NAME[:TAG|@DIGEST]',
  description: 'Download an image from a registry',
  args: { exact: 1 },
  flags: [
    { long: 'all-tags', short: 'a', kind: 'bool', help: 'Download all tagged images in the repository' },
    { long: 'disable-content-trust', kind: 'bool', help: 'Skip image verification', default: true },
    { long: 'platform', kind: 'string', help: 'Set platform if server is multi-platform capable' },
    { long: 'quiet', short: 'q', kind: 'bool', help: 'Suppress verbose output' },
  ],
  async run(ctx, flags, args) {
    const ref = args[0] ?? '';
    const r = parseReference(ref);
    if (flags.bool('all-tags') && (r.tag !== undefined || r.digest !== undefined)) {
      throw new StatusError(1, 'tag can\'t be used with --all-tags/-a');
    }
    const client = await ctx.client();
    if (flags.bool('quiet')) {
      const res = await client.request('POST', '/images/create', {
        query: { fromImage: familiarName(r), tag: r.digest ?? r.tag ?? 'latest', platform: flags.string('platform') },
        headers: { 'X-Registry-Auth': registryAuthHeader(ctx, r) },
      });
      const sink = new (await import('node:stream')).PassThrough();
      sink.resume();
      await showStream(ctx, res, sink as unknown as Context['stdout']);
      ctx.out(`${fullString(r)}\n`);
      return 0;
    }
    const name = await pullImage(ctx, client, ref, { platform: flags.string('platform'), allTags: flags.bool('all-tags') });
    ctx.out(`${name}\n`);
    return 0;
  },
};

export const push: Command = {
  name: 'push',
  usage: 'push [OPTIONS] NAME[:TAG]',
  description: 'Upload an image to a registry',
  args: { exact: 1 },
  flags: [
    { long: 'all-tags', short: 'a', kind: 'bool', help: 'Push all tags of an image to the repository' },
    { long: 'disable-content-trust', kind: 'bool', help: 'Skip image signing', default: true },
    { long: 'platform', kind: 'string', help: 'Push a platform-specific manifest as a single-platform image to the registry.' },
    { long: 'quiet', short: 'q', kind: 'bool', help: 'Suppress verbose output' },
  ],
  async run(ctx, flags, args) {
    const ref = args[0] ?? '';
    const r = parseReference(ref);
    if (flags.bool('all-tags') && r.tag !== undefined) throw new StatusError(1, "tag can't be used with --all-tags/-a");
    const client = await ctx.client();
    const tag = flags.bool('all-tags') ? undefined : r.tag ?? 'latest';
    const res = await client.request('POST', `/images/${familiarName(r)}/push`, {
      query: { tag, platform: flags.string('platform') },
      headers: { 'X-Registry-Auth': registryAuthHeader(ctx, r) },
    });
    if (flags.bool('quiet')) {
      const { PassThrough } = await import('node:stream');
      const sink = new PassThrough();
      sink.resume();
      await showStream(ctx, res, sink as unknown as Context['stdout']);
      ctx.out(`${familiarName(r)}${tag !== undefined ? `:${tag}` : ''}\n`);
      return 0;
    }
    await showStream(ctx, res);
    return 0;
  },
};

export const tag: Command = {
  name: 'tag',
  usage: 'tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]',
  description: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE',
  args: { exact: 2 },
  flags: [],
  async run(ctx, _flags, args) {
    const [src = '', target = ''] = args;
    const t = parseReference(target);
    if (t.digest !== undefined) throw new StatusError(1, 'refusing to create a tag with a digest reference');
    const client = await ctx.client();
    await client.call('POST', `/images/${encodeURIComponent(src)}/tag`, { query: { repo: familiarName(t), tag: t.tag ?? 'latest' } });
    return 0;
  },
};

export const rmi: Command = {
  name: 'rmi',
  aliases: ['rm', 'remove'],
  usage: 'rmi [OPTIONS] IMAGE [IMAGE...]',
  description: 'Remove one or more images',
  args: { min: 1 },
  flags: [
    { long: 'force', short: 'f', kind: 'bool', help: 'Force removal of the image' },
    { long: 'no-prune', kind: 'bool', help: 'Do not delete untagged parents' },
    { long: 'platform', kind: 'list', help: 'Remove only the given platform variant.' },
  ],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    return forEachName(ctx, args, async (name) => {
      const r = await client.json<Array<{ Untagged?: string; Deleted?: string }>>('DELETE', `/images/${encodeURIComponent(name)}`, {
        query: { force: flags.bool('force') || undefined, noprune: flags.bool('no-prune') || undefined },
      });
      const lines = (r ?? []).map((d) => (d.Untagged !== undefined ? `Untagged: ${d.Untagged}` : `Deleted: ${d.Deleted ?? ''}`));
      return lines.length > 0 ? lines.join('\n') : undefined;
    });
  },
};

/** 2000-01-01T00:00:00Z in seconds. */
const HISTORY_EPOCH = 946_684_800;

export const history: Command = {
  name: 'history',
  usage: 'history [OPTIONS] IMAGE',
  description: 'Show the history of an image',
  args: { exact: 1 },
  flags: [
    { long: 'format', kind: 'string', help: FORMAT_HELP },
    { long: 'human', short: 'H', kind: 'bool', help: 'Print sizes and dates in human readable format', default: true },
    { long: 'no-trunc', kind: 'bool', help: "Don't truncate output" },
    { long: 'platform', kind: 'string', help: 'Show history for the given platform.' },
    { long: 'quiet', short: 'q', kind: 'bool', help: 'Only show image IDs' },
  ],
  async run(ctx, flags, args) {
    const client = await ctx.client();
    const h = await client.json<Array<{ Id: string; Created: number; CreatedBy: string; Tags?: string[] | null; Size: number; Comment: string }>>(
      'GET',
      `/images/${encodeURIComponent(args[0] ?? '')}/history`,
      { query: { platform: flags.string('platform') } },
    );
    const human = flags.bool('human');
    const trunc = !flags.bool('no-trunc');
    const now = Date.now();
    const rows = h.map((e) => {
      const createdBy = e.CreatedBy.replace(/\t/g, ' ');
      const createdAt = new Date(e.Created * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      return {
        Comment: e.Comment,
        CreatedAt: createdAt,
        CreatedBy: trunc ? ellipsis(createdBy, 45) : createdBy,
        // docker shows no age for dates up to 2000-01-01 (reproducible builds' placeholder dates)
        CreatedSince: !human ? createdAt : e.Created <= HISTORY_EPOCH ? 'N/A' : ago(e.Created, now),
        ID: e.Id === '<missing>' ? '<missing>' : trunc ? shortId(e.Id) : e.Id,
        Size: human ? humanSize(e.Size, 3) : String(e.Size),
      };
    });
    let format = flags.str('format');
    if (flags.bool('quiet') && format === '') format = '{{.ID}}';
    const def = `table {{.ID}}\t{{${human ? '.CreatedSince' : '.CreatedAt'}}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}`;
    ctx.out(
      render(parseFormat(format, def), rows, {
        ID: 'IMAGE',
        CreatedSince: 'CREATED',
        CreatedAt: 'CREATED AT',
        CreatedBy: 'CREATED BY',
        Size: 'SIZE',
        Comment: 'COMMENT',
      }),
    );
    return 0;
  },
};

export const save: Command = {
  name: 'save',
  usage: 'save [OPTIONS] IMAGE [IMAGE...]',
  description: 'Save one or more images to a tar archive (streamed to STDOUT by default)',
  args: { min: 1 },
  flags: [
    { long: 'output', short: 'o', kind: 'string', help: 'Write to a file, instead of STDOUT' },
    { long: 'platform', kind: 'list', help: 'Save only the given platform(s).' },
  ],
  async run(ctx, flags, args) {
    const output = flags.str('output');
    if (output === '' && ctx.stdout.isTTY === true) {
      throw new StatusError(1, 'cowardly refusing to save to a terminal. Use the -o flag or redirect');
    }
    const client = await ctx.client();
    const res = await client.request('GET', '/images/get', { query: { names: args } });
    await saveStream(ctx, res, output);
    return 0;
  },
};

export const load: Command = {
  name: 'load',
  usage: 'load [OPTIONS]',
  description: 'Load an image from a tar archive or STDIN',
  args: { exact: 0 },
  flags: [
    { long: 'input', short: 'i', kind: 'string', help: 'Read from tar archive file, instead of STDIN' },
    { long: 'platform', kind: 'list', help: 'Load only the given platform(s).' },
    { long: 'quiet', short: 'q', kind: 'bool', help: 'Suppress the load output' },
  ],
  async run(ctx, flags) {
    const input = flags.str('input');
    let body: Readable;
    if (input !== '') {
      try {
        statSync(input);
      } catch (err) {
        throw new StatusError(1, `open ${input}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
      }
      body = createReadStream(input);
    } else {
      if (ctx.stdin.isTTY === true) throw new StatusError(1, 'requested load from stdin, but stdin is empty');
      body = ctx.stdin;
    }
    const client = await ctx.client();
    const quiet = flags.bool('quiet') || ctx.stdout.isTTY !== true;
    const res = await client.request('POST', '/images/load', {
      query: { quiet: quiet || undefined },
      body,
      headers: { 'Content-Type': 'application/x-tar' },
    });
    if ((res.headers['content-type'] ?? '').includes('json')) await showStream(ctx, res);
    else for await (const c of res) ctx.stdout.write(c as Buffer);
    return 0;
  },
};

export const importCmd: Command = {
  name: 'import',
  usage: 'import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]',
  description: 'Import the contents from a tarball to create a filesystem image',
  args: { min: 1, max: 2 },
  flags: [
    { long: 'change', short: 'c', kind: 'list', help: 'Apply Dockerfile instruction to the created image' },
    { long: 'message', short: 'm', kind: 'string', help: 'Set commit message for imported image' },
    { long: 'platform', kind: 'string', help: 'Set platform if server is multi-platform capable' },
  ],
  async run(ctx, flags, args) {
    const [src = '', repoTag] = args;
    let repo: string | undefined;
    let tagName: string | undefined;
    if (repoTag !== undefined) {
      const r = parseReference(repoTag);
      if (r.digest !== undefined) throw new StatusError(1, 'invalid reference: digest not allowed');
      repo = familiarName(r);
      tagName = r.tag;
    }
    let body: Readable | undefined;
    let fromSrc = src;
    if (src === '-') body = ctx.stdin;
    else if (!/^https?:\/\//.test(src)) {
      try {
        statSync(src);
      } catch {
        throw new StatusError(1, `open ${src}: no such file or directory`);
      }
      body = createReadStream(src);
      fromSrc = '-';
    }
    const client = await ctx.client();
    const res = await client.request('POST', '/images/create', {
      query: {
        fromSrc,
        repo,
        tag: tagName,
        message: flags.string('message'),
        changes: flags.list('change'),
        platform: flags.string('platform'),
      },
      ...(body !== undefined ? { body, headers: { 'Content-Type': 'application/x-tar' } } : {}),
    });
    await showStream(ctx, res);
    return 0;
  },
};

export const imagePrune: Command = {
  name: 'prune',
  usage: 'image prune [OPTIONS]',
  description: 'Remove unused images',
  args: { exact: 0 },
  flags: [
    { long: 'all', short: 'a', kind: 'bool', help: 'Remove all unused images, not just dangling ones' },
    { long: 'filter', kind: 'list', type: 'filter', help: 'Provide filter values (e.g. "until=<timestamp>")' },
    { long: 'force', short: 'f', kind: 'bool', help: 'Do not prompt for confirmation' },
  ],
  async run(ctx, flags) {
    const all = flags.bool('all');
    const warning = all
      ? 'WARNING! This will remove all images without at least one container associated to them.'
      : 'WARNING! This will remove all dangling images.';
    if (!flags.bool('force') && !(await confirm(ctx, warning))) return 0;
    const client = await ctx.client();
    const { lines, space } = await pruneImages(client, all, flags.list('filter'));
    if (lines.length > 0) ctx.out(`Deleted Images:\n${lines.join('')}\n`);
    ctx.out(`Total reclaimed space: ${humanSize(space)}\n`);
    return 0;
  },
};

/** POST /images/prune; the lines docker prints for what was removed. */
export async function pruneImages(client: Client, all: boolean, filterArgs: readonly string[]): Promise<{ lines: string[]; space: number }> {
  const filters = filtersOf(filterArgs);
  filters.set('dangling', [all ? 'false' : 'true']);
  const r = await client.json<{ ImagesDeleted?: Array<{ Untagged?: string; Deleted?: string }> | null; SpaceReclaimed?: number }>(
    'POST',
    '/images/prune',
    { query: { filters: encodeFilters(filters) } },
  );
  const lines = (r.ImagesDeleted ?? []).map((d) => (d.Untagged !== undefined && d.Untagged !== '' ? `untagged: ${d.Untagged}\n` : `deleted: ${d.Deleted ?? ''}\n`));
  return { lines, space: r.SpaceReclaimed ?? 0 };
}

