/**
 * The overlayfs snapshotter. Each snapshot is snapshots/<id>/fs (its own
 * changes, the overlay upper dir) and snapshots/<id>/work (overlay's work
 * dir). A committed snapshot's fs becomes a lower dir of its children.
 *
 *   active, no parent         bind  fs            rw,rbind
 *   active, parents p1..pn    overlay upperdir=fs,workdir=work,lowerdir=p1/fs:...:pn/fs
 *   view, no parent           bind  fs            ro,rbind
 *   view, one parent          bind  p1/fs         ro,rbind
 *   view, parents p1..pn      overlay lowerdir=p1/fs:...:pn/fs (read-only)
 */
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, stat, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { unavailable } from '@berth/base';
import { DirSnapshotter } from './_base.js';
import type { StoredSnapshot } from './_store.js';
import { mountAll, unmountAll } from './mount.js';
import type { Mount } from './types.js';

/** Whether the kernel's overlay takes index=off (containerd passes it so lower dirs can be reused freely). */
function indexOption(): string[] {
  return existsSync('/sys/module/overlay/parameters/index') ? ['index=off'] : [];
}

export class OverlaySnapshotter extends DirSnapshotter {
  readonly name = 'overlayfs';
  private readonly extraOptions: readonly string[];

  private constructor(root: string) {
    super(root);
    this.extraOptions = indexOption();
  }

  /** Open (creating if needed) the snapshotter rooted at root. */
  static async open(root: string): Promise<OverlaySnapshotter> {
    return new OverlaySnapshotter(root);
  }

  /**
   * Whether overlay with two lower dirs and an upper dir mounts on the
   * filesystem holding root; rejects with a reason when not.
   */
  static async check(root: string): Promise<void> {
    await mkdir(root, { recursive: true, mode: 0o700 });
    const t = await mkdtemp(join(root, 'overlay-check-'));
    try {
      for (const d of ['l1', 'l2', 'upper', 'work', 'merged']) await mkdir(join(t, d));
      await writeFile(join(t, 'l2', 'f'), 'lower');
      await mountAll([{
        type: 'overlay', source: 'overlay', target: '',
        options: [...indexOption(), `workdir=${join(t, 'work')}`, `upperdir=${join(t, 'upper')}`, `lowerdir=${join(t, 'l1')}:${join(t, 'l2')}`],
      }], join(t, 'merged'));
      try {
        if (await readFile(join(t, 'merged', 'f'), 'utf8') !== 'lower') throw unavailable(`overlay mounted at ${t} does not show its lower dir`);
      } finally {
        await unmountAll(join(t, 'merged'));
      }
    } catch (e) {
      throw unavailable(`overlayfs does not work under ${root}: ${e instanceof Error ? e.message : String(e)}`, e);
    } finally {
      await rm(t, { recursive: true, force: true });
    }
  }

  protected layerDir(id: number): string {
    return join(this.snapshotDir(id), 'fs');
  }

  protected async populate(dir: string, kind: 'active' | 'view', parents: readonly StoredSnapshot[]): Promise<void> {
    const fs = join(dir, 'fs');
    await mkdir(fs, { mode: 0o755 });
    await chmod(fs, 0o755);
    if (kind === 'active') await mkdir(join(dir, 'work'), { mode: 0o700 });
    // The merged root takes the upper dir's owner and mode: keep the parent's.
    const parent = parents[0];
    if (parent !== undefined) {
      const st = await stat(this.layerDir(parent.id));
      await chown(fs, st.uid, st.gid);
      await chmod(fs, st.mode & 0o7777);
    }
  }

  protected mountsOf(s: StoredSnapshot, parents: readonly StoredSnapshot[]): Mount[] {
    const lowers = parents.map((p) => this.layerDir(p.id));
    const first = lowers[0];
    if (first === undefined) {
      return [{ type: 'bind', source: this.layerDir(s.id), target: '', options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
    }
    if (s.kind === 'view') {
      if (lowers.length === 1) return [{ type: 'bind', source: first, target: '', options: ['ro', 'rbind'] }];
      return [{ type: 'overlay', source: 'overlay', target: '', options: [...this.extraOptions, `lowerdir=${lowers.join(':')}`] }];
    }
    return [{
      type: 'overlay', source: 'overlay', target: '',
      options: [
        ...this.extraOptions,
        `workdir=${join(this.snapshotDir(s.id), 'work')}`,
        `upperdir=${this.layerDir(s.id)}`,
        `lowerdir=${lowers.join(':')}`,
      ],
    }];
  }
}
