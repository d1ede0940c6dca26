/**
 * The snapshotter interface, as containerd's: a snapshotter keeps a graph of
 * filesystem snapshots and hands out mounts as data; the caller mounts.
 *
 *   prepare(key, parent) -> active snapshot (writable), mounts
 *   view(key, parent)    -> view (read-only), mounts
 *   commit(name, key)    -> the active snapshot `key` becomes the committed `name`
 *   remove(key)          -> gone (refused while children exist)
 *
 * Only committed snapshots can be parents. Keys and names share one space:
 * no two snapshots of one snapshotter have the same key.
 */

/** A mount as the mount(2) call takes it, containerd.types.Mount. */
export interface Mount {
  /** Filesystem type: "bind", "overlay"... */
  readonly type: string;
  readonly source: string;
  /** Sub-path inside the mount point; "" for the root. */
  readonly target: string;
  readonly options: readonly string[];
}

export type SnapshotKind = 'active' | 'view' | 'committed';

export interface SnapshotInfo {
  /** The key of an active snapshot or view, the name of a committed one. */
  readonly name: string;
  /** Name of the committed parent; "" for none. */
  readonly parent: string;
  readonly kind: SnapshotKind;
  readonly created: Date;
  readonly updated: Date;
  readonly labels: Readonly<Record<string, string>>;
}

/** Disk use of a snapshot's own layer (not its parents'). */
export interface SnapshotUsage {
  /** Bytes allocated (st_blocks * 512 over distinct inodes). */
  readonly size: number;
  readonly inodes: number;
}

/** What update() may change; name selects the snapshot. */
export interface SnapshotUpdate {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface Snapshotter {
  /** The snapshotter's name: "overlayfs", "native". */
  readonly name: string;
  /** The directory holding its snapshots and metadata. */
  readonly root: string;

  stat(key: string): Promise<SnapshotInfo>;
  /**
   * Change labels. No field paths (or "labels"): the labels are replaced;
   * "labels.<k>": that one label is set, or removed when absent or "".
   */
  update(info: SnapshotUpdate, fieldpaths?: readonly string[]): Promise<SnapshotInfo>;
  usage(key: string): Promise<SnapshotUsage>;
  /** The mounts of an active snapshot or a view. */
  mounts(key: string): Promise<Mount[]>;
  prepare(key: string, parent: string, labels?: Readonly<Record<string, string>>): Promise<Mount[]>;
  view(key: string, parent: string, labels?: Readonly<Record<string, string>>): Promise<Mount[]>;
  commit(name: string, key: string, labels?: Readonly<Record<string, string>>): Promise<void>;
  remove(key: string): Promise<void>;
  /**
   * Call fn for each snapshot that passes the filter (all when absent), in
   * name order. The set is read at once; fn may call the snapshotter.
   */
  walk(fn: (info: SnapshotInfo) => void | Promise<void>, filter?: (info: SnapshotInfo) => boolean): Promise<void>;
  /** Remove directories that no snapshot owns (left by crashes or interrupted removes). */
  cleanup(): Promise<void>;
  close(): void;
}
