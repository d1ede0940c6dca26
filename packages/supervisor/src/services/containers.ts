/** containerd.services.containers.v1.Containers: container metadata records. */
import { invalid } from '@berth/base';
import { EventPlugin, GRPCPlugin, MetadataPlugin } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { GrpcService } from '../grpc.js';
import { GCPlugin } from '../gc/types.js';
import { parseFilters } from '../filters.js';
import type { ContainerInput, ContainerRecord } from '../metadata/store.js';
import { anyMap, anyMessage, fieldMask, optRecord, record, str, strList, strMap } from '../wire.js';
import type { AnyMessage, Wire } from '../wire.js';

export function containerToWire(c: ContainerRecord): object {
  return {
    id: c.id,
    labels: c.labels,
    image: c.image,
    runtime: { name: c.runtime.name, options: c.runtime.options ?? null },
    spec: c.spec,
    snapshotter: c.snapshotter,
    snapshot_key: c.snapshotKey,
    created_at: c.createdAt,
    updated_at: c.updatedAt,
    extensions: c.extensions,
    sandbox: c.sandbox,
  };
}

/** The container as a client sent it; spec may be absent here (validation says so in containerd's words). */
export interface IncomingContainer extends Omit<ContainerInput, 'spec'> {
  spec: AnyMessage | undefined;
}

export function containerFromWire(v: unknown): IncomingContainer {
  const o = record(v, 'container');
  const rt = optRecord(o['runtime'], 'container.runtime');
  return {
    id: str(o, 'id', 'container'),
    labels: strMap(o, 'labels', 'container'),
    image: str(o, 'image', 'container'),
    runtime: {
      name: rt === undefined ? '' : str(rt, 'name', 'container.runtime'),
      options: rt === undefined ? undefined : anyMessage(rt['options'], 'container.runtime.options'),
    },
    spec: anyMessage(o['spec'], 'container.spec'),
    snapshotter: str(o, 'snapshotter', 'container'),
    snapshotKey: str(o, 'snapshot_key', 'container'),
    extensions: anyMap(o, 'extensions', 'container'),
    sandbox: str(o, 'sandbox', 'container'),
  };
}

function withSpec(c: IncomingContainer): ContainerInput {
  if (c.spec === undefined) throw invalid('create container failed validation: container.Spec must be set');
  return { ...c, spec: c.spec };
}

/**
 * containerd's update rules. No paths: labels, spec, extensions, image and
 * snapshot key are replaced, and the snapshotter and runtime name must not
 * change. With paths: only those fields (labels.<key> and extensions.<key>
 * for single entries; the snapshot key's path is "snapshotkey").
 */
export function applyContainerMask(current: ContainerRecord, incoming: IncomingContainer, paths: readonly string[]): ContainerInput {
  const next: ContainerInput = {
    id: current.id,
    labels: { ...current.labels },
    image: current.image,
    runtime: current.runtime,
    spec: current.spec,
    snapshotter: current.snapshotter,
    snapshotKey: current.snapshotKey,
    extensions: { ...current.extensions },
    sandbox: current.sandbox,
  };
  let fields = paths;
  if (fields.length === 0) {
    fields = ['labels', 'spec', 'extensions', 'image', 'snapshotkey'];
    if (incoming.snapshotter !== current.snapshotter) throw invalid('container.Snapshotter field is immutable');
    if (incoming.runtime.name !== current.runtime.name) throw invalid('container.Runtime.Name field is immutable');
  }
  for (const path of fields) {
    if (path.startsWith('labels.')) {
      const key = path.slice('labels.'.length);
      const v = Object.prototype.hasOwnProperty.call(incoming.labels, key) ? incoming.labels[key] : undefined;
      if (v === undefined || v === '') delete next.labels[key];
      else next.labels[key] = v;
      continue;
    }
    if (path.startsWith('extensions.')) {
      const key = path.slice('extensions.'.length);
      const v = Object.prototype.hasOwnProperty.call(incoming.extensions, key) ? incoming.extensions[key] : undefined;
      if (v === undefined) delete next.extensions[key];
      else next.extensions[key] = v;
      continue;
    }
    switch (path) {
      case 'labels': next.labels = { ...incoming.labels }; break;
      case 'spec':
        if (incoming.spec === undefined) throw invalid('container.Spec must be set');
        next.spec = incoming.spec;
        break;
      case 'extensions': next.extensions = { ...incoming.extensions }; break;
      case 'image': next.image = incoming.image; break;
      case 'snapshotkey': next.snapshotKey = incoming.snapshotKey; break;
      default:
        throw invalid(`cannot update ${JSON.stringify(path)} field on ${JSON.stringify(current.id)}`);
    }
  }
  return next;
}

export const containersService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'containers',
  requires: [MetadataPlugin, EventPlugin, GCPlugin],
  init: (ic) => {
    const store = ic.get(MetadataPlugin);
    const events = ic.get(EventPlugin);
    const gc = ic.get(GCPlugin);
    const list = (req: Wire, namespace: string): ContainerRecord[] =>
      store.listContainers(namespace, parseFilters(strList(req, 'filters', 'request')));
    return {
      service: 'containerd.services.containers.v1.Containers',
      unary: {
        Get: (req: Wire, ctx) => {
          const ns = ctx.namespace();
          const id = str(req, 'id', 'request');
          return { container: containerToWire(store.getContainer(ns, id)) };
        },
        List: (req: Wire, ctx) => ({ containers: list(req, ctx.namespace()).map(containerToWire) }),
        Create: (req: Wire, ctx) => {
          const ns = ctx.namespace();
          const c = store.createContainer(ns, withSpec(containerFromWire(req['container'])));
          events.publish(ns, '/containers/create', 'containerd.events.ContainerCreate', {
            id: c.id,
            image: c.image,
            runtime: { name: c.runtime.name, options: c.runtime.options ?? null },
          });
          return { container: containerToWire(c) };
        },
        Update: (req: Wire, ctx) => {
          const ns = ctx.namespace();
          const incoming = containerFromWire(req['container']);
          if (incoming.id === '') throw invalid('Container.ID required');
          const paths = fieldMask(req['update_mask'], 'update_mask');
          const c = store.updateContainer(ns, incoming.id, (cur) => applyContainerMask(cur, incoming, paths));
          events.publish(ns, '/containers/update', 'containerd.events.ContainerUpdate', {
            id: c.id, image: c.image, labels: c.labels, snapshot_key: c.snapshotKey,
          });
          return { container: containerToWire(c) };
        },
        Delete: (req: Wire, ctx) => {
          const ns = ctx.namespace();
          const id = str(req, 'id', 'request');
          store.deleteContainer(ns, id);
          gc.schedule();
          events.publish(ns, '/containers/delete', 'containerd.events.ContainerDelete', { id });
          return {};
        },
      },
      serverStream: {
        ListStream: async (req: Wire, ctx, out) => {
          for (const c of list(req, ctx.namespace())) await out.write({ container: containerToWire(c) });
        },
      },
    };
  },
};
