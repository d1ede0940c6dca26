/**
 * The engine's metadata: one SQLite database (WAL, synchronous=FULL) at
 * <data-root>/engine.db. Each container is one row holding its Docker-shaped
 * record as JSON; the name is a unique column so two creates cannot take the
 * same name. The engine reads from memory; every change is written through
 * in one transaction.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { unavailable } from '@berth/base';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS containers (
  id   TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  data TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS kv (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
`;

/**
 * A connection to the engine's database with the engine's settings (WAL,
 * synchronous=FULL, a busy timeout) and a part's tables made if missing.
 * Each part of the engine (containers, volumes, networks, the build cache)
 * keeps its own tables in the one file.
 */
export function openEngineDb(path: string, schema: string, what: string): Database.Database {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    db.exec(schema);
    return db;
  } catch (e) {
    throw unavailable(`opening ${what} in ${path}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
}

export class EngineStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = openEngineDb(path, SCHEMA, 'the engine database');
  }

  loadContainers<T>(): T[] {
    const rows = this.db.prepare('SELECT data FROM containers').all() as { data: string }[];
    return rows.map((r) => JSON.parse(r.data) as T);
  }

  /** Insert or replace a container's row. */
  putContainer(id: string, name: string, data: unknown): void {
    this.db.prepare('INSERT INTO containers (id, name, data) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET name = excluded.name, data = excluded.data')
      .run(id, name, JSON.stringify(data));
  }

  deleteContainer(id: string): void {
    this.db.prepare('DELETE FROM containers WHERE id = ?').run(id);
  }

  get(key: string): string | undefined {
    const r = this.db.prepare('SELECT value FROM kv WHERE key = ?').get(key) as { value: string } | undefined;
    return r?.value;
  }

  set(key: string, value: string): void {
    this.db.prepare('INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  close(): void {
    this.db.close();
  }
}
