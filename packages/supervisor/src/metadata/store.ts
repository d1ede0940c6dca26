/**
 * The supervisor's metadata: one SQLite database (WAL mode, synchronous=FULL,
 * exclusive lock held by the one daemon that owns the root) at <root>/meta.db.
 * Every write is one transaction; a crash at any point leaves either the old
 * or the new state.
 *
 *   meta                  key TEXT PK, value TEXT           schema bookkeeping
 *   namespaces            name TEXT PK
 *   └─ namespace_labels   (namespace, key) PK, value        ON DELETE CASCADE
 *   containers            (namespace, id) PK                namespace → namespaces(name)
 *   │                     image, runtime_name,
 *   │                     runtime_options_type NULL, runtime_options_value NULL  (Any; NULL = absent)
 *   │                     spec_type, spec_value             (Any, byte for byte)
 *   │                     snapshotter, snapshot_key, sandbox,
 *   │                     created_s, created_ns, updated_s, updated_ns
 *   ├─ container_labels   (namespace, id, key) PK, value    ON DELETE CASCADE
 *   └─ container_extensions (namespace, id, name) PK, type_url, value   ON DELETE CASCADE
 *
 * PRAGMA user_version holds the schema version. Labels with an empty value
 * are not stored (setting a label to "" removes it), as in containerd.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { alreadyExists, failedPrecondition, invalid, notFound, unavailable } from '@berth/base';
import type { Filter, Adaptor } from '../filters.js';
import { mapField, present } from '../filters.js';
import { now, validateIdentifier, validateLabels } from '../wire.js';
import type { AnyMessage, Timestamp } from '../wire.js';

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
CREATE TABLE namespaces (
  name TEXT PRIMARY KEY
) STRICT;
CREATE TABLE namespace_labels (
  namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
  key       TEXT NOT NULL,
  value     TEXT NOT NULL,
  PRIMARY KEY (namespace, key)
) STRICT;
CREATE TABLE containers (
  namespace             TEXT NOT NULL REFERENCES namespaces(name),
  id                    TEXT NOT NULL,
  image                 TEXT NOT NULL,
  runtime_name          TEXT NOT NULL,
  runtime_options_type  TEXT,
  runtime_options_value BLOB,
  spec_type             TEXT NOT NULL,
  spec_value            BLOB NOT NULL,
  snapshotter           TEXT NOT NULL,
  snapshot_key          TEXT NOT NULL,
  sandbox               TEXT NOT NULL,
  created_s             INTEGER NOT NULL,
  created_ns            INTEGER NOT NULL,
  updated_s             INTEGER NOT NULL,
  updated_ns            INTEGER NOT NULL,
  PRIMARY KEY (namespace, id),
  CHECK ((runtime_options_type IS NULL) = (runtime_options_value IS NULL))
) STRICT;
CREATE TABLE container_labels (
  namespace TEXT NOT NULL,
  id        TEXT NOT NULL,
  key       TEXT NOT NULL,
  value     TEXT NOT NULL,
  PRIMARY KEY (namespace, id, key),
  FOREIGN KEY (namespace, id) REFERENCES containers(namespace, id) ON DELETE CASCADE
) STRICT;
CREATE TABLE container_extensions (
  namespace TEXT NOT NULL,
  id        TEXT NOT NULL,
  name      TEXT NOT NULL,
  type_url  TEXT NOT NULL,
  value     BLOB NOT NULL,
  PRIMARY KEY (namespace, id, name),
  FOREIGN KEY (namespace, id) REFERENCES containers(namespace, id) ON DELETE CASCADE
) STRICT;
`;

export interface NamespaceRecord {
  name: string;
  labels: Record<string, string>;
}

export interface ContainerRuntime {
  name: string;
  options: AnyMessage | undefined;
}

export interface ContainerRecord {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime: ContainerRuntime;
  spec: AnyMessage;
  snapshotter: string;
  snapshotKey: string;
  extensions: Record<string, AnyMessage>;
  sandbox: string;
  createdAt: Timestamp;
  updatedAt: Timestamp;
}

/** What a caller supplies: the store stamps the times. */
export type ContainerInput = Omit<ContainerRecord, 'createdAt' | 'updatedAt'>;

interface ContainerRow {
  id: string;
  image: string;
  runtime_name: string;
  runtime_options_type: string | null;
  runtime_options_value: Buffer | null;
  spec_type: string;
  spec_value: Buffer;
  snapshotter: string;
  snapshot_key: string;
  sandbox: string;
  created_s: number;
  created_ns: number;
  updated_s: number;
  updated_ns: number;
}
interface LabelRow { id: string; key: string; value: string }
interface ExtensionRow { id: string; name: string; type_url: string; value: Buffer }

function sqliteCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const c = (e as { code: unknown }).code;
    return typeof c === 'string' ? c : undefined;
  }
  return undefined;
}

function labelsOf(map: Readonly<Record<string, string>>): [string, string][] {
  return Object.entries(map).filter(([, v]) => v !== '');
}

function toMap<V>(entries: Iterable<readonly [string, V]>): Record<string, V> {
  const out: Record<string, V> = {};
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

/** containerd's container validation, in its words. */
export function validateContainer(c: ContainerInput): void {
  try {
    validateIdentifier(c.id);
  } catch (e) {
    throw invalid(`container.ID: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  for (const k of Object.keys(c.extensions)) {
    if (k === '') throw invalid('container.Extension keys must not be zero-length');
  }
  validateLabels(c.labels, 'containers.Labels');
  if (c.runtime.name === '') throw invalid('container.Runtime.Name must be set');
  if (c.snapshotKey !== '' && c.snapshotter === '') {
    throw invalid('container.Snapshotter must be set if container.SnapshotKey is set');
  }
}

function validated(context: string, c: ContainerInput): void {
  try {
    validateContainer(c);
  } catch (e) {
    throw invalid(`${context}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
}

/** The filter fields of a container, as containerd's adaptor exposes them. */
export function containerAdaptor(c: ContainerRecord): Adaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case 'id': return present(c.id);
      case 'image': return present(c.image);
      case 'runtime': return fieldpath.length === 2 && fieldpath[1] === 'name' ? present(c.runtime.name) : undefined;
      case 'snapshotter': return present(c.snapshotter);
      case 'labels': return mapField(fieldpath.slice(1), c.labels);
      default: return undefined;
    }
  };
}

/** A table whose rows belong to a namespace; a namespace can be deleted only when all are empty. */
export interface NamespacedTable {
  readonly table: string;
  /** What the rows are called in the "must be empty" message: "containers", "images"... */
  readonly noun: string;
}

export class MetadataStore {
  readonly path: string;
  /** The open database, for plugins that keep their own tables (in their own transactions). */
  readonly db: Database.Database;
  private readonly namespaced: NamespacedTable[] = [{ table: 'containers', noun: 'containers' }];
  private closed = false;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.db = db;
  }

  /**
   * Open (creating if needed) the database at `path`. Fails with Unavailable
   * when another process holds it.
   */
  static open(path: string): MetadataStore {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    let db: Database.Database;
    try {
      db = new Database(path, { timeout: 0 });
    } catch (e) {
      throw unavailable(`opening metadata database ${path}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    try {
      // Exclusive locking before WAL: no shared-memory index, and the lock taken
      // by the first write below is held until close, so one daemon owns the root.
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      const store = new MetadataStore(path, db);
      store.migrate();
      return store;
    } catch (e) {
      db.close();
      if (sqliteCode(e) === 'SQLITE_BUSY') {
        throw unavailable(`metadata database ${path} is in use by another process (is another berth-containerd running on this root?)`, e);
      }
      throw e;
    }
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true });
    if (typeof version !== 'number') throw unavailable(`${this.path}: unreadable schema version`);
    if (version > SCHEMA_VERSION) {
      throw unavailable(`${this.path}: schema version ${version} is newer than this berth-containerd understands (${SCHEMA_VERSION})`);
    }
    this.transaction(() => {
      if (version === 0) {
        this.db.exec(SCHEMA);
        this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
      }
      // A write on every open takes (and keeps) the exclusive lock.
      this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
        .run('opened_at', new Date().toISOString());
    });
  }

  /** Run fn in one transaction (nested calls become savepoints). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /** Make namespace deletion also check this table (rows with a `namespace` column). */
  registerNamespacedTable(t: NamespacedTable): void {
    if (!/^[a-z_][a-z0-9_]*$/.test(t.table)) throw invalid(`table name ${JSON.stringify(t.table)}`);
    if (!this.namespaced.some((x) => x.table === t.table)) this.namespaced.push(t);
  }

  /** SQLite's own consistency checks; an empty list means consistent. */
  check(): string[] {
    const problems: string[] = [];
    const integrity = this.db.pragma('integrity_check') as { integrity_check: string }[];
    for (const r of integrity) if (r.integrity_check !== 'ok') problems.push(r.integrity_check);
    const fk = this.db.pragma('foreign_key_check') as { table: string; rowid: number; parent: string }[];
    for (const r of fk) problems.push(`foreign key: ${r.table} row ${r.rowid} has no ${r.parent}`);
    return problems;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  // ---- namespaces ----

  private namespaceExists(name: string): boolean {
    return this.db.prepare('SELECT 1 FROM namespaces WHERE name = ?').get(name) !== undefined;
  }

  private namespaceLabels(name: string): Record<string, string> {
    const rows = this.db.prepare<[string], { key: string; value: string }>(
      'SELECT key, value FROM namespace_labels WHERE namespace = ? ORDER BY key').all(name);
    return toMap(rows.map((r) => [r.key, r.value] as const));
  }

  getNamespace(name: string): NamespaceRecord {
    return this.transaction(() => {
      if (!this.namespaceExists(name)) throw notFound(`namespace ${JSON.stringify(name)}`);
      return { name, labels: this.namespaceLabels(name) };
    });
  }

  listNamespaces(): NamespaceRecord[] {
    return this.transaction(() => {
      const names = this.db.prepare<[], { name: string }>('SELECT name FROM namespaces ORDER BY name').all();
      const labels = this.db.prepare<[], { namespace: string; key: string; value: string }>(
        'SELECT namespace, key, value FROM namespace_labels ORDER BY namespace, key').all();
      const byNs = new Map<string, [string, string][]>();
      for (const l of labels) {
        const list = byNs.get(l.namespace) ?? [];
        list.push([l.key, l.value]);
        byNs.set(l.namespace, list);
      }
      return names.map(({ name }) => ({ name, labels: toMap(byNs.get(name) ?? []) }));
    });
  }

  private writeNamespaceLabels(name: string, labels: Readonly<Record<string, string>>): void {
    this.db.prepare('DELETE FROM namespace_labels WHERE namespace = ?').run(name);
    const ins = this.db.prepare('INSERT INTO namespace_labels (namespace, key, value) VALUES (?, ?, ?)');
    for (const [k, v] of labelsOf(labels)) ins.run(name, k, v);
  }

  createNamespace(ns: NamespaceRecord): NamespaceRecord {
    validateIdentifier(ns.name);
    validateLabels(ns.labels, 'namespace.Labels');
    return this.transaction(() => {
      if (this.namespaceExists(ns.name)) throw alreadyExists(`namespace ${JSON.stringify(ns.name)}`);
      this.db.prepare('INSERT INTO namespaces (name) VALUES (?)').run(ns.name);
      this.writeNamespaceLabels(ns.name, ns.labels);
      return { name: ns.name, labels: this.namespaceLabels(ns.name) };
    });
  }

  /** Read, change and write a namespace's labels in one transaction. */
  updateNamespace(name: string, update: (current: NamespaceRecord) => Record<string, string>): NamespaceRecord {
    return this.transaction(() => {
      const current = this.getNamespace(name);
      const labels = update(current);
      validateLabels(labels, 'namespace.Labels');
      this.writeNamespaceLabels(name, labels);
      return { name, labels: this.namespaceLabels(name) };
    });
  }

  deleteNamespace(name: string): void {
    this.transaction(() => {
      if (!this.namespaceExists(name)) throw notFound(`namespace ${JSON.stringify(name)}`);
      const holding = this.namespaced
        .filter((t) => this.db.prepare(`SELECT 1 FROM ${t.table} WHERE namespace = ? LIMIT 1`).get(name) !== undefined)
        .map((t) => t.noun);
      if (holding.length > 0) {
        throw failedPrecondition(`namespace ${JSON.stringify(name)} must be empty, but it still has ${holding.join(', ')}`);
      }
      this.db.prepare('DELETE FROM namespaces WHERE name = ?').run(name);
    });
  }

  /** Namespaces come into being when something is stored in them, as in containerd. */
  private ensureNamespace(name: string): void {
    validateIdentifier(name);
    this.db.prepare('INSERT INTO namespaces (name) VALUES (?) ON CONFLICT (name) DO NOTHING').run(name);
  }

  // ---- containers ----

  private readContainers(namespace: string, id: string | undefined): ContainerRecord[] {
    const where = id === undefined ? 'namespace = ?' : 'namespace = ? AND id = ?';
    const params = id === undefined ? [namespace] : [namespace, id];
    const rows = this.db.prepare<string[], ContainerRow>(
      `SELECT id, image, runtime_name, runtime_options_type, runtime_options_value, spec_type, spec_value,
              snapshotter, snapshot_key, sandbox, created_s, created_ns, updated_s, updated_ns
       FROM containers WHERE ${where} ORDER BY id`).all(...params);
    if (rows.length === 0) return [];
    const labels = this.db.prepare<string[], LabelRow>(
      `SELECT id, key, value FROM container_labels WHERE ${where} ORDER BY id, key`).all(...params);
    const exts = this.db.prepare<string[], ExtensionRow>(
      `SELECT id, name, type_url, value FROM container_extensions WHERE ${where} ORDER BY id, name`).all(...params);
    const labelsById = new Map<string, [string, string][]>();
    for (const l of labels) {
      const list = labelsById.get(l.id) ?? [];
      list.push([l.key, l.value]);
      labelsById.set(l.id, list);
    }
    const extsById = new Map<string, [string, AnyMessage][]>();
    for (const x of exts) {
      const list = extsById.get(x.id) ?? [];
      list.push([x.name, { type_url: x.type_url, value: x.value }]);
      extsById.set(x.id, list);
    }
    return rows.map((r) => ({
      id: r.id,
      labels: toMap(labelsById.get(r.id) ?? []),
      image: r.image,
      runtime: {
        name: r.runtime_name,
        options: r.runtime_options_type === null || r.runtime_options_value === null
          ? undefined
          : { type_url: r.runtime_options_type, value: r.runtime_options_value },
      },
      spec: { type_url: r.spec_type, value: r.spec_value },
      snapshotter: r.snapshotter,
      snapshotKey: r.snapshot_key,
      extensions: toMap(extsById.get(r.id) ?? []),
      sandbox: r.sandbox,
      createdAt: { seconds: r.created_s, nanos: r.created_ns },
      updatedAt: { seconds: r.updated_s, nanos: r.updated_ns },
    }));
  }

  getContainer(namespace: string, id: string): ContainerRecord {
    return this.transaction(() => {
      const [c] = this.readContainers(namespace, id);
      if (c === undefined) throw notFound(`container ${JSON.stringify(id)} in namespace ${JSON.stringify(namespace)}`);
      return c;
    });
  }

  listContainers(namespace: string, filter?: Filter): ContainerRecord[] {
    const all = this.transaction(() => this.readContainers(namespace, undefined));
    return filter === undefined ? all : all.filter((c) => filter.match(containerAdaptor(c)));
  }

  private writeContainer(namespace: string, c: ContainerInput, createdAt: Timestamp, updatedAt: Timestamp, insert: boolean): void {
    const values = [
      c.image, c.runtime.name, c.runtime.options?.type_url ?? null, c.runtime.options?.value ?? null,
      c.spec.type_url, c.spec.value, c.snapshotter, c.snapshotKey, c.sandbox,
      createdAt.seconds, createdAt.nanos, updatedAt.seconds, updatedAt.nanos,
    ];
    if (insert) {
      this.db.prepare(
        `INSERT INTO containers (image, runtime_name, runtime_options_type, runtime_options_value, spec_type, spec_value,
           snapshotter, snapshot_key, sandbox, created_s, created_ns, updated_s, updated_ns, namespace, id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(...values, namespace, c.id);
    } else {
      this.db.prepare(
        `UPDATE containers SET image = ?, runtime_name = ?, runtime_options_type = ?, runtime_options_value = ?,
           spec_type = ?, spec_value = ?, snapshotter = ?, snapshot_key = ?, sandbox = ?,
           created_s = ?, created_ns = ?, updated_s = ?, updated_ns = ?
         WHERE namespace = ? AND id = ?`).run(...values, namespace, c.id);
      this.db.prepare('DELETE FROM container_labels WHERE namespace = ? AND id = ?').run(namespace, c.id);
      this.db.prepare('DELETE FROM container_extensions WHERE namespace = ? AND id = ?').run(namespace, c.id);
    }
    const lab = this.db.prepare('INSERT INTO container_labels (namespace, id, key, value) VALUES (?, ?, ?, ?)');
    for (const [k, v] of labelsOf(c.labels)) lab.run(namespace, c.id, k, v);
    const ext = this.db.prepare('INSERT INTO container_extensions (namespace, id, name, type_url, value) VALUES (?, ?, ?, ?, ?)');
    for (const [k, v] of Object.entries(c.extensions)) ext.run(namespace, c.id, k, v.type_url, v.value);
  }

  createContainer(namespace: string, c: ContainerInput): ContainerRecord {
    validated('create container failed validation', c);
    return this.transaction(() => {
      this.ensureNamespace(namespace);
      if (this.readContainers(namespace, c.id).length > 0) throw alreadyExists(`container ${JSON.stringify(c.id)}`);
      const t = now();
      this.writeContainer(namespace, c, t, t, true);
      return this.getContainer(namespace, c.id);
    });
  }

  /** Read, change and write a container in one transaction; the update function sees the stored record. */
  updateContainer(namespace: string, id: string, update: (current: ContainerRecord) => ContainerInput): ContainerRecord {
    return this.transaction(() => {
      const [current] = this.readContainers(namespace, id);
      if (current === undefined) throw notFound(`container ${JSON.stringify(id)}`);
      const next = update(current);
      if (next.id !== id) throw invalid(`container.ID cannot change (${JSON.stringify(id)} to ${JSON.stringify(next.id)})`);
      validated('update failed validation', next);
      this.writeContainer(namespace, next, current.createdAt, now(), false);
      return this.getContainer(namespace, id);
    });
  }

  deleteContainer(namespace: string, id: string): void {
    this.transaction(() => {
      const r = this.db.prepare('DELETE FROM containers WHERE namespace = ? AND id = ?').run(namespace, id);
      if (r.changes === 0) throw notFound(`container ${JSON.stringify(id)}`);
    });
  }
}
