/**
 * The archive API `docker cp` uses: HEAD (stat), GET (a tar of a path) and
 * PUT (extract a tar into a directory) on /containers/{id}/archive, on
 * stopped and running containers alike, through a view of the container's
 * file system (containers/archive.ts) that lives for one request. Requests
 * on one container are served one at a time.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { internal, invalid } from '@berth/base';
import type { Mount } from '@berth/images';
import { mountsUnder } from '@berth/images';
import { SERVICES } from '@berth/supervisor';
import type { Engine } from '../engine.js';
import { SNAPSHOTTER } from '../engine.js';
import { ContainerFs, statHeader, underPath } from '../containers/archive.js';
import type { RootfsSource, ViewMount } from '../containers/archive.js';
import type { ContainerRecord } from '../containers/record.js';
import type { ContainerService } from '../containers/service.js';
import type { Ctx, Router } from '../server/router.js';

const STAT_HEADER = 'X-Docker-Container-Path-Stat';

interface RootfsMount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

/** The mounts docker cp honours: volumes and binds, then the network files (unless a mount covers them). */
export function viewMounts(c: ContainerRecord): ViewMount[] {
  const out: ViewMount[] = [];
  for (const m of c.Mounts) {
    if (m.Type === 'tmpfs' || m.Source === '') continue;
    out.push({ source: m.Source, destination: m.Destination, readOnly: !m.RW });
  }
  const ro = c.HostConfig.ReadonlyRootfs === true;
  const files: Array<[string, string]> = [['/etc/resolv.conf', c.ResolvConfPath], ['/etc/hostname', c.HostnamePath], ['/etc/hosts', c.HostsPath]];
  for (const [dest, src] of files) {
    if (src === '' || !existsSync(src)) continue;
    if (c.Mounts.some((m) => m.Destination === dest)) continue;
    out.push({ source: src, destination: dest, readOnly: ro });
  }
  return out;
}

/**
 * Docker's rule for writing at `dest`: in a volume, it must be writable; out
 * of every volume, the root filesystem must not be read-only. The deepest
 * mount holding the path decides.
 */
export function checkWritable(c: ContainerRecord, dest: string): void {
  let best: { len: number; rw: boolean } | undefined;
  for (const m of c.Mounts) {
    if (!underPath(m.Destination, dest)) continue;
    const len = m.Destination.length;
    if (best === undefined || len > best.len) best = { len, rw: m.RW };
  }
  if (best !== undefined) {
    if (!best.rw) throw invalid('mounted volume is marked read-only');
    return;
  }
  if (c.HostConfig.ReadonlyRootfs === true) throw invalid('container rootfs is marked read-only');
}

export function archiveRoutes(router: Router, engine: Engine, containers: ContainerService): void {
  const queues = new Map<string, Promise<unknown>>();
  let bundles: string | undefined;

  /** Serialises the requests on one container (a stopped one's overlay is mounted once at a time). */
  const serial = async <T>(id: string, fn: () => Promise<T>): Promise<T> => {
    const prev = queues.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    queues.set(id, tail);
    try {
      return await next;
    } finally {
      if (queues.get(id) === tail) queues.delete(id);
    }
  };

  /** Where the supervisor keeps task bundles (`<state>/<namespace>/<id>/rootfs`). */
  const bundlesDir = async (): Promise<string> => {
    if (bundles !== undefined) return bundles;
    const r = await engine.client.call<{ plugins: { type: string; id: string; exports: Record<string, string> }[] }>(SERVICES.introspection, 'Plugins', { filters: [] });
    const p = r.plugins.find((x) => x.type === 'io.containerd.runtime.v2' && x.id === 'task');
    const s = p?.exports['state'];
    if (s === undefined || s === '') throw internal('the supervisor does not export where its task bundles are (io.containerd.runtime.v2/task state)');
    bundles = s;
    return s;
  };

  const rootfsOf = async (c: ContainerRecord): Promise<RootfsSource> => {
    if (c.State.Running) {
      const path = join(await bundlesDir(), engine.client.namespace, c.Id, 'rootfs');
      if (!(await mountsUnder(path)).includes(path)) throw internal(`the root filesystem of running container ${c.Id} is not mounted at ${path}`);
      return { kind: 'mounted', path };
    }
    const r = await engine.client.call<{ mounts: RootfsMount[] }>(SERVICES.snapshots, 'Mounts', { snapshotter: SNAPSHOTTER, key: c.Id });
    const mounts: Mount[] = r.mounts.map((m) => ({ type: m.type, source: m.source, target: '', options: m.options }));
    if (mounts.length === 0) throw internal(`the snapshot of container ${c.Id} has no mounts`);
    return { kind: 'snapshot', mounts };
  };

  /**
   * Runs fn on a view of the container; the view is closed when fn's promise
   * settles, and then the answer fn returned (if any) is sent.
   */
  type Work = (fs: ContainerFs, c: ContainerRecord, path: string) => Promise<(() => void) | undefined>;
  const withFs = async (ctx: Ctx, fn: Work): Promise<void> => {
    const ref = ctx.params['id'] ?? '';
    const c = containers.find(ref);
    const path = ctx.str('path') ?? '';
    if (path === '') throw invalid("bad parameter: 'path' cannot be empty");
    const answer = await serial(c.Id, async () => {
      const view = await ContainerFs.open(join(engine.paths.dataRoot, 'tmp'), ref, await rootfsOf(c), viewMounts(c));
      try {
        return await fn(view, c, path);
      } finally {
        await view.close().catch((e: unknown) => engine.log.warn('closing a container view failed', { id: c.Id, error: e instanceof Error ? e.message : String(e) }));
      }
    });
    answer?.();
  };

  const event = (c: ContainerRecord, action: string, path: string): void => {
    engine.events.emit('container', action, c.Id, { image: c.Config.Image ?? '', name: c.Name.slice(1), path });
  };

  router.head('/containers/{id}/archive', (ctx) => withFs(ctx, async (fs, _c, path) => {
    const stat = fs.stat(path);
    return () => ctx.send(200, undefined, { [STAT_HEADER]: statHeader(stat), 'Content-Type': 'application/json' });
  }));

  router.get('/containers/{id}/archive', (ctx) => withFs(ctx, async (fs, c, path) => {
    const { stat, tar } = fs.archive(path);
    event(c, 'archive-path', path);
    const res = ctx.stream(200, 'application/x-tar', { [STAT_HEADER]: statHeader(stat) });
    await new Promise<void>((resolve) => {
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        resolve();
      };
      tar.on('error', (e: Error) => {
        engine.log.warn('archive of a container path failed', { id: c.Id, path, error: e.message });
        res.destroy();
        finish();
      });
      res.on('close', () => {
        tar.destroy();
        finish();
      });
      tar.on('end', () => {
        res.end();
        finish();
      });
      tar.pipe(res, { end: false });
    });
    return undefined;
  }));

  router.put('/containers/{id}/archive', (ctx) => withFs(ctx, async (fs, c, path) => {
    await fs.extract(path, ctx.req, {
      copyUIDGID: ctx.bool('copyUIDGID'),
      noOverwriteDirNonDir: ctx.bool('noOverwriteDirNonDir'),
      check: (dest) => checkWritable(c, dest),
    });
    event(c, 'extract-to-dir', path);
    return () => ctx.send(200);
  }));
}
