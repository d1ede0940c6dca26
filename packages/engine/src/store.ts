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

export class EngineStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    try {
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('busy_timeout = 5000');
      this.db.exec(SCHEMA);
    } catch (e) {
      throw unavailable(`opening the engine database ${path}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
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
