/**
 * Garbage collection, as containerd's: a mark and sweep over the metadata of
 * every namespace. Roots are
 *   - images (their target blob; their labels' references),
 *   - containers (their snapshot in their snapshotter; their labels'
 *     references; the image name is no reference),
 *   - leases that have not expired (what they hold: content, snapshots),
 *   - content and snapshots labelled containerd.io/gc.root.
 * Edges follow gc.ref labels and a snapshot's parent (gc/refs.ts). Whatever
 * is not reached is removed: content records, then the blobs no namespace
 * sees any more, and snapshots, children before their parents. Leases whose
 * containerd.io/gc.expire time has passed are removed first.
 *
 * One collection at a time. Marking and the removal of records happen in one
 * synchronous database transaction, so no commit or container or lease change
 * falls between them; snapshot changes (which are asynchronous) wait while a
 * collection reads and removes snapshots, through snapshotMutation(). A blob
 * whose commit is under way is never removed. Deletes ask for a collection
 * with schedule() (debounced), or with collectNow() when the caller waits.
 */
import type { Logger } from '@berth/base';
import type { Snapshotter } from '@berth/images';
import { MetadataPlugin } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { MetadataStore } from '../metadata/store.js';
import { ContentPlugin } from '../services/content.js';
import type { MetadataContentStore } from '../services/content.js';
import { ImagesPlugin } from '../services/images.js';
import { LeaseStore } from '../services/leases.js';
import { SnapshotterPlugin } from '../services/snapshots.js';
import { GCPlugin } from './types.js';
import type { Collector, GcStats } from './types.js';
import {
  LABEL_FLAT, contentNode, expiryOf, isRoot, labelRefs, mark, resourceNode, snapshotNode,
} from './refs.js';
import type { NodeRefs, Root } from './refs.js';

/** How long after the last request a scheduled collection runs. */
export const DEFAULT_GC_DELAY_MS = 100;

/** Readers share, a writer excludes; a waiting writer goes before readers that come after it. */
export class RwLock {
  private readers = 0;
  private writer = false;
  private readonly queue: { exclusive: boolean; go: () => void }[] = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(false);
    try {
      return await fn();
    } finally {
      this.readers -= 1;
      this.drain();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(true);
    try {
      return await fn();
    } finally {
      this.writer = false;
      this.drain();
    }
  }

  private acquire(exclusive: boolean): Promise<void> {
    if (this.queue.length === 0 && !this.writer && (!exclusive || this.readers === 0)) {
      if (exclusive) this.writer = true;
      else this.readers += 1;
      return Promise.resolve();
    }
    return new Promise((go) => this.queue.push({ exclusive, go }));
  }

  private drain(): void {
    for (let next = this.queue[0]; next !== undefined; next = this.queue[0]) {
      if (this.writer) return;
      if (next.exclusive) {
        if (this.readers > 0) return;
        this.writer = true;
      } else {
        this.readers += 1;
      }
      this.queue.shift();
      next.go();
    }
  }
}

interface SnapshotEntry {
  readonly snapshotter: Snapshotter;
  /** The snapshotter's own key: "<namespace>/<key>". */
  readonly backendKey: string;
  readonly refs: NodeRefs;
}

interface LabelRow { namespace: string; id: string; key: string; value: string }

function tableExists(meta: MetadataStore, table: string): boolean {
  return meta.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !== undefined;
}

/** Labels grouped by (namespace, id). */
function groupLabels(rows: readonly LabelRow[]): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  for (const r of rows) {
    const k = `${r.namespace}\0${r.id}`;
    let labels = out.get(k);
    if (labels === undefined) {
      labels = {};
      out.set(k, labels);
    }
    Object.defineProperty(labels, r.key, { value: r.value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

export class GarbageCollector implements Collector {
  readonly leases: LeaseStore;
  private readonly lock = new RwLock();
  private timer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiryAt: number | undefined;
  /** Collections run one after another on this chain. */
  private chain: Promise<unknown> = Promise.resolve();
  private waiters: { resolve(s: GcStats): void; reject(e: unknown): void }[] = [];
  private closed = false;

  constructor(
    private readonly meta: MetadataStore,
    private readonly content: MetadataContentStore | undefined,
    private readonly snapshotters: ReadonlyMap<string, Snapshotter>,
    private readonly log: Logger,
    private readonly delayMs = DEFAULT_GC_DELAY_MS,
  ) {
    this.leases = new LeaseStore(meta);
    // Leases that expired while the daemon was down go at the first collection.
    const next = this.meta.transaction(() => this.nextExpiry(Date.now()));
    if (next !== undefined) this.armExpiry(next);
  }

  schedule(): void {
    if (this.closed) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fire(), this.delayMs);
    this.timer.unref();
  }

  collectNow(): Promise<GcStats> {
    if (this.closed) return Promise.resolve({ content: 0, blobs: 0, snapshots: 0, leases: 0 });
    const p = new Promise<GcStats>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.fire();
    return p;
  }

  leaseCreated(labels: Readonly<Record<string, string>>): void {
    const at = expiryOf(labels);
    if (at !== undefined) this.armExpiry(at.getTime());
  }

  snapshotMutation<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.shared(fn);
  }

  /** Stop scheduling; wait for a collection under way. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.timer = undefined;
    this.expiryTimer = undefined;
    await this.chain;
  }

  private armExpiry(at: number): void {
    if (this.closed) return;
    if (this.expiryTimer !== undefined && this.expiryAt !== undefined && this.expiryAt <= at) return;
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.expiryAt = at;
    // A little after the time, so the lease has expired when the collection looks.
    const wait = Math.min(Math.max(0, at - Date.now() + 10), 0x7fffffff);
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.expiryAt = undefined;
      this.fire();
    }, wait);
    this.expiryTimer.unref();
  }

  /** Start a collection after the running one; it answers everyone waiting now. */
  private fire(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const waiting = this.waiters.splice(0);
    const run = this.chain.then(() => this.collect());
    this.chain = run.catch(() => undefined);
    run.then(
      (stats) => { for (const w of waiting) w.resolve(stats); },
      (e: unknown) => {
        this.log.warn('garbage collection failed', { error: e instanceof Error ? e.message : String(e) });
        for (const w of waiting) w.reject(e);
      },
    );
  }

  /** One collection. */
  private async collect(): Promise<GcStats> {
    const started = Date.now();
    let content = 0;
    let snapshots = 0;
    let leases = 0;
    await this.lock.exclusive(async () => {
      const snaps = await this.readSnapshots();
      const swept = this.meta.transaction(() => this.markAndSweep(snaps));
      content = swept.content;
      leases = swept.leases;
      if (swept.nextExpiry !== undefined) this.armExpiry(swept.nextExpiry);
      // Children before parents: deepest first.
      const depth = (node: string): number => {
        let d = 0;
        for (let p = snaps.get(node)?.refs.parent; p !== undefined && d < 10_000; p = snaps.get(p)?.refs.parent) d += 1;
        return d;
      };
      const doomed = swept.snapshots.map((node) => ({ node, depth: depth(node) })).sort((a, b) => b.depth - a.depth);
      for (const { node } of doomed) {
        const s = snaps.get(node);
        if (s === undefined) continue;
        try {
          await s.snapshotter.remove(s.backendKey);
          snapshots += 1;
        } catch (e) {
          this.log.warn('garbage collection: removing snapshot', {
            snapshotter: s.snapshotter.name, key: s.backendKey, error: e instanceof Error ? e.message : String(e),
          });
        }
      }
    });
    const blobs = await this.sweepBlobs();
    const stats = { content, blobs, snapshots, leases };
    const fields = { ...stats, ms: Date.now() - started };
    if (content + blobs + snapshots + leases > 0) this.log.info('garbage collected', fields);
    else this.log.debug('garbage collection: nothing to remove', fields);
    return stats;
  }

  /** Every snapshot of every snapshotter, by node. */
  private async readSnapshots(): Promise<Map<string, SnapshotEntry>> {
    const out = new Map<string, SnapshotEntry>();
    for (const [name, sn] of this.snapshotters) {
      await sn.walk((info) => {
        const slash = info.name.indexOf('/');
        if (slash <= 0) return;
        const ns = info.name.slice(0, slash);
        const prefix = `${ns}/`;
        const parent = info.parent.startsWith(prefix) ? snapshotNode(ns, name, info.parent.slice(prefix.length)) : undefined;
        out.set(snapshotNode(ns, name, info.name.slice(prefix.length)), {
          snapshotter: sn,
          backendKey: info.name,
          refs: parent === undefined ? { labels: info.labels } : { labels: info.labels, parent },
        });
      });
    }
    return out;
  }

  /** The earliest expiry still to come (ms), among all leases. */
  private nextExpiry(now: number): number | undefined {
    let next: number | undefined;
    const rows = this.meta.db.prepare<[string], { value: string }>('SELECT value FROM lease_labels WHERE key = ?').all('containerd.io/gc.expire');
    for (const r of rows) {
      const at = expiryOf({ 'containerd.io/gc.expire': r.value })?.getTime();
      if (at !== undefined && at > now && (next === undefined || at < next)) next = at;
    }
    return next;
  }

  /**
   * In one transaction: drop expired leases, mark from the roots, remove the
   * content records not reached. Returns the snapshots not reached.
   */
  private markAndSweep(snaps: ReadonlyMap<string, SnapshotEntry>): { content: number; leases: number; snapshots: string[]; nextExpiry: number | undefined } {
    const db = this.meta.db;
    const now = Date.now();
    const roots: Root[] = [];

    // Leases: the expired go, the others hold their resources.
    const leaseLabels = groupLabels(db.prepare<[], LabelRow>('SELECT namespace, id, key, value FROM lease_labels').all());
    let expired = 0;
    const flat = new Set<string>();
    for (const l of db.prepare<[], { namespace: string; id: string }>('SELECT namespace, id FROM leases').all()) {
      const labels = leaseLabels.get(`${l.namespace}\0${l.id}`) ?? {};
      const at = expiryOf(labels);
      if (at !== undefined && at.getTime() <= now) {
        db.prepare('DELETE FROM leases WHERE namespace = ? AND id = ?').run(l.namespace, l.id);
        expired += 1;
        continue;
      }
      const f = Object.prototype.hasOwnProperty.call(labels, LABEL_FLAT) ? labels[LABEL_FLAT] : undefined;
      if (f !== undefined && f !== '') flat.add(`${l.namespace}\0${l.id}`);
    }
    for (const r of db.prepare<[], { namespace: string; id: string; type: string; resource: string }>(
      'SELECT namespace, id, type, resource FROM lease_resources').all()) {
      const node = resourceNode(r.namespace, r.type, r.resource);
      if (node !== undefined) roots.push({ node, flat: flat.has(`${r.namespace}\0${r.id}`) });
    }

    // Images: their target and their labels' references.
    if (tableExists(this.meta, 'images')) {
      for (const i of db.prepare<[], { namespace: string; target_digest: string }>('SELECT namespace, target_digest FROM images').all()) {
        roots.push({ node: contentNode(i.namespace, i.target_digest), flat: false });
      }
      for (const [k, labels] of groupLabels(db.prepare<[], LabelRow>('SELECT namespace, name AS id, key, value FROM image_labels').all())) {
        for (const node of labelRefs(k.slice(0, k.indexOf('\0')), labels)) roots.push({ node, flat: false });
      }
    }

    // Containers: their snapshot and their labels' references.
    for (const c of db.prepare<[], { namespace: string; snapshotter: string; snapshot_key: string }>(
      "SELECT namespace, snapshotter, snapshot_key FROM containers WHERE snapshot_key != ''").all()) {
      roots.push({ node: snapshotNode(c.namespace, c.snapshotter, c.snapshot_key), flat: false });
    }
    for (const [k, labels] of groupLabels(db.prepare<[], LabelRow>('SELECT namespace, id, key, value FROM container_labels').all())) {
      for (const node of labelRefs(k.slice(0, k.indexOf('\0')), labels)) roots.push({ node, flat: false });
    }

    // Content records and their labels.
    const contentRefs = new Map<string, NodeRefs>();
    const contentRows: { namespace: string; digest: string }[] = [];
    if (tableExists(this.meta, 'content')) {
      const labels = groupLabels(db.prepare<[], LabelRow>('SELECT namespace, digest AS id, key, value FROM content_labels').all());
      for (const r of db.prepare<[], { namespace: string; digest: string }>('SELECT namespace, digest FROM content').all()) {
        const l = labels.get(`${r.namespace}\0${r.digest}`) ?? {};
        const node = contentNode(r.namespace, r.digest);
        contentRefs.set(node, { labels: l });
        contentRows.push(r);
        if (isRoot(l)) roots.push({ node, flat: false });
      }
    }
    for (const [node, s] of snaps) if (isRoot(s.refs.labels)) roots.push({ node, flat: false });

    const reached = mark(roots, (node) => contentRefs.get(node) ?? snaps.get(node)?.refs);

    let content = 0;
    const del = db.prepare('DELETE FROM content WHERE namespace = ? AND digest = ?');
    for (const r of contentRows) {
      if (reached.has(contentNode(r.namespace, r.digest))) continue;
      content += del.run(r.namespace, r.digest).changes;
    }
    const snapshots = [...snaps.keys()].filter((n) => !reached.has(n));
    return { content, leases: expired, snapshots, nextExpiry: this.nextExpiry(now) };
  }

  /** Remove the blobs that no namespace sees and no commit is writing. */
  private async sweepBlobs(): Promise<number> {
    if (this.content === undefined) return 0;
    let removed = 0;
    for (const b of await this.content.local.list()) {
      try {
        if (this.content.removeBlobIfUnseen(b.digest)) removed += 1;
      } catch (e) {
        this.log.warn('garbage collection: removing blob', { digest: b.digest, error: e instanceof Error ? e.message : String(e) });
      }
    }
    return removed;
  }
}

export const gcPlugin: PluginRecord<Collector> = {
  type: GCPlugin,
  id: 'scheduler',
  requires: [MetadataPlugin, ContentPlugin, SnapshotterPlugin, ImagesPlugin],
  init: (ic) => new GarbageCollector(ic.get(MetadataPlugin), ic.getAll(ContentPlugin).get('content'), ic.getAll(SnapshotterPlugin), ic.log),
};
