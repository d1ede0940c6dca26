/**
 * containerd's API protos, loaded once: the gRPC service definitions served by
 * the daemon, and the message types used to encode and decode Any payloads
 * (event bodies, runtime options). Protos load from dist/proto (filled by
 * scripts/copy-protos.js at build time), falling back to the shared spec tree.
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { fromJSON } from '@grpc/proto-loader';
import type { Options as LoaderOptions } from '@grpc/proto-loader';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { Bug, invalid, unavailable } from '@berth/base';
import type { AnyMessage } from './wire.js';

/** The files the daemon loads (their imports come along). */
export const PROTO_FILES: readonly string[] = [
  'services/version/v1/version.proto',
  'services/namespaces/v1/namespace.proto',
  'services/introspection/v1/introspection.proto',
  'services/containers/v1/containers.proto',
  'services/events/v1/events.proto',
  'services/tasks/v1/tasks.proto',
  'services/leases/v1/leases.proto',
  'services/snapshots/v1/snapshots.proto',
  'services/diff/v1/diff.proto',
  'services/content/v1/content.proto',
  'services/images/v1/images.proto',
  'services/transfer/v1/transfer.proto',
  'services/streaming/v1/streaming.proto',
  'types/transfer/registry.proto',
  'types/transfer/imagestore.proto',
  'types/transfer/importexport.proto',
  'types/transfer/progress.proto',
  'types/transfer/streaming.proto',
  'events/container.proto',
  'events/namespace.proto',
  'events/task.proto',
  'events/image.proto',
  'events/content.proto',
  'events/snapshot.proto',
  'types/runc/options/oci.proto',
  'types/runtimeoptions/v1/api.proto',
];

/**
 * How messages become JS objects, both for requests (proto-loader) and for
 * Any payloads: proto field names kept as written, 64-bit integers as numbers
 * (timestamps, pids and sizes stay below 2^53), enums as their names, absent
 * scalar fields filled with defaults, bytes as Buffers.
 */
export const CONVERSION: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
};

const HERE = dirname(fileURLToPath(import.meta.url));
const PACKAGE_ROOT = join(HERE, '..');

/** Where protos are looked up, in order. */
export function protoIncludeDirs(): string[] {
  const built = join(HERE, 'proto');
  if (existsSync(join(built, 'services', 'version', 'v1', 'version.proto'))) return [built];
  const shared = process.env['BERTH_PROTO_DIR'] || join(PACKAGE_ROOT, '..', '..', '..', 'shared', 'spec', 'containerd', 'api');
  return [shared, join(PACKAGE_ROOT, 'proto-extra')];
}

function typeNameOf(typeUrl: string): string {
  const slash = typeUrl.lastIndexOf('/');
  return slash < 0 ? typeUrl : typeUrl.slice(slash + 1);
}

export class Protos {
  readonly root: protobuf.Root;
  readonly includeDirs: readonly string[];
  private readonly definitions: ReturnType<typeof fromJSON>;

  private constructor(root: protobuf.Root, includeDirs: readonly string[]) {
    this.root = root;
    this.includeDirs = includeDirs;
    const opts: LoaderOptions = { keepCase: true, longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true };
    this.definitions = fromJSON(root.toJSON(), opts);
  }

  static load(files: readonly string[] = PROTO_FILES, includeDirs: readonly string[] = protoIncludeDirs()): Protos {
    const root = new protobuf.Root();
    root.resolvePath = (_origin: string, target: string): string => {
      if (isAbsolute(target)) return target;
      for (const dir of includeDirs) {
        const full = join(dir, target);
        if (existsSync(full)) return full;
      }
      // google/protobuf/*.proto are bundled with protobufjs.
      return target;
    };
    try {
      root.loadSync([...files], { keepCase: true });
      root.resolveAll();
    } catch (e) {
      throw unavailable(`loading containerd protos from ${includeDirs.join(', ')}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    return new Protos(root, includeDirs);
  }

  /** The grpc-js definition of a service, by full name (containerd.services.version.v1.Version). */
  service(fullName: string): ServiceDefinition {
    const def = this.definitions[fullName];
    if (def === undefined || !isServiceDefinition(def)) throw new Bug(`no service ${fullName} in the loaded protos`);
    return def;
  }

  /** Whether a message type is known (by full name, without a leading dot). */
  has(typeName: string): boolean {
    return this.lookup(typeName) !== undefined;
  }

  private lookup(typeName: string): protobuf.Type | undefined {
    try {
      return this.root.lookupType(typeName);
    } catch {
      return undefined;
    }
  }

  encode(typeName: string, value: Readonly<Record<string, unknown>>): Buffer {
    const type = this.lookup(typeName);
    if (type === undefined) throw new Bug(`no message type ${typeName} in the loaded protos`);
    const msg = type.fromObject(value);
    return Buffer.from(type.encode(msg).finish());
  }

  decode(typeName: string, bytes: Uint8Array): Record<string, unknown> {
    const type = this.lookup(typeName);
    if (type === undefined) throw new Bug(`no message type ${typeName} in the loaded protos`);
    try {
      return type.toObject(type.decode(bytes), CONVERSION);
    } catch (e) {
      throw invalid(`decoding ${typeName}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
  }

  /** An Any holding the message, with containerd's type URL (the bare full name). */
  pack(typeName: string, value: Readonly<Record<string, unknown>>): AnyMessage {
    return { type_url: typeName, value: this.encode(typeName, value) };
  }

  /** The decoded payload of an Any, or undefined when its type is not known here. */
  unpack(any: AnyMessage): { typeName: string; value: Record<string, unknown> } | undefined {
    const typeName = typeNameOf(any.type_url);
    if (typeName === '' || !this.has(typeName)) return undefined;
    return { typeName, value: this.decode(typeName, any.value) };
  }
}

function isServiceDefinition(def: unknown): def is ServiceDefinition {
  if (typeof def !== 'object' || def === null) return false;
  if ('format' in def) return false; // message and enum definitions carry a format
  return Object.values(def).every((m: unknown) => typeof m === 'object' && m !== null && 'path' in m);
}
