/**
 * Content: the local store's blobs (shared by every namespace, in
 * <root>/content) seen through the metadata database, which says which
 * namespace sees which blob and keeps its labels, as containerd's metadata
 * layer does over its local store. And containerd.services.content.v1.Content
 * over that.
 *
 *   content          (namespace, digest) PK, size, created_s/ns, updated_s/ns   namespace → namespaces(name)
 *   └─ content_labels (namespace, digest, key) PK, value                          ON DELETE CASCADE
 *
 * A blob becomes visible in a namespace when a commit there stores it, or
 * when it is already in the local store (committed by another namespace):
 * then no byte is written again, the row is added and the writer gets
 * AlreadyExists. Ingest refs are kept per namespace: the local store sees
 * "<namespace>/<ref>" (a namespace is an identifier, so the first "/" ends it).
 *
 * Deleting the last row of a blob removes the blob from disk at once, unless
 * a commit of that digest is under way; the garbage collector (gc/) removes
 * the rows nothing references and, the same way, the blobs left unseen.
 *
 * A store opened for a lease (the `containerd-lease` of a call) adds what it
 * writes to that lease: the ingest's ref when a writer opens, the digest when
 * it commits (or when the blob is already there), as containerd does.
 */
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';
import {
  ErrorKind, alreadyExists, errnoCode, failedPrecondition, invalid, isKind, notFound,
} from '@berth/base';
import { LocalContentStore, CONTENT_CHUNK, parseContentDigest } from '@berth/images';
import type {
  CommitOptions, ContentInfo, ContentReader, ContentStatus, ContentStore, ContentWriter, ContentWriterOptions,
} from '@berth/images';
import { EventPlugin, GRPCPlugin, MetadataPlugin, pluginType } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { GrpcService } from '../grpc.js';
import { mapField, parseFilters, present } from '../filters.js';
import type { Adaptor } from '../filters.js';
import type { MetadataStore } from '../metadata/store.js';
import { LeaseStore, leaseOf } from './leases.js';
import { fieldMask, num, record, str, strList, strMap, validateIdentifier, validateLabels } from '../wire.js';
import type { Timestamp, Wire } from '../wire.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS content (
  namespace  TEXT NOT NULL REFERENCES namespaces(name),
  digest     TEXT NOT NULL,
  size       INTEGER NOT NULL,
  created_s  INTEGER NOT NULL,
  created_ns INTEGER NOT NULL,
  updated_s  INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL,
  PRIMARY KEY (namespace, digest)
) STRICT;
CREATE TABLE IF NOT EXISTS content_labels (
  namespace TEXT NOT NULL,
  digest    TEXT NOT NULL,
  key       TEXT NOT NULL,
  value     TEXT NOT NULL,
  PRIMARY KEY (namespace, digest, key),
  FOREIGN KEY (namespace, digest) REFERENCES content(namespace, digest) ON DELETE CASCADE
) STRICT;
`;

interface ContentRow {
  digest: string;
  size: number;
  created_s: number;
  created_ns: number;
  updated_s: number;
  updated_ns: number;
}

function dateOf(s: number, ns: number): Date {
  return new Date(s * 1000 + Math.floor(ns / 1_000_000));
}

export function timestampOf(d: Date): Timestamp {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

function toMap(entries: readonly (readonly [string, string])[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

function own(map: Readonly<Record<string, string>>, key: string): string | undefined {
  return Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined;
}

/** A digest from a request, checked; messages as containerd's service. */
function requestDigest(d: string): string {
  try {
    parseContentDigest(d);
  } catch (e) {
    throw invalid(`${JSON.stringify(d)} failed validation: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  return d;
}

/** The labels after an update with containerd's field paths ("labels", "labels.<key>"; none = all). */
export function applyContentMask(
  digest: string, current: Readonly<Record<string, string>>, incoming: Readonly<Record<string, string>>, paths: readonly string[],
): Record<string, string> {
  if (paths.length === 0) return { ...incoming };
  let next: Record<string, string> = { ...current };
  for (const path of paths) {
    if (path.startsWith('labels.')) {
      const key = path.slice('labels.'.length);
      const v = own(incoming, key);
      if (v === undefined || v === '') delete next[key];
      else next[key] = v;
    } else if (path === 'labels') {
      next = { ...incoming };
    } else {
      throw invalid(`cannot update ${JSON.stringify(path)} field on content info ${JSON.stringify(digest)}`);
    }
  }
  return next;
}

/** The filter fields of a blob, as containerd's adaptor exposes them. */
export function contentAdaptor(i: ContentInfo): Adaptor {
  return (fp) => {
    switch (fp[0]) {
      case 'digest': return present(i.digest);
      case 'size': return String(i.size);
      case 'labels': return mapField(fp.slice(1), i.labels);
      default: return undefined;
    }
  };
}

export function statusAdaptor(s: ContentStatus): Adaptor {
  return (fp) => (fp.length === 1 && fp[0] === 'ref' ? present(s.ref) : undefined);
}

/**
 * The blobs of every namespace: the local store plus the content tables.
 * namespace(ns) is the ContentStore a namespace sees.
 */
export class MetadataContentStore {
  /** Commits (and adoptions) under way, by digest: their blob must not be removed. */
  private readonly pending = new Map<string, number>();

  private readonly leases: LeaseStore;

  constructor(readonly local: LocalContentStore, private readonly meta: MetadataStore) {
    meta.db.exec(SCHEMA);
    meta.registerNamespacedTable({ table: 'content', noun: 'blobs' });
    this.leases = new LeaseStore(meta);
  }

  /** The content store as namespace `ns` sees it; with a lease, what it writes is added to that lease. */
  namespace(ns: string, lease?: string): ContentStore {
    validateIdentifier(ns);
    return new NamespacedContent(this, ns, lease);
  }

  /** Add a resource to a lease (NotFound when the lease does not exist). */
  lease(ns: string, lease: string | undefined, type: 'content' | 'ingests', id: string): void {
    if (lease !== undefined) this.leases.addResource(ns, lease, { type, id });
  }

  hold(digest: string): () => void {
    this.pending.set(digest, (this.pending.get(digest) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.pending.get(digest) ?? 1) - 1;
      if (n <= 0) this.pending.delete(digest);
      else this.pending.set(digest, n);
    };
  }

  private readRows(ns: string, digest: string | undefined): ContentInfo[] {
    const db = this.meta.db;
    const where = digest === undefined ? 'namespace = ?' : 'namespace = ? AND digest = ?';
    const params = digest === undefined ? [ns] : [ns, digest];
    const rows = db.prepare<string[], ContentRow>(
      `SELECT digest, size, created_s, created_ns, updated_s, updated_ns FROM content WHERE ${where} ORDER BY digest`).all(...params);
    if (rows.length === 0) return [];
    const labels = db.prepare<string[], { digest: string; key: string; value: string }>(
      `SELECT digest, key, value FROM content_labels WHERE ${where} ORDER BY digest, key`).all(...params);
    const byDigest = new Map<string, [string, string][]>();
    for (const l of labels) {
      const list = byDigest.get(l.digest) ?? [];
      list.push([l.key, l.value]);
      byDigest.set(l.digest, list);
    }
    return rows.map((r) => ({
      digest: r.digest,
      size: r.size,
      createdAt: dateOf(r.created_s, r.created_ns),
      updatedAt: dateOf(r.updated_s, r.updated_ns),
      labels: toMap(byDigest.get(r.digest) ?? []),
    }));
  }

  find(ns: string, digest: string): ContentInfo | undefined {
    return this.meta.transaction(() => this.readRows(ns, digest)[0]);
  }

  get(ns: string, digest: string): ContentInfo {
    const info = this.find(ns, digest);
    if (info === undefined) throw notFound(`content digest ${digest}`);
    return info;
  }

  all(ns: string): ContentInfo[] {
    return this.meta.transaction(() => this.readRows(ns, undefined));
  }

  private writeLabels(ns: string, digest: string, labels: Readonly<Record<string, string>>): void {
    const db = this.meta.db;
    db.prepare('DELETE FROM content_labels WHERE namespace = ? AND digest = ?').run(ns, digest);
    const ins = db.prepare('INSERT INTO content_labels (namespace, digest, key, value) VALUES (?, ?, ?, ?)');
    for (const [k, v] of Object.entries(labels)) if (v !== '') ins.run(ns, digest, k, v);
  }

  /**
   * Make a blob of the local store visible in ns; AlreadyExists when it
   * already is. With a lease, the digest joins the lease in the same
   * transaction (also when it already exists), and the ingest ref leaves it.
   */
  addRow(ns: string, digest: string, size: number, labels: Readonly<Record<string, string>>, lease?: { id: string; ref?: string }): ContentInfo {
    const existed = this.meta.transaction(() => {
      const db = this.meta.db;
      if (lease !== undefined) {
        this.leases.addResource(ns, lease.id, { type: 'content', id: digest });
        if (lease.ref !== undefined) this.leases.deleteResource(ns, lease.id, { type: 'ingests', id: lease.ref });
      }
      if (this.readRows(ns, digest).length > 0) return true;
      db.prepare('INSERT INTO namespaces (name) VALUES (?) ON CONFLICT (name) DO NOTHING').run(ns);
      const t = nowTs();
      db.prepare(`INSERT INTO content (namespace, digest, size, created_s, created_ns, updated_s, updated_ns)
                  VALUES (?, ?, ?, ?, ?, ?, ?)`).run(ns, digest, size, t.seconds, t.nanos, t.seconds, t.nanos);
      this.writeLabels(ns, digest, labels);
      return false;
    });
    if (existed) throw alreadyExists(`content ${digest}`);
    return this.get(ns, digest);
  }


  updateLabels(ns: string, digest: string, labels: Readonly<Record<string, string>>, paths: readonly string[]): ContentInfo {
    return this.meta.transaction(() => {
      const current = this.get(ns, digest);
      const next = applyContentMask(digest, current.labels, labels, paths);
      validateLabels(next, 'content.Labels');
      this.writeLabels(ns, digest, next);
      const t = nowTs();
      this.meta.db.prepare('UPDATE content SET updated_s = ?, updated_ns = ? WHERE namespace = ? AND digest = ?')
        .run(t.seconds, t.nanos, ns, digest);
      return this.get(ns, digest);
    });
  }

  /** Remove the row; the blob goes too when no namespace sees it any more and no commit of it is under way. */
  deleteRow(ns: string, digest: string): void {
    const remaining = this.meta.transaction(() => {
      const db = this.meta.db;
      const r = db.prepare('DELETE FROM content WHERE namespace = ? AND digest = ?').run(ns, digest);
      if (r.changes === 0) throw notFound(`content digest ${digest}`);
      this.leases.forget(ns, { type: 'content', id: digest });
      const row = db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM content WHERE digest = ?').get(digest);
      return row?.n ?? 0;
    });
    if (remaining === 0) this.removeBlobIfUnseen(digest);
  }

  /**
   * Remove a blob from disk if no namespace sees it and no commit of it is
   * under way; true when it was removed. Synchronous from the check to the
   * unlink: no commit can slip in between.
   */
  removeBlobIfUnseen(digest: string): boolean {
    if (this.pending.has(digest)) return false;
    if (this.meta.db.prepare('SELECT 1 FROM content WHERE digest = ? LIMIT 1').get(digest) !== undefined) return false;
    try {
      unlinkSync(this.local.blobPath(digest));
      return true;
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw e;
      return false;
    }
  }
}

function nowTs(): Timestamp {
  const ms = Date.now();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

class NamespacedContent implements ContentStore {
  private readonly prefix: string;

  constructor(private readonly owner: MetadataContentStore, readonly ns: string, private readonly leaseId: string | undefined) {
    this.prefix = `${ns}/`;
  }

  private backendRef(ref: string): string {
    if (ref === '') throw invalid('ref must not be empty');
    return this.prefix + ref;
  }

  private scoped(s: ContentStatus): ContentStatus {
    return { ...s, ref: s.ref.slice(this.prefix.length) };
  }

  async info(digest: string): Promise<ContentInfo> {
    parseContentDigest(digest);
    return this.owner.get(this.ns, digest);
  }

  async reader(digest: string): Promise<ContentReader> {
    await this.info(digest);
    return this.owner.local.reader(digest);
  }

  async list(match?: (info: ContentInfo) => boolean): Promise<ContentInfo[]> {
    const all = this.owner.all(this.ns);
    return match === undefined ? all : all.filter(match);
  }

  async update(digest: string, labels: Readonly<Record<string, string>>, paths: readonly string[]): Promise<ContentInfo> {
    parseContentDigest(digest);
    return this.owner.updateLabels(this.ns, digest, labels, paths);
  }

  async delete(digest: string): Promise<void> {
    parseContentDigest(digest);
    this.owner.deleteRow(this.ns, digest);
  }

  /** A blob another namespace committed becomes visible here without a byte written. */
  private async adopt(digest: string, total: number, ref: string): Promise<void> {
    const release = this.owner.hold(digest);
    try {
      const info = await this.owner.local.info(digest);
      if (total > 0 && total !== info.size) {
        throw failedPrecondition(`content ${digest} is stored with size ${info.size}, not the expected ${total}`);
      }
      try {
        this.owner.addRow(this.ns, digest, info.size, {}, this.leaseId === undefined ? undefined : { id: this.leaseId, ref });
      } catch (e) {
        if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
      }
    } finally {
      release();
    }
  }

  async writer(opts: ContentWriterOptions): Promise<ContentWriter> {
    const expected = opts.expected ?? '';
    const backendRef = this.backendRef(opts.ref);
    if (expected !== '') {
      parseContentDigest(expected);
      if (this.owner.find(this.ns, expected) !== undefined) {
        this.owner.lease(this.ns, this.leaseId, 'content', expected);
        throw alreadyExists(`content ${expected}`);
      }
    }
    this.owner.lease(this.ns, this.leaseId, 'ingests', opts.ref);
    try {
      const inner = await this.owner.local.writer({ ...opts, ref: backendRef });
      return new NamespacedWriter(inner, opts.ref, this.owner, this.ns, this.leaseId);
    } catch (e) {
      if (expected !== '' && isKind(e, ErrorKind.AlreadyExists)) {
        await this.adopt(expected, opts.total ?? 0, opts.ref);
        throw alreadyExists(`content ${expected}`, e);
      }
      throw e;
    }
  }

  async status(ref: string): Promise<ContentStatus> {
    try {
      return this.scoped(await this.owner.local.status(this.backendRef(ref)));
    } catch (e) {
      if (isKind(e, ErrorKind.NotFound)) throw notFound(`ref ${ref}`, e);
      throw e;
    }
  }

  async listStatuses(match?: (s: ContentStatus) => boolean): Promise<ContentStatus[]> {
    const mine = await this.owner.local.listStatuses((s) => s.ref.startsWith(this.prefix));
    const scoped = mine.map((s) => this.scoped(s));
    return match === undefined ? scoped : scoped.filter(match);
  }

  async abort(ref: string): Promise<void> {
    try {
      await this.owner.local.abort(this.backendRef(ref));
    } catch (e) {
      if (isKind(e, ErrorKind.NotFound)) throw notFound(`ref ${ref}`, e);
      throw e;
    }
  }
}

class NamespacedWriter implements ContentWriter {
  constructor(
    private readonly inner: ContentWriter,
    readonly ref: string,
    private readonly owner: MetadataContentStore,
    private readonly ns: string,
    private readonly leaseId: string | undefined,
  ) {}

  status(): ContentStatus {
    return { ...this.inner.status(), ref: this.ref };
  }

  digest(): string {
    return this.inner.digest();
  }

  write(data: Uint8Array, offset?: number): Promise<void> {
    return this.inner.write(data, offset);
  }

  truncate(size: number): Promise<void> {
    return this.inner.truncate(size);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  async commit(size: number, expected: string, opts?: CommitOptions): Promise<ContentInfo> {
    const labels = opts?.labels ?? {};
    try {
      validateLabels(labels, 'content.Labels');
    } catch (e) {
      await this.inner.close();
      throw e;
    }
    const actual = this.inner.digest();
    const release = this.owner.hold(actual);
    try {
      let blobSize: number;
      try {
        blobSize = (await this.inner.commit(size, expected)).size;
      } catch (e) {
        if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
        blobSize = (await this.owner.local.info(actual)).size;
      }
      return this.owner.addRow(this.ns, actual, blobSize, labels, this.leaseId === undefined ? undefined : { id: this.leaseId, ref: this.ref });
    } finally {
      release();
    }
  }
}

// ---- plugins ----

export const ContentPlugin = pluginType<MetadataContentStore>('io.containerd.content.v1');

/** The content store: blobs in <root>/content, namespaces and labels in the metadata database. */
export const contentStorePlugin: PluginRecord<MetadataContentStore> = {
  type: ContentPlugin,
  id: 'content',
  requires: [MetadataPlugin],
  init: (ic) => {
    const root = join(ic.paths.root, 'content');
    ic.exports['root'] = root;
    return new MetadataContentStore(LocalContentStore.open(root), ic.get(MetadataPlugin));
  },
};

// ---- wire ----

export function contentInfoToWire(i: ContentInfo): object {
  return { digest: i.digest, size: i.size, created_at: timestampOf(i.createdAt), updated_at: timestampOf(i.updatedAt), labels: i.labels };
}

export function contentStatusToWire(s: ContentStatus): object {
  return {
    started_at: timestampOf(s.startedAt), updated_at: timestampOf(s.updatedAt), ref: s.ref, offset: s.offset, total: s.total, expected: s.expected,
  };
}

type WriteAction = 'STAT' | 'WRITE' | 'COMMIT';

interface WriteRequest {
  action: WriteAction;
  ref: string;
  total: number;
  expected: string;
  offset: number;
  data: Buffer;
  labels: Record<string, string>;
}

function parseWriteRequest(o: Wire): WriteRequest {
  const what = 'WriteContentRequest';
  const action = o['action'] ?? 'STAT';
  if (action !== 'STAT' && action !== 'WRITE' && action !== 'COMMIT') throw invalid(`${what}.action: unknown action ${JSON.stringify(action)}`);
  const data = o['data'];
  let bytes: Buffer;
  if (data === undefined || data === null) bytes = Buffer.alloc(0);
  else if (Buffer.isBuffer(data)) bytes = data;
  else if (data instanceof Uint8Array) bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  else throw invalid(`${what}.data: expected bytes`);
  const expected = str(o, 'expected', what);
  if (expected !== '') requestDigest(expected);
  return {
    action,
    ref: str(o, 'ref', what),
    total: num(o, 'total', what),
    expected,
    offset: num(o, 'offset', what),
    data: bytes,
    labels: strMap(o, 'labels', what),
  };
}

/** How many infos go in one List response message. */
const LIST_BATCH = 100;

/**
 * One Write stream, as containerd's service runs it: the first message names
 * the ref and opens (locks) the writer; every message gets one response with
 * the current offset; COMMIT verifies and stores, then the stream may only end.
 */
async function writeSession(store: ContentStore, requests: AsyncIterable<Wire>, out: { write(m: object): Promise<void> }): Promise<void> {
  const it = requests[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) return;
  let req = parseWriteRequest(first.value);
  if (req.ref === '') throw invalid('first message must have a reference');
  let total = req.total;
  let expected = req.expected;
  const w = await store.writer({ ref: req.ref, total, expected });
  let committed = false;
  try {
    for (;;) {
      if (committed) throw failedPrecondition(`ref ${req.ref}: already committed; the stream must end`);
      const ws = w.status();
      const res: Record<string, unknown> = { action: req.action, offset: ws.offset };
      if (req.expected !== '') {
        expected = req.expected;
        if (await exists(store, req.expected)) {
          await w.close();
          try {
            await store.abort(w.ref);
          } catch {
            /* nothing left to abort */
          }
          throw alreadyExists(`blob with expected digest ${req.expected} exists`);
        }
      }
      if (req.total > 0) total = req.total;
      if (req.action === 'STAT') {
        Object.assign(res, { digest: w.digest(), started_at: timestampOf(ws.startedAt), updated_at: timestampOf(ws.updatedAt), total });
      } else {
        if (req.offset > 0 && req.offset !== ws.offset) {
          throw invalid(`write @${req.offset} must occur at current offset ${ws.offset}`);
        }
        if (req.offset === 0 && ws.offset > 0) {
          await w.truncate(0);
          res['offset'] = 0;
        }
        if (req.data.length > 0) {
          await w.write(req.data);
          res['offset'] = w.status().offset;
        }
        if (req.action === 'COMMIT') {
          const st = w.status();
          await w.commit(total, expected, { labels: req.labels });
          committed = true;
          Object.assign(res, { started_at: timestampOf(st.startedAt), updated_at: timestampOf(st.updatedAt), total });
        }
        res['digest'] = w.digest();
      }
      await out.write(res);
      const next = await it.next();
      if (next.done === true) return;
      req = parseWriteRequest(next.value);
    }
  } finally {
    if (!committed) await w.close();
  }
}

async function exists(store: ContentStore, digest: string): Promise<boolean> {
  try {
    await store.info(digest);
    return true;
  } catch (e) {
    if (isKind(e, ErrorKind.NotFound)) return false;
    throw e;
  }
}

export const contentService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'content',
  requires: [ContentPlugin, EventPlugin],
  init: (ic) => {
    const content = ic.get(ContentPlugin);
    const events = ic.get(EventPlugin);
    return {
      service: 'containerd.services.content.v1.Content',
      unary: {
        Info: async (req: Wire, ctx) => {
          const store = content.namespace(ctx.namespace());
          return { info: contentInfoToWire(await store.info(requestDigest(str(req, 'digest', 'request')))) };
        },
        Update: async (req: Wire, ctx) => {
          const store = content.namespace(ctx.namespace());
          const info = record(req['info'], 'info');
          const digest = requestDigest(str(info, 'digest', 'info'));
          const paths = fieldMask(req['update_mask'], 'update_mask');
          return { info: contentInfoToWire(await store.update(digest, strMap(info, 'labels', 'info'), paths)) };
        },
        Delete: async (req: Wire, ctx) => {
          const ns = ctx.namespace();
          const digest = requestDigest(str(req, 'digest', 'request'));
          await content.namespace(ns).delete(digest);
          events.publish(ns, '/content/delete', 'containerd.events.ContentDelete', { digest });
          return {};
        },
        Status: async (req: Wire, ctx) => {
          const store = content.namespace(ctx.namespace());
          return { status: contentStatusToWire(await store.status(str(req, 'ref', 'request'))) };
        },
        ListStatuses: async (req: Wire, ctx) => {
          const store = content.namespace(ctx.namespace());
          const filter = parseFilters(strList(req, 'filters', 'request'));
          const statuses = await store.listStatuses((s) => filter.match(statusAdaptor(s)));
          return { statuses: statuses.map(contentStatusToWire) };
        },
        Abort: async (req: Wire, ctx) => {
          await content.namespace(ctx.namespace()).abort(str(req, 'ref', 'request'));
          return {};
        },
      },
      serverStream: {
        List: async (req: Wire, ctx, out) => {
          const store = content.namespace(ctx.namespace());
          const filter = parseFilters(strList(req, 'filters', 'request'));
          const infos = await store.list((i) => filter.match(contentAdaptor(i)));
          for (let i = 0; i < infos.length; i += LIST_BATCH) {
            await out.write({ info: infos.slice(i, i + LIST_BATCH).map(contentInfoToWire) });
          }
        },
        Read: async (req: Wire, ctx, out) => {
          const store = content.namespace(ctx.namespace());
          const digest = requestDigest(str(req, 'digest', 'request'));
          const r = await store.reader(digest);
          try {
            const offset = Math.max(0, num(req, 'offset', 'request'));
            const size = num(req, 'size', 'request');
            const end = size <= 0 || offset + size > r.size ? r.size : offset + size;
            for (let pos = offset; pos < end;) {
              const data = await r.readAt(pos, Math.min(CONTENT_CHUNK, end - pos));
              if (data.length === 0) break;
              await out.write({ offset: pos, data });
              pos += data.length;
            }
          } finally {
            await r.close();
          }
        },
      },
      bidiStream: {
        Write: async (requests, ctx, out) => writeSession(content.namespace(ctx.namespace(), leaseOf(ctx)), requests, out),
      },
    };
  },
};

