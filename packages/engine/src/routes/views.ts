/**
 * Read-side views of containers: logs, stats, top, changes, export.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { invalid } from '@berth/base';
import { conflict } from '../server/errors.js';
import { SERVICES } from '@berth/supervisor';
import { mountAll, unmountAll } from '@berth/images';
import type { Engine } from '../engine.js';
import { SNAPSHOTTER } from '../engine.js';
import type { ContainerService } from '../containers/service.js';
import type { ContainerRecord } from '../containers/record.js';
import { layerDirs } from '../containers/layered.js';
import type { RootfsMount } from '../containers/layered.js';
import type { Router } from '../server/router.js';
import { changes } from '../views/changes.js';
import { exportRootfs } from '../views/export.js';
import { parseLogTime, streamLogs } from '../views/logs.js';
import { collectStats, streamStats } from '../views/stats.js';
import { containerPids, top } from '../views/top.js';

function cgroupsPathOf(c: ContainerRecord): string {
  return c.berth.cgroupsPath ?? '';
}

export function viewRoutes(router: Router, engine: Engine, containers: ContainerService): void {
  const layers = async (c: ContainerRecord): Promise<string[]> => {
    const r = await engine.client.call<{ mounts: RootfsMount[] }>(SERVICES.snapshots, 'Mounts', { snapshotter: SNAPSHOTTER, key: c.Id });
    return layerDirs(r.mounts);
  };

  router.get('/containers/{id}/top', async (ctx) => {
    const c = containers.find(ctx.params['id'] ?? '');
    if (!c.State.Running) throw conflict(`container ${c.Id} is not running`);
    const pids = await containerPids(cgroupsPathOf(c), { containerId: c.Id });
    ctx.send(200, await top(pids, ctx.str('ps_args') ?? ''));
  });

  router.get('/containers/{id}/stats', async (ctx) => {
    const c = containers.find(ctx.params['id'] ?? '');
    const stream = ctx.bool('stream', true);
    const oneShot = ctx.bool('one-shot');
    const target = {
      cgroupsPath: cgroupsPathOf(c), pid: c.State.Pid, containerId: c.Id, name: c.Name, id: c.Id,
      networks: (c.HostConfig.NetworkMode ?? '') !== 'host',
    };
    if (!c.State.Running) {
      const zero = await collectStats({ ...target, pid: 0 });
      ctx.send(200, zero);
      return;
    }
    const res = ctx.stream(200, 'application/json');
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    try {
      for await (const s of streamStats(target, { stream, oneShot, signal: abort.signal, isRunning: () => c.State.Running })) {
        res.write(JSON.stringify(s) + '\n');
        if (!stream) break;
      }
    } catch (e) {
      if (!abort.signal.aborted) throw e;
    } finally {
      if (!res.writableEnded) res.end();
    }
  });

  router.get('/containers/{id}/changes', async (ctx) => {
    const c = containers.find(ctx.params['id'] ?? '');
    const [upper, ...lower] = await layers(c);
    if (upper === undefined) {
      ctx.send(200, null);
      return;
    }
    const list = await changes(upper, lower);
    ctx.send(200, list.length === 0 ? null : list);
  });

  router.get('/containers/{id}/export', async (ctx) => {
    const c = containers.find(ctx.params['id'] ?? '');
    const dirs = await layers(c);
    // A read-only view of every layer, the container's own on top: no upper dir, no clash with a running mount.
    const view = mkdtempSync(join(engine.paths.dataRoot, 'tmp', 'export-'));
    try {
      if (dirs.length === 1) await mountAll([{ type: 'bind', source: dirs[0] ?? '', target: '', options: ['rbind', 'ro'] }], view);
      else await mountAll([{ type: 'overlay', source: 'overlay', target: '', options: ['ro', `lowerdir=${dirs.join(':')}`] }], view);
      const res = ctx.stream(200, 'application/x-tar');
      const tar = exportRootfs(view);
      await new Promise<void>((resolve, reject) => {
        tar.on('error', reject);
        res.on('close', () => { tar.destroy(); resolve(); });
        tar.pipe(res);
        tar.on('end', () => resolve());
      });
    } finally {
      await unmountAll(view).catch(() => undefined);
      rmSync(view, { recursive: true, force: true });
    }
  });

  router.get('/containers/{id}/logs', async (ctx) => {
    const c = containers.find(ctx.params['id'] ?? '');
    const stdout = ctx.bool('stdout');
    const stderr = ctx.bool('stderr');
    if (!stdout && !stderr) throw invalid('Bad parameters: you must choose at least one stream');
    if (c.LogPath === '') throw invalid(`configured logging driver does not support reading`);
    const tailRaw = ctx.str('tail');
    let tail: number | 'all' = 'all';
    if (tailRaw !== undefined && tailRaw !== '' && tailRaw !== 'all') {
      if (!/^-?\d+$/.test(tailRaw)) throw invalid(`invalid value for tail: ${tailRaw}`);
      tail = Number(tailRaw) < 0 ? 'all' : Number(tailRaw);
    }
    const sinceRaw = ctx.str('since');
    const untilRaw = ctx.str('until');
    const since = sinceRaw === undefined || sinceRaw === '' ? 0 : parseLogTime(sinceRaw);
    const until = untilRaw === undefined || untilRaw === '' ? 0 : parseLogTime(untilRaw);
    const tty = c.Config.Tty === true;
    const res = ctx.stream(200, tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream');
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    const maxFile = Number(c.HostConfig.LogConfig?.Config?.['max-file'] ?? '1');
    try {
      await streamLogs({
        path: c.LogPath, maxFiles: Number.isInteger(maxFile) && maxFile > 0 ? maxFile : 1, stdout, stderr,
        since, until, tail, timestamps: ctx.bool('timestamps'), follow: ctx.bool('follow'), tty,
        isRunning: () => c.State.Running || c.State.Restarting, signal: abort.signal,
        write: (chunk) => new Promise<void>((resolve) => {
          if (res.write(chunk)) resolve();
          else res.once('drain', () => resolve());
        }),
      });
    } finally {
      if (!res.writableEnded) res.end();
    }
  });
}
