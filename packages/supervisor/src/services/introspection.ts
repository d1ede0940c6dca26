/** containerd.services.introspection.v1.Introspection: plugins, server identity. */
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { errnoCode, notFound, writeFileAtomic } from '@berth/base';
import { GRPCPlugin } from '../plugin.js';
import type { PluginInfo, PluginRecord } from '../plugin.js';
import type { GrpcService } from '../grpc.js';
import { toGrpcError } from '../errors.js';
import { parseFilters, present } from '../filters.js';
import { str, strList } from '../wire.js';
import type { Wire } from '../wire.js';

/** The wire form; a skipped plugin's error says "skip plugin", which is how ctr tells skip from error. */
export function pluginToWire(p: PluginInfo): object {
  let initErr: object | null = null;
  if (p.status === 'skip') {
    initErr = { code: status.UNKNOWN, message: `skip plugin: ${p.error?.message ?? ''}`, details: [] };
  } else if (p.status === 'error' || p.status === 'pending') {
    const e = toGrpcError(p.error ?? new Error('plugin not initialised'));
    initErr = { code: e.code, message: e.details, details: [] };
  }
  return {
    type: p.type,
    id: p.id,
    requires: p.requires,
    platforms: p.platforms.map((pl) => ({ os: pl.os, architecture: pl.architecture, variant: pl.variant, os_version: '', os_features: [] })),
    exports: p.exports,
    capabilities: p.capabilities,
    init_err: initErr,
  };
}

/** The server's UUID, made once and kept in the plugin's root directory. */
export function serverUuid(dir: string): string {
  const file = join(dir, 'uuid');
  try {
    const v = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f-]{36}$/.test(v)) return v;
  } catch (e) {
    if (errnoCode(e) !== 'ENOENT') throw e;
  }
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  const id = randomUUID();
  writeFileAtomic(file, id, 0o644);
  return id;
}

function pidNamespace(): number {
  try {
    return statSync('/proc/self/ns/pid').ino;
  } catch {
    return 0;
  }
}

export const introspectionService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'introspection',
  requires: [],
  init: (ic) => {
    const uuid = serverUuid(ic.root);
    const pidns = pidNamespace();
    return {
      service: 'containerd.services.introspection.v1.Introspection',
      unary: {
        Plugins: (req: Wire) => {
          const filter = parseFilters(strList(req, 'filters', 'request'));
          const plugins = ic.plugins().filter((p) => filter.match((fp) => {
            switch (fp[0]) {
              case 'type': return present(p.type);
              case 'id': return present(p.id);
              default: return undefined;
            }
          }));
          return { plugins: plugins.map(pluginToWire) };
        },
        Server: () => ({ uuid, pid: process.pid, pidns, deprecations: [] }),
        PluginInfo: (req: Wire) => {
          const type = str(req, 'type', 'request');
          const id = str(req, 'id', 'request');
          const p = ic.plugins().find((x) => x.type === type && (id === '' || x.id === id));
          if (p === undefined) throw notFound(`plugin ${type}${id === '' ? '' : `.${id}`}`);
          return { plugin: pluginToWire(p), extra: null };
        },
      },
    };
  },
};
