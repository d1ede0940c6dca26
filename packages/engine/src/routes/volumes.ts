/**
 * The volumes endpoints of the Docker Engine API: create, list, inspect,
 * remove, prune.
 */
import { invalid } from '@berth/base';
import type { Engine } from '../engine.js';
import type { ContainerService } from '../containers/service.js';
import type { Router } from '../server/router.js';
import type { VolumeCreateRequest, VolumeService } from '../volumes/service.js';

function stringMap(body: Record<string, unknown>, key: string): Record<string, string> | null | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid(`${key}: must be an object of strings`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (typeof x !== 'string') throw invalid(`${key}.${k}: must be a string`);
    out[k] = x;
  }
  return out;
}

function optString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(`${key}: must be a string`);
  return v;
}

export function volumeRoutes(router: Router, engine: Engine, containers: ContainerService, volumes: VolumeService): void {
  void engine;
  void containers;

  router.post('/volumes/create', async (ctx) => {
    const body = await ctx.object();
    const req: VolumeCreateRequest = {};
    const name = optString(body, 'Name');
    if (name !== undefined) req.Name = name;
    const driver = optString(body, 'Driver');
    if (driver !== undefined) req.Driver = driver;
    const opts = stringMap(body, 'DriverOpts');
    if (opts !== undefined) req.DriverOpts = opts;
    const labels = stringMap(body, 'Labels');
    if (labels !== undefined) req.Labels = labels;
    ctx.send(201, await volumes.create(req));
  });

  router.get('/volumes', (ctx) => {
    ctx.send(200, { Volumes: volumes.list(ctx.filters()), Warnings: [] });
  });

  router.post('/volumes/prune', async (ctx) => {
    const filters = ctx.filters();
    // Before 1.42 prune took every unused volume.
    if (!ctx.atLeast('1.42') && !filters.has('all')) filters.set('all', ['true']);
    ctx.send(200, await volumes.prune(filters));
  });

  router.get('/volumes/{name}', (ctx) => {
    ctx.send(200, volumes.json(volumes.get(ctx.params['name'] ?? '')));
  });

  router.delete('/volumes/{name}', async (ctx) => {
    await volumes.remove(ctx.params['name'] ?? '', ctx.bool('force'));
    ctx.send(204);
  });
}
