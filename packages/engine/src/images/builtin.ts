/**
 * The built-in busybox image, so that `berth run busybox` works on a machine
 * that cannot reach a registry: the busybox-static rootfs the native build
 * makes (native/out/rootfs), as a one-layer OCI image whose layer tar is
 * written deterministically (entries sorted by name bytes, mtime fixed,
 * owner 0:0), so that its digests are the same on every machine and every
 * start.
 */
import { lstat, readdir, readlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createReadStream } from 'node:fs';
import { invalid } from '@berth/base';
import { TarWriter } from '@berth/images';
import type { TarWriteEntry } from '@berth/images';
import { getRecord } from './_supervisor.js';
import type { ImageService } from './service.js';
import type { ResolvedImage } from './types.js';

export const BUILTIN_IMAGE = 'docker.io/library/busybox:latest';

/** The time every entry and the config carry: 2000-01-01T00:00:00Z. */
const FIXED_MTIME = 946_684_800;
const FIXED_CREATED = '2000-01-01T00:00:00Z';
/** Build bookkeeping in the rootfs directory, not part of the image. */
const SKIP = new Set(['.stamp']);

/** native/out/rootfs, found from this file (packages/engine/dist/images/); BERTH_NATIVE_DIR overrides native/out. */
export function defaultRootfsDir(env: NodeJS.ProcessEnv = process.env): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const native = env['BERTH_NATIVE_DIR'] || join(here, '..', '..', '..', '..', 'native', 'out');
  return join(native, 'rootfs');
}

const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** The layer tar of a directory tree, deterministic: same tree, same bytes. */
export async function deterministicLayer(root: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb): void {
      chunks.push(chunk);
      cb();
    },
  });
  const tar = new TarWriter(sink);
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(root, rel))).filter((n) => rel !== '' || !SKIP.has(n)).sort(byBytes);
    for (const name of names) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const full = join(root, path);
      const st = await lstat(full);
      const base: Omit<TarWriteEntry, 'type' | 'path'> = { mode: st.mode & 0o7777, uid: 0, gid: 0, mtime: FIXED_MTIME };
      if (st.isDirectory()) {
        await tar.add({ ...base, type: 'dir', path: `${path}/` });
        await walk(path);
      } else if (st.isFile()) {
        await tar.add({ ...base, type: 'file', path, size: st.size }, createReadStream(full));
      } else if (st.isSymbolicLink()) {
        await tar.add({ ...base, type: 'symlink', path, linkpath: await readlink(full) });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const rdev = st.rdev;
        await tar.add({
          ...base, type: st.isCharacterDevice() ? 'char' : 'block', path,
          devmajor: (rdev >> 8) & 0xfff, devminor: (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
        });
      } else if (st.isFIFO()) {
        await tar.add({ ...base, type: 'fifo', path });
      }
      // sockets have no place in a layer
    }
  };
  await walk('');
  await tar.finish();
  return Buffer.concat(chunks);
}

/**
 * Make `docker.io/library/busybox:latest` from the rootfs when no image has
 * that name (cheap when one has: a lookup, and a snapshot check). Returns
 * the image, made or found.
 */
export async function ensureBuiltinImage(images: ImageService, rootfsDir: string = defaultRootfsDir()): Promise<ResolvedImage> {
  const existing = await getRecord(images.client, BUILTIN_IMAGE);
  if (existing !== undefined) {
    const img = await images.resolve(BUILTIN_IMAGE);
    await images.ensureUnpacked(img);
    return img;
  }
  try {
    const st = await lstat(join(rootfsDir, 'bin', 'busybox'));
    if (!st.isFile()) throw new Error('not a regular file');
  } catch (e) {
    throw invalid(`built-in image: ${join(rootfsDir, 'bin', 'busybox')} is missing (run make -C native): ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const layer = await deterministicLayer(rootfsDir);
  const img = await images.createImage({
    layer,
    runConfig: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
    created: FIXED_CREATED,
    createdBy: '/bin/sh -c #(nop) ADD busybox-static rootfs in / ',
    comment: 'built-in image',
    name: BUILTIN_IMAGE,
    platform: { os: 'linux', architecture: images.platform.architecture, ...(images.platform.variant === undefined ? {} : { variant: images.platform.variant }) },
  });
  images.log.info('made the built-in image', { name: BUILTIN_IMAGE, id: img.id });
  return img;
}
