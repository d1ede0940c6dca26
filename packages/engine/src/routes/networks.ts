/**
 * Docker's network endpoints: list, inspect, create, remove, prune, connect,
 * disconnect.
 */
import { invalid } from '@berth/base';
import type { NetworkService } from '../network/service.js';
import type { Router } from '../server/router.js';

export function networkRoutes(router: Router, networks: NetworkService): void {
  router.get('/networks', (ctx) => {
    ctx.send(200, networks.list(ctx.filters()));
  });

  router.get('/networks/{id}', (ctx) => {
    ctx.send(200, networks.inspect(networks.find(ctx.params['id'] ?? '')));
  });

  router.post('/networks/create', async (ctx) => {
    const body = await ctx.json();
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('the request body must be a JSON object');
    ctx.send(201, await networks.create(body as Record<string, unknown>));
  });

  router.delete('/networks/{id}', async (ctx) => {
    await networks.remove(ctx.params['id'] ?? '');
    ctx.send(204);
  });

  router.post('/networks/prune', async (ctx) => {
    ctx.send(200, await networks.prune(ctx.filters()));
  });

  router.post('/networks/{id}/connect', async (ctx) => {
    await networks.connect(ctx.params['id'] ?? '', await ctx.object());
    ctx.send(200);
  });

  router.post('/networks/{id}/disconnect', async (ctx) => {
    await networks.disconnect(ctx.params['id'] ?? '', await ctx.object());
    ctx.send(200);
  });
}
