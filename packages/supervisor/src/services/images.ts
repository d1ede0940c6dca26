/**
 * Images: a name mapped to a target descriptor, with labels, per namespace,
 * in the metadata database; and containerd.services.images.v1.Images over it.
 * The store publishes /images/create, /images/update and /images/delete, so
 * an image written by pull or import announces itself as one made through
 * the API does.
 *
 *   images              (namespace, name) PK, target_media_type, target_digest, target_size,
 *   │                   created_s/ns, updated_s/ns                      namespace → namespaces(name)
 *   ├─ image_labels     (namespace, name, key) PK, value               ON DELETE CASCADE
 *   └─ image_annotations (namespace, name, key) PK, value              target annotations, ON DELETE CASCADE
 */
import { alreadyExists, invalid, notFound } from '@berth/base';
import { EventPlugin, GRPCPlugin, MetadataPlugin, pluginType } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { GrpcService } from '../grpc.js';
import type { EventExchange } from '../events/exchange.js';
import { GCPlugin } from '../gc/types.js';
import { mapField, parseFilters, present } from '../filters.js';
import type { Adaptor } from '../filters.js';
import type { MetadataStore } from '../metadata/store.js';
import { fieldMask, now, num, optRecord, record, str, strList, strMap, validateIdentifier, validateLabels } from '../wire.js';
import type { Timestamp, Wire } from '../wire.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS images (
  namespace         TEXT NOT NULL REFERENCES namespaces(name),
  name              TEXT NOT NULL,
  target_media_type TEXT NOT NULL,
  target_digest     TEXT NOT NULL,
  target_size       INTEGER NOT NULL,
  created_s         INTEGER NOT NULL,
  created_ns        INTEGER NOT NULL,
  updated_s         INTEGER NOT NULL,
  updated_ns        INTEGER NOT NULL,
  PRIMARY KEY (namespace, name)
) STRICT;
CREATE TABLE IF NOT EXISTS image_labels (
  namespace TEXT NOT NULL,
  name      TEXT NOT NULL,
  key       TEXT NOT NULL,
  value     TEXT NOT NULL,
  PRIMARY KEY (namespace, name, key),
  FOREIGN KEY (namespace, name) REFERENCES images(namespace, name) ON DELETE CASCADE
) STRICT;
CREATE TABLE IF NOT EXISTS image_annotations (
  namespace TEXT NOT NULL,
  name      TEXT NOT NULL,
  key       TEXT NOT NULL,
  value     TEXT NOT NULL,
  PRIMARY KEY (namespace, name, key),
  FOREIGN KEY (namespace, name) REFERENCES images(namespace, name) ON DELETE CASCADE
) STRICT;
`;

/** containerd.types.Descriptor */
export interface ImageTarget {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

export interface ImageRecord {
  name: string;
  labels: Record<string, string>;
  target: ImageTarget;
  createdAt: Timestamp;
  updatedAt: Timestamp;
}

/** What a caller supplies: the store stamps the times. */
export type ImageInput = Omit<ImageRecord, 'createdAt' | 'updatedAt'>;

interface ImageRow {
  name: string;
  target_media_type: string;
  target_digest: string;
  target_size: number;
  created_s: number;
  created_ns: number;
  updated_s: number;
  updated_ns: number;
}
interface KeyRow { name: string; key: string; value: string }

function toMap(entries: readonly (readonly [string, string])[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

function own(map: Readonly<Record<string, string>>, key: string): string | undefined {
  return Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined;
}

const DIGEST_HEX_LENGTHS: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };

function digestProblem(d: string): string | undefined {
  const i = d.indexOf(':');
  if (i <= 0 || i + 1 === d.length) return 'invalid checksum digest format';
  const len = DIGEST_HEX_LENGTHS[d.slice(0, i)];
  if (len === undefined) return 'unsupported digest algorithm';
  const hex = d.slice(i + 1);
  if (hex.length !== len) return 'invalid checksum digest length';
  if (!/^[a-f0-9]+$/.test(hex)) return 'invalid checksum digest format';
  return undefined;
}

/** containerd's image validation, in its words. */
export function validateImage(img: ImageInput): void {
  if (img.name === '') throw invalid('image name must not be empty');
  validateLabels(img.labels, 'image.Labels');
  const problem = digestProblem(img.target.digest);
  if (problem !== undefined) throw invalid(`Target.Digest ${JSON.stringify(img.target.digest)} invalid: ${problem}`);
  if (img.target.size <= 0) throw invalid('Target.Size must be greater than zero');
  if (img.target.mediaType === '') throw invalid('Target.MediaType must be set');
}

/**
 * containerd's update rules. No paths: the image as given replaces the stored
 * one (name and creation time kept). Paths: "labels", "labels.<k>",
 * "target", "annotations", "annotations.<k>" (the target's annotations).
 */
export function applyImageMask(current: ImageRecord, incoming: ImageInput, paths: readonly string[]): ImageInput {
  if (paths.length === 0) return { ...incoming, name: current.name };
  const next: ImageInput = {
    name: current.name,
    labels: { ...current.labels },
    target: { ...current.target, annotations: { ...current.target.annotations } },
  };
  for (const path of paths) {
    if (path.startsWith('labels.')) {
      const key = path.slice('labels.'.length);
      const v = own(incoming.labels, key);
      if (v === undefined || v === '') delete next.labels[key];
      else next.labels[key] = v;
      continue;
    }
    if (path.startsWith('annotations.')) {
      const key = path.slice('annotations.'.length);
      const v = own(incoming.target.annotations, key);
      if (v === undefined) delete next.target.annotations[key];
      else next.target.annotations[key] = v;
      continue;
    }
    switch (path) {
      case 'labels': next.labels = { ...incoming.labels }; break;
      case 'target': next.target = { ...incoming.target, annotations: { ...incoming.target.annotations } }; break;
      case 'annotations': next.target.annotations = { ...incoming.target.annotations }; break;
      default:
        throw invalid(`cannot update ${JSON.stringify(path)} field on image ${JSON.stringify(current.name)}`);
    }
  }
  return next;
}

/** The filter fields of an image, as containerd's adaptor exposes them. */
export function imageAdaptor(img: ImageRecord): Adaptor {
  return (fp) => {
    switch (fp[0]) {
      case 'name': return present(img.name);
      case 'target':
        if (fp.length !== 2) return undefined;
        if (fp[1] === 'digest') return present(img.target.digest);
        if (fp[1] === 'mediatype') return present(img.target.mediaType);
        return undefined;
      case 'labels': return mapField(fp.slice(1), img.labels);
      case 'annotations': return mapField(fp.slice(1), img.target.annotations);
      default: return undefined;
    }
  };
}

export class ImageStore {
  constructor(private readonly meta: MetadataStore, private readonly events: EventExchange) {
    meta.db.exec(SCHEMA);
    meta.registerNamespacedTable({ table: 'images', noun: 'images' });
  }

  private read(ns: string, name: string | undefined): ImageRecord[] {
    const db = this.meta.db;
    const where = name === undefined ? 'namespace = ?' : 'namespace = ? AND name = ?';
    const params = name === undefined ? [ns] : [ns, name];
    const rows = db.prepare<string[], ImageRow>(
      `SELECT name, target_media_type, target_digest, target_size, created_s, created_ns, updated_s, updated_ns
       FROM images WHERE ${where} ORDER BY name`).all(...params);
    if (rows.length === 0) return [];
    const group = (table: string): Map<string, [string, string][]> => {
      const out = new Map<string, [string, string][]>();
      for (const r of db.prepare<string[], KeyRow>(`SELECT name, key, value FROM ${table} WHERE ${where} ORDER BY name, key`).all(...params)) {
        const list = out.get(r.name) ?? [];
        list.push([r.key, r.value]);
        out.set(r.name, list);
      }
      return out;
    };
    const labels = group('image_labels');
    const annotations = group('image_annotations');
    return rows.map((r) => ({
      name: r.name,
      labels: toMap(labels.get(r.name) ?? []),
      target: {
        mediaType: r.target_media_type, digest: r.target_digest, size: r.target_size, annotations: toMap(annotations.get(r.name) ?? []),
      },
      createdAt: { seconds: r.created_s, nanos: r.created_ns },
      updatedAt: { seconds: r.updated_s, nanos: r.updated_ns },
    }));
  }

  private mustGet(ns: string, name: string): ImageRecord {
    const [img] = this.read(ns, name);
    if (img === undefined) throw notFound(`image ${JSON.stringify(name)}`);
    return img;
  }

  private write(ns: string, img: ImageInput, createdAt: Timestamp, updatedAt: Timestamp, insert: boolean): void {
    const db = this.meta.db;
    const values = [img.target.mediaType, img.target.digest, img.target.size, createdAt.seconds, createdAt.nanos, updatedAt.seconds, updatedAt.nanos];
    if (insert) {
      db.prepare(`INSERT INTO images (target_media_type, target_digest, target_size, created_s, created_ns, updated_s, updated_ns, namespace, name)
                  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(...values, ns, img.name);
    } else {
      db.prepare(`UPDATE images SET target_media_type = ?, target_digest = ?, target_size = ?, created_s = ?, created_ns = ?, updated_s = ?, updated_ns = ?
                  WHERE namespace = ? AND name = ?`).run(...values, ns, img.name);
      db.prepare('DELETE FROM image_labels WHERE namespace = ? AND name = ?').run(ns, img.name);
      db.prepare('DELETE FROM image_annotations WHERE namespace = ? AND name = ?').run(ns, img.name);
    }
    const lab = db.prepare('INSERT INTO image_labels (namespace, name, key, value) VALUES (?, ?, ?, ?)');
    for (const [k, v] of Object.entries(img.labels)) if (v !== '') lab.run(ns, img.name, k, v);
    const ann = db.prepare('INSERT INTO image_annotations (namespace, name, key, value) VALUES (?, ?, ?, ?)');
    for (const [k, v] of Object.entries(img.target.annotations)) ann.run(ns, img.name, k, v);
  }

  get(ns: string, name: string): ImageRecord {
    return this.meta.transaction(() => this.mustGet(ns, name));
  }

  /** Images matching any of the filters (containerd's syntax; none = all), by name. */
  list(ns: string, filters: readonly string[] = []): ImageRecord[] {
    const filter = parseFilters(filters);
    return this.meta.transaction(() => this.read(ns, undefined)).filter((i) => filter.match(imageAdaptor(i)));
  }

  create(ns: string, img: ImageInput): ImageRecord {
    validateIdentifier(ns);
    validateImage(img);
    const created = this.meta.transaction(() => {
      if (this.read(ns, img.name).length > 0) throw alreadyExists(`image ${JSON.stringify(img.name)}`);
      this.meta.db.prepare('INSERT INTO namespaces (name) VALUES (?) ON CONFLICT (name) DO NOTHING').run(ns);
      const t = now();
      this.write(ns, img, t, t, true);
      return this.mustGet(ns, img.name);
    });
    this.events.publish(ns, '/images/create', 'containerd.services.images.v1.ImageCreate', { name: created.name, labels: created.labels });
    return created;
  }

  /** Read, change (with containerd's field paths) and write an image in one transaction. */
  update(ns: string, img: ImageInput, paths: readonly string[]): ImageRecord {
    if (img.name === '') throw invalid('image name must not be empty');
    const updated = this.meta.transaction(() => {
      const current = this.mustGet(ns, img.name);
      const next = applyImageMask(current, img, paths);
      validateImage(next);
      this.write(ns, next, current.createdAt, now(), false);
      return this.mustGet(ns, img.name);
    });
    this.events.publish(ns, '/images/update', 'containerd.services.images.v1.ImageUpdate', { name: updated.name, labels: updated.labels });
    return updated;
  }

  /** Delete by name; with a target digest, only when the image still points there (else NotFound). */
  delete(ns: string, name: string, target?: { readonly digest: string }): void {
    this.meta.transaction(() => {
      const current = this.mustGet(ns, name);
      if (target !== undefined && target.digest !== '' && target.digest !== current.target.digest) {
        throw notFound(`image ${JSON.stringify(name)} with target ${target.digest}`);
      }
      this.meta.db.prepare('DELETE FROM images WHERE namespace = ? AND name = ?').run(ns, name);
    });
    this.events.publish(ns, '/images/delete', 'containerd.services.images.v1.ImageDelete', { name });
  }
}

// ---- plugins ----

export const ImagesPlugin = pluginType<ImageStore>('io.containerd.images.v1');

export const imageStorePlugin: PluginRecord<ImageStore> = {
  type: ImagesPlugin,
  id: 'images',
  requires: [MetadataPlugin, EventPlugin],
  init: (ic) => new ImageStore(ic.get(MetadataPlugin), ic.get(EventPlugin)),
};

// ---- wire ----

export function imageToWire(img: ImageRecord): object {
  return {
    name: img.name,
    labels: img.labels,
    target: { media_type: img.target.mediaType, digest: img.target.digest, size: img.target.size, annotations: img.target.annotations },
    created_at: img.createdAt,
    updated_at: img.updatedAt,
  };
}

export function imageFromWire(v: unknown): ImageInput {
  const o = record(v, 'image');
  const t = optRecord(o['target'], 'image.target');
  return {
    name: str(o, 'name', 'image'),
    labels: strMap(o, 'labels', 'image'),
    target: {
      mediaType: t === undefined ? '' : str(t, 'media_type', 'image.target'),
      digest: t === undefined ? '' : str(t, 'digest', 'image.target'),
      size: t === undefined ? 0 : num(t, 'size', 'image.target'),
      annotations: t === undefined ? {} : strMap(t, 'annotations', 'image.target'),
    },
  };
}

export const imagesService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'images',
  requires: [ImagesPlugin, GCPlugin],
  init: (ic) => {
    const images = ic.get(ImagesPlugin);
    const gc = ic.get(GCPlugin);
    return {
      service: 'containerd.services.images.v1.Images',
      unary: {
        Get: (req: Wire, ctx) => ({ image: imageToWire(images.get(ctx.namespace(), str(req, 'name', 'request'))) }),
        List: (req: Wire, ctx) => ({ images: images.list(ctx.namespace(), strList(req, 'filters', 'request')).map(imageToWire) }),
        Create: (req: Wire, ctx) => {
          const ns = ctx.namespace();
          const img = imageFromWire(req['image']);
          if (img.name === '') throw invalid('Image.Name required');
          return { image: imageToWire(images.create(ns, img)) };
        },
        Update: (req: Wire, ctx) => {
          const ns = ctx.namespace();
          const img = imageFromWire(req['image']);
          if (img.name === '') throw invalid('Image.Name required');
          return { image: imageToWire(images.update(ns, img, fieldMask(req['update_mask'], 'update_mask'))) };
        },
        // sync waits for the garbage collection the delete sets off, as containerd's does.
        Delete: async (req: Wire, ctx) => {
          const ns = ctx.namespace();
          const target = optRecord(req['target'], 'target');
          images.delete(ns, str(req, 'name', 'request'), target === undefined ? undefined : { digest: str(target, 'digest', 'target') });
          if (req['sync'] === true) await gc.collectNow();
          else gc.schedule();
          return {};
        },
      },
    };
  },
};
