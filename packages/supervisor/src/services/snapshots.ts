/**
 * Snapshotters as plugins (type io.containerd.snapshotter.v1: overlayfs,
 * native) and containerd.services.snapshots.v1.Snapshots over them.
 *
 * Snapshotters themselves know nothing of namespaces. As containerd's
 * metadata layer does, the service gives every namespace its own key space:
 * the snapshotter stores "<namespace>/<key>" (namespaces are identifiers, so
 * the first "/" ends the namespace) and the service strips it on the way out.
 * A parent is always looked up in the caller's namespace.
 *
 * The service's changes run as the garbage collector's snapshot mutations
 * (never while a collection reads and removes snapshots), and with a
 * `containerd-lease` a prepared, viewed or committed snapshot joins that lease.
 */
import { join } from 'node:path';
import { BerthError, invalid, notImplemented } from '@berth/base';
import { NativeSnapshotter, OverlaySnapshotter } from '@berth/images';
import type { Mount, SnapshotInfo, SnapshotKind, SnapshotUpdate, SnapshotUsage, Snapshotter } from '@berth/images';
import { EventPlugin, GRPCPlugin, SkipPlugin, pluginType } from '../plugin.js';
import type { InitContext, PluginRecord } from '../plugin.js';
import type { CallContext, GrpcService } from '../grpc.js';
import { mapField, parseFilters, present } from '../filters.js';
import type { Adaptor } from '../filters.js';
import { fieldMask, optRecord, str, strList, strMap, validateLabels } from '../wire.js';
import { GCPlugin } from '../gc/types.js';
import { snapshotResourceType } from '../gc/refs.js';
import { leaseOf } from './leases.js';
import type { Timestamp, Wire } from '../wire.js';

export const SnapshotterPlugin = pluginType<Snapshotter>('io.containerd.snapshotter.v1');

/** The snapshotter used when a request names none. */
export const DEFAULT_SNAPSHOTTER = 'overlayfs';

/** Where a snapshotter keeps its snapshots and metadata: <root>/snapshots/<id>. */
export function snapshotterRoot(ic: InitContext, id: string): string {
  return join(ic.paths.root, 'snapshots', id);
}

function goArch(): string {
  switch (process.arch) {
    case 'x64': return 'amd64';
    case 'ia32': return '386';
    default: return process.arch;
  }
}

export const overlayfsSnapshotter: PluginRecord<Snapshotter> = {
  type: SnapshotterPlugin,
  id: 'overlayfs',
  requires: [],
  init: async (ic) => {
    const root = snapshotterRoot(ic, 'overlayfs');
    try {
      await OverlaySnapshotter.check(root);
    } catch (e) {
      throw new SkipPlugin(e instanceof Error ? e.message : String(e));
    }
    ic.exports['root'] = root;
    ic.platforms.push({ os: 'linux', architecture: goArch(), variant: '' });
    return OverlaySnapshotter.open(root);
  },
};

export const nativeSnapshotter: PluginRecord<Snapshotter> = {
  type: SnapshotterPlugin,
  id: 'native',
  requires: [],
  init: async (ic) => {
    const root = snapshotterRoot(ic, 'native');
    ic.exports['root'] = root;
    ic.platforms.push({ os: 'linux', architecture: goArch(), variant: '' });
    return NativeSnapshotter.open(root);
  },
};

// ---- namespacing ----

/**
 * A snapshotter as one namespace sees it: keys, names and parents are the
 * namespace's own; walk() shows only its snapshots; errors name keys as the
 * caller wrote them. In-process users (unpacking a pulled image, preparing a
 * container's rootfs) go through this too, so they share the service's keys.
 */
export class NamespacedSnapshotter implements Snapshotter {
  readonly name: string;
  readonly root: string;
  private readonly prefix: string;

  constructor(private readonly backend: Snapshotter, readonly namespace: string) {
    this.name = backend.name;
    this.root = backend.root;
    this.prefix = `${namespace}/`;
  }

  private scoped(key: string): string {
    return key === '' ? '' : this.prefix + key;
  }

  private unscoped(key: string): string | undefined {
    return key.startsWith(this.prefix) ? key.slice(this.prefix.length) : undefined;
  }

  private info(i: SnapshotInfo): SnapshotInfo {
    return { ...i, name: this.unscoped(i.name) ?? i.name, parent: i.parent === '' ? '' : this.unscoped(i.parent) ?? i.parent };
  }

  /** Run a backend call; errors name keys without the namespace. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof BerthError)) throw e;
      const message = e.message.split(`"${this.prefix}`).join('"');
      if (message === e.message) throw e;
      throw new BerthError(e.kind, message, { cause: e });
    }
  }

  async stat(key: string): Promise<SnapshotInfo> {
    return this.info(await this.call(() => this.backend.stat(this.scoped(key))));
  }

  async update(info: SnapshotUpdate, fieldpaths?: readonly string[]): Promise<SnapshotInfo> {
    return this.info(await this.call(() => this.backend.update({ ...info, name: this.scoped(info.name) }, fieldpaths)));
  }

  usage(key: string): Promise<SnapshotUsage> {
    return this.call(() => this.backend.usage(this.scoped(key)));
  }

  mounts(key: string): Promise<Mount[]> {
    return this.call(() => this.backend.mounts(this.scoped(key)));
  }

  prepare(key: string, parent: string, labels?: Readonly<Record<string, string>>): Promise<Mount[]> {
    return this.call(() => this.backend.prepare(this.scoped(key), this.scoped(parent), labels));
  }

  view(key: string, parent: string, labels?: Readonly<Record<string, string>>): Promise<Mount[]> {
    return this.call(() => this.backend.view(this.scoped(key), this.scoped(parent), labels));
  }

  commit(name: string, key: string, labels?: Readonly<Record<string, string>>): Promise<void> {
    return this.call(() => this.backend.commit(this.scoped(name), this.scoped(key), labels));
  }

  remove(key: string): Promise<void> {
    return this.call(() => this.backend.remove(this.scoped(key)));
  }

  walk(fn: (info: SnapshotInfo) => void | Promise<void>, filter?: (info: SnapshotInfo) => boolean): Promise<void> {
    return this.backend.walk(
      (i) => fn(this.info(i)),
      (i) => this.unscoped(i.name) !== undefined && (filter === undefined || filter(this.info(i))),
    );
  }

  /** Cleanup is of the whole snapshotter (directories no snapshot of any namespace owns). */
  cleanup(): Promise<void> {
    return this.backend.cleanup();
  }

  /** The backend is shared: closing a namespace's view closes nothing. */
  close(): void {
    /* nothing */
  }
}

// ---- wire ----

const KIND_WIRE: Readonly<Record<SnapshotKind, string>> = { active: 'ACTIVE', view: 'VIEW', committed: 'COMMITTED' };

function timestampOf(d: Date): Timestamp {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

export function snapshotInfoToWire(i: SnapshotInfo): object {
  return {
    name: i.name,
    parent: i.parent,
    kind: KIND_WIRE[i.kind],
    created_at: timestampOf(i.created),
    updated_at: timestampOf(i.updated),
    labels: i.labels,
  };
}

export function mountToWire(m: Mount): object {
  return { type: m.type, source: m.source, target: m.target, options: [...m.options] };
}

/** The filter fields of a snapshot, as containerd's adaptor exposes them. */
export function snapshotAdaptor(i: SnapshotInfo): Adaptor {
  return (fp) => {
    switch (fp[0]) {
      case 'name': return present(i.name);
      case 'parent': return present(i.parent);
      case 'kind': return present(i.kind);
      case 'labels': return mapField(fp.slice(1), i.labels);
      default: return undefined;
    }
  };
}

function key(req: Wire, field: string): string {
  const k = str(req, field, 'request');
  if (k === '') throw invalid(`snapshot ${field} must not be empty`);
  return k;
}

/** Snapshots per message in List, as containerd batches them. */
const LIST_BATCH = 100;

/** A namespace's view of the named snapshotter ("" for the default). */
export function snapshotterFor(snapshotters: ReadonlyMap<string, Snapshotter>, name: string, namespace: string): NamespacedSnapshotter {
  const id = name || DEFAULT_SNAPSHOTTER;
  const sn = snapshotters.get(id);
  if (sn === undefined) throw invalid(`snapshotter not loaded: ${id}`);
  return new NamespacedSnapshotter(sn, namespace);
}

export const snapshotsService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'snapshots',
  requires: [SnapshotterPlugin, EventPlugin, GCPlugin],
  init: (ic) => {
    const snapshotters = ic.getAll(SnapshotterPlugin);
    const events = ic.get(EventPlugin);
    const gc = ic.get(GCPlugin);
    /**
     * Run a change while no collection runs. With a lease and a key, the key
     * joins the lease first (and leaves it again if the change fails and it
     * was not held before).
     */
    const change = <T>(ctx: CallContext, sn: NamespacedSnapshotter, leased: string | undefined, fn: () => Promise<T>): Promise<T> =>
      gc.snapshotMutation(async () => {
        const lease = leaseOf(ctx);
        const r = { type: snapshotResourceType(sn.name), id: leased ?? '' };
        const added = lease !== undefined && leased !== undefined && gc.leases.addResource(sn.namespace, lease, r);
        try {
          return await fn();
        } catch (e) {
          if (added && lease !== undefined) gc.leases.deleteResource(sn.namespace, lease, r);
          throw e;
        }
      });
    const forget = (sn: NamespacedSnapshotter, k: string): void => gc.leases.forget(sn.namespace, { type: snapshotResourceType(sn.name), id: k });
    const pick = (req: Wire, ctx: CallContext): NamespacedSnapshotter =>
      snapshotterFor(snapshotters, str(req, 'snapshotter', 'request'), ctx.namespace());
    const labelsOf = (req: Wire): Record<string, string> => {
      const labels = strMap(req, 'labels', 'request');
      validateLabels(labels, 'snapshot labels');
      return labels;
    };
    return {
      service: 'containerd.services.snapshots.v1.Snapshots',
      unary: {
        Prepare: async (req, ctx) => {
          const sn = pick(req, ctx);
          const k = key(req, 'key');
          const parent = str(req, 'parent', 'request');
          const labels = labelsOf(req);
          const mounts = await change(ctx, sn, k, () => sn.prepare(k, parent, labels));
          events.publish(sn.namespace, '/snapshot/prepare', 'containerd.events.SnapshotPrepare', { key: k, parent, snapshotter: sn.name });
          return { mounts: mounts.map(mountToWire) };
        },
        View: async (req, ctx) => {
          const sn = pick(req, ctx);
          const k = key(req, 'key');
          const parent = str(req, 'parent', 'request');
          const labels = labelsOf(req);
          const mounts = await change(ctx, sn, k, () => sn.view(k, parent, labels));
          return { mounts: mounts.map(mountToWire) };
        },
        Mounts: async (req, ctx) => {
          const sn = pick(req, ctx);
          return { mounts: (await sn.mounts(key(req, 'key'))).map(mountToWire) };
        },
        Commit: async (req, ctx) => {
          const sn = pick(req, ctx);
          const name = key(req, 'name');
          const k = key(req, 'key');
          const parent = str(req, 'parent', 'request');
          if (parent !== '') {
            const current = await sn.stat(k);
            if (current.parent !== parent) {
              throw notImplemented(`commit of ${JSON.stringify(k)} onto parent ${JSON.stringify(parent)}: rebasing a snapshot is not supported (its parent is ${JSON.stringify(current.parent)})`);
            }
          }
          const labels = labelsOf(req);
          await change(ctx, sn, name, () => sn.commit(name, k, labels));
          forget(sn, k);
          events.publish(sn.namespace, '/snapshot/commit', 'containerd.events.SnapshotCommit', { key: k, name, snapshotter: sn.name });
          return {};
        },
        Remove: async (req, ctx) => {
          const sn = pick(req, ctx);
          const k = key(req, 'key');
          await change(ctx, sn, undefined, () => sn.remove(k));
          forget(sn, k);
          events.publish(sn.namespace, '/snapshot/remove', 'containerd.events.SnapshotRemove', { key: k, snapshotter: sn.name });
          return {};
        },
        Stat: async (req, ctx) => {
          const sn = pick(req, ctx);
          return { info: snapshotInfoToWire(await sn.stat(key(req, 'key'))) };
        },
        Update: async (req, ctx) => {
          const sn = pick(req, ctx);
          const info = optRecord(req['info'], 'info');
          if (info === undefined) throw invalid('snapshot info must be set');
          const name = str(info, 'name', 'info');
          if (name === '') throw invalid('snapshot name must not be empty');
          const labels = strMap(info, 'labels', 'info');
          validateLabels(labels, 'snapshot labels');
          const paths = fieldMask(req['update_mask'], 'update_mask');
          for (const p of paths) {
            if (p !== 'labels' && !p.startsWith('labels.')) throw invalid(`cannot update ${JSON.stringify(p)} field on snapshot ${JSON.stringify(name)}`);
          }
          return { info: snapshotInfoToWire(await change(ctx, sn, undefined, () => sn.update({ name, labels }, paths))) };
        },
        Usage: async (req, ctx) => {
          const sn = pick(req, ctx);
          const u = await sn.usage(key(req, 'key'));
          return { size: u.size, inodes: u.inodes };
        },
        Cleanup: async (req, ctx) => {
          const sn = pick(req, ctx);
          await change(ctx, sn, undefined, () => sn.cleanup());
          return {};
        },
      },
      serverStream: {
        List: async (req, ctx, out) => {
          const sn = pick(req, ctx);
          const filter = parseFilters(strList(req, 'filters', 'request'));
          const found: SnapshotInfo[] = [];
          await sn.walk((i) => { found.push(i); }, (i) => filter.match(snapshotAdaptor(i)));
          for (let at = 0; at < found.length; at += LIST_BATCH) {
            if (ctx.signal.aborted) return;
            await out.write({ info: found.slice(at, at + LIST_BATCH).map(snapshotInfoToWire) });
          }
        },
      },
    };
  },
};
