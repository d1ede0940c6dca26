/**
 * The reference graph of garbage collection, as containerd defines it, and
 * marking over it. A node is a content blob or a snapshot of one namespace;
 * its key is a string naming the namespace, the kind and the identifier.
 *
 * Edges come from labels (docs/garbage-collection.md):
 *   containerd.io/gc.ref.content[.<anything>]           = <digest>
 *   containerd.io/gc.ref.snapshot.<snapshotter>[/<anything>] = <key>
 * and from structure: a snapshot references its parent.
 * `containerd.io/gc.root` makes a content blob or a snapshot a root.
 */

export const LABEL_ROOT = 'containerd.io/gc.root';
export const LABEL_REF_CONTENT = 'containerd.io/gc.ref.content';
export const LABEL_REF_SNAPSHOT = 'containerd.io/gc.ref.snapshot.';
export const LABEL_EXPIRE = 'containerd.io/gc.expire';
export const LABEL_FLAT = 'containerd.io/gc.flat';

/** The lease resource type of a snapshot of the given snapshotter. */
export function snapshotResourceType(snapshotter: string): string {
  return `snapshots/${snapshotter}`;
}

export const CONTENT_RESOURCE = 'content';
export const INGEST_RESOURCE = 'ingests';

export function contentNode(ns: string, digest: string): string {
  return `${ns}\0content\0${digest}`;
}

export function snapshotNode(ns: string, snapshotter: string, key: string): string {
  return `${ns}\0snapshot\0${snapshotter}\0${key}`;
}

/** The node a lease resource names; undefined for types that are no node (ingests, unknown ones). */
export function resourceNode(ns: string, type: string, id: string): string | undefined {
  if (type === CONTENT_RESOURCE) return contentNode(ns, id);
  if (type.startsWith('snapshots/') && type.length > 'snapshots/'.length) return snapshotNode(ns, type.slice('snapshots/'.length), id);
  return undefined;
}

/** The nodes a resource's labels reference. */
export function labelRefs(ns: string, labels: Readonly<Record<string, string>>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (v === '') continue;
    if (k === LABEL_REF_CONTENT || k.startsWith(`${LABEL_REF_CONTENT}.`)) {
      out.push(contentNode(ns, v));
    } else if (k.startsWith(LABEL_REF_SNAPSHOT)) {
      const rest = k.slice(LABEL_REF_SNAPSHOT.length);
      const slash = rest.indexOf('/');
      const snapshotter = slash < 0 ? rest : rest.slice(0, slash);
      if (snapshotter !== '') out.push(snapshotNode(ns, snapshotter, v));
    }
  }
  return out;
}

export function isRoot(labels: Readonly<Record<string, string>>): boolean {
  const v = Object.prototype.hasOwnProperty.call(labels, LABEL_ROOT) ? labels[LABEL_ROOT] : undefined;
  return v !== undefined && v !== '';
}

/** A lease's expiry, when it has a readable one. */
export function expiryOf(labels: Readonly<Record<string, string>>): Date | undefined {
  const v = Object.prototype.hasOwnProperty.call(labels, LABEL_EXPIRE) ? labels[LABEL_EXPIRE] : undefined;
  if (v === undefined || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(v)) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : new Date(t);
}

/** What a node references: its labels and, for a snapshot, its parent's node. */
export interface NodeRefs {
  readonly labels: Readonly<Record<string, string>>;
  readonly parent?: string;
}

export interface Root {
  readonly node: string;
  /** Reached through a containerd.io/gc.flat lease: its label references are not followed. */
  readonly flat: boolean;
}

/**
 * Every node reachable from the roots. refsOf gives a node's references, or
 * undefined when the node does not exist (a dangling reference keeps nothing).
 * A node reached only flat has its parent followed but not its labels; reached
 * both ways, it counts as reached fully.
 */
export function mark(roots: Iterable<Root>, refsOf: (node: string) => NodeRefs | undefined): Set<string> {
  const full = new Set<string>();
  const flatOnly = new Set<string>();
  const queue: Root[] = [...roots];
  while (queue.length > 0) {
    const item = queue.pop();
    if (item === undefined) break;
    const { node, flat } = item;
    if (full.has(node) || (flat && flatOnly.has(node))) continue;
    const refs = refsOf(node);
    if (refs === undefined) continue;
    if (flat) flatOnly.add(node);
    else {
      flatOnly.delete(node);
      full.add(node);
    }
    if (refs.parent !== undefined) queue.push({ node: refs.parent, flat });
    if (!flat) for (const r of labelRefs(namespaceOf(node), refs.labels)) queue.push({ node: r, flat: false });
  }
  for (const n of flatOnly) full.add(n);
  return full;
}

/** The namespace part of a node key. */
export function namespaceOf(node: string): string {
  const i = node.indexOf('\0');
  return i < 0 ? node : node.slice(0, i);
}
