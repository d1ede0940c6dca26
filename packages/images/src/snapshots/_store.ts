/**
 * A snapshotter's metadata: one SQLite database per snapshotter root
 * (<root>/metadata.db; WAL, synchronous=FULL, exclusive lock so one process
 * owns the root). Every change is one transaction.
 *
 *   snapshots          id INTEGER PK AUTOINCREMENT   the directory snapshots/<id>
 *   │                  key TEXT UNIQUE               active key, view key or committed name
 *   │                  kind 'active'|'view'|'committed'
 *   │                  parent → snapshots(id)        NULL for none; a parent cannot go while referenced
 *   │                  created_ms, updated_ms
 *   │                  size, inodes                  usage recorded at commit; NULL before
 *   └─ snapshot_labels (id, key) PK, value           ON DELETE CASCADE
 *
 * Labels with an empty value are not stored.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { alreadyExists, failedPrecondition, invalid, notFound, unavailable } from '@berth/base';
import type { SnapshotInfo, SnapshotKind, SnapshotUsage } from './types.js';

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE snapshots (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  key        TEXT NOT NULL UNIQUE,
  kind       TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
  parent     INTEGER REFERENCES snapshots(id),
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  size       INTEGER,
  inodes     INTEGER
) STRICT;
CREATE INDEX snapshots_parent ON snapshots(parent);
CREATE TABLE snapshot_labels (
  id    INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
  key   TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (id, key)
) STRICT;
`;

/** A snapshot as stored. */
export interface StoredSnapshot {
  readonly id: number;
  readonly key: string;
  readonly kind: SnapshotKind;
  readonly parentId: number | null;
  readonly createdMs: number;
  readonly updatedMs: number;
  readonly usage: SnapshotUsage | undefined;
}

interface Row {
  id: number;
  key: string;
  kind: string;
  parent: number | null;
  created_ms: number;
  updated_ms: number;
  size: number | null;
  inodes: number | null;
}

const KINDS: readonly SnapshotKind[] = ['active', 'view', 'committed'];

function toStored(r: Row): StoredSnapshot {
  const kind = KINDS.find((k) => k === r.kind);
  if (kind === undefined) throw unavailable(`snapshot metadata: snapshot ${JSON.stringify(r.key)} has unknown kind ${JSON.stringify(r.kind)}`);
  return {
    id: r.id,
    key: r.key,
    kind,
    parentId: r.parent,
    createdMs: r.created_ms,
    updatedMs: r.updated_ms,
    usage: r.size === null || r.inodes === null ? undefined : { size: r.size, inodes: r.inodes },
  };
}

function toMap(entries: Iterable<readonly [string, string]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

function sqliteCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const c = (e as { code: unknown }).code;
    return typeof c === 'string' ? c : undefined;
  }
  return undefined;
}

const LABEL_MAX = 4096;

export function validateSnapshotLabels(labels: Readonly<Record<string, string>>): void {
  for (const [k, v] of Object.entries(labels)) {
    const n = Buffer.byteLength(k) + Buffer.byteLength(v);
    if (n > LABEL_MAX) throw invalid(`snapshot label ${JSON.stringify(k)}: key and value length (${n} bytes) greater than maximum size (${LABEL_MAX} bytes)`);
  }
}

export function validateKey(key: string, what: string): void {
  if (key === '') throw invalid(`snapshot ${what} must not be empty`);
  if (key.includes('\0')) throw invalid(`snapshot ${what} ${JSON.stringify(key)} contains a NUL byte`);
}

export class SnapshotStore {
  readonly path: string;
  private readonly db: Database.Database;
  private closed = false;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.db = db;
  }

  static open(path: string): SnapshotStore {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    let db: Database.Database;
    try {
      db = new Database(path, { timeout: 0 });
    } catch (e) {
      throw unavailable(`opening snapshot metadata ${path}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      const store = new SnapshotStore(path, db);
      store.migrate();
      return store;
    } catch (e) {
      db.close();
      if (sqliteCode(e) === 'SQLITE_BUSY') throw unavailable(`snapshot metadata ${path} is in use by another process`, e);
      throw e;
    }
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true });
    if (typeof version !== 'number') throw unavailable(`${this.path}: unreadable schema version`);
    if (version > SCHEMA_VERSION) throw unavailable(`${this.path}: schema version ${version} is newer than this code understands (${SCHEMA_VERSION})`);
    this.transaction(() => {
      if (version === 0) {
        this.db.exec(SCHEMA);
        this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
      }
      // A write on open takes the exclusive lock and keeps it until close.
      this.db.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT');
      this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
        .run('opened_at', new Date().toISOString());
    });
  }

  /** Run fn in one transaction; a throw rolls everything back. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  /** SQLite's consistency checks; empty when consistent. */
  check(): string[] {
    const problems: string[] = [];
    for (const r of this.db.pragma('integrity_check') as { integrity_check: string }[]) {
      if (r.integrity_check !== 'ok') problems.push(r.integrity_check);
    }
    for (const r of this.db.pragma('foreign_key_check') as { table: string; rowid: number; parent: string }[]) {
      problems.push(`foreign key: ${r.table} row ${r.rowid} has no ${r.parent}`);
    }
    return problems;
  }

  find(key: string): StoredSnapshot | undefined {
    const r = this.db.prepare<[string], Row>('SELECT * FROM snapshots WHERE key = ?').get(key);
    return r === undefined ? undefined : toStored(r);
  }

  get(key: string): StoredSnapshot {
    const s = this.find(key);
    if (s === undefined) throw notFound(`snapshot ${JSON.stringify(key)}`);
    return s;
  }

  byId(id: number): StoredSnapshot {
    const r = this.db.prepare<[number], Row>('SELECT * FROM snapshots WHERE id = ?').get(id);
    if (r === undefined) throw unavailable(`snapshot metadata: no snapshot with id ${id}`);
    return toStored(r);
  }

  /** The parent chain, nearest first. */
  parents(s: StoredSnapshot): StoredSnapshot[] {
    const out: StoredSnapshot[] = [];
    let next = s.parentId;
    while (next !== null) {
      const p = this.byId(next);
      out.push(p);
      next = p.parentId;
      if (out.length > 10_000) throw unavailable(`snapshot metadata: parent chain of ${JSON.stringify(s.key)} loops`);
    }
    return out;
  }

  labels(id: number): Record<string, string> {
    const rows = this.db.prepare<[number], { key: string; value: string }>('SELECT key, value FROM snapshot_labels WHERE id = ? ORDER BY key').all(id);
    return toMap(rows.map((r) => [r.key, r.value] as const));
  }

  private writeLabels(id: number, labels: Readonly<Record<string, string>>): void {
    this.db.prepare('DELETE FROM snapshot_labels WHERE id = ?').run(id);
    const ins = this.db.prepare('INSERT INTO snapshot_labels (id, key, value) VALUES (?, ?, ?)');
    for (const [k, v] of Object.entries(labels)) if (v !== '') ins.run(id, k, v);
  }

  info(s: StoredSnapshot): SnapshotInfo {
    return {
      name: s.key,
      parent: s.parentId === null ? '' : this.byId(s.parentId).key,
      kind: s.kind,
      created: new Date(s.createdMs),
      updated: new Date(s.updatedMs),
      labels: this.labels(s.id),
    };
  }

  /** Every snapshot, by key. */
  all(): StoredSnapshot[] {
    return this.db.prepare<[], Row>('SELECT * FROM snapshots ORDER BY key').all().map(toStored);
  }

  ids(): Set<number> {
    return new Set(this.db.prepare<[], { id: number }>('SELECT id FROM snapshots').all().map((r) => r.id));
  }

  /** The committed parent a new snapshot may start from (undefined for ""). */
  parentFor(parent: string): StoredSnapshot | undefined {
    if (parent === '') return undefined;
    const p = this.find(parent);
    if (p === undefined) throw notFound(`parent snapshot ${JSON.stringify(parent)}`);
    if (p.kind !== 'committed') throw invalid(`parent snapshot ${JSON.stringify(parent)} is not committed (it is ${p.kind === 'active' ? 'an active snapshot' : 'a view'})`);
    return p;
  }

  /** Insert a new active snapshot or view; call inside a transaction. */
  create(key: string, kind: 'active' | 'view', parent: string, labels: Readonly<Record<string, string>>): StoredSnapshot {
    if (this.find(key) !== undefined) throw alreadyExists(`snapshot ${JSON.stringify(key)}`);
    const p = this.parentFor(parent);
    const t = Date.now();
    const r = this.db.prepare('INSERT INTO snapshots (key, kind, parent, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?)')
      .run(key, kind, p?.id ?? null, t, t);
    const id = Number(r.lastInsertRowid);
    this.writeLabels(id, labels);
    return this.byId(id);
  }

  /** The active snapshot `key` becomes committed `name` (same id, same directory); call inside a transaction. */
  commit(name: string, key: string, labels: Readonly<Record<string, string>>, usage: SnapshotUsage): StoredSnapshot {
    const s = this.get(key);
    if (s.kind !== 'active') throw failedPrecondition(`snapshot ${JSON.stringify(key)} is not active (it is ${s.kind === 'view' ? 'a view' : 'committed'})`);
    if (this.find(name) !== undefined) throw alreadyExists(`snapshot ${JSON.stringify(name)}`);
    const t = Date.now();
    this.db.prepare(`UPDATE snapshots SET key = ?, kind = 'committed', created_ms = ?, updated_ms = ?, size = ?, inodes = ? WHERE id = ?`)
      .run(name, t, t, usage.size, usage.inodes, s.id);
    this.writeLabels(s.id, labels);
    return this.byId(s.id);
  }

  hasChildren(id: number): boolean {
    return this.db.prepare('SELECT 1 FROM snapshots WHERE parent = ? LIMIT 1').get(id) !== undefined;
  }

  /** Delete a snapshot's record; call inside a transaction. */
  delete(key: string): StoredSnapshot {
    const s = this.get(key);
    if (this.hasChildren(s.id)) throw failedPrecondition(`cannot remove snapshot with child: snapshot ${JSON.stringify(key)} is a parent`);
    this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(s.id);
    return s;
  }

  /** Replace the labels (after the caller merged them) and touch updated. */
  setLabels(key: string, labels: Readonly<Record<string, string>>): StoredSnapshot {
    const s = this.get(key);
    this.writeLabels(s.id, labels);
    this.db.prepare('UPDATE snapshots SET updated_ms = ? WHERE id = ?').run(Date.now(), s.id);
    return this.byId(s.id);
  }
}
