/**
 * Networks and their endpoints in the engine's SQLite database (a connection
 * of their own to <data-root>/engine.db, tables `net_networks` and
 * `net_endpoints`). An endpoint row is the IPAM lease: the UNIQUE
 * (network_id, address) pair makes a double allocation impossible, and the
 * row goes when the container leaves the network or stops.
 */
import type Database from 'better-sqlite3';
import { openEngineDb } from '../store.js';
import type { PortMapping } from './ports.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS net_networks (
  id   TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  data TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS net_endpoints (
  network_id   TEXT NOT NULL,
  container_id TEXT NOT NULL,
  address      TEXT NOT NULL,
  data         TEXT NOT NULL,
  PRIMARY KEY (network_id, container_id),
  UNIQUE (network_id, address)
) STRICT;
`;

export interface IpamConfig {
  Subnet: string;
  Gateway: string;
  IPRange?: string;
}

/** A network as Docker's inspect shows it (Containers added at read time), plus the engine's own. */
export interface NetworkRecord {
  Name: string;
  Id: string;
  Created: string;
  Scope: 'local';
  Driver: 'bridge' | 'host' | 'null';
  EnableIPv4: boolean;
  EnableIPv6: boolean;
  IPAM: { Driver: 'default'; Options: Record<string, string> | null; Config: IpamConfig[] };
  Internal: boolean;
  Attachable: boolean;
  Ingress: boolean;
  ConfigFrom: { Network: string };
  ConfigOnly: boolean;
  Options: Record<string, string>;
  Labels: Record<string, string>;
  berth: { bridge: string; mtu?: number; builtin: boolean };
}

export interface Endpoint {
  networkId: string;
  containerId: string;
  endpointId: string;
  address: string;
  prefix: number;
  gateway: string;
  mac: string;
  ifname: string;
  aliases: string[];
  /** Host ports published to this endpoint's address. */
  ports: PortMapping[];
}

export class NetworkStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = openEngineDb(path, SCHEMA, 'the network tables');
  }

  networks(): NetworkRecord[] {
    return (this.db.prepare('SELECT data FROM net_networks').all() as { data: string }[]).map((r) => JSON.parse(r.data) as NetworkRecord);
  }

  putNetwork(n: NetworkRecord): void {
    this.db.prepare('INSERT INTO net_networks (id, name, data) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET name = excluded.name, data = excluded.data')
      .run(n.Id, n.Name, JSON.stringify(n));
  }

  deleteNetwork(id: string): void {
    this.db.prepare('DELETE FROM net_networks WHERE id = ?').run(id);
  }

  endpoints(): Endpoint[] {
    return (this.db.prepare('SELECT data FROM net_endpoints').all() as { data: string }[]).map((r) => JSON.parse(r.data) as Endpoint);
  }

  /** Insert (the lease is taken) or fail on a taken address. */
  putEndpoint(e: Endpoint): void {
    this.db.prepare('INSERT INTO net_endpoints (network_id, container_id, address, data) VALUES (?, ?, ?, ?) ON CONFLICT(network_id, container_id) DO UPDATE SET address = excluded.address, data = excluded.data')
      .run(e.networkId, e.containerId, e.address, JSON.stringify(e));
  }

  deleteEndpoint(networkId: string, containerId: string): void {
    this.db.prepare('DELETE FROM net_endpoints WHERE network_id = ? AND container_id = ?').run(networkId, containerId);
  }

  close(): void {
    this.db.close();
  }
}
