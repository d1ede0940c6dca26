/**
 * `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`,
 * with an optional ContainerConfig body: a new image from a container's
 * changes (201 `{Id}`).
 */
import { invalid } from '@berth/base';
import { Committer } from '../containers/commit.js';
import { parseContainerConfig } from '../containers/config.js';
import type { ContainerConfig } from '../containers/config.js';
import type { ContainerService } from '../containers/service.js';
import type { Engine } from '../engine.js';
import type { ImageService } from '../images/service.js';
import type { Router } from '../server/router.js';

export function commitRoutes(router: Router, engine: Engine, containers: ContainerService, images: ImageService): void {
  const committer = new Committer(engine, containers, images);

  router.post('/commit', async (ctx) => {
    const body = await ctx.json();
    let config: ContainerConfig | undefined;
    if (body !== undefined && body !== null) {
      if (typeof body !== 'object' || Array.isArray(body)) throw invalid('invalid JSON: the body must be a ContainerConfig object');
      config = parseContainerConfig(body as Record<string, unknown>, 'Config');
    }
    // Since API 1.13 an absent or empty `pause` means pause.
    const pauseRaw = ctx.str('pause');
    const pause = pauseRaw === undefined || pauseRaw === '' ? true : ctx.bool('pause');
    const repo = ctx.str('repo');
    const tag = ctx.str('tag');
    const comment = ctx.str('comment');
    const author = ctx.str('author');
    const res = await committer.commit(ctx.str('container') ?? '', {
      ...(repo === undefined ? {} : { repo }),
      ...(tag === undefined ? {} : { tag }),
      ...(comment === undefined ? {} : { comment }),
      ...(author === undefined ? {} : { author }),
      pause,
      changes: ctx.query.getAll('changes'),
      ...(config === undefined ? {} : { config }),
    });
    ctx.send(201, { Id: res.id });
  });
}
