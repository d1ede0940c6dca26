/**
 * `docker commit`: a new image whose layers are the container's image's
 * layers plus one made from the container's changes, and whose config is
 * the container's with Dockerfile `changes` applied.
 *
 * The new layer comes from the supervisor's Diff service comparing a view
 * of the image's top snapshot (left) with the container's snapshot (right);
 * deletions become whiteouts. Everything written is held by a lease until
 * the image record references it: the layer blob (whose digest is only known
 * once Diff made it) carries a gc.root label from its commit until it joined
 * the lease. On failure the lease ends and no record is written, so the
 * collector takes whatever was made.
 */
import { createHash, randomBytes } from 'node:crypto';
import { invalid } from '@berth/base';
import { MediaType, familiarString, parseReference } from '@berth/images';
import type { ImageDescriptor } from '@berth/images';
import { SERVICES } from '@berth/supervisor';
import type { Message } from '@berth/supervisor';
import { SNAPSHOTTER } from '../engine.js';
import type { Engine } from '../engine.js';
import { applyChanges } from '../images/_changes.js';
import { Lease, contentLabels, setContentLabels, writeContent } from '../images/_supervisor.js';
import { DANGLING_PREFIX, ImageService } from '../images/service.js';
import type { HistoryEntry } from '../images/service.js';
import { conflict } from '../server/errors.js';
import type { ContainerConfig } from './config.js';
import type { ContainerRecord } from './record.js';
import type { ContainerService } from './service.js';

export interface CommitOptions {
  /** Repository of the new image; none: an image without a name. */
  readonly repo?: string;
  readonly tag?: string;
  readonly comment?: string;
  readonly author?: string;
  /** Pause a running container while its changes are read (default true). */
  readonly pause?: boolean;
  /** Dockerfile instructions applied to the config (`--change`). */
  readonly changes?: readonly string[];
  /** The config to start from instead of the container's (the request body). */
  readonly config?: ContainerConfig;
}

export interface CommitResult {
  /** The new image's ID (its config digest). */
  readonly id: string;
  /** Its familiar name (`repo:tag`), when it got one. */
  readonly ref: string | undefined;
}

const ROOT_LABEL = 'containerd.io/gc.root';
const UNCOMPRESSED_LABEL = 'containerd.io/uncompressed';
const GC_REF_CONTENT = 'containerd.io/gc.ref.content.';
const SNAPSHOT_RESOURCE = `snapshots/${SNAPSHOTTER}`;

/** The `config` fields an image keeps of a container's config. */
const IMAGE_FIELDS = [
  'User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'Volumes', 'WorkingDir', 'Labels', 'StopSignal', 'Healthcheck',
  'ArgsEscaped', 'OnBuild', 'Shell',
] as const;

const nonEmpty = (v: readonly unknown[] | undefined): v is readonly unknown[] => v !== undefined && v.length > 0;
const keysOf = (v: unknown): string[] => (typeof v === 'object' && v !== null ? Object.keys(v) : []);
const envKey = (e: string): string => e.split('=', 1)[0] ?? '';

/** What an instruction line names (`CMD`, `ENTRYPOINT`…), upper-cased. */
const instructionOf = (line: string): string => (/^\s*(\S+)/.exec(line)?.[1] ?? '').toUpperCase();

/**
 * The image config of a commit, as Docker makes it: `user` (default: the
 * container's config) with `changes` applied, then what it leaves unset
 * taken from the container's config (user, ports, env, labels, command,
 * health check, working dir, volumes, stop signal). An ENTRYPOINT change
 * without a CMD one clears the command, as in a Dockerfile.
 */
export function commitConfig(container: ContainerConfig, user: ContainerConfig | undefined, changes: readonly string[]): Record<string, unknown> {
  const start: Record<string, unknown> = { ...(user ?? container) };
  const c = applyChanges(start, changes) as ContainerConfig & Record<string, unknown>;
  const instrs = changes.map(instructionOf);
  if (instrs.includes('ENTRYPOINT') && !instrs.includes('CMD')) delete c.Cmd;

  if (c.User === undefined || c.User === '') c.User = container.User ?? '';
  if (keysOf(c.ExposedPorts).length === 0) {
    if (container.ExposedPorts !== undefined) c.ExposedPorts = { ...container.ExposedPorts };
  } else {
    c.ExposedPorts = { ...container.ExposedPorts, ...c.ExposedPorts };
  }
  if (!nonEmpty(c.Env)) {
    if (container.Env !== undefined) c.Env = [...container.Env];
  } else {
    const have = new Set(c.Env.map(envKey));
    c.Env = [...c.Env, ...(container.Env ?? []).filter((e) => !have.has(envKey(e)))];
  }
  c.Labels = { ...container.Labels, ...c.Labels };
  if (!nonEmpty(c.Entrypoint)) {
    if (!nonEmpty(c.Cmd) && container.Cmd !== undefined) c.Cmd = [...container.Cmd];
    if (c.Entrypoint === undefined && container.Entrypoint !== undefined) c.Entrypoint = [...container.Entrypoint];
  }
  if (container.Healthcheck !== undefined) c.Healthcheck = { ...container.Healthcheck, ...c.Healthcheck };
  if (c.WorkingDir === undefined || c.WorkingDir === '') c.WorkingDir = container.WorkingDir ?? '';
  c.Volumes = { ...container.Volumes, ...c.Volumes };
  if (c.StopSignal === undefined || c.StopSignal === '') {
    if (container.StopSignal !== undefined) c.StopSignal = container.StopSignal;
  }

  const out: Record<string, unknown> = {};
  for (const k of IMAGE_FIELDS) {
    const v = c[k];
    if (v === undefined) continue;
    if ((k === 'Labels' || k === 'Volumes' || k === 'ExposedPorts') && keysOf(v).length === 0) continue;
    if ((k === 'User' || k === 'WorkingDir' || k === 'StopSignal') && v === '') continue;
    out[k] = v;
  }
  return out;
}

/** `created_by` of the commit's history entry: the container's command, as Docker writes it. */
export function createdBy(c: ContainerRecord): string {
  return (c.Config.Cmd ?? []).join(' ');
}

const sha256Of = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface MediaTypes {
  readonly manifest: string;
  readonly config: string;
  readonly layer: string;
}

/** The new image keeps its base's manifest format: Docker schema 2 or OCI. */
function mediaTypesFor(baseManifest: string): MediaTypes {
  if (baseManifest === MediaType.DockerManifest) {
    return { manifest: MediaType.DockerManifest, config: MediaType.DockerConfig, layer: MediaType.DockerLayerGzip };
  }
  return { manifest: MediaType.OciManifest, config: MediaType.OciConfig, layer: MediaType.OciLayerGzip };
}

function descOf(d: ImageDescriptor): Record<string, unknown> {
  return {
    mediaType: d.mediaType, digest: d.digest, size: d.size,
    ...(d.annotations !== undefined && Object.keys(d.annotations).length > 0 ? { annotations: d.annotations } : {}),
  };
}

export class Committer {
  constructor(
    private readonly engine: Engine,
    private readonly containers: ContainerService,
    private readonly images: ImageService,
  ) {}

  private get client(): Engine['client'] {
    return this.engine.client;
  }

  /** `POST /commit`. */
  async commit(ref: string, opts: CommitOptions): Promise<CommitResult> {
    const c = this.containers.find(ref);
    if (c.State.Status === 'removing') throw conflict(`cannot commit container ${c.Id} which is being removed`);
    if (c.State.Dead || c.State.Status === 'dead') throw conflict(`You cannot commit container ${c.Id} which is dead`);
    // Bad input is refused before anything is paused or written.
    const name = opts.repo === undefined || opts.repo === '' ? undefined : ImageService.tagName(opts.repo, opts.tag);
    const changes = (opts.changes ?? []).filter((l) => l.trim() !== '');
    const runConfig = commitConfig(c.Config, opts.config, changes);
    let base;
    try {
      base = (await this.images.find(c.Image)).image;
    } catch (e) {
      throw invalid(`commit ${c.Id}: its image ${c.Image} is not available: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    const d = base.details;
    const top = d.chainIds[d.chainIds.length - 1] ?? '';
    if (top !== c.berth.chainId) {
      throw invalid(`commit ${c.Id}: its rootfs was made on snapshot ${c.berth.chainId}, its image ${c.Image} leads to ${top}`);
    }
    const types = mediaTypesFor(d.manifest.mediaType);

    const lease = await Lease.create(this.client, 'commit');
    let rooted: string | undefined;
    try {
      const pause = (opts.pause ?? true) && c.State.Running && !c.State.Paused;
      if (pause) await this.containers.pause(c.Id);
      let layer: ImageDescriptor & { diffId: string };
      try {
        layer = await this.diff(c, top, types.layer, lease, (digest) => { rooted = digest; });
      } finally {
        if (pause) {
          await this.containers.unpause(c.Id).catch((e: unknown) => {
            this.engine.log.warn('commit: unpausing the container failed', { id: c.Id, error: e instanceof Error ? e.message : String(e) });
          });
        }
      }

      const created = new Date().toISOString();
      const entry: Record<string, unknown> = { created, created_by: createdBy(c) };
      if (opts.author !== undefined && opts.author !== '') entry['author'] = opts.author;
      if (opts.comment !== undefined && opts.comment !== '') entry['comment'] = opts.comment;
      const history: HistoryEntry[] = d.config.history.length > 0
        ? [...d.config.history]
        : d.config.diffIds.map(() => (d.config.created === undefined ? {} : { created: d.config.created }));
      const config: Record<string, unknown> = {
        created,
        ...(opts.author !== undefined && opts.author !== '' ? { author: opts.author } : {}),
        ...(opts.comment !== undefined && opts.comment !== '' ? { comment: opts.comment } : {}),
        architecture: d.config.architecture,
        ...(d.config.variant === undefined ? {} : { variant: d.config.variant }),
        os: d.config.os,
        config: runConfig,
        rootfs: { type: 'layers', diff_ids: [...d.config.diffIds, layer.diffId] },
        history: [...history, entry],
      };
      const configBytes = Buffer.from(JSON.stringify(config));
      const configDigest = sha256Of(configBytes);
      await lease.add('content', configDigest);
      await writeContent(this.client, configBytes, { expected: configDigest });
      const configDesc: ImageDescriptor = { mediaType: types.config, digest: configDigest, size: configBytes.length };
      const layers = [...d.layers, { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }];
      const manifestBytes = Buffer.from(JSON.stringify({
        schemaVersion: 2, mediaType: types.manifest, config: descOf(configDesc), layers: layers.map(descOf),
      }));
      const manifestDigest = sha256Of(manifestBytes);
      const refs: Record<string, string> = { [`${GC_REF_CONTENT}config`]: configDigest };
      for (const [i, l] of layers.entries()) refs[`${GC_REF_CONTENT}l.${i}`] = l.digest;
      await lease.add('content', manifestDigest);
      await writeContent(this.client, manifestBytes, { expected: manifestDigest, labels: refs });
      const target: ImageDescriptor = { mediaType: types.manifest, digest: manifestDigest, size: manifestBytes.length };

      const details = await this.images.reader.details(target);
      await this.images.unpack(details, lease);
      await this.images.setName(name ?? `${DANGLING_PREFIX}${manifestDigest}`, target, { tagged: name !== undefined });

      const familiar = name === undefined ? undefined : familiarString(parseReference(name));
      const attrs: Record<string, string> = { ...c.Config.Labels, image: c.Config.Image ?? '', name: c.Name.slice(1) };
      attrs['comment'] = opts.comment ?? '';
      attrs['imageID'] = configDigest;
      attrs['imageRef'] = familiar ?? '';
      this.engine.events.emit('container', 'commit', c.Id, attrs);
      if (familiar !== undefined) this.engine.events.emit('image', 'tag', configDigest, { name: familiar });
      return { id: configDigest, ref: familiar };
    } finally {
      if (rooted !== undefined) {
        // Held by the lease (or, on failure, free to be collected) from here on.
        await setContentLabels(this.client, rooted, { [ROOT_LABEL]: '' }).catch((e: unknown) => {
          this.engine.log.warn('commit: clearing the layer\'s gc.root label failed', { digest: rooted, error: e instanceof Error ? e.message : String(e) });
        });
      }
      await lease.end();
    }
  }

  /**
   * The container's changes as a layer blob: a view of the image's top
   * snapshot against the container's snapshot, through Diff. `rooted` is
   * told the blob's digest as soon as it exists (it carries a gc.root label
   * the caller clears).
   */
  private async diff(
    c: ContainerRecord, parent: string, mediaType: string, lease: Lease, rooted: (digest: string) => void,
  ): Promise<ImageDescriptor & { diffId: string }> {
    const viewKey = `commit-view-${c.Id.slice(0, 12)}-${randomBytes(6).toString('hex')}`;
    await lease.add(SNAPSHOT_RESOURCE, viewKey);
    let viewMade = false;
    try {
      const view = await this.client.call(SERVICES.snapshots, 'View', { snapshotter: SNAPSHOTTER, key: viewKey, parent, labels: {} });
      viewMade = true;
      const mine = await this.client.call(SERVICES.snapshots, 'Mounts', { snapshotter: SNAPSHOTTER, key: c.Id });
      const res = await this.client.call(SERVICES.diff, 'Diff', {
        left: view['mounts'] ?? [],
        right: mine['mounts'] ?? [],
        media_type: mediaType,
        ref: `commit-${c.Id.slice(0, 12)}-${randomBytes(6).toString('hex')}`,
        labels: { [ROOT_LABEL]: new Date().toISOString() },
      }, { timeoutMs: 60 * 60_000 });
      const desc = res['diff'] as Message | undefined;
      const digest = typeof desc?.['digest'] === 'string' ? desc['digest'] : '';
      if (digest === '') throw invalid(`commit ${c.Id}: the diff service answered without a layer digest`);
      rooted(digest);
      await lease.add('content', digest);
      const diffId = (await contentLabels(this.client, digest))[UNCOMPRESSED_LABEL];
      if (diffId === undefined || diffId === '') throw invalid(`commit ${c.Id}: layer ${digest} has no ${UNCOMPRESSED_LABEL} label naming its diff ID`);
      return { mediaType, digest, size: Number(desc?.['size'] ?? 0), diffId };
    } finally {
      if (viewMade) {
        await this.client.call(SERVICES.snapshots, 'Remove', { snapshotter: SNAPSHOTTER, key: viewKey }).catch((e: unknown) => {
          this.engine.log.warn('commit: removing the view snapshot failed', { key: viewKey, error: e instanceof Error ? e.message : String(e) });
        });
      }
    }
  }
}
