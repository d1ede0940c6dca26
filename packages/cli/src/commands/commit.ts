/**
 * `berth commit`: a new image from a container's changes.
 */
import { StatusError } from '../command.js';
import type { Command } from '../command.js';
import { familiarName, parseReference } from './auth.js';

export const commit: Command = {
  name: 'commit',
  usage: 'commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]',
  description: "Create a new image from a container's changes",
  args: { min: 1, max: 2 },
  flags: [
    { long: 'author', short: 'a', kind: 'string', help: 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")' },
    { long: 'change', short: 'c', kind: 'list', help: 'Apply Dockerfile instruction to the created image' },
    { long: 'message', short: 'm', kind: 'string', help: 'Commit message' },
    { long: 'pause', short: 'p', kind: 'bool', help: 'Pause container during commit', default: true },
  ],
  async run(ctx, flags, args) {
    const [container = '', repoTag] = args;
    let repo: string | undefined;
    let tag: string | undefined;
    if (repoTag !== undefined && repoTag !== '') {
      const r = parseReference(repoTag);
      if (r.digest !== undefined) throw new StatusError(1, 'refusing to create a tag with a digest reference');
      repo = familiarName(r);
      tag = r.tag;
    }
    const client = await ctx.client();
    const res = await client.json<{ Id: string }>('POST', '/commit', {
      query: {
        container,
        repo,
        tag,
        comment: flags.string('message'),
        author: flags.string('author'),
        pause: flags.bool('pause'),
        changes: flags.list('change'),
      },
    });
    ctx.out(`${res.Id}\n`);
    return 0;
  },
};
