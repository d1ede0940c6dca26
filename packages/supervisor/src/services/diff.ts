/**
 * containerd.services.diff.v1.Diff: applying a layer blob onto a snapshot's
 * mounts, and making a layer blob from the difference between two mounts.
 *
 * Apply works on the mounts as data, without mounting: an overlay mount's
 * upper dir takes the layer in overlay form (whiteouts as 0/0 devices,
 * opaque xattrs); a bind mount's source takes it in copy form (whiteouts
 * delete). Diff reads an overlay upper dir directly when the right-hand
 * mounts are the left-hand ones plus one layer on top (what a snapshot and
 * its parent look like); otherwise it mounts both read-only and compares the
 * trees.
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';
import { ErrorKind, invalid, isKind, notImplemented } from '@berth/base';
import { applyLayer, compressionOfMediaType, makeLayer, mountAll, unmountAll } from '@berth/images';
import type { ApplyResult, ContentStore, ContentWriter, LayerChanges, Mount } from '@berth/images';
import { GRPCPlugin } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { GrpcService } from '../grpc.js';
import { ContentPlugin } from './content.js';
import { leaseOf } from './leases.js';
import { num, optRecord, record, str, strList, strMap } from '../wire.js';
import type { Wire } from '../wire.js';

const run = promisify(execFile);

/** The media type of an uncompressed layer, which Apply reports. */
const LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
/** What Diff makes when no media type is asked for (containerd's default). */
const LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
/** The label containerd puts on a layer blob naming its uncompressed digest. */
export const UNCOMPRESSED_LABEL = 'containerd.io/uncompressed';

export interface WireDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

function descriptorFromWire(v: unknown, what: string): WireDescriptor {
  const o = record(v, what);
  return {
    mediaType: str(o, 'media_type', what),
    digest: str(o, 'digest', what),
    size: num(o, 'size', what),
    annotations: strMap(o, 'annotations', what),
  };
}

function descriptorToWire(d: WireDescriptor): object {
  return { media_type: d.mediaType, digest: d.digest, size: d.size, annotations: d.annotations };
}

export function mountsFromWire(req: Wire, key: string): Mount[] {
  const v = req[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalid(`${key}: expected a list of mounts`);
  return v.map((m, i) => {
    const o = optRecord(m, `${key}[${i}]`);
    if (o === undefined) throw invalid(`${key}[${i}] must be set`);
    return {
      type: str(o, 'type', `${key}[${i}]`),
      source: str(o, 'source', `${key}[${i}]`),
      target: str(o, 'target', `${key}[${i}]`),
      options: strList(o, 'options', `${key}[${i}]`),
    };
  });
}

function option(m: Mount, name: string): string | undefined {
  const prefix = `${name}=`;
  return m.options.find((o) => o.startsWith(prefix))?.slice(prefix.length);
}

function isBind(m: Mount): boolean {
  return m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind');
}

/** Where a layer goes for a snapshot's mounts, and in which form. */
export function applyTarget(mounts: readonly Mount[]): { dir: string; mode: 'overlay' | 'copy' } {
  const [m, ...more] = mounts;
  if (m === undefined) throw invalid('apply: no mounts given');
  if (more.length > 0) throw notImplemented(`apply onto ${mounts.length} mounts: only a single overlay or bind mount is supported`);
  if (m.target !== '') throw notImplemented(`apply onto a mount with a target (${JSON.stringify(m.target)})`);
  if (m.type === 'overlay') {
    const upper = option(m, 'upperdir');
    if (upper === undefined) throw invalid('apply: the overlay mount has no upperdir (a read-only view cannot take a layer)');
    return { dir: upper, mode: 'overlay' };
  }
  if (isBind(m)) {
    if (m.options.includes('ro')) throw invalid(`apply: the bind mount of ${m.source} is read-only`);
    if (m.source === '') throw invalid('apply: the bind mount has no source');
    return { dir: m.source, mode: 'copy' };
  }
  throw notImplemented(`apply onto a ${JSON.stringify(m.type)} mount: only overlay and bind mounts are supported`);
}

/**
 * Apply a layer (compressed or not: the stream's magic bytes decide) onto a
 * snapshot's mounts without mounting them; the result's digest is the diffID.
 */
export async function applyToMounts(source: AsyncIterable<Uint8Array>, mounts: readonly Mount[], mediaType = ''): Promise<ApplyResult> {
  const target = applyTarget(mounts);
  return applyLayer(source, target.dir, { mode: target.mode, ...(mediaType === '' ? {} : { mediaType }) });
}

/** The layer directories a single mount stacks, top first; undefined when it is not one overlay or bind. */
function layersOf(mounts: readonly Mount[]): { dirs: string[]; overlay: boolean } | undefined {
  const [m, ...more] = mounts;
  if (m === undefined) return { dirs: [], overlay: false };
  if (more.length > 0 || m.target !== '') return undefined;
  if (m.type === 'overlay') {
    const lower = option(m, 'lowerdir');
    const lowers = lower === undefined || lower === '' ? [] : lower.split(':');
    const upper = option(m, 'upperdir');
    return { dirs: upper === undefined ? lowers : [upper, ...lowers], overlay: true };
  }
  if (isBind(m)) return { dirs: [m.source], overlay: false };
  return undefined;
}

/**
 * The right-hand mounts as an overlay upper dir over the left-hand ones, when
 * they are exactly that: right = overlay of [U, ...L] and left stacks L.
 */
export function upperDiff(left: readonly Mount[], right: readonly Mount[]): LayerChanges | undefined {
  const l = layersOf(left);
  const r = layersOf(right);
  if (l === undefined || r === undefined || !r.overlay) return undefined;
  const [upper, ...rest] = r.dirs;
  if (upper === undefined || rest.length !== l.dirs.length || rest.some((d, i) => d !== l.dirs[i])) return undefined;
  return { lower: rest, upper };
}

/** A read-only version of a snapshot's mounts, for comparing. */
function readOnly(mounts: readonly Mount[]): Mount[] {
  return mounts.map((m) => {
    if (m.type === 'overlay' && option(m, 'upperdir') !== undefined) {
      // An overlay with an upper dir cannot be mounted twice at once; its layers, stacked read-only, show the same tree.
      const lower = option(m, 'lowerdir');
      const upper = option(m, 'upperdir') ?? '';
      const options = m.options.filter((o) => !o.startsWith('upperdir=') && !o.startsWith('workdir=') && !o.startsWith('lowerdir='));
      if (lower === undefined || lower === '') return { type: 'bind', source: upper, target: m.target, options: ['ro', 'rbind'] };
      return { ...m, options: [...options, `lowerdir=${upper}:${lower}`] };
    }
    const options = m.options.filter((o) => o !== 'rw');
    return { ...m, options: options.includes('ro') ? options : [...options, 'ro'] };
  });
}

/** Write everything into a content writer, hashing and counting it. */
class ContentSink extends Writable {
  private readonly hash = createHash('sha256');
  size = 0;

  constructor(private readonly writer: ContentWriter) {
    super({ highWaterMark: 1 << 20 });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    this.writer.write(chunk).then(() => cb(), (e: unknown) => cb(e instanceof Error ? e : new Error(String(e))));
  }

  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/** Make a layer blob of `changes`, compressed as the media type says, into the content store. */
async function writeLayer(
  store: ContentStore, changes: LayerChanges, mediaType: string, ref: string, labels: Readonly<Record<string, string>>,
): Promise<WireDescriptor> {
  const compression = compressionOfMediaType(mediaType);
  if (compression === undefined) throw notImplemented(`diff: unsupported diff media type ${JSON.stringify(mediaType)}`);
  if (compression === 'zstd') throw notImplemented(`diff: making zstd-compressed layers (${mediaType}) is not supported; ask for gzip or an uncompressed tar`);
  const writer = await store.writer({ ref });
  let committed = false;
  try {
    await writer.truncate(0);
    const sink = new ContentSink(writer);
    const head = compression === 'gzip' ? createGzip() : new PassThrough();
    const flowing = pipeline(head, sink);
    let made;
    try {
      made = await makeLayer(changes, head);
    } catch (e) {
      head.destroy(e instanceof Error ? e : new Error(String(e)));
      await flowing.catch(() => undefined);
      throw e;
    }
    await flowing;
    const digest = sink.digest();
    const all = { ...labels, [UNCOMPRESSED_LABEL]: made.digest };
    try {
      await writer.commit(sink.size, digest, { labels: all });
    } catch (e) {
      if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
      await store.update(digest, all, Object.keys(all).map((k) => `labels.${k}`));
      await store.abort(ref).catch(() => undefined);
    }
    committed = true;
    return { mediaType, digest, size: sink.size, annotations: {} };
  } finally {
    if (!committed) {
      await writer.close().catch(() => undefined);
      await store.abort(ref).catch(() => undefined);
    }
  }
}

export const diffService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'diff',
  requires: [ContentPlugin],
  init: (ic) => {
    const content = ic.get(ContentPlugin);
    const tempDir = join(ic.paths.state, 'diff');
    return {
      service: 'containerd.services.diff.v1.Diff',
      unary: {
        Apply: async (req, ctx) => {
          const store = content.namespace(ctx.namespace());
          const desc = descriptorFromWire(req['diff'], 'diff');
          if (desc.digest === '') throw invalid('apply: diff.digest must be set');
          if (desc.mediaType !== '' && compressionOfMediaType(desc.mediaType) === undefined) {
            throw notImplemented(`apply: unsupported diff media type ${JSON.stringify(desc.mediaType)}`);
          }
          const mounts = mountsFromWire(req, 'mounts');
          const target = applyTarget(mounts);
          const reader = await store.reader(desc.digest);
          let applied;
          try {
            applied = await applyToMounts(reader.stream(), mounts, desc.mediaType);
          } finally {
            await reader.close();
          }
          if (req['sync_fs'] === true) await run('sync', ['-f', target.dir]);
          return { applied: descriptorToWire({ mediaType: LAYER_TAR, digest: applied.digest, size: applied.size, annotations: {} }) };
        },
        Diff: async (req, ctx) => {
          const store = content.namespace(ctx.namespace(), leaseOf(ctx));
          const left = mountsFromWire(req, 'left');
          const right = mountsFromWire(req, 'right');
          if (right.length === 0) throw invalid('diff: right mounts must be set');
          const mediaType = str(req, 'media_type', 'request') || LAYER_GZIP;
          const ref = str(req, 'ref', 'request') || `diff-${randomBytes(12).toString('hex')}`;
          const labels = strMap(req, 'labels', 'request');
          const direct = upperDiff(left, right);
          if (direct !== undefined) return { diff: descriptorToWire(await writeLayer(store, direct, mediaType, ref, labels)) };
          // Compare the two trees, mounted read-only side by side.
          await mkdir(tempDir, { recursive: true, mode: 0o700 });
          const work = await mkdtemp(join(tempDir, 'cmp-'));
          const base = join(work, 'left');
          const changed = join(work, 'right');
          try {
            await mkdir(base);
            await mkdir(changed);
            if (left.length > 0) await mountAll(readOnly(left), base);
            try {
              await mountAll(readOnly(right), changed);
              try {
                return { diff: descriptorToWire(await writeLayer(store, { base, changed }, mediaType, ref, labels)) };
              } finally {
                await unmountAll(changed);
              }
            } finally {
              await unmountAll(base);
            }
          } finally {
            // Never recursive: if an unmount failed, a snapshot's files are still below.
            for (const d of [base, changed, work]) await rmdir(d).catch(() => undefined);
          }
        },
      },
    };
  },
};
