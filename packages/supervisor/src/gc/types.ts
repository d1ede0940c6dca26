/**
 * What the services see of the garbage collector (gc/collector.ts has the
 * collector itself): a plugin type of its own, so that services can require
 * it without importing the collector and the stores it reads.
 */
import { pluginType } from '../plugin.js';
import type { LeaseStore } from '../services/leases.js';

/** What one collection removed. */
export interface GcStats {
  /** Content records (namespace, digest) removed. */
  readonly content: number;
  /** Blobs removed from the local store (no namespace sees them any more). */
  readonly blobs: number;
  /** Snapshots removed, over every snapshotter. */
  readonly snapshots: number;
  /** Leases removed because their containerd.io/gc.expire time had passed. */
  readonly leases: number;
}

export interface Collector {
  /** The lease tables, for services that add what a call creates to the call's lease. */
  readonly leases: LeaseStore;
  /** Ask for a collection soon (debounced: it runs a short while after the last request). */
  schedule(): void;
  /** Run a collection that starts after this call (at once, or after the running one) and wait for it. */
  collectNow(): Promise<GcStats>;
  /** A lease was created: if it has an expiry, a collection is due then. */
  leaseCreated(labels: Readonly<Record<string, string>>): void;
  /**
   * Run fn while no collection removes snapshots: every call that changes a
   * snapshotter's records goes through here, so that what a collection
   * decided from one reading is not changed under it.
   */
  snapshotMutation<T>(fn: () => Promise<T>): Promise<T>;
}

export const GCPlugin = pluginType<Collector>('io.containerd.gc.v1');
