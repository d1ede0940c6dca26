/**
 * The Docker API's image endpoints (v1.50 shapes; older versions where they
 * differ), thin over ImageService. Pull, push, load and import answer with
 * Docker's JSON progress stream: an error before the stream starts is an
 * ordinary error answer, after it a `{"errorDetail":…,"error":…}` line.
 */
import type { ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { invalid, unavailable } from '@berth/base';
import { parseReference, formatReference, withDigest, withTag } from '@berth/images';
import type { Engine } from '../engine.js';
import { messageOf } from '../server/errors.js';
import type { Ctx, Router } from '../server/router.js';
import { authConfigOf, checkLogin, decodeRegistryAuth } from '../images/_auth.js';
import type { JsonMessage } from '../images/_progress.js';
import { dockerImageConfig } from '../images/service.js';
import type { ImageService } from '../images/service.js';

/** A JSON progress answer that starts only when `start()` is called; lines before are kept until then. */
class ProgressStream {
  private res: ServerResponse | undefined;
  private readonly held: JsonMessage[] = [];
  readonly abort = new AbortController();

  constructor(private readonly ctx: Ctx) {
    ctx.res?.once('close', () => {
      if (!(ctx.res?.writableFinished ?? true)) this.abort.abort(new Error('the client went away'));
    });
  }

  get started(): boolean {
    return this.res !== undefined;
  }

  start = (): void => {
    if (this.res !== undefined) return;
    this.res = this.ctx.stream(200, 'application/json');
    for (const m of this.held.splice(0)) this.res.write(`${JSON.stringify(m)}\n`);
  };

  emit = (m: JsonMessage): void => {
    if (this.res === undefined) this.held.push(m);
    else if (!this.res.writableEnded) this.res.write(`${JSON.stringify(m)}\n`);
  };

  /** Run the operation: its error goes into the stream once the stream started. */
  async run(op: () => Promise<void>): Promise<void> {
    try {
      await op();
    } catch (e) {
      if (!this.started) throw e;
      const message = messageOf(e);
      this.emit({ errorDetail: { message }, error: message });
    }
    this.start();
    this.res?.end();
  }
}

/** The reference `docker pull` asks for: fromImage with tag (or a digest in `tag`). */
function pullReference(fromImage: string, tag: string | undefined): string {
  const parsed = parseReference(fromImage);
  if (tag === undefined || tag === '') return formatReference(parsed);
  if (/^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/.test(tag)) {
    return formatReference(withDigest({ domain: parsed.domain, path: parsed.path }, tag));
  }
  return formatReference(withTag(parsed, tag));
}

export function imageRoutes(router: Router, engine: Engine, images: ImageService): void {
  const inUse = (id: string): ReturnType<Engine['imageInUse']> => engine.imageInUse(id);

  router.get('/images/json', async (ctx) => {
    const filters = ctx.filters();
    const list = await images.list({
      all: ctx.bool('all'), filters, digests: ctx.bool('digests'), apiVersionAtLeast144: ctx.atLeast('1.44'),
    });
    ctx.send(200, list);
  });

  router.get('/images/search', () => {
    throw unavailable('search is not available: no registry index is reachable from this daemon (berthd has no index to search; pull by name instead)');
  });

  router.post('/images/create', async (ctx) => {
    const fromImage = ctx.str('fromImage');
    const fromSrc = ctx.str('fromSrc');
    const platform = ctx.str('platform');
    const out = new ProgressStream(ctx);
    if (fromSrc !== undefined && fromSrc !== '') {
      if (fromSrc !== '-') throw invalid(`fromSrc ${JSON.stringify(fromSrc)}: only "-" (the request body) is supported; this daemon does not fetch URLs`);
      const changes = ctx.query.getAll('changes').filter((c) => c !== '');
      const repo = ctx.str('repo');
      const tag = ctx.str('tag');
      const message = ctx.str('message');
      out.start();
      await out.run(async () => {
        const img = await images.importRootfs(ctx.req, {
          ...(repo === undefined ? {} : { repo }),
          ...(tag === undefined ? {} : { tag }),
          changes,
          ...(message === undefined ? {} : { message }),
          source: fromSrc,
          ...(platform === undefined ? {} : { platform }),
        });
        out.emit({ status: img.id });
      });
      return;
    }
    if (fromImage === undefined || fromImage === '') throw invalid('fromImage or fromSrc is required');
    const ref = pullReference(fromImage, ctx.str('tag'));
    const auth = decodeRegistryAuth(ctx.req.headers['x-registry-auth']);
    ctx.req.resume();
    await out.run(async () => {
      await images.pull(ref, {
        auth,
        ...(platform === undefined || platform === '' ? {} : { platform }),
        signal: out.abort.signal,
      }, out.emit, out.start);
    });
  });

  router.post('/images/load', async (ctx) => {
    const out = new ProgressStream(ctx);
    const platform = ctx.str('platform');
    await out.run(async () => {
      await images.load(ctx.req, { ...(platform === undefined || platform === '' ? {} : { platform }), signal: out.abort.signal }, out.emit);
    });
  });

  router.post('/images/prune', async (ctx) => {
    ctx.send(200, await images.prune(ctx.filters(), inUse));
  });

  router.post('/auth', async (ctx) => {
    const body = await ctx.object();
    ctx.send(200, await checkLogin(authConfigOf(body), images.insecureRegistries));
  });

  const save = async (ctx: Ctx, refs: readonly string[]): Promise<void> => {
    if (refs.length === 0) throw invalid('no images named to save');
    const names = await images.saveNames(refs);
    const platform = ctx.str('platform');
    const ac = new AbortController();
    const tar = images.save(names, { ...(platform === undefined || platform === '' ? {} : { platform }), signal: ac.signal });
    // The first bytes (or the error) decide the answer's status.
    const it = tar[Symbol.asyncIterator]();
    let first: IteratorResult<unknown>;
    try {
      first = await it.next();
    } catch (e) {
      tar.destroy();
      throw e;
    }
    const res = ctx.stream(200, 'application/x-tar');
    const rest = async function* (): AsyncGenerator<Buffer> {
      if (first.done !== true) yield first.value as Buffer;
      for (;;) {
        const n = await it.next();
        if (n.done === true) return;
        yield n.value as Buffer;
      }
    };
    try {
      await pipeline(rest(), res);
    } catch (e) {
      ac.abort();
      engine.log.warn('image save failed mid-stream', { images: names, error: messageOf(e) });
      res.destroy();
    }
  };

  router.get('/images/get', async (ctx) => {
    await save(ctx, ctx.query.getAll('names').filter((n) => n !== ''));
  });

  router.get('/images/{name}/get', async (ctx) => {
    await save(ctx, [ctx.params['name'] ?? '']);
  });

  router.get('/images/{name}/json', async (ctx) => {
    const out = await images.inspect(ctx.params['name'] ?? '', ctx.atLeast('1.44'));
    // `Container` and `ContainerConfig` were deprecated in v1.44 and dropped in v1.45
    // (docker-compose 1.29 reads ContainerConfig.Volumes when it recreates a container).
    if (!ctx.atLeast('1.45') && !('ContainerConfig' in out)) {
      out['Container'] = '';
      out['ContainerConfig'] = dockerImageConfig({});
    }
    ctx.send(200, out);
  });

  router.get('/images/{name}/history', async (ctx) => {
    ctx.send(200, await images.history(ctx.params['name'] ?? ''));
  });

  router.post('/images/{name}/tag', async (ctx) => {
    const repo = ctx.str('repo');
    if (repo === undefined || repo === '') throw invalid('repository name must have at least one component');
    await images.tag(ctx.params['name'] ?? '', repo, ctx.str('tag'));
    ctx.send(201);
  });

  router.post('/images/{name}/push', async (ctx) => {
    const auth = decodeRegistryAuth(ctx.req.headers['x-registry-auth']);
    const platform = ctx.str('platform');
    ctx.req.resume();
    const out = new ProgressStream(ctx);
    await out.run(async () => {
      await images.push(ctx.params['name'] ?? '', ctx.str('tag'), {
        auth,
        ...(platform === undefined || platform === '' ? {} : { platform: platformOf(platform) }),
        signal: out.abort.signal,
      }, out.emit, out.start);
    });
  });

  router.delete('/images/{name}', async (ctx) => {
    const items = await images.remove(ctx.params['name'] ?? '', { force: ctx.bool('force'), noprune: ctx.bool('noprune') }, inUse);
    ctx.send(200, items);
  });
}

/** The push `platform` parameter: JSON (an OCI platform, as the CLI sends it) or `os/arch[/variant]`. */
function platformOf(v: string): string {
  const t = v.trim();
  if (!t.startsWith('{')) return t;
  let p: unknown;
  try {
    p = JSON.parse(t);
  } catch (e) {
    throw invalid(`invalid platform: ${messageOf(e)}`);
  }
  const o = typeof p === 'object' && p !== null ? p as Record<string, unknown> : {};
  const parts = [o['os'], o['architecture'], o['variant']].filter((x): x is string => typeof x === 'string' && x !== '');
  return parts.join('/');
}
