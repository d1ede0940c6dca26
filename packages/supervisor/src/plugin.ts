/**
 * Plugins, as containerd has them: one record {type, id, requires, init} per
 * component, all built-ins listed in builtins.ts, initialised in dependency
 * order. Nothing registers itself by being imported.
 *
 * A plugin type is typed: `ic.get(MetadataPlugin)` returns the MetadataStore
 * that the metadata plugin's init produced.
 */
import { join } from 'node:path';
import type { Logger } from '@berth/base';
import { Bug, failedPrecondition } from '@berth/base';
import type { MetadataStore } from './metadata/store.js';
import type { EventExchange } from './events/exchange.js';
import type { GrpcService } from './grpc.js';
import type { Protos } from './protos.js';

/** A plugin type name with the type of instance its plugins produce. */
export interface PluginType<T> {
  readonly name: string;
  /** Type-level only: never set. */
  readonly instance?: T;
}

export function pluginType<T>(name: string): PluginType<T> {
  return { name };
}

export const MetadataPlugin = pluginType<MetadataStore>('io.containerd.metadata.v1');
export const EventPlugin = pluginType<EventExchange>('io.containerd.event.v1');
export const GRPCPlugin = pluginType<GrpcService>('io.containerd.grpc.v1');

/** Where the daemon lives; every plugin sees it. */
export interface DaemonPaths {
  /** gRPC socket path. */
  readonly address: string;
  /** Persistent data (--root). */
  readonly root: string;
  /** Runtime state, gone at reboot (--state). */
  readonly state: string;
}

export interface Platform {
  os: string;
  architecture: string;
  variant: string;
}

export interface InitContext {
  readonly paths: DaemonPaths;
  /** This plugin's own persistent directory: <root>/<type>.<id> (not created). */
  readonly root: string;
  /** This plugin's own state directory: <state>/<type>.<id> (not created). */
  readonly state: string;
  readonly log: Logger;
  readonly protos: Protos;
  /** Key/values shown by introspection; init may fill it. */
  readonly exports: Record<string, string>;
  /** Platforms shown by introspection; init may fill it. */
  readonly platforms: Platform[];
  /** The one initialised plugin of a type this plugin requires. */
  get<T>(type: PluginType<T>): T;
  /** Every initialised plugin of a type this plugin requires, by id. */
  getAll<T>(type: PluginType<T>): Map<string, T>;
  /** All plugins and their status, as introspection reports them (read when called). */
  plugins(): readonly PluginInfo[];
}

export interface PluginRecord<T> {
  readonly type: PluginType<T>;
  readonly id: string;
  readonly requires: readonly PluginType<unknown>[];
  readonly capabilities?: readonly string[];
  init(ic: InitContext): T | Promise<T>;
}

/** Thrown by init to say the plugin does not apply here (reported as "skip", not as an error). */
export class SkipPlugin extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'SkipPlugin';
  }
}

/** An instance may own resources: close() is called at shutdown, in reverse init order. */
export interface Closable {
  close(): void | Promise<void>;
}

function isClosable(v: unknown): v is Closable {
  return typeof v === 'object' && v !== null && 'close' in v && typeof (v as { close: unknown }).close === 'function';
}

export type PluginStatus = 'pending' | 'ok' | 'skip' | 'error';

export interface PluginInfo {
  readonly type: string;
  readonly id: string;
  readonly requires: readonly string[];
  readonly capabilities: readonly string[];
  readonly exports: Readonly<Record<string, string>>;
  readonly platforms: readonly Platform[];
  readonly status: PluginStatus;
  readonly error: Error | undefined;
}

interface Entry {
  readonly record: PluginRecord<unknown>;
  status: PluginStatus;
  instance: unknown;
  error: Error | undefined;
  exports: Record<string, string>;
  platforms: Platform[];
}

/** Order records so each comes after the plugins of every type it requires (stable otherwise). */
export function sortPlugins(records: readonly PluginRecord<unknown>[]): PluginRecord<unknown>[] {
  const out: PluginRecord<unknown>[] = [];
  const placed = new Set<PluginRecord<unknown>>();
  const visiting = new Set<PluginRecord<unknown>>();
  const visit = (r: PluginRecord<unknown>): void => {
    if (placed.has(r)) return;
    if (visiting.has(r)) throw new Bug(`plugin dependency cycle through ${r.type.name}.${r.id}`);
    visiting.add(r);
    for (const req of r.requires) {
      for (const dep of records) if (dep !== r && dep.type.name === req.name) visit(dep);
    }
    visiting.delete(r);
    placed.add(r);
    out.push(r);
  };
  const seen = new Set<string>();
  for (const r of records) {
    const key = `${r.type.name}.${r.id}`;
    if (seen.has(key)) throw new Bug(`plugin ${key} is listed twice`);
    seen.add(key);
  }
  for (const r of records) visit(r);
  return out;
}

export class PluginSet {
  private readonly entries: Entry[];

  constructor(records: readonly PluginRecord<unknown>[]) {
    this.entries = sortPlugins(records).map((record) => ({
      record, status: 'pending', instance: undefined, error: undefined, exports: {}, platforms: [],
    }));
  }

  /** Initialise every plugin in order. A failing plugin is recorded and the others go on. */
  async initAll(paths: DaemonPaths, protos: Protos, log: Logger): Promise<void> {
    for (const e of this.entries) {
      const { record } = e;
      const name = `${record.type.name}.${record.id}`;
      const allowed = new Set(record.requires.map((t) => t.name));
      const ic: InitContext = {
        paths,
        root: join(paths.root, name),
        state: join(paths.state, name),
        log,
        protos,
        exports: e.exports,
        platforms: e.platforms,
        get: <T>(type: PluginType<T>): T => {
          if (!allowed.has(type.name)) throw new Bug(`plugin ${name} uses ${type.name} without requiring it`);
          return this.get(type);
        },
        getAll: <T>(type: PluginType<T>): Map<string, T> => {
          if (!allowed.has(type.name)) throw new Bug(`plugin ${name} uses ${type.name} without requiring it`);
          return this.getAll(type);
        },
        plugins: () => this.info(),
      };
      try {
        e.instance = await record.init(ic);
        e.status = 'ok';
        log.debug('plugin loaded', { type: record.type.name, id: record.id });
      } catch (err) {
        e.error = err instanceof Error ? err : new Error(String(err));
        if (err instanceof SkipPlugin) {
          e.status = 'skip';
          log.info('plugin skipped', { type: record.type.name, id: record.id, reason: e.error.message });
        } else {
          e.status = 'error';
          log.warn('plugin failed to load', { type: record.type.name, id: record.id, error: e.error.message });
        }
      }
    }
  }

  /** The one loaded plugin of a type. The instance was produced by an init typed for T. */
  get<T>(type: PluginType<T>): T {
    const loaded = this.entries.filter((e) => e.record.type.name === type.name && e.status === 'ok');
    const first = loaded[0];
    if (first === undefined) {
      const failed = this.entries.find((e) => e.record.type.name === type.name && e.error !== undefined);
      throw failedPrecondition(`no plugin of type ${type.name} is loaded${failed?.error ? ` (${failed.record.id}: ${failed.error.message})` : ''}`);
    }
    if (loaded.length > 1) throw new Bug(`more than one plugin of type ${type.name}`);
    return first.instance as T;
  }

  getAll<T>(type: PluginType<T>): Map<string, T> {
    const out = new Map<string, T>();
    for (const e of this.entries) {
      if (e.record.type.name === type.name && e.status === 'ok') out.set(e.record.id, e.instance as T);
    }
    return out;
  }

  info(): PluginInfo[] {
    return this.entries.map((e) => ({
      type: e.record.type.name,
      id: e.record.id,
      requires: e.record.requires.map((t) => t.name),
      capabilities: e.record.capabilities ?? [],
      exports: { ...e.exports },
      platforms: [...e.platforms],
      status: e.status,
      error: e.error,
    }));
  }

  /** Close every loaded instance that owns resources, last loaded first. Errors are logged, not thrown. */
  async closeAll(log: Logger): Promise<void> {
    for (const e of [...this.entries].reverse()) {
      if (e.status !== 'ok' || !isClosable(e.instance)) continue;
      try {
        await e.instance.close();
      } catch (err) {
        log.warn('closing plugin', { type: e.record.type.name, id: e.record.id, error: err instanceof Error ? err.message : String(err) });
      }
    }
  }
}
