/**
 * `berth build`: sends a build context (a directory as a tar with
 * .dockerignore applied, a tar file, or stdin) to `POST /build` and shows
 * the builder's messages; the exit code of a failed RUN is the command's.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, lstatSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { TarWriter } from '@berth/images';
import { jsonLines } from '../api.js';
import { StatusError } from '../command.js';
import type { Command } from '../command.js';
import type { JsonMessage } from '../progress.js';
import { parseBytes, parseUlimit } from './opts.js';

// ---- .dockerignore, as the docker CLI applies it before sending ----

interface IgnoreRule {
  readonly re: RegExp;
  readonly exclusion: boolean;
}

function cleanRel(p: string): string {
  const parts: string[] = [];
  for (const s of p.replace(/\\/g, '/').split('/')) {
    if (s === '' || s === '.') continue;
    if (s === '..') parts.pop();
    else parts.push(s);
  }
  return parts.join('/');
}

/** A pattern (Go filepath.Match plus `**`) as a RegExp over slash paths. */
function patternRegExp(p: string): RegExp {
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const ch = p[i] ?? '';
    if (ch === '*') {
      if (p[i + 1] === '*') {
        i++;
        if (p[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (ch === '?') re += '[^/]';
    else if (ch === '\\' && i + 1 < p.length) re += `\\${p[++i] ?? ''}`;
    else if (ch === '[') {
      const end = p.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        const cls = p.slice(i + 1, end);
        re += cls.startsWith('!') || cls.startsWith('^') ? `[^${cls.slice(1)}]` : `[${cls}]`;
        i = end;
      }
    } else re += ch.replace(/[.+^${}()|\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function parseIgnore(text: string): IgnoreRule[] {
  const out: IgnoreRule[] = [];
  for (const raw of text.split('\n')) {
    let line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const exclusion = line.startsWith('!');
    if (exclusion) line = line.slice(1).trim();
    const p = cleanRel(line);
    if (p === '') continue;
    out.push({ re: patternRegExp(p), exclusion });
  }
  return out;
}

/** Whether a path (or a directory above it) is excluded: the last matching rule wins. */
export function ignored(rules: readonly IgnoreRule[], path: string): boolean {
  const parts = path.split('/');
  let out = false;
  for (const r of rules) {
    let hit = false;
    for (let n = parts.length; n > 0 && !hit; n--) hit = r.re.test(parts.slice(0, n).join('/'));
    if (hit) out = !r.exclusion;
  }
  return out;
}

/** The context directory as a tar stream (owners 0:0, as the docker CLI sends it). */
function contextTar(dir: string, dockerfile: string, extra: { name: string; data: Buffer } | undefined): Readable {
  let rules: IgnoreRule[] = [];
  try {
    rules = parseIgnore(readFileSync(join(dir, '.dockerignore'), 'utf8'));
  } catch {
    // none
  }
  const keep = new Set(['.dockerignore', dockerfile]);
  const mayReinclude = rules.some((r) => r.exclusion);
  const out = new PassThrough();
  const w = new TarWriter(out);
  const walk = async (rel: string): Promise<void> => {
    const names = readdirSync(rel === '' ? dir : join(dir, rel)).sort();
    for (const name of names) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const host = join(dir, p);
      const st = lstatSync(host);
      if (ignored(rules, p) && !keep.has(p)) {
        if (st.isDirectory() && mayReinclude) await walk(p);
        continue;
      }
      const mtime = Math.floor(st.mtimeMs / 1000);
      const mode = st.mode & 0o7777;
      if (st.isDirectory()) {
        await w.add({ type: 'dir', path: `${p}/`, mode, uid: 0, gid: 0, mtime });
        await walk(p);
      } else if (st.isFile()) {
        await w.add({ type: 'file', path: p, mode, uid: 0, gid: 0, mtime, size: st.size }, createReadStream(host));
      } else if (st.isSymbolicLink()) {
        await w.add({ type: 'symlink', path: p, linkpath: readlinkSync(host), mode, uid: 0, gid: 0, mtime });
      }
    }
  };
  void (async () => {
    await walk('');
    if (extra !== undefined) {
      await w.add({ type: 'file', path: extra.name, mode: 0o600, uid: 0, gid: 0, mtime: Math.floor(Date.now() / 1000), size: extra.data.length }, extra.data);
    }
    await w.finish();
    out.end();
  })().catch((e: unknown) => out.destroy(e instanceof Error ? e : new Error(String(e))));
  return out;
}

/** An archive's first bytes: tar, gzip, bzip2, xz or zstd. */
function looksLikeArchive(b: Buffer): boolean {
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return true;
  if (b.length >= 3 && b.subarray(0, 3).toString('latin1') === 'BZh') return true;
  if (b.length >= 6 && b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return true;
  if (b.length >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return true;
  return b.length >= 262 && b.subarray(257, 262).toString('latin1') === 'ustar';
}

async function readAllStream(s: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

/** A tar holding only one file. */
function singleFileTar(name: string, data: Buffer): Readable {
  const out = new PassThrough();
  const w = new TarWriter(out);
  void (async () => {
    await w.add({ type: 'file', path: name, mode: 0o600, uid: 0, gid: 0, mtime: Math.floor(Date.now() / 1000), size: data.length }, data);
    await w.finish();
    out.end();
  })().catch((e: unknown) => out.destroy(e instanceof Error ? e : new Error(String(e))));
  return out;
}

export const build: Command = {
  name: 'build',
  usage: 'build [OPTIONS] PATH | URL | -',
  description: 'Build an image from a Dockerfile',
  args: { exact: 1 },
  flags: [
    { long: 'build-arg', kind: 'list', help: 'Set build-time variables' },
    { long: 'file', short: 'f', kind: 'string', help: "Name of the Dockerfile (Default is 'PATH/Dockerfile')" },
    { long: 'label', kind: 'list', help: 'Set metadata for an image' },
    { long: 'no-cache', kind: 'bool', help: 'Do not use cache when building the image' },
    { long: 'pull', kind: 'bool', help: 'Always attempt to pull a newer version of the image' },
    { long: 'quiet', short: 'q', kind: 'bool', help: 'Suppress the build output and print image ID on success' },
    { long: 'rm', kind: 'bool', help: 'Remove intermediate containers after a successful build', default: true },
    { long: 'force-rm', kind: 'bool', help: 'Always remove intermediate containers' },
    { long: 'tag', short: 't', kind: 'list', help: "Name and optionally a tag in the 'name:tag' format" },
    { long: 'target', kind: 'string', help: 'Set the target build stage to build.' },
    { long: 'network', kind: 'string', help: 'Set the networking mode for the RUN instructions during build', default: 'default' },
    { long: 'add-host', kind: 'list', help: 'Add a custom host-to-IP mapping (host:ip)' },
    { long: 'shm-size', kind: 'string', help: 'Size of /dev/shm' },
    { long: 'memory', short: 'm', kind: 'string', help: 'Memory limit' },
    { long: 'memory-swap', kind: 'string', help: "Swap limit equal to memory plus swap: '-1' to enable unlimited swap" },
    { long: 'cpu-shares', short: 'c', kind: 'string', help: 'CPU shares (relative weight)' },
    { long: 'cpuset-cpus', kind: 'string', help: 'CPUs in which to allow execution (0-3, 0,1)' },
    { long: 'cpuset-mems', kind: 'string', help: 'MEMs in which to allow execution (0-3, 0,1)' },
    { long: 'cpu-period', kind: 'string', help: 'Limit the CPU CFS (Completely Fair Scheduler) period' },
    { long: 'cpu-quota', kind: 'string', help: 'Limit the CPU CFS (Completely Fair Scheduler) quota' },
    { long: 'cgroup-parent', kind: 'string', help: 'Optional parent cgroup for the container' },
    { long: 'ulimit', kind: 'list', help: 'Ulimit options' },
    { long: 'iidfile', kind: 'string', help: 'Write the image ID to the file' },
  ],
  async run(ctx, flags, args) {
    const src = args[0] ?? '';
    const file = flags.string('file');
    let body: Readable;
    let dockerfile: string | undefined;
    if (src === '-') {
      const data = await readAllStream(ctx.stdin);
      if (looksLikeArchive(data)) {
        body = Readable.from([data]);
        if (file !== undefined && file !== '') dockerfile = file;
      } else {
        if (file !== undefined && file !== '') throw new StatusError(1, 'ambiguous Dockerfile source: both stdin and flag correspond to Dockerfiles');
        dockerfile = `.dockerfile.${randomBytes(10).toString('hex')}`;
        body = singleFileTar(dockerfile, data);
      }
    } else {
      let st;
      try {
        st = statSync(src);
      } catch {
        throw new StatusError(1, `unable to prepare context: path "${src}" not found`);
      }
      if (st.isDirectory()) {
        const dir = resolve(src);
        let extra: { name: string; data: Buffer } | undefined;
        let df = 'Dockerfile';
        if (file === '-') {
          df = `.dockerfile.${randomBytes(10).toString('hex')}`;
          extra = { name: df, data: await readAllStream(ctx.stdin) };
        } else if (file !== undefined && file !== '') {
          const abs = resolve(file);
          const r = relative(dir, abs);
          if (r.startsWith(`..${sep}`) || r === '..' || r.startsWith('/')) {
            df = `.dockerfile.${randomBytes(10).toString('hex')}`;
            extra = { name: df, data: readFileSync(abs) };
          } else df = r.split(sep).join('/');
        }
        try {
          statSync(join(dir, df));
        } catch {
          if (extra === undefined) throw new StatusError(1, `unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat ${join(dir, df)}: no such file or directory`);
        }
        dockerfile = df;
        body = contextTar(dir, df, extra);
      } else {
        body = createReadStream(src);
        if (file !== undefined && file !== '') dockerfile = file;
      }
    }
    const buildArgs: Record<string, string | null> = {};
    for (const a of flags.list('build-arg')) {
      const eq = a.indexOf('=');
      if (eq >= 0) buildArgs[a.slice(0, eq)] = a.slice(eq + 1);
      else buildArgs[a] = process.env[a] ?? null;
    }
    const labels: Record<string, string> = {};
    for (const l of flags.list('label')) {
      const eq = l.indexOf('=');
      labels[eq >= 0 ? l.slice(0, eq) : l] = eq >= 0 ? l.slice(eq + 1) : '';
    }
    const quiet = flags.bool('quiet');
    // A stale ID file never outlives a failed build.
    const iid = flags.string('iidfile');
    if (iid !== undefined && iid !== '') rmSync(iid, { force: true });
    const client = await ctx.client();
    const res = await client.request('POST', '/build', {
      query: {
        t: flags.list('tag'),
        dockerfile,
        buildargs: JSON.stringify(buildArgs),
        labels: JSON.stringify(labels),
        target: flags.string('target'),
        nocache: flags.bool('no-cache') ? '1' : undefined,
        pull: flags.bool('pull') ? '1' : undefined,
        q: quiet ? '1' : undefined,
        rm: flags.bool('rm') ? '1' : '0',
        forcerm: flags.bool('force-rm') ? '1' : undefined,
        networkmode: flags.string('network'),
        extrahosts: flags.list('add-host').length > 0 ? flags.list('add-host').join(',') : undefined,
        shmsize: bytesParam(flags.string('shm-size'), 'shm-size'),
        memory: bytesParam(flags.string('memory'), 'memory'),
        memswap: flags.string('memory-swap') === '-1' ? '-1' : bytesParam(flags.string('memory-swap'), 'memory-swap'),
        cpushares: flags.string('cpu-shares'),
        cpusetcpus: flags.string('cpuset-cpus'),
        cpusetmems: flags.string('cpuset-mems'),
        cpuperiod: flags.string('cpu-period'),
        cpuquota: flags.string('cpu-quota'),
        cgroupparent: flags.string('cgroup-parent'),
        ulimits: flags.list('ulimit').length > 0 ? JSON.stringify(flags.list('ulimit').map(parseUlimit)) : undefined,
      },
      body,
      headers: { 'Content-Type': 'application/x-tar' },
    });
    let id = '';
    for await (const m of jsonLines<JsonMessage>(res)) {
      if (m.error !== undefined || m.errorDetail?.message !== undefined) {
        const code = m.errorDetail?.code;
        throw new StatusError(code !== undefined && code > 0 ? code : 1, m.errorDetail?.message ?? m.error ?? 'unknown error');
      }
      if (m.aux !== undefined) {
        const a = m.aux as { ID?: unknown };
        if (typeof a.ID === 'string') id = a.ID;
        continue;
      }
      if (quiet) continue;
      if (m.stream !== undefined) ctx.out(m.stream);
      else if (m.status !== undefined && m.progressDetail === undefined) ctx.out(`${m.id !== undefined && m.id !== '' ? `${m.id}: ` : ''}${m.status}\n`);
    }
    if (quiet) ctx.out(`${id}\n`);
    if (iid !== undefined && iid !== '' && id !== '') writeFileSync(iid, id);
    return 0;
  },
};

/** A size flag (`512m`, `1g`) as the query's byte count; undefined when not given. */
function bytesParam(value: string | undefined, flag: string): string | undefined {
  return value === undefined || value === '' ? undefined : String(parseBytes(value, flag));
}
