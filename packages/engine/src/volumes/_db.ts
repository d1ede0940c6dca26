/**
 * Volume metadata in the engine's database (<data-root>/engine.db, WAL), in
 * tables of its own:
 *
 *   volumes            name -> the volume's record (JSON)
 *   anonymous_volumes  (container, destination) -> volume name: the anonymous
 *                      volumes a container was given, reused at each start
 */
import type Database from 'better-sqlite3';
import { openEngineDb } from '../store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS volumes (
  name TEXT PRIMARY KEY,
  data TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS anonymous_volumes (
  container   TEXT NOT NULL,
  destination TEXT NOT NULL,
  name        TEXT NOT NULL,
  PRIMARY KEY (container, destination)
) STRICT;
`;

export interface VolumeRecord {
  Name: string;
  Driver: string;
  /** RFC 3339, seconds. */
  CreatedAt: string;
  Labels: Record<string, string> | null;
  /** The driver's options (`type`, `device`, `o` for the local driver). */
  Options: Record<string, string> | null;
  /** Made for a container's anonymous mount (pruned by default, removed by `rm -v`). */
  anonymous: boolean;
}

export class VolumeDb {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = openEngineDb(path, SCHEMA, 'the volume tables');
  }

  all(): VolumeRecord[] {
    const rows = this.db.prepare('SELECT data FROM volumes').all() as { data: string }[];
    return rows.map((r) => JSON.parse(r.data) as VolumeRecord);
  }

  put(v: VolumeRecord): void {
    this.db.prepare('INSERT INTO volumes (name, data) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET data = excluded.data').run(v.Name, JSON.stringify(v));
  }

  delete(name: string): void {
    this.db.prepare('DELETE FROM volumes WHERE name = ?').run(name);
  }

  anonymous(container: string, destination: string): string | undefined {
    const r = this.db.prepare('SELECT name FROM anonymous_volumes WHERE container = ? AND destination = ?').get(container, destination) as { name: string } | undefined;
    return r?.name;
  }

  putAnonymous(container: string, destination: string, name: string): void {
    this.db.prepare('INSERT OR REPLACE INTO anonymous_volumes (container, destination, name) VALUES (?, ?, ?)').run(container, destination, name);
  }

  /** Every (container, name) pair. */
  allAnonymous(): { container: string; name: string }[] {
    return this.db.prepare('SELECT container, name FROM anonymous_volumes').all() as { container: string; name: string }[];
  }

  anonymousOf(container: string): string[] {
    const rows = this.db.prepare('SELECT name FROM anonymous_volumes WHERE container = ?').all(container) as { name: string }[];
    return rows.map((r) => r.name);
  }

  forgetContainer(container: string): void {
    this.db.prepare('DELETE FROM anonymous_volumes WHERE container = ?').run(container);
  }

  close(): void {
    this.db.close();
  }
}
