/**
 * What both directory-based snapshotters share: metadata in SQLite, one
 * directory per snapshot at <root>/snapshots/<id>, and the order of steps
 * that keeps the two consistent across crashes:
 *
 *   create: build the tree in snapshots/new-XXXX, then in one transaction
 *           insert the record and rename the tree to snapshots/<id>;
 *   remove: in one transaction delete the record and rename snapshots/<id>
 *           to snapshots/rm-<id>-XXXX, then delete that tree.
 *
 * A crash leaves at worst a directory no record owns; cleanup() removes it.
 * A record never points at a missing directory.
 */
import { mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { alreadyExists, errnoCode, failedPrecondition, invalid } from '@berth/base';
import { diskUsage } from './_fs.js';
import { SnapshotStore, validateKey, validateSnapshotLabels } from './_store.js';
import type { StoredSnapshot } from './_store.js';
import type { Mount, SnapshotInfo, SnapshotUpdate, SnapshotUsage, Snapshotter } from './types.js';

type Labels = Readonly<Record<string, string>>;

export abstract class DirSnapshotter implements Snapshotter {
  abstract readonly name: string;
  readonly root: string;
  /** <root>/snapshots: one directory per snapshot, named by id. */
  protected readonly dir: string;
  protected readonly store: SnapshotStore;
  /** Temp and removal directories in use right now; cleanup() leaves them alone. */
  private readonly busy = new Set<string>();

  protected constructor(root: string) {
    this.root = root;
    this.dir = join(root, 'snapshots');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.store = SnapshotStore.open(join(root, 'metadata.db'));
  }

  /** Fill a new snapshot's directory (already created, empty) from its parents (nearest first). */
  protected abstract populate(dir: string, kind: 'active' | 'view', parents: readonly StoredSnapshot[]): Promise<void>;
  /** The mounts of an active snapshot or view. */
  protected abstract mountsOf(s: StoredSnapshot, parents: readonly StoredSnapshot[]): Mount[];
  /** The directory holding a snapshot's own changes (what usage measures). */
  protected abstract layerDir(id: number): string;

  protected snapshotDir(id: number): string {
    return join(this.dir, String(id));
  }

  /** SQLite's consistency checks on the metadata; empty when consistent. */
  checkMetadata(): string[] {
    return this.store.check();
  }

  async stat(key: string): Promise<SnapshotInfo> {
    validateKey(key, 'key');
    return this.store.transaction(() => this.store.info(this.store.get(key)));
  }

  async update(info: SnapshotUpdate, fieldpaths: readonly string[] = []): Promise<SnapshotInfo> {
    validateKey(info.name, 'name');
    return this.store.transaction(() => {
      const s = this.store.get(info.name);
      let labels: Record<string, string> = { ...this.store.labels(s.id) };
      const paths = fieldpaths.length === 0 ? ['labels'] : fieldpaths;
      for (const path of paths) {
        if (path === 'labels') {
          labels = { ...info.labels };
        } else if (path.startsWith('labels.')) {
          const k = path.slice('labels.'.length);
          const v = Object.prototype.hasOwnProperty.call(info.labels, k) ? info.labels[k] : undefined;
          if (v === undefined || v === '') delete labels[k];
          else Object.defineProperty(labels, k, { value: v, enumerable: true, writable: true, configurable: true });
        } else {
          throw invalid(`cannot update ${JSON.stringify(path)} field on snapshot ${JSON.stringify(info.name)}`);
        }
      }
      validateSnapshotLabels(labels);
      return this.store.info(this.store.setLabels(info.name, labels));
    });
  }

  async usage(key: string): Promise<SnapshotUsage> {
    validateKey(key, 'key');
    const s = this.store.get(key);
    if (s.usage !== undefined) return s.usage;
    return diskUsage(this.layerDir(s.id));
  }

  async mounts(key: string): Promise<Mount[]> {
    validateKey(key, 'key');
    const { s, parents } = this.store.transaction(() => {
      const s = this.store.get(key);
      if (s.kind === 'committed') throw failedPrecondition(`snapshot ${JSON.stringify(key)} is committed: only active snapshots and views have mounts`);
      return { s, parents: this.store.parents(s) };
    });
    return this.mountsOf(s, parents);
  }

  prepare(key: string, parent: string, labels: Labels = {}): Promise<Mount[]> {
    return this.create('active', key, parent, labels);
  }

  view(key: string, parent: string, labels: Labels = {}): Promise<Mount[]> {
    return this.create('view', key, parent, labels);
  }

  private async create(kind: 'active' | 'view', key: string, parent: string, labels: Labels): Promise<Mount[]> {
    validateKey(key, 'key');
    validateSnapshotLabels(labels);
    // Fail early on what can be known now; checked again when the record is written.
    const parents = this.store.transaction(() => {
      if (this.store.find(key) !== undefined) throw alreadyExists(`snapshot ${JSON.stringify(key)}`);
      const p = this.store.parentFor(parent);
      return p === undefined ? [] : [p, ...this.store.parents(p)];
    });
    const tmp = await mkdtemp(join(this.dir, 'new-'));
    this.busy.add(tmp);
    let placed: string | undefined;
    try {
      await this.populate(tmp, kind, parents);
      const s = this.store.transaction(() => {
        const s = this.store.create(key, kind, parent, labels);
        if (s.parentId !== (parents[0]?.id ?? null)) {
          throw failedPrecondition(`parent snapshot ${JSON.stringify(parent)} was replaced while ${JSON.stringify(key)} was being prepared`);
        }
        placed = this.snapshotDir(s.id);
        this.place(tmp, placed);
        return s;
      });
      return this.mountsOf(s, parents);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      // The rename happened but the transaction did not commit: the tree is an orphan.
      if (placed !== undefined && this.store.find(key) === undefined) await rm(placed, { recursive: true, force: true });
      throw e;
    } finally {
      this.busy.delete(tmp);
    }
  }

  /** Move a finished tree to its final name; a leftover of a crash in the way (no record owns it) goes. */
  private place(tmp: string, final: string): void {
    try {
      renameSync(tmp, final);
    } catch (e) {
      const code = errnoCode(e);
      if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw e;
      rmSync(final, { recursive: true, force: true });
      renameSync(tmp, final);
    }
  }

  async commit(name: string, key: string, labels: Labels = {}): Promise<void> {
    validateKey(name, 'name');
    validateKey(key, 'key');
    validateSnapshotLabels(labels);
    const s = this.store.transaction(() => {
      const s = this.store.get(key);
      if (s.kind !== 'active') throw failedPrecondition(`snapshot ${JSON.stringify(key)} is not active (it is ${s.kind === 'view' ? 'a view' : 'committed'})`);
      if (this.store.find(name) !== undefined) throw alreadyExists(`snapshot ${JSON.stringify(name)}`);
      return s;
    });
    const usage = await diskUsage(this.layerDir(s.id));
    this.store.transaction(() => {
      const now = this.store.get(key);
      if (now.id !== s.id) throw failedPrecondition(`snapshot ${JSON.stringify(key)} was replaced while it was being committed`);
      this.store.commit(name, key, labels, usage);
    });
  }

  async remove(key: string): Promise<void> {
    validateKey(key, 'key');
    let moved: { from: string; to: string } | undefined;
    try {
      this.store.transaction(() => {
        const s = this.store.delete(key);
        const from = this.snapshotDir(s.id);
        const to = join(this.dir, `rm-${s.id}-${randomBytes(4).toString('hex')}`);
        try {
          renameSync(from, to);
        } catch (e) {
          if (errnoCode(e) === 'ENOENT') return;
          throw e;
        }
        moved = { from, to };
        this.busy.add(to);
      });
    } catch (e) {
      // The record stays (the commit failed after the move): put the tree back.
      if (moved !== undefined) {
        renameSync(moved.to, moved.from);
        this.busy.delete(moved.to);
      }
      throw e;
    }
    if (moved === undefined) return;
    const gone = moved.to;
    try {
      await rm(gone, { recursive: true, force: true });
    } finally {
      this.busy.delete(gone);
    }
  }

  async walk(fn: (info: SnapshotInfo) => void | Promise<void>, filter?: (info: SnapshotInfo) => boolean): Promise<void> {
    const infos = this.store.transaction(() => this.store.all().map((s) => this.store.info(s)));
    for (const info of infos) {
      if (filter === undefined || filter(info)) await fn(info);
    }
  }

  async cleanup(): Promise<void> {
    const names = await readdir(this.dir);
    // Decide and move aside in one synchronous step, so no snapshot placed meanwhile is taken.
    const victims: string[] = [];
    const ids = this.store.ids();
    const present = new Set(readdirSync(this.dir));
    for (const n of names) {
      const path = join(this.dir, n);
      if (!present.has(n) || this.busy.has(path)) continue;
      if (/^[0-9]+$/.test(n) && ids.has(Number(n))) continue;
      const gone = join(this.dir, `rm-cleanup-${randomBytes(6).toString('hex')}`);
      renameSync(path, gone);
      this.busy.add(gone);
      victims.push(gone);
    }
    for (const v of victims) {
      try {
        await rm(v, { recursive: true, force: true });
      } finally {
        this.busy.delete(v);
      }
    }
  }

  close(): void {
    this.store.close();
  }
}
