// `GET /containers/{id}/export`: a tar of a container's root filesystem, as
// docker writes it: names relative to the root without "./" (directories
// with a trailing "/"), owners, modes, times, symlinks, hard links (the
// second name of a file links to the first), devices and fifos kept, the
// security.capability attribute carried; sockets have no place in a tar.
//
// The tree may be changing while it is read (a running container): every
// directory and file is opened beneath its parent without following
// symlinks, and a file that shrinks meanwhile is padded to the size its
// header announced (one that grows is cut there).
import { PassThrough, type Readable } from 'node:stream';
import { errnoCode, internal } from '@berth/base';
import { TarWriter, TreeTar, closeFd, openDirectory } from '@berth/images';

const CHUNK = 256 * 1024;

/**
 * The tar of the tree at `mergedDir` (a view of the container's root
 * filesystem, without the mounts on top of it), streamed: reading waits for
 * the consumer, and destroying the stream ends the walk.
 */
export function exportRootfs(mergedDir: string): Readable {
  const out = new PassThrough({ highWaterMark: CHUNK });
  const run = async (): Promise<void> => {
    let root: number;
    try {
      root = openDirectory(mergedDir);
    } catch (err) {
      throw internal(`export: open ${mergedDir}: ${errnoCode(err) ?? String(err)}`, err);
    }
    try {
      const w = new TarWriter(out);
      await new TreeTar(w).directory(root, '', false);
      await w.finish();
    } finally {
      closeFd(root);
    }
  };
  run().then(
    () => out.end(),
    (err: unknown) => {
      if (!out.destroyed) out.destroy(err instanceof Error ? err : new Error(String(err)));
    },
  );
  return out;
}
