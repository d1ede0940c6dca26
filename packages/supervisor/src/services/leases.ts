/**
 * containerd.services.leases.v1.Leases: named leases with labels and the
 * resources they hold, kept in the metadata database in tables of their own.
 * What a lease holds survives garbage collection (gc/); deleting a lease, or
 * its `containerd.io/gc.expire` time passing, lets the collector take it.
 * Calls made with the `containerd-lease` gRPC metadata add what they create
 * to that lease (content, snapshots, ingests), as containerd's do.
 *
 *   leases           (namespace, id) PK, created_s, created_ns
 *   ├─ lease_labels  (namespace, id, key) PK, value          ON DELETE CASCADE
 *   └─ lease_resources (namespace, id, type, resource) PK    ON DELETE CASCADE
 */
import { randomBytes } from 'node:crypto';
import { alreadyExists, invalid, notFound } from '@berth/base';
import { GRPCPlugin, MetadataPlugin } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { CallContext, GrpcService } from '../grpc.js';
import { GCPlugin } from '../gc/types.js';
import { mapField, parseFilters, present } from '../filters.js';
import type { Adaptor } from '../filters.js';
import type { MetadataStore } from '../metadata/store.js';
import { now, optRecord, str, strList, strMap, validateLabels } from '../wire.js';
import type { Timestamp, Wire } from '../wire.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS leases (
  namespace  TEXT NOT NULL,
  id         TEXT NOT NULL,
  created_s  INTEGER NOT NULL,
  created_ns INTEGER NOT NULL,
  PRIMARY KEY (namespace, id)
) STRICT;
CREATE TABLE IF NOT EXISTS lease_labels (
  namespace TEXT NOT NULL,
  id        TEXT NOT NULL,
  key       TEXT NOT NULL,
  value     TEXT NOT NULL,
  PRIMARY KEY (namespace, id, key),
  FOREIGN KEY (namespace, id) REFERENCES leases(namespace, id) ON DELETE CASCADE
) STRICT;
CREATE TABLE IF NOT EXISTS lease_resources (
  namespace TEXT NOT NULL,
  id        TEXT NOT NULL,
  type      TEXT NOT NULL,
  resource  TEXT NOT NULL,
  PRIMARY KEY (namespace, id, type, resource),
  FOREIGN KEY (namespace, id) REFERENCES leases(namespace, id) ON DELETE CASCADE
) STRICT;
`;

/** The gRPC metadata key naming the lease a call works under. */
export const LEASE_METADATA_KEY = 'containerd-lease';
/** Lease label: when the lease expires (RFC 3339). */
export const EXPIRE_LABEL = 'containerd.io/gc.expire';

/** The lease a call names in its metadata, if any. */
export function leaseOf(ctx: CallContext): string | undefined {
  const [v] = ctx.metadata.get(LEASE_METADATA_KEY);
  if (v === undefined) return undefined;
  const id = typeof v === 'string' ? v : v.toString('utf8');
  return id === '' ? undefined : id;
}

export interface Lease {
  id: string;
  createdAt: Timestamp;
  labels: Record<string, string>;
}

export interface LeaseResource {
  id: string;
  type: string;
}

function toMap(entries: readonly (readonly [string, string])[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

function leaseAdaptor(l: Lease): Adaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case 'id': return present(l.id);
      case 'labels': return mapField(fieldpath.slice(1), l.labels);
      default: return undefined;
    }
  };
}

/** The lease tables over the shared metadata database. */
export class LeaseStore {
  constructor(private readonly store: MetadataStore) {
    store.db.exec(SCHEMA);
    store.registerNamespacedTable({ table: 'leases', noun: 'leases' });
  }

  private read(namespace: string, id: string | undefined): Lease[] {
    const db = this.store.db;
    const where = id === undefined ? 'namespace = ?' : 'namespace = ? AND id = ?';
    const params = id === undefined ? [namespace] : [namespace, id];
    const rows = db.prepare<string[], { id: string; created_s: number; created_ns: number }>(
      `SELECT id, created_s, created_ns FROM leases WHERE ${where} ORDER BY id`).all(...params);
    const labels = db.prepare<string[], { id: string; key: string; value: string }>(
      `SELECT id, key, value FROM lease_labels WHERE ${where} ORDER BY id, key`).all(...params);
    return rows.map((r) => ({
      id: r.id,
      createdAt: { seconds: r.created_s, nanos: r.created_ns },
      labels: toMap(labels.filter((l) => l.id === r.id).map((l) => [l.key, l.value] as const)),
    }));
  }

  private mustExist(namespace: string, id: string): void {
    if (this.store.db.prepare('SELECT 1 FROM leases WHERE namespace = ? AND id = ?').get(namespace, id) === undefined) {
      throw notFound(`lease ${JSON.stringify(id)}`);
    }
  }

  create(namespace: string, id: string, labels: Readonly<Record<string, string>>): Lease {
    const leaseId = id === '' ? `${Date.now()}-${randomBytes(6).toString('hex')}` : id;
    if (leaseId.length > 255 || /[\s/]/.test(leaseId)) throw invalid(`lease id ${JSON.stringify(leaseId)}: at most 255 characters, no spaces or slashes`);
    validateLabels(labels, 'lease.Labels');
    return this.store.transaction(() => {
      const db = this.store.db;
      db.prepare('INSERT INTO namespaces (name) VALUES (?) ON CONFLICT (name) DO NOTHING').run(namespace);
      if (this.read(namespace, leaseId).length > 0) throw alreadyExists(`lease ${JSON.stringify(leaseId)}`);
      const t = now();
      db.prepare('INSERT INTO leases (namespace, id, created_s, created_ns) VALUES (?, ?, ?, ?)').run(namespace, leaseId, t.seconds, t.nanos);
      const ins = db.prepare('INSERT INTO lease_labels (namespace, id, key, value) VALUES (?, ?, ?, ?)');
      for (const [k, v] of Object.entries(labels)) if (v !== '') ins.run(namespace, leaseId, k, v);
      const [lease] = this.read(namespace, leaseId);
      if (lease === undefined) throw notFound(`lease ${JSON.stringify(leaseId)}`);
      return lease;
    });
  }

  delete(namespace: string, id: string): void {
    this.store.transaction(() => {
      const r = this.store.db.prepare('DELETE FROM leases WHERE namespace = ? AND id = ?').run(namespace, id);
      if (r.changes === 0) throw notFound(`lease ${JSON.stringify(id)}`);
    });
  }

  list(namespace: string, filters: readonly string[]): Lease[] {
    const filter = parseFilters(filters);
    return this.store.transaction(() => this.read(namespace, undefined)).filter((l) => filter.match(leaseAdaptor(l)));
  }

  /** Add a resource to a lease (NotFound when there is no such lease); true when it was not held yet. */
  addResource(namespace: string, id: string, r: LeaseResource): boolean {
    return this.store.transaction(() => {
      this.mustExist(namespace, id);
      return this.store.db.prepare('INSERT INTO lease_resources (namespace, id, type, resource) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING')
        .run(namespace, id, r.type, r.id).changes > 0;
    });
  }

  /** A resource that is gone leaves every lease of its namespace. */
  forget(namespace: string, r: LeaseResource): void {
    this.store.db.prepare('DELETE FROM lease_resources WHERE namespace = ? AND type = ? AND resource = ?').run(namespace, r.type, r.id);
  }

  deleteResource(namespace: string, id: string, r: LeaseResource): void {
    this.store.transaction(() => {
      this.mustExist(namespace, id);
      this.store.db.prepare('DELETE FROM lease_resources WHERE namespace = ? AND id = ? AND type = ? AND resource = ?')
        .run(namespace, id, r.type, r.id);
    });
  }

  resources(namespace: string, id: string): LeaseResource[] {
    return this.store.transaction(() => {
      this.mustExist(namespace, id);
      return this.store.db.prepare<[string, string], { type: string; resource: string }>(
        'SELECT type, resource FROM lease_resources WHERE namespace = ? AND id = ? ORDER BY type, resource').all(namespace, id)
        .map((row) => ({ id: row.resource, type: row.type }));
    });
  }
}

function resourceFrom(req: Wire): LeaseResource {
  const o = optRecord(req['resource'], 'resource');
  if (o === undefined) throw invalid('resource must be set');
  const r = { id: str(o, 'id', 'resource'), type: str(o, 'type', 'resource') };
  if (r.id === '') throw invalid('resource.id must be set');
  if (r.type === '') throw invalid('resource.type must be set');
  return r;
}

function leaseToWire(l: Lease): object {
  return { id: l.id, created_at: l.createdAt, labels: l.labels };
}

export const leasesService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'leases',
  requires: [MetadataPlugin, GCPlugin],
  init: (ic) => {
    const leases = new LeaseStore(ic.get(MetadataPlugin));
    const gc = ic.get(GCPlugin);
    return {
      service: 'containerd.services.leases.v1.Leases',
      unary: {
        Create: (req: Wire, ctx) => {
          const lease = leases.create(ctx.namespace(), str(req, 'id', 'request'), strMap(req, 'labels', 'request'));
          gc.leaseCreated(lease.labels);
          return { lease: leaseToWire(lease) };
        },
        // sync waits for the garbage collection the delete sets off, as containerd's does.
        Delete: async (req: Wire, ctx) => {
          leases.delete(ctx.namespace(), str(req, 'id', 'request'));
          if (req['sync'] === true) await gc.collectNow();
          else gc.schedule();
          return {};
        },
        List: (req: Wire, ctx) => ({ leases: leases.list(ctx.namespace(), strList(req, 'filters', 'request')).map(leaseToWire) }),
        AddResource: (req: Wire, ctx) => {
          leases.addResource(ctx.namespace(), str(req, 'id', 'request'), resourceFrom(req));
          return {};
        },
        DeleteResource: (req: Wire, ctx) => {
          leases.deleteResource(ctx.namespace(), str(req, 'id', 'request'), resourceFrom(req));
          return {};
        },
        ListResources: (req: Wire, ctx) => ({ resources: leases.resources(ctx.namespace(), str(req, 'id', 'request')) }),
      },
    };
  },
};
