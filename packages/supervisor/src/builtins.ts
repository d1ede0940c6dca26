/**
 * Every built-in plugin, in one list. Adding a service means adding its
 * record here (the Tasks service will be one more io.containerd.grpc.v1 record).
 */
import { join } from 'node:path';
import { EventExchange } from './events/exchange.js';
import { MetadataStore } from './metadata/store.js';
import { EventPlugin, MetadataPlugin } from './plugin.js';
import { gcPlugin } from './gc/collector.js';
import type { PluginRecord } from './plugin.js';
import { containersService } from './services/containers.js';
import { contentService, contentStorePlugin } from './services/content.js';
import { eventsService } from './services/events.js';
import { imageStorePlugin, imagesService } from './services/images.js';
import { introspectionService } from './services/introspection.js';
import { leasesService } from './services/leases.js';
import { namespacesService } from './services/namespaces.js';
import { nativeSnapshotter, overlayfsSnapshotter, snapshotsService } from './services/snapshots.js';
import { diffService } from './services/diff.js';
import { versionService } from './services/version.js';
import { streamManagerPlugin, streamingService } from './services/streaming.js';
import { transferService } from './services/transfer.js';
import { taskRuntimePlugin, tasksService } from './tasks/service.js';

/** The metadata database lives at <root>/meta.db. */
export const metadataPlugin: PluginRecord<MetadataStore> = {
  type: MetadataPlugin,
  id: 'sqlite',
  requires: [],
  init: (ic) => {
    const store = MetadataStore.open(join(ic.paths.root, 'meta.db'));
    ic.exports['path'] = store.path;
    return store;
  },
};

export const exchangePlugin: PluginRecord<EventExchange> = {
  type: EventPlugin,
  id: 'exchange',
  requires: [],
  init: (ic) => new EventExchange(ic.protos, ic.log),
};

export const builtins: readonly PluginRecord<unknown>[] = [
  metadataPlugin,
  exchangePlugin,
  versionService,
  introspectionService,
  namespacesService,
  containersService,
  eventsService,
  leasesService,
  contentStorePlugin,
  contentService,
  imageStorePlugin,
  imagesService,
  overlayfsSnapshotter,
  nativeSnapshotter,
  gcPlugin,
  snapshotsService,
  diffService,
  taskRuntimePlugin,
  tasksService,
  streamManagerPlugin,
  streamingService,
  transferService,
];
