/** containerd.services.namespaces.v1.Namespaces: labels with field-mask updates, events on change. */
import { ErrorKind, invalid, isKind } from '@berth/base';
import { EventPlugin, GRPCPlugin, MetadataPlugin } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { CallContext, GrpcService } from '../grpc.js';
import { mapField, parseFilters, present } from '../filters.js';
import type { NamespaceRecord } from '../metadata/store.js';
import { fieldMask, record, str, strMap, validateIdentifier } from '../wire.js';
import type { Wire } from '../wire.js';

function toWire(ns: NamespaceRecord): object {
  return { name: ns.name, labels: ns.labels };
}

function parseNamespace(v: unknown): NamespaceRecord {
  const o = record(v, 'namespace');
  return { name: str(o, 'name', 'namespace'), labels: strMap(o, 'labels', 'namespace') };
}

/** Create and update events go out in the caller's namespace, as containerd publishes them from the request context. */
function eventNamespace(ctx: CallContext, fallback: string): string {
  return ctx.optionalNamespace() ?? fallback;
}

/** The labels after an update: a mask of labels.<key> paths sets or removes single labels; no mask replaces them all. */
export function applyNamespaceMask(current: Readonly<Record<string, string>>, incoming: Readonly<Record<string, string>>, paths: readonly string[]): Record<string, string> {
  if (paths.length === 0) return { ...incoming };
  const next: Record<string, string> = { ...current };
  for (const path of paths) {
    if (path.startsWith('labels.')) {
      const key = path.slice('labels.'.length);
      const v = Object.prototype.hasOwnProperty.call(incoming, key) ? incoming[key] : undefined;
      if (v === undefined || v === '') delete next[key];
      else next[key] = v;
    } else if (path === 'labels') {
      return { ...incoming };
    } else {
      throw invalid(`cannot update ${JSON.stringify(path)} field`);
    }
  }
  return next;
}

export const namespacesService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'namespaces',
  requires: [MetadataPlugin, EventPlugin],
  init: (ic) => {
    const store = ic.get(MetadataPlugin);
    const events = ic.get(EventPlugin);
    return {
      service: 'containerd.services.namespaces.v1.Namespaces',
      unary: {
        // As containerd: a namespace nothing was ever stored in reads as existing, with no labels.
        Get: (req: Wire) => {
          const name = str(req, 'name', 'request');
          validateIdentifier(name);
          try {
            return { namespace: toWire(store.getNamespace(name)) };
          } catch (e) {
            if (isKind(e, ErrorKind.NotFound)) return { namespace: { name, labels: {} } };
            throw e;
          }
        },
        List: (req: Wire) => {
          const filter = parseFilters([str(req, 'filter', 'request')].filter((f) => f !== ''));
          const list = store.listNamespaces().filter((ns) => filter.match((fp) =>
            fp[0] === 'name' ? present(ns.name) : fp[0] === 'labels' ? mapField(fp.slice(1), ns.labels) : undefined));
          return { namespaces: list.map(toWire) };
        },
        Create: (req: Wire, ctx) => {
          const ns = store.createNamespace(parseNamespace(req['namespace']));
          events.publish(eventNamespace(ctx, ns.name), '/namespaces/create', 'containerd.events.NamespaceCreate', { name: ns.name, labels: ns.labels });
          return { namespace: toWire(ns) };
        },
        Update: (req: Wire, ctx) => {
          const incoming = parseNamespace(req['namespace']);
          const paths = fieldMask(req['update_mask'], 'update_mask');
          const ns = store.updateNamespace(incoming.name, (cur) => applyNamespaceMask(cur.labels, incoming.labels, paths));
          // As containerd: the event carries the labels of the request.
          events.publish(eventNamespace(ctx, ns.name), '/namespaces/update', 'containerd.events.NamespaceUpdate', { name: ns.name, labels: incoming.labels });
          return { namespace: toWire(ns) };
        },
        Delete: (req: Wire) => {
          const name = str(req, 'name', 'request');
          store.deleteNamespace(name);
          // As containerd: the delete event goes out in the deleted namespace.
          events.publish(name, '/namespaces/delete', 'containerd.events.NamespaceDelete', { name });
          return {};
        },
      },
    };
  },
};
