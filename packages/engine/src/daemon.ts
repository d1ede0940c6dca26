/**
 * berthd: the supervisor (started or given), the engine's store, its
 * services and the API server, wired together; the supervisor's task events
 * drive the containers' states.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '@berth/base';
import { ContainerdClient, SERVICES } from '@berth/supervisor';
import type { Message } from '@berth/supervisor';
import type { EngineConfig } from './config.js';
import { ContainerService } from './containers/service.js';
import { ENGINE_NAMESPACE } from './engine.js';
import type { Engine, EnginePaths } from './engine.js';
import { EventBus } from './events.js';
import { ImageService } from './images/service.js';
import { ensureBuiltinImage } from './images/builtin.js';
import { imageRoutes } from './routes/images.js';
import { commitRoutes } from './routes/commit.js';
import { buildRoutes } from './routes/build.js';
import { containerRoutes, containerSizes } from './routes/containers.js';
import { summary } from './containers/summary.js';
import { viewRoutes } from './routes/views.js';
import { volumeRoutes } from './routes/volumes.js';
import { VolumeService } from './volumes/service.js';
import { archiveRoutes } from './routes/archive.js';
import { systemRoutes } from './routes/system.js';
import { networkRoutes } from './routes/networks.js';
import { NetworkService } from './network/service.js';
import { ApiServer } from './server/http.js';
import { Router } from './server/router.js';
import { EngineStore } from './store.js';
import { ManagedSupervisor, supervisorPaths } from './supervisor.js';

interface TaskEventBody {
  container_id?: string;
  id?: string;
  exit_status?: number;
  exited_at?: { seconds?: number; nanos?: number };
}

function tsToRfc(ts: TaskEventBody['exited_at']): string | undefined {
  if (ts === undefined || ts.seconds === undefined) return undefined;
  const d = new Date((ts.seconds ?? 0) * 1000);
  return `${d.toISOString().slice(0, 19)}.${String(ts.nanos ?? 0).padStart(9, '0')}Z`;
}

export class EngineDaemon {
  private supervisor: ManagedSupervisor | undefined;
  private server: ApiServer | undefined;
  private subscription: { cancel(): void } | undefined;
  private closed = false;
  containers!: ContainerService;
  images!: ImageService;
  client!: ContainerdClient;
  store!: EngineStore;
  networks: NetworkService | undefined;
  volumes!: VolumeService;

  constructor(readonly config: EngineConfig, readonly log: Logger) {}

  static async start(config: EngineConfig, log: Logger): Promise<EngineDaemon> {
    const d = new EngineDaemon(config, log);
    try {
      await d.run();
    } catch (e) {
      await d.stop().catch(() => undefined);
      throw e;
    }
    return d;
  }

  private async run(): Promise<void> {
    const c = this.config;
    mkdirSync(c.dataRoot, { recursive: true, mode: 0o711 });
    mkdirSync(c.execRoot, { recursive: true, mode: 0o711 });
    const sp = supervisorPaths(c.dataRoot, c.execRoot);
    let address = c.containerd;
    if (address === '') {
      this.supervisor = new ManagedSupervisor(sp, this.log, c.logLevel, () => void this.resubscribe());
      await this.supervisor.start();
      address = sp.address;
    }
    this.client = new ContainerdClient(address, { namespace: c.namespace || ENGINE_NAMESPACE });
    await this.client.ready(20_000);
    const shims = await this.shimsDir(sp.state);
    const paths: EnginePaths = { dataRoot: c.dataRoot, execRoot: c.execRoot, shims };
    this.store = new EngineStore(join(c.dataRoot, 'engine.db'));
    let engineId = this.store.get('engine-id');
    if (engineId === undefined) {
      engineId = randomUUID();
      this.store.set('engine-id', engineId);
    }
    const events = new EventBus();
    const engine: Engine = {
      client: this.client, paths, log: this.log, events,
      images: undefined as unknown as Engine['images'],
      imageInUse: (id) => this.containers.imageInUse(id),
    };
    const tempDir = join(c.dataRoot, 'tmp');
    rmSync(tempDir, { recursive: true, force: true });
    mkdirSync(tempDir, { recursive: true, mode: 0o700 });
    this.images = new ImageService(this.client, events, this.log, { insecureRegistries: c.insecureRegistries, tempDir });
    (engine as { images: Engine['images'] }).images = this.images;
    this.containers = new ContainerService(engine, this.store);
    this.networks = await NetworkService.open({ dataRoot: c.dataRoot, execRoot: c.execRoot, log: this.log, store: this.store, containers: this.containers });
    this.containers.hooks.network = this.networks;
    this.volumes = new VolumeService(engine, join(c.dataRoot, 'engine.db'), () => this.containers.all());
    this.containers.hooks.volumes = this.volumes;

    this.subscribe();
    if (c.builtinImage) {
      try {
        await ensureBuiltinImage(this.images);
      } catch (e) {
        this.log.warn('the built-in busybox image could not be made', { error: e instanceof Error ? e.message : String(e) });
      }
    }
    await this.containers.reconcile();

    const router = new Router();
    systemRoutes(router, engine, {
      containers: this.containers,
      imageCount: async () => (await this.images.list({ all: false, filters: new Map(), digests: false })).length,
      engineId,
      runtimePath: 'berth-runc',
      insecureRegistries: c.insecureRegistries,
      df: async () => {
        const images = await this.images.list({ all: false, filters: new Map(), digests: false });
        const all = this.containers.all();
        const containers = await Promise.all(all.map(async (ct) => ({ ...summary(ct), ...(await containerSizes(engine, ct)) })));
        const used = new Map<string, number>();
        for (const ct of all) used.set(ct.Image, (used.get(ct.Image) ?? 0) + 1);
        return {
          LayersSize: images.reduce((n, i) => n + i.Size, 0),
          Images: images.map((i) => ({ ...i, Containers: used.get(i.Id) ?? 0 })),
          Containers: containers,
          Volumes: (await this.volumes?.df()) ?? [],
          BuildCache: [],
        };
      },
    });
    containerRoutes(router, engine, this.containers);
    volumeRoutes(router, engine, this.containers, this.volumes);
    viewRoutes(router, engine, this.containers);
    archiveRoutes(router, engine, this.containers);
    imageRoutes(router, engine, this.images);
    networkRoutes(router, this.networks);
    commitRoutes(router, engine, this.containers, this.images);
    buildRoutes(router, engine, this.containers, this.images);
    this.server = new ApiServer(router, this.log);
    const tls = c.tls ? { ca: c.tlsCaCert, cert: c.tlsCert, key: c.tlsKey, verify: c.tlsVerify } : undefined;
    await this.server.listen(c.hosts.map((address) => ({ address })), tls);
    if (c.pidfile !== '') writeFileSync(c.pidfile, `${process.pid}\n`);
    this.log.info('berthd is serving', { hosts: c.hosts });
  }

  /** Where the supervisor keeps shims: from its introspection exports, else its state dir. */
  private async shimsDir(state: string): Promise<string> {
    try {
      const r = await this.client.call<{ plugins: { type: string; id: string; exports: Record<string, string> }[] }>(SERVICES.introspection, 'Plugins', { filters: [] });
      const p = r.plugins.find((x) => x.type === 'io.containerd.runtime.v2' && x.id === 'task');
      const s = p?.exports['shims'];
      if (s !== undefined && s !== '') return s;
    } catch (e) {
      this.log.warn('introspection failed', { error: e instanceof Error ? e.message : String(e) });
    }
    return join(state, 'shims');
  }

  private subscribe(): void {
    const ns = this.client.namespace;
    const stream = this.client.stream(SERVICES.events, 'Subscribe', { filters: [`namespace==${ns},topic~="^/tasks/"`] });
    this.subscription = stream;
    stream.on('data', (env: Message) => void this.onEvent(env));
    stream.on('error', (e: Error & { code?: number }) => {
      if (this.closed || e.code === 1) return;
      this.log.warn('supervisor event stream broke; resubscribing', { error: e.message });
      setTimeout(() => void this.resubscribe(), 500).unref();
    });
    stream.on('end', () => {
      if (!this.closed) setTimeout(() => void this.resubscribe(), 500).unref();
    });
  }

  private resubscribing = false;

  private async resubscribe(): Promise<void> {
    if (this.closed || this.resubscribing) return;
    this.resubscribing = true;
    try {
      this.subscription?.cancel();
      await this.client.ready(30_000);
      this.subscribe();
      await this.containers.reconcile();
    } catch (e) {
      this.log.warn('reconnecting to the supervisor failed', { error: e instanceof Error ? e.message : String(e) });
      setTimeout(() => void this.resubscribe(), 1000).unref();
    } finally {
      this.resubscribing = false;
    }
  }

  private async onEvent(env: Message): Promise<void> {
    const topic = String(env['topic'] ?? '');
    const any = env['event'] as { type_url: string; value: Buffer } | undefined;
    if (any === undefined) return;
    const decoded = this.client.types.unpack(any);
    if (decoded === undefined) return;
    const body = decoded.value as TaskEventBody;
    try {
      if (topic === '/tasks/exit') {
        await this.containers.taskExited(body.container_id ?? '', body.id ?? '', body.exit_status ?? 0, tsToRfc(body.exited_at));
      } else if (topic === '/tasks/oom') {
        this.containers.oomKilled(body.container_id ?? '');
      }
    } catch (e) {
      this.log.warn('handling a task event failed', { topic, error: e instanceof Error ? e.message : String(e) });
    }
  }

  async stop(opts: { stopSupervisor?: boolean } = {}): Promise<void> {
    this.closed = true;
    this.containers?.close();
    this.subscription?.cancel();
    await this.server?.close();
    this.client?.close();
    await this.networks?.close();
    this.store?.close();
    this.volumes?.close();
    if (opts.stopSupervisor !== false) await this.supervisor?.stop();
    if (this.config.pidfile !== '') rmSync(this.config.pidfile, { force: true });
  }
}
