/** containerd.services.version.v1.Version */
import { GRPCPlugin } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { GrpcService } from '../grpc.js';

/** Semver-shaped so that clients which parse the version keep working. */
export const VERSION = '0.1.0+berth';
export const REVISION = 'berth-containerd';

export const versionService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'version',
  requires: [],
  init: () => ({
    service: 'containerd.services.version.v1.Version',
    unary: {
      Version: () => ({ version: VERSION, revision: REVISION }),
    },
  }),
};
