/**
 * A build context as the client sent it: the tar spooled to one file,
 * indexed (paths, types, content hashes) in one read, and extracted to a
 * directory only when a step needs its files (a COPY or ADD that misses the
 * cache). A fully cached build never writes the context's files out.
 */
import { createReadStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { posix } from 'node:path';
import { invalid } from '@berth/base';
import { applyLayer, decompress, readTar } from '@berth/images';
import type { TarEntry } from '@berth/images';
import { cleanPath, listedTree } from './dockerignore.js';
import type { ContextEntry, ContextTree } from './dockerignore.js';
import { ContextSums } from './sourcehash.js';

/** Files read up front (the Dockerfile, .dockerignore) are kept only up to this size. */
const MAX_KEPT = 16 << 20;
/** Symlinks followed to find a file named in the context, at most (as the kernel's limit). */
const MAX_LINKS = 40;

interface Indexed {
  type: ContextEntry['type'];
  /** A symlink's target, or a hard link's (context-relative). */
  link?: string;
  hard?: true;
}

export class BuildContext {
  readonly sums = new ContextSums();
  private readonly index = new Map<string, Indexed>();
  private readonly kept = new Map<string, Buffer>();
  private extracted: Promise<string> | undefined;

  private constructor(
    /** The context tar as received (compressed or not). */
    private readonly spool: string,
    /** Where the files go when a step needs them. */
    private readonly dir: string,
  ) {}

  /**
   * Reads the spooled context once: every entry's path and type, its hash
   * (sourcehash.ts), and the content of the files named in `keep`.
   */
  static async open(spool: string, dir: string, keep: readonly string[]): Promise<BuildContext> {
    const c = new BuildContext(spool, dir);
    const wanted = new Set(keep.map((k) => cleanPath(k)));
    for await (const e of readTar(decompress(createReadStream(spool)))) {
      const rel = BuildContext.relOf(e.path);
      const base = posix.basename(rel);
      if (base.startsWith('.wh.')) {
        throw invalid(`build context entry ${JSON.stringify(e.path)}: names starting with ".wh." are reserved for layer whiteouts`);
      }
      const o = c.sums.observe(e);
      const chunks: Buffer[] = [];
      let size = 0;
      const keepIt = e.type === 'file' && wanted.has(rel);
      for await (const chunk of e.body) {
        o.data(chunk);
        if (keepIt && size + chunk.length <= MAX_KEPT) chunks.push(chunk);
        size += chunk.length;
      }
      o.end();
      if (rel === '') continue;
      if (keepIt) c.kept.set(rel, Buffer.concat(chunks));
      else c.kept.delete(rel);
      const type: ContextEntry['type'] = e.type === 'file' || e.type === 'hardlink' ? 'file'
        : e.type === 'dir' ? 'directory' : e.type === 'symlink' ? 'symlink' : 'other';
      const entry: Indexed = { type };
      if (e.type === 'symlink') entry.link = e.linkpath;
      if (e.type === 'hardlink') {
        entry.link = BuildContext.relOf(e.linkpath);
        entry.hard = true;
      }
      c.index.set(rel, entry);
    }
    // What lies below a symlink (or any non-directory) is not reachable without following it: the
    // extracted context never has it there, and a copy must never read through the link.
    for (const p of [...c.index.keys()]) {
      for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) {
        const up = c.index.get(p.slice(0, i));
        if (up !== undefined && up.type !== 'directory') {
          c.index.delete(p);
          c.kept.delete(p);
          break;
        }
      }
    }
    return c;
  }

  /** A context tar name as a clean relative path ("" for the root); names that climb out are refused. */
  private static relOf(name: string): string {
    const p = cleanPath(name.replace(/^\/+/, ''));
    if (p === '..' || p.startsWith('../')) throw invalid(`build context entry ${JSON.stringify(name)} is outside of the context`);
    return p === '.' ? '' : p;
  }

  /** The context as a tree, for the .dockerignore walk. */
  tree(): ContextTree {
    return listedTree([...this.index].map(([path, e]) => ({ path, type: e.type })));
  }

  /**
   * The content of a regular file of the context, symlinks on the way
   * followed inside the context (never out of it); undefined when there is
   * no such file.
   */
  async read(rel: string): Promise<Buffer | undefined> {
    let p = cleanPath(rel);
    for (let hops = 0; hops <= MAX_LINKS; hops++) {
      const e = this.index.get(p);
      if (e === undefined) return undefined;
      if (e.type === 'file' && e.hard !== true) return this.kept.get(p) ?? await this.readFromSpool(p);
      if (e.link === undefined) return undefined;
      // A hard link names its target from the root; a symlink from its own directory, "/" being the context's root.
      p = e.hard === true ? e.link : cleanPath(posix.join('/', e.link.startsWith('/') ? '' : posix.dirname(p), e.link)).replace(/^\/+/, '') || '.';
    }
    throw invalid(`${rel}: too many levels of symbolic links in the build context`);
  }

  private async readFromSpool(rel: string): Promise<Buffer | undefined> {
    let found: Buffer | undefined;
    for await (const e of readTar(decompress(createReadStream(this.spool))) as AsyncIterable<TarEntry>) {
      if (e.type !== 'file' || BuildContext.relOf(e.path) !== rel) continue;
      const chunks: Buffer[] = [];
      for await (const chunk of e.body) chunks.push(chunk);
      found = Buffer.concat(chunks);
    }
    return found;
  }

  /** The context's files on disk (extracted on the first call). */
  root(): Promise<string> {
    this.extracted ??= (async () => {
      await mkdir(this.dir, { mode: 0o700 });
      await applyLayer(createReadStream(this.spool), this.dir, { mode: 'copy', refuseWhiteouts: true });
      return this.dir;
    })();
    return this.extracted;
  }
}
