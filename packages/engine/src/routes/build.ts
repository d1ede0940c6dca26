/**
 * `POST /build` as the docker CLI's classic builder sends it: the context as
 * a tar body (plain or compressed), the options in the query, credentials
 * in X-Registry-Config; the answer streams Docker's JSON messages.
 */
import { join } from 'node:path';
import { BerthError, invalid, notImplemented } from '@berth/base';
import { BuildCache, Builder, BuildStepError } from '../build/builder.js';
import type { BuildMessage } from '../build/builder.js';
import type { ContainerService } from '../containers/service.js';
import type { Engine } from '../engine.js';
import { authConfigOf, registryDomain } from '../images/_auth.js';
import type { AuthConfig } from '../images/_auth.js';
import { ImageService } from '../images/service.js';
import type { Router } from '../server/router.js';
import { INTERMEDIATE_LABEL } from '../images/service.js';

/** A JSON object of strings from a query parameter (`buildargs`, `labels`); null values kept as undefined. */
function jsonMap(raw: string | undefined, what: string): Record<string, string | undefined> {
  if (raw === undefined || raw === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw invalid(`invalid ${what}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid(`invalid ${what}: not a JSON object`);
  const out: Record<string, string | undefined> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (x === null) out[k] = undefined;
    else if (typeof x === 'string') out[k] = x;
    else throw invalid(`invalid ${what}: the value of ${k} is not a string`);
  }
  return out;
}

/** A non-negative integer query parameter, undefined when absent or empty. */
function intParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw invalid(`invalid ${name}: ${JSON.stringify(v)} is not a non-negative integer`);
  return Number(v);
}

/**
 * The host config of RUN steps' containers from the build's query, as the
 * docker CLI sends its --network, --add-host, --shm-size, --memory,
 * --memory-swap, --cpu-*, --cgroup-parent and --ulimit flags. RUN steps are
 * on the default bridge network unless told otherwise, as with dockerd.
 */
function runHostConfigOf(q: URLSearchParams): Record<string, unknown> {
  const hc: Record<string, unknown> = {};
  const mode = q.get('networkmode');
  hc['NetworkMode'] = mode === null || mode === '' || mode === 'default' ? 'bridge' : mode;
  const hosts = q.getAll('extrahosts').flatMap((h) => h.split(',')).map((h) => h.trim()).filter((h) => h !== '');
  if (hosts.length > 0) hc['ExtraHosts'] = hosts;
  const ints: [string, string][] = [
    ['shmsize', 'ShmSize'], ['memory', 'Memory'], ['cpushares', 'CpuShares'], ['cpuperiod', 'CpuPeriod'], ['cpuquota', 'CpuQuota'],
  ];
  for (const [param, field] of ints) {
    const v = intParam(q, param);
    if (v !== undefined && v > 0) hc[field] = v;
  }
  const swap = q.get('memswap');
  if (swap !== null && swap !== '') {
    if (!/^-?\d+$/.test(swap)) throw invalid(`invalid memswap: ${JSON.stringify(swap)} is not an integer`);
    if (Number(swap) !== 0) hc['MemorySwap'] = Number(swap);
  }
  for (const [param, field] of [['cpusetcpus', 'CpusetCpus'], ['cpusetmems', 'CpusetMems'], ['cgroupparent', 'CgroupParent']] as const) {
    const v = q.get(param);
    if (v !== null && v !== '') hc[field] = v;
  }
  const ulimits = q.get('ulimits');
  if (ulimits !== null && ulimits !== '' && ulimits !== 'null') {
    let v: unknown;
    try {
      v = JSON.parse(ulimits);
    } catch (e) {
      throw invalid(`invalid ulimits: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!Array.isArray(v)) throw invalid('invalid ulimits: not a JSON array');
    if (v.length > 0) hc['Ulimits'] = v;
  }
  return hc;
}

/** X-Registry-Config: base64 JSON of server address -> auth config. */
function registryConfig(header: string | string[] | undefined): Map<string, AuthConfig> {
  const h = Array.isArray(header) ? header[0] : header;
  const out = new Map<string, AuthConfig>();
  if (h === undefined || h.trim() === '') return out;
  try {
    const v = JSON.parse(Buffer.from(h.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null) return out;
    for (const [server, a] of Object.entries(v as Record<string, unknown>)) {
      if (typeof a === 'object' && a !== null) out.set(registryDomain(server), authConfigOf(a as Record<string, unknown>));
    }
  } catch {
    // unreadable credentials: builds go on without them, as pulls of public images
  }
  return out;
}

export function buildRoutes(router: Router, engine: Engine, containers: ContainerService, images: ImageService): void {
  const cache = new BuildCache(join(engine.paths.dataRoot, 'engine.db'));
  const builder = new Builder(engine, containers, images, cache);

  // `docker builder prune`, `system prune`: the step cache goes, and the build steps' images no container uses.
  router.post('/build/prune', async (ctx) => {
    const entries = cache.clear();
    const deleted: string[] = [];
    let reclaimed = 0;
    for (const img of await images.images()) {
      if (img.records.length === 0 || !img.records.every((r) => r.labels[INTERMEDIATE_LABEL] === '1')) continue;
      if (engine.imageInUse(img.id) !== undefined) continue;
      reclaimed += await images.sizeOf(img.details);
      await images.remove(img.id, { force: false }, (id) => engine.imageInUse(id));
      deleted.push(img.id);
    }
    engine.events.emit('builder', 'prune', '', { reclaimed: String(reclaimed) });
    ctx.send(200, { CachesDeleted: deleted.length === 0 && entries === 0 ? null : deleted, SpaceReclaimed: reclaimed });
  });

  router.post('/build', async (ctx) => {
    const remote = ctx.str('remote');
    if (remote !== undefined && remote !== '') throw notImplemented('building from a remote context (remote=) is not supported: send the context as the request body');
    const tags = ctx.query.getAll('t').filter((t) => t !== '');
    for (const t of tags) {
      try {
        ImageService.tagName(t, undefined);
      } catch {
        throw invalid(`invalid reference format: ${t}`);
      }
    }
    const buildArgs = jsonMap(ctx.str('buildargs'), 'buildargs');
    const labelsRaw = jsonMap(ctx.str('labels'), 'labels');
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(labelsRaw)) labels[k] = v ?? '';
    const auths = registryConfig(ctx.req.headers['x-registry-config']);
    const target = ctx.str('target');
    const dockerfile = ctx.str('dockerfile');
    const quiet = ctx.bool('q');
    const noCache = ctx.bool('nocache');
    // Docker's "pull" is a boolean for the classic builder (BuildKit also takes a platform).
    const pull = ctx.bool('pull');
    // Intermediate containers of successful steps go unless rm=0; a failed step's always goes
    // (forcerm is therefore what berthd always does).
    const keepContainers = !ctx.bool('rm', true);

    const runHostConfig = runHostConfigOf(ctx.query);

    const res = ctx.stream(200, 'application/json');
    const abort = new AbortController();
    res.on('close', () => { if (!res.writableFinished) abort.abort(); });
    const emit = (m: BuildMessage): void => {
      if (!res.writableEnded && !res.destroyed) res.write(`${JSON.stringify(m)}\r\n`);
    };
    try {
      await builder.build(ctx.req, {
        ...(dockerfile === undefined ? {} : { dockerfile }),
        tags, buildArgs, labels, noCache, quiet, pull, keepContainers, runHostConfig,
        ...(target === undefined || target === '' ? {} : { target }),
        registryAuth: (domain) => auths.get(domain) ?? {},
        signal: abort.signal,
      }, emit);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      const code = e instanceof BuildStepError ? e.exitCode : undefined;
      if (!(e instanceof BerthError)) engine.log.warn('build failed', { error: message });
      emit({ errorDetail: { message, ...(code === undefined ? {} : { code }) }, error: message });
    } finally {
      res.end();
    }
  });
}
