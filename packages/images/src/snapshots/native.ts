/**
 * The native (copying) snapshotter, for where overlay cannot work: each
 * snapshot is a full tree at snapshots/<id>, made by copying its parent's
 * tree (owners, modes, xattrs, devices, hard links kept). Every snapshot is
 * one bind mount; views are read-only binds.
 */
import { chmod } from 'node:fs/promises';
import { DirSnapshotter } from './_base.js';
import { copyTree } from './_fs.js';
import type { StoredSnapshot } from './_store.js';
import type { Mount } from './types.js';

export class NativeSnapshotter extends DirSnapshotter {
  readonly name = 'native';

  private constructor(root: string) {
    super(root);
  }

  /** Open (creating if needed) the snapshotter rooted at root. */
  static async open(root: string): Promise<NativeSnapshotter> {
    return new NativeSnapshotter(root);
  }

  protected layerDir(id: number): string {
    return this.snapshotDir(id);
  }

  protected async populate(dir: string, _kind: 'active' | 'view', parents: readonly StoredSnapshot[]): Promise<void> {
    const parent = parents[0];
    if (parent === undefined) {
      await chmod(dir, 0o755);
      return;
    }
    // Copies the root directory's own owner, mode and times too.
    await copyTree(this.snapshotDir(parent.id), dir);
  }

  protected mountsOf(s: StoredSnapshot): Mount[] {
    return [{ type: 'bind', source: this.snapshotDir(s.id), target: '', options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
  }
}
