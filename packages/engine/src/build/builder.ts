/**
 * The classic builder: a Dockerfile run step by step on the engine's own
 * machinery, as `docker build` with DOCKER_BUILDKIT=0 expects it.
 *
 * A build keeps one state per stage: the run config, the layers (with their
 * diff IDs) and the history. Instructions that only change the config add a
 * history entry with empty_layer. RUN creates a container from the current
 * state (made an image first), starts it, waits, turns its snapshot's
 * changes into a layer through the Diff service and removes it. COPY, ADD
 * and WORKDIR write into a snapshot prepared on the current top layer and
 * diff it the same way. Every layer step ends in an image (a dangling
 * record), so that it outlives the build as a cache entry.
 *
 * The cache maps (parent state, instruction as expanded, content of the
 * copied files) to the state the step produced; it lives in the engine's
 * SQLite database. Everything a step makes is held by the build's lease
 * until an image record references it: a failed step leaves no image,
 * container or snapshot behind.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdtemp, open, readlink, rm, writeFile } from 'node:fs/promises';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AsyncLocalStorage } from 'node:async_hooks';
import { join, posix } from 'node:path';
import type Database from 'better-sqlite3';
import { openEngineDb } from '../store.js';
import { BerthError, ErrorKind, invalid, isKind, notFound, notImplemented } from '@berth/base';
import { MediaType, TarWriter, decompress, familiarString, parseReference, readTar } from '@berth/images';
import type { ImageDescriptor, TarEntry, TarEntryType, TarWriteEntry } from '@berth/images';
import { SERVICES } from '@berth/supervisor';
import type { Message } from '@berth/supervisor';
import { ContainerFs } from '../containers/archive.js';
import type { ImageConfig } from '../containers/config.js';
import { readRootfsFile } from '../containers/layered.js';
import type { RootfsMount } from '../containers/layered.js';
import type { ContainerService } from '../containers/service.js';
import { SNAPSHOTTER } from '../engine.js';
import type { Engine } from '../engine.js';
import { Lease, contentLabels, setContentLabels, writeContent } from '../images/_supervisor.js';
import type { AuthConfig } from '../images/_auth.js';
import { DANGLING_PREFIX, ImageService } from '../images/service.js';
import type { ImageDetails } from '../images/service.js';
import type { ResolvedImage } from '../images/types.js';
import { cleanPath, contextFiles, parseDockerignore } from './dockerignore.js';
import { BuildContext } from './context.js';
import type { ContextEntry } from './dockerignore.js';
import { BuildArgs, StageScope } from './expand.js';
import { DockerfileError, chompHeredoc, parseDockerfile, parseHeredocWord, parseTrigger } from './parser.js';
import type { AddInstruction, CopyInstruction, Instruction } from './parser.js';
import { planBuild, resolveStageRef } from './stages.js';
import { HostNames, sourcesHash, tarSourceHash } from './sourcehash.js';
import { goDuration, goQuote, goQuoteList, goQuoteRune } from './gofmt.js';
import type { BuildPlan } from './stages.js';

// ---------------------------------------------------------------- public types

export interface BuildOptions {
  /** The Dockerfile's path inside the context (default `Dockerfile`). */
  readonly dockerfile?: string;
  /** Names to tag the result with (`x`, `x:y`). */
  readonly tags?: readonly string[];
  readonly buildArgs?: Readonly<Record<string, string | undefined>>;
  /** Labels added to the final image (a last LABEL step). */
  readonly labels?: Readonly<Record<string, string>>;
  readonly target?: string;
  readonly noCache?: boolean;
  /** Pull base images (and COPY --from images) even when they are here. */
  readonly pull?: boolean;
  /**
   * Host config fields for RUN steps' containers (NetworkMode, ExtraHosts,
   * ShmSize, Memory, CPU, Ulimits…), as a container create body has them;
   * without NetworkMode, RUN steps have no network.
   */
  readonly runHostConfig?: Readonly<Record<string, unknown>>;
  /** Keep the containers of successful RUN steps (`rm=0`); a failed step's container never stays. */
  readonly keepContainers?: boolean;
  /** Only the result's ID and errors are reported. */
  readonly quiet?: boolean;
  /** Credentials for pulling base images, by registry. */
  readonly registryAuth?: (domain: string) => AuthConfig;
  readonly signal?: AbortSignal;
}

/** One message of the build's JSON stream, as Docker writes them. */
export interface BuildMessage {
  stream?: string;
  status?: string;
  id?: string;
  progress?: string;
  progressDetail?: { current?: number; total?: number };
  aux?: Record<string, unknown>;
  errorDetail?: { message: string; code?: number };
  error?: string;
}

export type BuildEmit = (m: BuildMessage) => void;

export interface BuildResult {
  /** `sha256:…` of the image's config. */
  readonly id: string;
  /** The familiar names it was tagged with. */
  readonly tags: readonly string[];
}

/** A step that failed, with where it was and (for RUN) the command's exit code. */
export class BuildStepError extends BerthError {
  constructor(message: string, readonly exitCode: number | undefined, cause?: unknown) {
    super(cause instanceof BerthError ? cause.kind : ErrorKind.InvalidArgument, message, cause === undefined ? {} : { cause });
  }
}

// ---------------------------------------------------------------- the cache

const CACHE_SCHEMA = `
CREATE TABLE IF NOT EXISTS build_cache (
  key     TEXT PRIMARY KEY,
  value   TEXT NOT NULL,
  created INTEGER NOT NULL
) STRICT;
`;

/** Step key -> the state it produced (JSON), in the engine's database. */
export class BuildCache {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = openEngineDb(path, CACHE_SCHEMA, 'the build cache');
  }

  get(key: string): string | undefined {
    const r = this.db.prepare('SELECT value FROM build_cache WHERE key = ?').get(key) as { value: string } | undefined;
    return r?.value;
  }

  set(key: string, value: string): void {
    this.db.prepare('INSERT INTO build_cache (key, value, created) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, created = excluded.created')
      .run(key, value, Date.now());
  }

  /** Forget every step; the number of entries dropped. */
  clear(): number {
    return this.db.prepare('DELETE FROM build_cache').run().changes;
  }

  close(): void {
    this.db.close();
  }
}

// ---------------------------------------------------------------- state

interface MediaTypes {
  readonly manifest: string;
  readonly config: string;
  readonly layer: string;
}

interface Desc {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

type History = Record<string, unknown>;

/** What a stage has built so far: the image it would be. */
interface State {
  platform: { architecture: string; os: string; variant?: string };
  author?: string;
  run: ImageConfig;
  diffIds: string[];
  layers: Desc[];
  history: History[];
  types: MediaTypes;
  /** An existing image that is exactly this state (the base, a materialised step). */
  imageId?: string;
}

const ROOT_LABEL = 'containerd.io/gc.root';
const UNCOMPRESSED_LABEL = 'containerd.io/uncompressed';
const GC_REF_CONTENT = 'containerd.io/gc.ref.content.';
const SNAPSHOT_RESOURCE = `snapshots/${SNAPSHOTTER}`;
const DEFAULT_SHELL = ['/bin/sh', '-c'];

const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const short = (id: string): string => id.replace(/^sha256:/, '').slice(0, 12);
const errMsg = (e: unknown): string => (e instanceof Error ? e.message : String(e));

function mediaTypesFor(manifest: string): MediaTypes {
  if (manifest === MediaType.DockerManifest) {
    return { manifest: MediaType.DockerManifest, config: MediaType.DockerConfig, layer: MediaType.DockerLayerGzip };
  }
  return { manifest: MediaType.OciManifest, config: MediaType.OciConfig, layer: MediaType.OciLayerGzip };
}

/** The image config JSON of a state: `created` is its last history entry's. */
function configOf(s: State): Record<string, unknown> {
  const last = s.history[s.history.length - 1];
  const created = typeof last?.['created'] === 'string' ? last['created'] : '1970-01-01T00:00:00Z';
  return {
    created,
    ...(s.author === undefined ? {} : { author: s.author }),
    architecture: s.platform.architecture,
    ...(s.platform.variant === undefined || s.platform.variant === '' ? {} : { variant: s.platform.variant }),
    os: s.platform.os,
    config: s.run,
    rootfs: { type: 'layers', diff_ids: s.diffIds },
    history: s.history,
  };
}

const configBytesOf = (s: State): Buffer => Buffer.from(JSON.stringify(configOf(s)));
const idOf = (s: State): string => s.imageId ?? sha256(configBytesOf(s));

function cloneState(s: State): State {
  const c = structuredClone(s);
  delete c.imageId;
  return c;
}

/** Chain IDs of a list of diff IDs (the snapshots an unpacked image has). */
function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : sha256(`${prev} ${d}`));
  }
  return out;
}

/** Go's `%q` of a []string, as Docker's history shows JSON-form commands. */

// ---------------------------------------------------------------- files to copy

/** One entry of the tar a COPY/ADD extracts at "/". */
interface CopyEntry {
  readonly header: TarWriteEntry;
  /** The file's bytes, for files. */
  readonly body?: () => AsyncIterable<Uint8Array>;
}

const GLOB_CHARS = /[*?[\\]/;

/** A Go filepath.Match pattern over slash-separated paths as a RegExp. */
function globRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] ?? '';
    if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '\\' && i + 1 < pattern.length) re += `\\${pattern[++i] ?? ''}`;
    else if (ch === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let cls = pattern.slice(i + 1, end);
      if (cls.startsWith('^')) cls = `!${cls.slice(1)}`;
      re += cls.startsWith('!') ? `[^${cls.slice(1).replace(/\\/g, '\\\\')}]` : `[${cls.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += ch.replace(/[.+^${}()|\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** What a `--chown` names, as numbers, from the rootfs' /etc/passwd and /etc/group. */
function resolveChown(spec: string, mounts: readonly RootfsMount[]): { uid: number; gid: number } {
  const [user = '', group] = spec.split(':', 2);
  const lookup = (file: string, name: string, what: string): { id: number; gid?: number } => {
    if (/^\d+$/.test(name)) return { id: Number(name) };
    const text = readRootfsFile(mounts, file);
    for (const line of (text ?? '').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f[2] !== undefined) {
        return { id: Number(f[2]), ...(f[3] !== undefined && /^\d+$/.test(f[3]) ? { gid: Number(f[3]) } : {}) };
      }
    }
    throw invalid(`unable to convert uid/gid chown string to host mapping: can't find ${what} ${name}: no matching entries in ${what === 'uid' ? 'passwd' : 'group'} file`);
  };
  const u = lookup('/etc/passwd', user, 'uid');
  if (group === undefined || group === '') return { uid: u.id, gid: /^\d+$/.test(user) ? u.id : (u.gid ?? u.id) };
  return { uid: u.id, gid: lookup('/etc/group', group, 'gid').id };
}

function parseChmod(spec: string): number {
  if (!/^[0-7]{1,4}$/.test(spec)) throw invalid(`invalid chmod parameter ${JSON.stringify(spec)}: only octal modes are supported`);
  return parseInt(spec, 8);
}

const TAR_MAGIC_OFFSET = 257;

/** Whether a file looks like an archive ADD extracts (tar, gzip, zstd). */
async function isArchive(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(TAR_MAGIC_OFFSET + 8);
    const { bytesRead } = await fh.read(b, 0, b.length, 0);
    if (bytesRead >= 2 && b[0] === 0x1f && b[1] === 0x8b) return true;
    if (bytesRead >= 4 && b.readUInt32BE(0) === 0x28b52ffd) return true;
    return bytesRead >= TAR_MAGIC_OFFSET + 5 && b.subarray(TAR_MAGIC_OFFSET, TAR_MAGIC_OFFSET + 5).toString('latin1') === 'ustar';
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------- the builder

interface StepContext {
  readonly n: number;
  readonly total: number;
  readonly inst: Instruction;
}

interface StageResult {
  state: State;
  scope: StageScope;
}

export class Builder {
  constructor(
    private readonly engine: Engine,
    private readonly containers: ContainerService,
    private readonly images: ImageService,
    private readonly cache: BuildCache,
  ) {}

  private get client(): Engine['client'] {
    return this.engine.client;
  }

  private get tempParent(): string {
    return join(this.engine.paths.dataRoot, 'tmp');
  }

  /** Runs a build from a context tar (plain or compressed); the messages go to `emit`. */
  async build(context: AsyncIterable<Uint8Array>, opts: BuildOptions, emit: BuildEmit): Promise<BuildResult> {
    const tags = (opts.tags ?? []).filter((t) => t !== '').map((t) => {
      try {
        return ImageService.tagName(t, undefined);
      } catch (e) {
        throw invalid(`invalid reference format: ${t}: ${errMsg(e)}`, e);
      }
    });
    const dir = await mkdtemp(join(this.tempParent, 'build-'));
    const run = new BuildRun(this, opts, opts.quiet === true ? (m) => { if (m.stream === undefined && m.status === undefined) emit(m); } : emit);
    try {
      // The context goes to one file first; its files are written out only if a step needs them.
      const spool = join(dir, 'context.tar');
      await pipeline(Readable.from(completeTar(context)), createWriteStream(spool, { mode: 0o600 }));
      const dockerfile = cleanPath(opts.dockerfile === undefined || opts.dockerfile === '' ? 'Dockerfile' : opts.dockerfile);
      const ctx = await BuildContext.open(spool, join(dir, 'context'), [dockerfile, '.dockerignore']);
      const id = await run.run(ctx);
      const named: string[] = [];
      for (const t of tags) {
        const found = await this.images.find(id);
        const target = found.image.records[0]?.target;
        if (target === undefined) throw invalid(`the built image ${id} has no record to tag`);
        await this.images.setName(t, target, { tagged: true });
        const familiar = familiarString(parseReference(t));
        named.push(familiar);
        this.engine.events.emit('image', 'tag', id, { name: familiar });
      }
      emit({ aux: { ID: id } });
      // Quiet: the ID is the only output line (the docker CLI prints the stream it gets).
      if (opts.quiet === true) emit({ stream: `${id}\n` });
      else {
        emit({ stream: `Successfully built ${short(id)}\n` });
        for (const t of named) emit({ stream: `Successfully tagged ${t}\n` });
      }
      return { id, tags: named };
    } finally {
      await run.close();
      await rm(dir, { recursive: true, force: true });
    }
  }

  // ---- used by BuildRun ----

  /** @internal */
  get internals(): { engine: Engine; containers: ContainerService; images: ImageService; cache: BuildCache } {
    return { engine: this.engine, containers: this.containers, images: this.images, cache: this.cache };
  }

  /** @internal The supervisor client. */
  get supervisor(): Engine['client'] {
    return this.client;
  }

  /** @internal */
  get temp(): string {
    return this.tempParent;
  }
}

/** One build: its context, plan, lease and stage states. */
class BuildRun {
  private lease: Promise<Lease> | undefined;
  private readonly stages = new Map<number, StageResult>();
  private plan!: BuildPlan;
  private escape: '\\' | '`' = '\\';
  private buildArgs!: BuildArgs;
  private ctx!: BuildContext;
  private ctxEntries = new Map<string, ContextEntry['type']>();
  private ctxList: string[] = [];
  private filename = 'Dockerfile';
  private readonly names = new HostNames();
  /** Base images by name, each looked up (or pulled) once per build. */
  private readonly bases = new Map<string, Promise<ResolvedImage>>();

  /** Which stage the running code works for: its messages go to that stage's output. */
  private readonly routes = new AsyncLocalStorage<number>();
  private output: OrderedOutput | undefined;
  /** Aborted when the client goes or a stage fails (the other stages stop too). */
  private readonly stop = new AbortController();

  constructor(
    private readonly b: Builder,
    private readonly opts: BuildOptions,
    private readonly emit: BuildEmit,
  ) {
    const outer = opts.signal;
    if (outer?.aborted === true) this.stop.abort();
    else outer?.addEventListener('abort', () => this.stop.abort(), { once: true });
  }

  private get signal(): AbortSignal {
    return this.stop.signal;
  }

  private get engine(): Engine { return this.b.internals.engine; }
  private get containers(): ContainerService { return this.b.internals.containers; }
  private get images(): ImageService { return this.b.internals.images; }
  private get cache(): BuildCache { return this.b.internals.cache; }
  private get client(): Engine['client'] { return this.b.supervisor; }

  private out(s: string): void {
    this.send({ stream: s });
  }

  /** A message to the client, in the order of the stages whose work made it. */
  private send(m: BuildMessage): void {
    const stage = this.routes.getStore();
    if (stage === undefined || this.output === undefined) this.emit(m);
    else this.output.push(stage, m);
  }

  private checkAbort(): void {
    if (this.signal.aborted) throw invalid('the build was cancelled');
  }

  private theLease(): Promise<Lease> {
    // One lease for the whole build, whichever stage asks first.
    this.lease ??= Lease.create(this.client, 'build');
    return this.lease;
  }

  async close(): Promise<void> {
    const lease = await this.lease?.catch(() => undefined);
    await lease?.end();
  }

  /** Runs the whole build; the final image's ID. */
  async run(ctx: BuildContext): Promise<string> {
    this.ctx = ctx;
    const dockerfile = cleanPath(this.opts.dockerfile === undefined || this.opts.dockerfile === '' ? 'Dockerfile' : this.opts.dockerfile);
    if (dockerfile.startsWith('../') || dockerfile === '..') throw invalid(`the Dockerfile (${dockerfile}) must be within the build context`);
    this.filename = posix.basename(dockerfile);
    const text = (await ctx.read(dockerfile))?.toString('utf8');
    if (text === undefined) throw invalid(`Cannot locate specified Dockerfile: ${dockerfile}`);
    const ignoreText = await ctx.read('.dockerignore');
    const ignore = ignoreText === undefined ? [] : parseDockerignore(ignoreText.toString('utf8'));
    const entries = await contextFiles(ctx.tree(), ignore, { dockerfile });
    for (const e of entries) {
      if (e.buildOnly === true) continue;
      this.ctxEntries.set(e.path, e.type);
    }
    this.ctxList = [...this.ctxEntries.keys()].sort();

    const df = parseDockerfile(text, { filename: this.filename });
    this.escape = df.directives.escape;
    this.buildArgs = new BuildArgs(this.opts.buildArgs ?? {});
    this.plan = planBuild(df, {
      ...(this.opts.target === undefined || this.opts.target === '' ? {} : { target: this.opts.target }),
      buildArgs: this.opts.buildArgs ?? {},
      filename: this.filename,
    });
    const labels = Object.entries(this.opts.labels ?? {});
    // Step numbers as a one-by-one build gives them: the needed stages in order.
    const firstStep = new Map<number, number>();
    let steps = 0;
    for (const i of this.plan.needed) {
      firstStep.set(i, steps + 1);
      steps += 1 + (this.plan.graph.stages[i]?.instructions.length ?? 0);
    }
    const total = steps + (labels.length > 0 ? 1 : 0);
    // Stages run as soon as the stages they need are built, independent ones side by side;
    // their output reaches the client stage after stage, as a one-by-one build writes it.
    const output = new OrderedOutput(this.plan.needed, this.emit);
    this.output = output;
    const built = new Map<number, Promise<void>>();
    let failure: { error: unknown } | undefined;
    for (const i of this.plan.needed) {
      const deps = this.plan.stages[i]?.dependsOn ?? [];
      const p = (async () => {
        await Promise.all(deps.map((d) => built.get(d)));
        await this.routes.run(i, () => this.buildStage(i, firstStep.get(i) ?? 1, total));
        output.finish(i);
      })();
      p.catch((e: unknown) => {
        if (failure !== undefined) return;
        failure = { error: e };
        this.stop.abort();
      });
      built.set(i, p);
    }
    await Promise.allSettled(built.values());
    output.flush();
    this.output = undefined;
    if (failure !== undefined) throw failure.error;
    const final = this.stages.get(this.plan.target);
    if (final === undefined) throw invalid('the target stage was not built');
    if (labels.length > 0) {
      const n = steps + 1;
      const line = `LABEL ${labels.map(([k, v]) => `${JSON.stringify(k)}=${JSON.stringify(v)}`).join(' ')}`;
      this.out(`Step ${n}/${total} : ${line}\n`);
      final.state = await this.step(this.plan.target, final, {
        n, total, inst: { kind: 'LABEL', pairs: labels.map(([key, value]) => ({ key, value })), startLine: 0, endLine: 0, original: line },
      });
    }
    const warning = this.buildArgs.warning();
    if (warning !== undefined) this.out(`${warning}\n`);
    const img = await this.materialize(final.state);
    return img.id;
  }

  /** One stage: its FROM, the base image's ONBUILD triggers, its instructions; step numbers from `first`. */
  private async buildStage(i: number, first: number, total: number): Promise<void> {
    const stage = this.plan.graph.stages[i];
    if (stage === undefined) return;
    this.checkAbort();
    let n = first;
    const from = stage.from;
    this.out(`Step ${n}/${total} : ${from.original}\n`);
    const r = await this.from(i, { n, total, inst: from });
    this.stages.set(i, r);
    const triggers = r.state.run.OnBuild ?? [];
    if (triggers.length > 0) {
      this.out(`# Executing ${triggers.length} build trigger${triggers.length === 1 ? '' : 's'}\n`);
      r.state = cloneState(r.state);
      delete r.state.run.OnBuild;
      for (const t of triggers) {
        let inst: Instruction;
        try {
          inst = parseTrigger(t, this.escape);
        } catch (e) {
          throw this.stepError({ n, total, inst: from }, e);
        }
        r.state = await this.step(i, r, { n, total, inst: { ...inst, startLine: from.startLine, endLine: from.endLine } });
      }
    }
    if (r.state.imageId !== undefined || triggers.length === 0) this.out(` ---> ${short(idOf(r.state))}\n`);
    for (const inst of stage.instructions) {
      this.checkAbort();
      n++;
      this.out(`Step ${n}/${total} : ${inst.original}\n`);
      r.state = await this.step(i, r, { n, total, inst });
    }
  }

  // ---- errors ----

  private where(s: StepContext): string {
    return s.inst.startLine > 0 ? `step ${s.n}/${s.total}, ${this.filename}:${s.inst.startLine}` : `step ${s.n}/${s.total}`;
  }

  private stepError(s: StepContext, e: unknown): BuildStepError {
    if (e instanceof BuildStepError) return e;
    const msg = e instanceof DockerfileError ? e.detail : errMsg(e);
    return new BuildStepError(`${msg} (${this.where(s)})`, undefined, e);
  }

  // ---- FROM ----

  private async from(index: number, s: StepContext): Promise<StageResult> {
    const plan = this.plan.stages[index];
    if (plan === undefined) throw invalid(`no stage ${index}`);
    try {
      if (plan.base.kind === 'stage') {
        const prev = this.stages.get(plan.base.index);
        if (prev === undefined) throw invalid(`stage ${plan.base.index} was not built`);
        return { state: { ...cloneState(prev.state), ...(prev.state.imageId === undefined ? {} : { imageId: prev.state.imageId }) }, scope: prev.scope.fork() };
      }
      let state: State;
      if (plan.base.kind === 'scratch') {
        const p = this.images.platform;
        state = {
          platform: { architecture: p.architecture, os: p.os, ...(p.variant === undefined ? {} : { variant: p.variant }) },
          run: {}, diffIds: [], layers: [], history: [],
          types: mediaTypesFor(MediaType.OciManifest),
        };
      } else {
        const img = await this.baseImage(plan.base.name);
        state = await this.stateOfImage(img.id);
      }
      const scope = new StageScope(this.buildArgs, this.plan.globals, state.run.Env ?? [], this.escape);
      return { state, scope };
    } catch (e) {
      throw this.stepError(s, e);
    }
  }

  /** A base image, pulled when it is not here (or always, once per build, with `pull`). */
  private baseImage(name: string): Promise<ResolvedImage> {
    let p = this.bases.get(name);
    if (p === undefined) {
      p = this.findOrPull(name);
      this.bases.set(name, p);
      p.catch(() => this.bases.delete(name));
    }
    return p;
  }

  private async findOrPull(name: string): Promise<ResolvedImage> {
    if (this.opts.pull !== true) {
      try {
        const img = await this.images.resolve(name);
        await this.images.ensureUnpacked(img);
        return img;
      } catch (e) {
        if (!isKind(e, ErrorKind.NotFound)) throw e;
      }
    }
    const ref = parseReference(name);
    const auth = this.opts.registryAuth?.(ref.domain) ?? {};
    const img = await this.images.pull(name, { auth, signal: this.signal }, (m) => this.send(m), () => undefined);
    await this.images.ensureUnpacked(img);
    return img;
  }

  private async stateOfImage(id: string): Promise<State> {
    const d: ImageDetails = (await this.images.find(id)).image.details;
    const c = d.config;
    const history: History[] = c.history.length > 0
      ? c.history.map((h) => ({ ...h }))
      : c.diffIds.map(() => (c.created === undefined ? {} : { created: c.created }));
    return {
      platform: { architecture: c.architecture, os: c.os, ...(c.variant === undefined ? {} : { variant: c.variant }) },
      ...(c.author === undefined || c.author === '' ? {} : { author: c.author }),
      run: structuredClone(c.config) as ImageConfig,
      diffIds: [...c.diffIds],
      layers: d.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
      history,
      types: mediaTypesFor(d.manifest.mediaType),
      imageId: id,
    };
  }

  // ---- one instruction ----

  private shellOf(st: State): string[] {
    return st.run.Shell !== undefined && st.run.Shell.length > 0 ? [...st.run.Shell] : [...DEFAULT_SHELL];
  }

  private nop(st: State, text: string): string {
    return `${this.shellOf(st).join(' ')} #(nop) ${text}`;
  }

  private async step(stageIndex: number, r: StageResult, s: StepContext): Promise<State> {
    try {
      return await this.stepInner(stageIndex, r, s);
    } catch (e) {
      throw this.stepError(s, e);
    }
  }

  private async stepInner(stageIndex: number, r: StageResult, s: StepContext): Promise<State> {
    const parent = r.state;
    const inst = r.scope.apply(s.inst);
    const next = cloneState(parent);
    const cfg = next.run;
    const meta = async (createdBy: string, key: unknown): Promise<State> => {
      next.history.push({ created: new Date().toISOString(), created_by: createdBy, empty_layer: true });
      return this.cached(parent, { createdBy, key }, async () => next);
    };
    switch (inst.kind) {
      case 'FROM':
        throw invalid('FROM is not allowed here');
      case 'ARG': {
        const text = inst.args.map((a) => (a.default === undefined ? a.name : `${a.name}=${a.default}`)).join(' ');
        return meta(this.nop(parent, ` ARG ${text}`), r.scope.runArgs());
      }
      case 'ENV': {
        const env = [...(cfg.Env ?? [])];
        for (const p of inst.pairs) {
          const i = env.findIndex((e) => e.split('=', 1)[0] === p.key);
          if (i >= 0) env[i] = `${p.key}=${p.value}`;
          else env.push(`${p.key}=${p.value}`);
        }
        cfg.Env = env;
        return meta(this.nop(parent, ` ENV ${inst.pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`), cfg.Env);
      }
      case 'LABEL': {
        cfg.Labels = { ...cfg.Labels };
        for (const p of inst.pairs) cfg.Labels[p.key] = p.value;
        return meta(this.nop(parent, ` LABEL ${inst.pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`), cfg.Labels);
      }
      case 'MAINTAINER':
        next.author = inst.maintainer;
        return meta(this.nop(parent, ` MAINTAINER ${inst.maintainer}`), inst.maintainer);
      case 'EXPOSE': {
        cfg.ExposedPorts = { ...cfg.ExposedPorts };
        const ports: string[] = [];
        for (const p of inst.ports) {
          const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(p);
          if (m === null) throw invalid(`invalid containerPort: ${p}`);
          const lo = Number(m[1]);
          const hi = m[2] === undefined ? lo : Number(m[2]);
          for (let port = lo; port <= hi; port++) {
            const k = `${port}/${(m[3] ?? 'tcp').toLowerCase()}`;
            cfg.ExposedPorts[k] = {};
            ports.push(k);
          }
        }
        return meta(this.nop(parent, ` EXPOSE ${ports.join(' ')}`), ports);
      }
      case 'CMD': {
        cfg.Cmd = inst.command.json ? [...inst.command.args] : [...this.shellOf(parent), inst.command.args.join(' ')];
        if (!inst.command.json) cfg.ArgsEscaped = true;
        else delete cfg.ArgsEscaped;
        return meta(this.nop(parent, ` CMD ${goQuoteList(cfg.Cmd)}`), cfg.Cmd);
      }
      case 'ENTRYPOINT': {
        cfg.Entrypoint = inst.command.json ? [...inst.command.args] : [...this.shellOf(parent), inst.command.args.join(' ')];
        // An ENTRYPOINT resets a CMD set by the base image, not one set in this stage.
        if (!this.cmdSetInStage(stageIndex, s)) delete cfg.Cmd;
        return meta(this.nop(parent, ` ENTRYPOINT ${goQuoteList(cfg.Entrypoint)}`), [cfg.Entrypoint, cfg.Cmd ?? null]);
      }
      case 'USER':
        if (inst.user === '') throw invalid('USER requires exactly one argument');
        cfg.User = inst.user;
        return meta(this.nop(parent, ` USER ${inst.user}`), inst.user);
      case 'VOLUME': {
        cfg.Volumes = { ...cfg.Volumes };
        for (const p of inst.paths) {
          if (p.trim() === '') throw invalid('VOLUME specified can not be an empty string');
          cfg.Volumes[p] = {};
        }
        return meta(this.nop(parent, ` VOLUME ${goQuoteList(inst.paths)}`), inst.paths);
      }
      case 'STOPSIGNAL':
        cfg.StopSignal = inst.signal;
        return meta(this.nop(parent, ` STOPSIGNAL ${inst.signal}`), inst.signal);
      case 'SHELL':
        cfg.Shell = [...inst.shell];
        return meta(this.nop(parent, ` SHELL ${goQuoteList(inst.shell)}`), inst.shell);
      case 'ONBUILD':
        cfg.OnBuild = [...(cfg.OnBuild ?? []), inst.expression];
        return meta(this.nop(parent, ` ONBUILD ${inst.expression}`), inst.expression);
      case 'HEALTHCHECK': {
        const hc: Record<string, unknown> = { Test: [...inst.test] };
        if (inst.interval > 0) hc['Interval'] = inst.interval;
        if (inst.timeout > 0) hc['Timeout'] = inst.timeout;
        if (inst.startPeriod > 0) hc['StartPeriod'] = inst.startPeriod;
        if (inst.startInterval > 0) hc['StartInterval'] = inst.startInterval;
        if (inst.retries > 0) hc['Retries'] = inst.retries;
        cfg.Healthcheck = hc as NonNullable<ImageConfig['Healthcheck']>;
        // Go's %q of the HealthConfig struct, as dockerd writes it.
        const durations = [inst.interval, inst.timeout, inst.startPeriod, inst.startInterval].map((d) => goQuote(goDuration(d)));
        return meta(this.nop(parent, ` HEALTHCHECK &{${goQuoteList(inst.test)} ${durations.join(' ')} ${goQuoteRune(inst.retries)}}`), hc);
      }
      case 'WORKDIR': {
        const path = posix.resolve(cfg.WorkingDir === undefined || cfg.WorkingDir === '' ? '/' : cfg.WorkingDir, inst.path);
        cfg.WorkingDir = path;
        const createdBy = this.nop(parent, `WORKDIR ${path}`);
        return this.cached(parent, { createdBy }, async () => this.workdir(parent, next, path, createdBy));
      }
      case 'RUN':
        return this.runStep(parent, next, r.scope, inst, s);
      case 'COPY':
      case 'ADD':
        return this.copyStep(stageIndex, parent, next, inst);
    }
  }

  /** Whether a CMD came before the instruction in its own stage. */
  private cmdSetInStage(stageIndex: number, s: StepContext): boolean {
    const stage = this.plan.graph.stages[stageIndex];
    for (const i of stage?.instructions ?? []) {
      if (i === s.inst) return false;
      if (i.kind === 'CMD') return true;
    }
    return false;
  }

  // ---- the cache ----

  /**
   * A step through the cache: the state it made before when its parent and
   * key match (and the image it made still exists), else `make()`'s.
   */
  private async cached(parent: State, key: unknown, make: () => Promise<State>): Promise<State> {
    const k = sha256(`${idOf(parent)}\n${JSON.stringify(key)}`);
    if (this.opts.noCache !== true) {
      const hit = this.cache.get(k);
      if (hit !== undefined) {
        const v = JSON.parse(hit) as { state: State; image?: string };
        let ok = true;
        if (v.image !== undefined) {
          try {
            await this.images.find(v.image);
          } catch {
            ok = false;
          }
        }
        if (ok) {
          this.out(' ---> Using cache\n');
          const st = v.state;
          if (v.image !== undefined) st.imageId = v.image;
          this.out(` ---> ${short(idOf(st))}\n`);
          return st;
        }
      }
    }
    const made = await make();
    const plain = cloneState(made);
    this.cache.set(k, JSON.stringify({ state: plain, ...(made.imageId === undefined ? {} : { image: made.imageId }) }));
    this.out(` ---> ${short(idOf(made))}\n`);
    return made;
  }

  // ---- images and layers ----

  /** The state as an image (config, manifest, unpacked layers, a dangling record). */
  private async materialize(st: State): Promise<{ id: string; chainId: string | undefined }> {
    const chain = chainIds(st.diffIds);
    const top = chain[chain.length - 1];
    if (st.imageId !== undefined) return { id: st.imageId, chainId: top };
    const bytes = configBytesOf(st);
    const id = sha256(bytes);
    try {
      await this.images.find(id);
      st.imageId = id;
      return { id, chainId: top };
    } catch (e) {
      if (!isKind(e, ErrorKind.NotFound)) throw e;
    }
    const lease = await this.theLease();
    await lease.add('content', id);
    await writeContent(this.client, bytes, { expected: id });
    const configDesc: ImageDescriptor = { mediaType: st.types.config, digest: id, size: bytes.length };
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: st.types.manifest,
      config: { mediaType: configDesc.mediaType, digest: configDesc.digest, size: configDesc.size },
      layers: st.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    }));
    const manifestDigest = sha256(manifest);
    const refs: Record<string, string> = { [`${GC_REF_CONTENT}config`]: id };
    for (const [i, l] of st.layers.entries()) refs[`${GC_REF_CONTENT}l.${i}`] = l.digest;
    await lease.add('content', manifestDigest);
    await writeContent(this.client, manifest, { expected: manifestDigest, labels: refs });
    const target: ImageDescriptor = { mediaType: st.types.manifest, digest: manifestDigest, size: manifest.length };
    const details = await this.images.reader.details(target);
    await this.images.unpack(details, lease);
    await this.images.setName(`${DANGLING_PREFIX}${manifestDigest}`, target, { intermediate: true });
    st.imageId = id;
    return { id, chainId: top };
  }

  /** Makes sure the state's top snapshot exists (an image made of it otherwise). */
  private async ensureChain(st: State): Promise<string | undefined> {
    const chain = chainIds(st.diffIds);
    const top = chain[chain.length - 1];
    if (top === undefined) return undefined;
    try {
      await this.client.call(SERVICES.snapshots, 'Stat', { snapshotter: SNAPSHOTTER, key: top });
      return top;
    } catch {
      return (await this.materialize(st)).chainId;
    }
  }

  /** The changes of the active snapshot `key` over `parent` as a layer blob. */
  private async diff(parent: string | undefined, key: string, mediaType: string): Promise<{ desc: Desc; diffId: string }> {
    const lease = await this.theLease();
    const viewKey = `build-view-${randomBytes(8).toString('hex')}`;
    await lease.add(SNAPSHOT_RESOURCE, viewKey);
    let viewMade = false;
    let rooted: string | undefined;
    try {
      const view = await this.client.call(SERVICES.snapshots, 'View', { snapshotter: SNAPSHOTTER, key: viewKey, parent: parent ?? '', labels: {} });
      viewMade = true;
      const mine = await this.client.call(SERVICES.snapshots, 'Mounts', { snapshotter: SNAPSHOTTER, key });
      const res = await this.client.call(SERVICES.diff, 'Diff', {
        left: view['mounts'] ?? [],
        right: mine['mounts'] ?? [],
        media_type: mediaType,
        ref: `build-${randomBytes(8).toString('hex')}`,
        labels: { [ROOT_LABEL]: new Date().toISOString() },
      }, { timeoutMs: 60 * 60_000 });
      const desc = res['diff'] as Message | undefined;
      const digest = typeof desc?.['digest'] === 'string' ? desc['digest'] : '';
      if (digest === '') throw invalid('the diff service answered without a layer digest');
      rooted = digest;
      await lease.add('content', digest);
      const diffId = (await contentLabels(this.client, digest))[UNCOMPRESSED_LABEL];
      if (diffId === undefined || diffId === '') throw invalid(`layer ${digest} has no ${UNCOMPRESSED_LABEL} label naming its diff ID`);
      return { desc: { mediaType, digest, size: Number(desc?.['size'] ?? 0) }, diffId };
    } finally {
      if (rooted !== undefined) await setContentLabels(this.client, rooted, { [ROOT_LABEL]: '' }).catch(() => undefined);
      if (viewMade) await this.client.call(SERVICES.snapshots, 'Remove', { snapshotter: SNAPSHOTTER, key: viewKey }).catch(() => undefined);
    }
  }

  /** `next` with one more layer and its history entry, made an image. */
  private async withLayer(next: State, layer: { desc: Desc; diffId: string }, createdBy: string): Promise<State> {
    next.layers.push(layer.desc);
    next.diffIds.push(layer.diffId);
    next.history.push({ created: new Date().toISOString(), created_by: createdBy });
    await this.materialize(next);
    return next;
  }

  /**
   * Keeps the active snapshot `key`, whose changes over `parent`'s top are
   * `layer`, as the committed snapshot of the new chain: the image made of
   * the step then finds its layer unpacked, instead of extracting the layer
   * it was just made from. False when that chain is already there (the
   * active snapshot is then still to be removed).
   */
  private async keepAsChain(parent: State, layer: { diffId: string }, key: string): Promise<boolean> {
    const chain = chainIds([...parent.diffIds, layer.diffId]);
    const name = chain[chain.length - 1] ?? '';
    const lease = await this.theLease();
    await lease.add(SNAPSHOT_RESOURCE, name);
    try {
      await this.client.call(SERVICES.snapshots, 'Commit', { snapshotter: SNAPSHOTTER, name, key, labels: {} });
      return true;
    } catch (e) {
      if (isKind(e, ErrorKind.AlreadyExists)) return false;
      throw e;
    }
  }

  /**
   * A snapshot prepared on the state's top layer, open as a filesystem for
   * `write`; when it reports a change, the change as a layer, and the
   * snapshot kept as that layer's (removed otherwise).
   */
  private async inSnapshot(
    parent: State,
    write: (fs: ContainerFs, mounts: readonly RootfsMount[]) => Promise<boolean>,
  ): Promise<{ desc: Desc; diffId: string } | undefined> {
    const top = await this.ensureChain(parent);
    const lease = await this.theLease();
    const key = `build-${randomBytes(12).toString('hex')}`;
    await lease.add(SNAPSHOT_RESOURCE, key);
    let prepared = false;
    let kept = false;
    try {
      const res = await this.client.call<{ mounts: RootfsMount[] }>(SERVICES.snapshots, 'Prepare', { snapshotter: SNAPSHOTTER, key, parent: top ?? '', labels: {} });
      prepared = true;
      const mounts = res.mounts;
      const fs = await ContainerFs.open(this.b.temp, 'build', { kind: 'snapshot', mounts: mounts.map((m) => ({ type: m.type, source: m.source, target: '', options: [...m.options] })) }, []);
      let changed: boolean;
      try {
        changed = await write(fs, mounts);
      } finally {
        await fs.close();
      }
      if (!changed) return undefined;
      const layer = await this.diff(top, key, parent.types.layer);
      kept = await this.keepAsChain(parent, layer, key);
      return layer;
    } finally {
      if (prepared && !kept) await this.client.call(SERVICES.snapshots, 'Remove', { snapshotter: SNAPSHOTTER, key }).catch(() => undefined);
    }
  }

  // ---- WORKDIR ----

  private async workdir(parent: State, next: State, path: string, createdBy: string): Promise<State> {
    const layer = await this.inSnapshot(parent, async (fs) => {
      const missing = missingDirs(fs, path);
      if (missing.length === 0) return false;
      await extractEntries(fs, missing.map((d) => ({ header: dirHeader(d, 0o755, 0, 0) })));
      return true;
    });
    if (layer === undefined) {
      next.history.push({ created: new Date().toISOString(), created_by: createdBy, empty_layer: true });
      return next;
    }
    return this.withLayer(next, layer, createdBy);
  }

  // ---- RUN ----

  /**
   * A RUN's command line. Heredocs (as BuildKit runs them): a RUN that is
   * one heredoc alone runs its content as a shell script, or, when the
   * content starts with "#!", as an executable file; otherwise the command
   * and the heredocs' bodies with their delimiters go to the shell, which
   * feeds them to the commands.
   */
  private runArgs(parent: State, inst: Extract<Instruction, { kind: 'RUN' }>): { args: string[]; script?: { target: string; data: string } } {
    if (inst.command.json) {
      if (inst.heredocs.length > 0) throw invalid('RUN: heredocs are for the shell form only');
      return { args: [...inst.command.args] };
    }
    const line = inst.command.args.join(' ');
    const shell = this.shellOf(parent);
    if (inst.heredocs.length === 0) return { args: [...shell, line] };
    const only = inst.heredocs.length === 1 ? inst.heredocs[0] : undefined;
    const word = parseHeredocWord(line.trim());
    if (only !== undefined && word !== undefined && word.name === only.name && word.fd === undefined) {
      const data = only.chomp ? chompHeredoc(only.content) : only.content;
      if (data.startsWith('#!')) {
        const target = posix.join('/dev/pipes', only.name.replace(/[^A-Za-z0-9_.-]/g, '_'));
        return { args: [target], script: { target, data } };
      }
      return { args: [...shell, data] };
    }
    let full = line;
    for (const h of inst.heredocs) full += `\n${h.content}${h.name}`;
    return { args: [...shell, full] };
  }

  private async runStep(parent: State, next: State, scope: StageScope, inst: Extract<Instruction, { kind: 'RUN' }>, s: StepContext): Promise<State> {
    if (inst.mounts.length > 0) throw notImplemented('RUN --mount needs BuildKit; the classic builder does not support it');
    const { args, script } = this.runArgs(parent, inst);
    if (args.length === 0 || args[0] === '') throw invalid('RUN needs a command');
    const { env: argEnv, history: argHistory } = scope.runArgs();
    const shown = script === undefined ? args.join(' ') : `${args.join(' ')} <<${script.data}`;
    const createdBy = argHistory.length > 0 ? `|${argHistory.length} ${argHistory.join(' ')} ${shown}` : shown;
    return this.cached(parent, { createdBy, argEnv }, async () => {
      const base = await this.materialize(parent);
      if (base.chainId === undefined) throw invalid('RUN on an image without layers (FROM scratch) has no shell to run');
      const cfg = parent.run;
      const env = [...(cfg.Env ?? [])];
      const have = new Set(env.map((e) => e.split('=', 1)[0]));
      for (const e of argEnv) if (!have.has(e.split('=', 1)[0])) env.push(e);
      // A heredoc script with a #! line runs as a file, mounted read-only under /dev/pipes.
      let scriptDir: string | undefined;
      const mounts: { Type: string; Source: string; Target: string; ReadOnly: boolean }[] = [];
      if (script !== undefined) {
        scriptDir = await mkdtemp(join(this.b.temp, 'heredoc-'));
        const host = join(scriptDir, 'script');
        await writeFile(host, script.data, { mode: 0o755 });
        mounts.push({ Type: 'bind', Source: host, Target: script.target, ReadOnly: true });
      }
      const body = {
        Image: base.id, Cmd: args, Entrypoint: [], Env: env,
        WorkingDir: cfg.WorkingDir ?? '', User: cfg.User ?? '', Labels: {},
        Healthcheck: { Test: ['NONE'] },
        AttachStdout: true, AttachStderr: true, Tty: false, OpenStdin: false,
        HostConfig: { NetworkMode: 'none', ...this.opts.runHostConfig, LogConfig: { Type: 'json-file', Config: {} }, Mounts: mounts },
      };
      let cid: string;
      try {
        cid = (await this.containers.create(body, undefined, '1.50')).Id;
      } catch (e) {
        if (scriptDir !== undefined) await rm(scriptDir, { recursive: true, force: true });
        throw e;
      }
      this.out(` ---> Running in ${short(cid)}\n`);
      let layer: { desc: Desc; diffId: string };
      let keep = false;
      try {
        const code = await this.runContainer(cid);
        if (code !== 0) {
          throw new BuildStepError(
            `The command '${args.join(' ')}' returned a non-zero code: ${code} (${this.where(s)})`, code,
          );
        }
        layer = await this.diff(base.chainId, cid, parent.types.layer);
        keep = this.opts.keepContainers === true;
        // The container's snapshot becomes the layer's (unless the container stays, with its rootfs).
        if (!keep) await this.keepAsChain(parent, layer, cid);
      } finally {
        if (!keep) {
          await this.containers.remove(cid, { force: true, volumes: true }).catch((e: unknown) => {
            this.engine.log.warn('build: removing an intermediate container failed', { id: cid, error: errMsg(e) });
          });
        }
        if (scriptDir !== undefined) await rm(scriptDir, { recursive: true, force: true });
      }
      if (!keep) this.out(`Removing intermediate container ${short(cid)}\n`);
      return this.withLayer(next, layer, createdBy);
    });
  }

  /** Starts the container, streams its log as `stream` lines, and answers its exit code. */
  private async runContainer(cid: string): Promise<number> {
    const waiting = this.containers.wait(cid, 'next-exit');
    const logPath = this.containers.find(cid).LogPath;
    let offset = 0;
    let partial = '';
    const pump = async (): Promise<void> => {
      if (logPath === '') return;
      let fh;
      try {
        fh = await open(logPath, 'r');
      } catch {
        return;
      }
      try {
        for (;;) {
          const buf = Buffer.alloc(64 * 1024);
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          if (bytesRead === 0) break;
          offset += bytesRead;
          const text = partial + buf.subarray(0, bytesRead).toString('utf8');
          const lines = text.split('\n');
          partial = lines.pop() ?? '';
          for (const l of lines) {
            if (l === '') continue;
            try {
              const m = JSON.parse(l) as { log?: unknown };
              if (typeof m.log === 'string') this.out(m.log);
            } catch {
              // a torn line: skipped
            }
          }
        }
      } finally {
        await fh.close();
      }
    };
    const onAbort = (): void => { void this.containers.kill(cid, 'SIGKILL').catch(() => undefined); };
    this.signal.addEventListener('abort', onAbort);
    const timer = setInterval(() => { void pump(); }, 200);
    try {
      await this.containers.start(cid);
      const r = await waiting;
      return r.StatusCode;
    } finally {
      clearInterval(timer);
      this.signal.removeEventListener('abort', onAbort);
      await pump().catch(() => undefined);
    }
  }

  // ---- COPY and ADD ----

  private async copyStep(stageIndex: number, parent: State, next: State, inst: CopyInstruction | AddInstruction): Promise<State> {
    const from = inst.kind === 'COPY' ? inst.from : undefined;
    if (inst.kind === 'ADD') {
      for (const src of inst.sources) {
        if (src.kind === 'path' && /^(?:https?|git):\/\/|^git@/.test(src.path)) {
          throw invalid(`ADD ${src.path}: fetching remote URLs needs network access, which this builder does not have; download the file into the build context and ADD it from there`);
        }
      }
    }
    const chmod = inst.chmod === undefined || inst.chmod === '' ? undefined : parseChmod(inst.chmod);
    const workdir = parent.run.WorkingDir === undefined || parent.run.WorkingDir === '' ? '/' : parent.run.WorkingDir;
    const destRaw = inst.dest;
    const dest = posix.resolve(workdir, destRaw);
    // The source rootfs for --from, open while the entries are read.
    let srcFs: { fs: ContainerFs; close: () => Promise<void> } | undefined;
    try {
      if (from !== undefined) srcFs = await this.openSource(stageIndex, parent, from);
      // The sources' hash decides about the cache before any snapshot is made.
      const hash = srcFs !== undefined ? await this.fromSourcesHash(srcFs.fs, inst) : await this.contextSourcesHash(inst);
      const chown = inst.chown === undefined || inst.chown === '' ? '' : `--chown=${inst.chown}`;
      const createdBy = this.nop(parent, `${inst.kind} ${chown}${hash} in ${destRaw} `);
      const src = srcFs;
      return await this.cached(parent, { createdBy, from: from ?? null, chmod: inst.chmod ?? null }, async () => {
        const layer = await this.inSnapshot(parent, async (fs, mounts) => {
          const owner = inst.chown === undefined || inst.chown === '' ? undefined : resolveChown(inst.chown, mounts);
          const entries = src !== undefined
            ? this.sourceEntries(src.fs, inst, dest, destRaw, fs, owner, chmod)
            : this.contextSourceEntries(inst, dest, destRaw, fs, owner, chmod);
          await extractEntries(fs, entries);
          return true;
        });
        if (layer === undefined) throw invalid(`${inst.kind} made no layer`);
        return this.withLayer(next, layer, createdBy);
      });
    } finally {
      await srcFs?.close();
    }
  }

  /** The classic builder's hash of a COPY or ADD's context sources (see sourcehash.ts). */
  private async contextSourcesHash(inst: CopyInstruction | AddInstruction): Promise<string> {
    const hashes: string[] = [];
    for (const s of inst.sources) {
      if (s.kind === 'heredoc') {
        hashes.push(`file:${createHash('sha256').update(s.content).digest('hex')}`);
        continue;
      }
      for (const path of this.matchContext(s.path, inst.kind)) {
        hashes.push(this.ctx.sums.sourceHash(path, path === '' || this.ctxEntries.get(path) === 'directory', this.ctxList));
      }
    }
    if (hashes.length === 0) throw invalid(`${inst.kind} failed: no source files were specified`);
    return sourcesHash(hashes);
  }

  /** The hash of a COPY --from's sources, read from the source rootfs. */
  private async fromSourcesHash(src: ContainerFs, inst: CopyInstruction | AddInstruction): Promise<string> {
    const hashes: string[] = [];
    for (const s of inst.sources) {
      if (s.kind !== 'path') throw invalid(`${inst.kind} --from takes no heredoc sources`);
      if (GLOB_CHARS.test(s.path)) throw notImplemented(`${inst.kind} --from with wildcards (${s.path}) is not supported; name the paths`);
      const abs = posix.resolve('/', s.path);
      let isDir: boolean;
      try {
        isDir = src.stat(s.path).mode >= 2 ** 31;
      } catch (e) {
        throw notFound(`${inst.kind} failed: stat ${s.path}: file does not exist in the source: ${errMsg(e)}`, e);
      }
      const base = rel(abs);
      const nameOf = (n: string): string | undefined => {
        if (!isDir) return base;
        const clean = n.replace(/^\.\/?/, '');
        if (clean === '') return base === '' ? undefined : base;
        return base === '' ? clean : `${base}/${clean}`;
      };
      const linked = async function* (r: string): AsyncGenerator<Uint8Array> {
        for await (const e of readTar(src.archive(`/${r}`).tar)) {
          if (e.type === 'file') yield* e.body;
          return;
        }
      };
      const { tar } = src.archive(isDir ? `${abs === '/' ? '' : abs}/.` : s.path);
      hashes.push(await tarSourceHash(readTar(tar), isDir, nameOf, linked, this.names));
    }
    return sourcesHash(hashes);
  }

  /** The rootfs of a stage or image named by --from, as a read-only view. */
  private async openSource(stageIndex: number, _parent: State, ref: string): Promise<{ fs: ContainerFs; close: () => Promise<void> }> {
    const r = resolveStageRef(this.plan.graph, ref, stageIndex);
    let st: State;
    if (r.kind === 'stage') {
      const s = this.stages.get(r.index);
      if (s === undefined) throw invalid(`stage ${ref} was not built`);
      st = s.state;
    } else {
      const img = await this.baseImage(r.name);
      st = await this.stateOfImage(img.id);
    }
    const top = await this.ensureChain(st);
    const lease = await this.theLease();
    const key = `build-from-${randomBytes(10).toString('hex')}`;
    await lease.add(SNAPSHOT_RESOURCE, key);
    const view = await this.client.call<{ mounts: RootfsMount[] }>(SERVICES.snapshots, 'View', { snapshotter: SNAPSHOTTER, key, parent: top ?? '', labels: {} });
    const removeView = async (): Promise<void> => {
      await this.client.call(SERVICES.snapshots, 'Remove', { snapshotter: SNAPSHOTTER, key }).catch(() => undefined);
    };
    let fs: ContainerFs;
    try {
      fs = await ContainerFs.open(this.b.temp, `stage ${ref}`, { kind: 'snapshot', mounts: view.mounts.map((m) => ({ type: m.type, source: m.source, target: '', options: [...m.options] })) }, []);
    } catch (e) {
      await removeView();
      throw e;
    }
    return { fs, close: async () => { await fs.close(); await removeView(); } };
  }

  /** Whether a COPY's destination means a directory (a trailing slash, several sources, an existing dir). */
  private destIsDir(destRaw: string, dest: string, sources: number, target: ContainerFs): boolean {
    if (destRaw.endsWith('/') || destRaw.endsWith('/.') || destRaw === '.' || sources > 1) return true;
    try {
      return target.stat(dest).mode >= 2 ** 31;
    } catch {
      return false;
    }
  }

  /** The context paths a source names (wildcards expanded), each with its type. */
  private matchContext(src: string, kind: 'COPY' | 'ADD'): string[] {
    const p = cleanPath(src.replace(/^\/+/, '') || '.');
    if (p === '..' || p.startsWith('../')) throw invalid(`${kind} failed: forbidden path outside the build context: ${src}`);
    if (p === '.' || p === '') return [''];
    if (!GLOB_CHARS.test(p)) {
      if (!this.ctxEntries.has(p)) {
        throw notFound(`${kind} failed: file not found in build context or excluded by .dockerignore: stat ${p}: file does not exist`);
      }
      return [p];
    }
    const re = globRegExp(p);
    return this.ctxList.filter((e) => re.test(e));
  }

  private async *contextSourceEntries(
    inst: CopyInstruction | AddInstruction, dest: string, destRaw: string, target: ContainerFs,
    owner: { uid: number; gid: number } | undefined, chmod: number | undefined,
  ): AsyncGenerator<CopyEntry> {
    const matched: { path: string; heredoc?: string }[] = [];
    for (const s of inst.sources) {
      if (s.kind === 'heredoc') matched.push({ path: s.name, heredoc: s.content });
      else matched.push(...this.matchContext(s.path, inst.kind).map((path) => ({ path })));
    }
    if (matched.length === 0) throw invalid(`${inst.kind} failed: no source files were specified`);
    const ctxDir = matched.some((m) => m.heredoc === undefined) ? await this.ctx.root() : '';
    const toDir = this.destIsDir(destRaw, dest, matched.length, target);
    const uid = owner?.uid ?? 0;
    const gid = owner?.gid ?? 0;
    const parents = parentsMaker(target, uid, gid);
    for (const m of matched) {
      if (m.heredoc !== undefined) {
        const name = toDir ? posix.join(dest, m.path) : dest;
        yield* parents(posix.dirname(name));
        const data = Buffer.from(m.heredoc);
        yield { header: { type: 'file', path: rel(name), mode: chmod ?? 0o644, uid, gid, size: data.length, mtime: 0 }, body: () => once(data) };
        continue;
      }
      const type = m.path === '' ? 'directory' : this.ctxEntries.get(m.path);
      const host = join(ctxDir, m.path);
      if (type === 'directory') {
        yield* parents(dest);
        const prefix = m.path === '' ? '' : `${m.path}/`;
        for (const e of this.ctxList) {
          if (!e.startsWith(prefix)) continue;
          yield* this.hostEntry(join(ctxDir, e), posix.join(dest, e.slice(prefix.length)), uid, gid, chmod);
        }
        continue;
      }
      if (inst.kind === 'ADD' && type === 'file' && await isArchive(host)) {
        yield* parents(dest);
        for await (const e of readTar(decompress(createReadStream(host)))) {
          const name = posix.join(dest, e.path);
          if (!name.startsWith(dest === '/' ? '/' : `${dest}/`) && name !== dest) throw invalid(`ADD ${m.path}: archive entry ${e.path} is outside of its destination`);
          yield copyEntryOf(e, name, { uid: owner?.uid ?? e.uid, gid: owner?.gid ?? e.gid, mode: chmod ?? e.mode }, rel(posix.join(dest, e.linkpath)));
        }
        continue;
      }
      const name = toDir ? posix.join(dest, posix.basename(m.path)) : dest;
      yield* parents(posix.dirname(name));
      yield* this.hostEntry(host, name, uid, gid, chmod);
    }
  }

  /** One context file as an entry named `name` (a container path). */
  private async *hostEntry(host: string, name: string, uid: number, gid: number, chmod: number | undefined): AsyncGenerator<CopyEntry> {
    const st = await lstat(host);
    const type: TarEntryType | undefined = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : undefined;
    if (type === undefined) return;
    const header: TarWriteEntry = {
      type, path: rel(name) + (type === 'dir' ? '/' : ''), mode: chmod ?? (st.mode & 0o7777), uid, gid, mtime: Math.floor(st.mtimeMs / 1000),
    };
    if (type === 'file') {
      header.size = st.size;
      yield { header, body: () => createReadStream(host) };
      return;
    }
    if (type === 'symlink') header.linkpath = await readlink(host);
    yield { header };
  }

  /** Entries of a COPY --from: the named paths of the source rootfs. */
  private async *sourceEntries(
    src: ContainerFs, inst: CopyInstruction | AddInstruction, dest: string, destRaw: string, target: ContainerFs,
    owner: { uid: number; gid: number } | undefined, chmod: number | undefined,
  ): AsyncGenerator<CopyEntry> {
    const paths: string[] = [];
    for (const s of inst.sources) {
      if (s.kind !== 'path') throw invalid(`${inst.kind} --from takes no heredoc sources`);
      if (GLOB_CHARS.test(s.path)) throw notImplemented(`${inst.kind} --from with wildcards (${s.path}) is not supported; name the paths`);
      paths.push(s.path);
    }
    const toDir = this.destIsDir(destRaw, dest, paths.length, target);
    const parents = parentsMaker(target, owner?.uid ?? 0, owner?.gid ?? 0);
    for (const p of paths) {
      let stat;
      try {
        stat = src.stat(p);
      } catch (e) {
        throw notFound(`${inst.kind} failed: stat ${p}: file does not exist in the source: ${errMsg(e)}`, e);
      }
      const isDir = stat.mode >= 2 ** 31;
      const base = isDir ? dest : toDir ? posix.join(dest, posix.basename(posix.resolve('/', p))) : dest;
      yield* parents(isDir ? dest : posix.dirname(base));
      const { tar } = src.archive(isDir ? `${posix.resolve('/', p)}/.` : p);
      const mapName = (n: string): string | undefined => {
        if (!isDir) return base;
        const clean = n.replace(/^\.\/?/, '').replace(/\/$/, '');
        return clean === '' ? undefined : posix.join(base, clean);
      };
      for await (const e of readTar(tar)) {
        const name = mapName(e.path);
        if (name === undefined) continue;
        const target = e.type === 'hardlink' ? mapName(e.linkpath) : undefined;
        if (e.type === 'hardlink' && target === undefined) continue;
        yield copyEntryOf(e, name, { uid: owner?.uid ?? e.uid, gid: owner?.gid ?? e.gid, mode: chmod ?? e.mode }, rel(target ?? ''), true);
      }
    }
  }
}

// ---------------------------------------------------------------- helpers

/**
 * The context stream, and when it is a plain tar, zero blocks after it: the
 * docker CLI's rewritten context (a Dockerfile from outside the context
 * added) ends right after the last entry's data, without its padding or the
 * end-of-archive marker. Trailing zeros after a complete tar are ignored.
 */
async function* completeTar(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let head: Buffer = Buffer.alloc(0);
  for await (const c of src) {
    if (head.length < 6) head = Buffer.concat([head, Buffer.from(c)]).subarray(0, 6);
    yield c;
  }
  const compressed = (head[0] === 0x1f && head[1] === 0x8b) || head.subarray(0, 3).toString('latin1') === 'BZh'
    || (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) || (head[0] === 0xfd && head.subarray(1, 6).toString('latin1') === '7zXZ\0');
  if (!compressed) yield Buffer.alloc(512 + 1024);
}

/** A container path as a tar name relative to "/". */
const rel = (p: string): string => posix.resolve('/', p).slice(1);

async function* once(b: Buffer): AsyncGenerator<Uint8Array> {
  yield b;
}

function dirHeader(path: string, mode: number, uid: number, gid: number): TarWriteEntry {
  return { type: 'dir', path: `${rel(path)}/`, mode, uid, gid, mtime: Math.floor(Date.now() / 1000) };
}

/** A function giving the entries of the missing directories up to a path, each directory once. */
function parentsMaker(target: ContainerFs, uid: number, gid: number): (path: string) => Generator<CopyEntry> {
  const made = new Set<string>();
  return function* (path: string): Generator<CopyEntry> {
    for (const d of missingDirs(target, path)) {
      if (made.has(d)) continue;
      made.add(d);
      yield { header: dirHeader(d, 0o755, uid, gid) };
    }
  };
}

/**
 * An entry read from a source tar, copied as `name` with the owner and mode
 * given (a hard link to `linkTo`). Its body streams: the extraction reads it
 * before it asks for the next entry.
 */
function copyEntryOf(
  e: TarEntry, name: string, o: { uid: number; gid: number; mode: number }, linkTo: string, keepXattrs = false,
): CopyEntry {
  const header: TarWriteEntry = {
    type: e.type, path: rel(name) + (e.type === 'dir' ? '/' : ''), mode: o.mode, uid: o.uid, gid: o.gid, mtime: Math.floor(e.mtime),
  };
  if (keepXattrs && e.xattrs.size > 0) header.xattrs = e.xattrs;
  if (e.type === 'file') header.size = e.size;
  if (e.type === 'symlink') header.linkpath = e.rawLinkpath;
  if (e.type === 'hardlink') header.linkpath = linkTo;
  if (e.type === 'char' || e.type === 'block') {
    header.devmajor = e.devmajor;
    header.devminor = e.devminor;
  }
  return e.type === 'file' ? { header, body: () => e.body } : { header };
}

/** The directories of `path` (itself included) that do not exist in the rootfs, outermost first. */
function missingDirs(fs: ContainerFs, path: string): string[] {
  const parts = posix.resolve('/', path).split('/').filter((s) => s !== '');
  const out: string[] = [];
  let cur = '';
  let missing = false;
  for (const p of parts) {
    cur = `${cur}/${p}`;
    if (!missing) {
      try {
        fs.stat(cur);
        continue;
      } catch (e) {
        if (!isKind(e, ErrorKind.NotFound)) throw e;
        missing = true;
      }
    }
    out.push(cur);
  }
  return out;
}

/** Extracts entries at the rootfs' "/" (owners as given), streamed as they come. */
async function extractEntries(fs: ContainerFs, entries: Iterable<CopyEntry> | AsyncIterable<CopyEntry>): Promise<void> {
  const pass = new PassThrough();
  const w = new TarWriter(pass);
  const producing = (async () => {
    try {
      for await (const e of entries) await w.add(e.header, e.body?.());
      await w.finish();
      pass.end();
    } catch (err) {
      pass.destroy(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  })();
  try {
    await fs.applyAtRoot(pass);
  } catch (e) {
    // A producer's failure reaches the extraction as its stream's error: e is the one to report.
    pass.destroy();
    await producing.catch(() => undefined);
    throw e;
  }
  await producing;
}

/**
 * The build's messages in stage order: the first unfinished stage's go out
 * as they come, the later stages' wait until every stage before them is
 * finished.
 */
class OrderedOutput {
  private readonly waiting = new Map<number, BuildMessage[]>();
  private readonly finished = new Set<number>();
  private at = 0;

  constructor(private readonly order: readonly number[], private readonly emit: BuildEmit) {}

  push(stage: number, m: BuildMessage): void {
    if (this.order[this.at] === stage) {
      this.emit(m);
      return;
    }
    const q = this.waiting.get(stage);
    if (q === undefined) this.waiting.set(stage, [m]);
    else q.push(m);
  }

  finish(stage: number): void {
    this.finished.add(stage);
    while (this.at < this.order.length && this.finished.has(this.order[this.at] ?? -1)) {
      this.at++;
      this.release(this.order[this.at]);
    }
  }

  /** Everything still held, in stage order (when the build ends, failed or not). */
  flush(): void {
    for (; this.at < this.order.length; this.at++) this.release(this.order[this.at]);
  }

  private release(stage: number | undefined): void {
    if (stage === undefined) return;
    for (const m of this.waiting.get(stage) ?? []) this.emit(m);
    this.waiting.delete(stage);
  }
}
