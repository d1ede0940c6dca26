/**
 * What the image service asks of the supervisor, over its gRPC API: blobs
 * read and written through the Content service, image records, leases that
 * hold what an operation creates until an image record references it, and
 * the wire form of descriptors and timestamps.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ErrorKind, invalid, isKind } from '@berth/base';
import type { ImageDescriptor } from '@berth/images';
import { SERVICES, fromGrpcError } from '@berth/supervisor';
import type { ContainerdClient, Message } from '@berth/supervisor';

/** An image record as the Images service keeps it. */
export interface ImageRecord {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly target: ImageDescriptor;
  /** ms since the epoch. */
  readonly createdAt: number;
  readonly updatedAt: number;
}

const rec = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null ? v as Record<string, unknown> : {});
const strOf = (v: unknown): string => (typeof v === 'string' ? v : '');
const numOf = (v: unknown): number => (typeof v === 'number' ? v : typeof v === 'string' && v !== '' ? Number(v) : 0);

function mapOf(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(rec(v))) if (typeof x === 'string') out[k] = x;
  return out;
}

/** google.protobuf.Timestamp as ms since the epoch. */
export function msOf(ts: unknown): number {
  const t = rec(ts);
  return numOf(t['seconds']) * 1000 + Math.floor(numOf(t['nanos']) / 1e6);
}

export function descFromWire(v: unknown): ImageDescriptor {
  const d = rec(v);
  const annotations = mapOf(d['annotations']);
  return {
    mediaType: strOf(d['media_type']),
    digest: strOf(d['digest']),
    size: numOf(d['size']),
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
}

export function descToWire(d: ImageDescriptor): Message {
  return { media_type: d.mediaType, digest: d.digest, size: d.size, annotations: { ...(d.annotations ?? {}) } };
}

export function recordFromWire(v: unknown): ImageRecord {
  const r = rec(v);
  return {
    name: strOf(r['name']),
    labels: mapOf(r['labels']),
    target: descFromWire(r['target']),
    createdAt: msOf(r['created_at']),
    updatedAt: msOf(r['updated_at']),
  };
}

export async function listRecords(client: ContainerdClient, filters: readonly string[] = []): Promise<ImageRecord[]> {
  const res = await client.call(SERVICES.images, 'List', { filters: [...filters] });
  const list = Array.isArray(res['images']) ? res['images'] : [];
  return list.map(recordFromWire).filter((r) => r.name !== '');
}

export async function getRecord(client: ContainerdClient, name: string): Promise<ImageRecord | undefined> {
  try {
    const res = await client.call(SERVICES.images, 'Get', { name });
    return recordFromWire(res['image']);
  } catch (e) {
    if (isKind(e, ErrorKind.NotFound)) return undefined;
    throw e;
  }
}

/** Create the record, or point the existing one at `target`. Returns the target it had before, if any. */
export async function putRecord(
  client: ContainerdClient, name: string, target: ImageDescriptor, labels: Readonly<Record<string, string>> = {},
): Promise<{ previous: ImageDescriptor | undefined }> {
  const image = { name, labels: { ...labels }, target: descToWire(target) };
  const before = await getRecord(client, name);
  if (before === undefined) {
    try {
      await client.call(SERVICES.images, 'Create', { image });
      return { previous: undefined };
    } catch (e) {
      if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
    }
  }
  await client.call(SERVICES.images, 'Update', { image, update_mask: { paths: ['target'] } });
  return { previous: before?.target };
}

/** Delete a record; with sync, the supervisor collects what it no longer references before answering. */
export async function deleteRecord(client: ContainerdClient, name: string, sync: boolean): Promise<void> {
  await client.call(SERVICES.images, 'Delete', { name, sync });
}

export async function contentExists(client: ContainerdClient, digest: string): Promise<boolean> {
  try {
    await client.call(SERVICES.content, 'Info', { digest });
    return true;
  } catch (e) {
    if (isKind(e, ErrorKind.NotFound)) return false;
    throw e;
  }
}

export async function contentLabels(client: ContainerdClient, digest: string): Promise<Record<string, string>> {
  const res = await client.call(SERVICES.content, 'Info', { digest });
  return mapOf(rec(res['info'])['labels']);
}

/** Set some labels of a blob (others are kept). */
export async function setContentLabels(client: ContainerdClient, digest: string, labels: Readonly<Record<string, string>>): Promise<void> {
  const paths = Object.keys(labels).map((k) => `labels.${k}`);
  if (paths.length === 0) return;
  await client.call(SERVICES.content, 'Update', { info: { digest, labels: { ...labels } }, update_mask: { paths } });
}

/** A blob's bytes, read whole (manifests, configs: small things), at most `limit` bytes. */
export async function readContent(client: ContainerdClient, digest: string, limit = 16 << 20): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of contentStream(client, digest)) {
    size += c.length;
    if (size > limit) throw invalid(`blob ${digest} is larger than ${limit} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/** A blob's bytes as a stream of chunks. */
export async function* contentStream(client: ContainerdClient, digest: string): AsyncGenerator<Buffer> {
  const call = client.stream(SERVICES.content, 'Read', { digest, offset: 0, size: 0 });
  try {
    for await (const m of call) {
      const data = (m as Message)['data'];
      if (Buffer.isBuffer(data) && data.length > 0) yield data;
    }
  } catch (e) {
    throw fromGrpcError(e);
  } finally {
    call.cancel();
  }
}

const WRITE_CHUNK = 1 << 20;

export interface WriteOptions {
  /** The digest the bytes must have (known beforehand), or undefined to take what they hash to. */
  readonly expected?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/**
 * Write a blob through Content.Write: WRITE messages of up to 1 MiB, each
 * answered before the next is sent, then COMMIT. A blob already stored
 * (AlreadyExists) counts as written.
 */
export async function writeContent(
  client: ContainerdClient, source: Buffer | AsyncIterable<Uint8Array>, opts: WriteOptions = {},
): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  const ref = `berthd-${Date.now()}-${randomBytes(6).toString('hex')}`;
  const call = client.duplex(SERVICES.content, 'Write');
  const answers = call[Symbol.asyncIterator]();
  const total = Buffer.isBuffer(source) ? source.length : 0;
  const expected = opts.expected ?? '';
  let offset = 0;
  let digest: string | undefined;
  const send = async (msg: Message): Promise<void> => {
    call.write(msg);
    const r = await answers.next();
    if (r.done === true) throw invalid(`content write ${ref}: the supervisor ended the stream early`);
  };
  try {
    try {
      const chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = Buffer.isBuffer(source) ? pieces(source) : source;
      let first = true;
      for await (const c of chunks) {
        for (let i = 0; i < c.length; i += WRITE_CHUNK) {
          const data = Buffer.from(c.subarray(i, i + WRITE_CHUNK));
          hash.update(data);
          await send({ action: 'WRITE', ref, total, expected: first ? expected : '', offset, data });
          first = false;
          offset += data.length;
        }
      }
      digest = `sha256:${hash.digest('hex')}`;
      if (opts.expected !== undefined && digest !== opts.expected) {
        throw invalid(`content ${opts.expected}: the bytes written hash to ${digest}`);
      }
      await send({ action: 'COMMIT', ref, total: offset, expected: digest, offset, data: Buffer.alloc(0), labels: { ...(opts.labels ?? {}) } });
      call.end();
      return { digest, size: offset };
    } catch (e) {
      throw fromGrpcError(e);
    }
  } catch (e) {
    call.cancel();
    if (isKind(e, ErrorKind.AlreadyExists)) {
      // Stored already: drain the source so that the digest is known (a Buffer is hashed at once).
      if (opts.expected !== undefined) {
        if (opts.labels !== undefined) await setContentLabels(client, opts.expected, opts.labels);
        return { digest: opts.expected, size: Buffer.isBuffer(source) ? source.length : offset };
      }
      if (digest === undefined) {
        if (!Buffer.isBuffer(source)) {
          for await (const c of source) {
            hash.update(c);
            offset += c.length;
          }
        }
        digest = `sha256:${hash.digest('hex')}`;
      }
      if (opts.labels !== undefined) await setContentLabels(client, digest, opts.labels);
      return { digest, size: offset };
    }
    await client.call(SERVICES.content, 'Abort', { ref }).catch(() => undefined);
    throw e;
  }
}

function* pieces(b: Buffer): Generator<Buffer> {
  if (b.length === 0) yield b;
  for (let i = 0; i < b.length; i += WRITE_CHUNK) yield b.subarray(i, i + WRITE_CHUNK);
}

/**
 * A lease: what is added to it survives garbage collection until end().
 * It expires by itself after a day should the engine die holding it.
 */
export class Lease {
  private constructor(private readonly client: ContainerdClient, readonly id: string) {}

  static async create(client: ContainerdClient, what: string): Promise<Lease> {
    const id = `berthd-${what}-${Date.now()}-${randomBytes(4).toString('hex')}`;
    const expire = new Date(Date.now() + 24 * 3600 * 1000).toISOString();
    await client.call(SERVICES.leases, 'Create', { id, labels: { 'containerd.io/gc.expire': expire } });
    return new Lease(client, id);
  }

  async add(type: string, id: string): Promise<void> {
    await this.client.call(SERVICES.leases, 'AddResource', { id: this.id, resource: { id, type } });
  }

  async end(): Promise<void> {
    await this.client.call(SERVICES.leases, 'Delete', { id: this.id, sync: false }).catch(() => undefined);
  }
}
