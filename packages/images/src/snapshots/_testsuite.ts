/**
 * The conformance suite every Snapshotter runs (as containerd's
 * snapshots/testsuite): call snapshotterSuite() from a test file with a
 * factory. Tests that mount need root and say so when skipped. Every test
 * unmounts what it mounted and removes its directories, also on failure.
 */
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, ErrorKind } from '@berth/base';
import { mountAll, unmountAll } from './mount.js';
import type { Mount, SnapshotInfo, Snapshotter } from './types.js';

export interface SnapshotterFactory {
  /** A name openSnapshotter() knows ("overlayfs", "native"): the crash test opens it in a child process. */
  readonly name: string;
  open(root: string): Promise<Snapshotter>;
}

const isRoot = process.getuid?.() === 0;
const ROOT_ONLY = isRoot ? false : 'needs root (mounts)';

async function kindOf(p: Promise<unknown>): Promise<{ kind: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof BerthError) return { kind: e.kind, message: e.message };
    throw e;
  }
  assert.fail('the call succeeded; an error was expected');
}

/** A fresh snapshotter in a temp root, closed and removed after the test. */
async function fresh(t: TestContext, f: SnapshotterFactory): Promise<{ s: Snapshotter; root: string }> {
  const root = mkdtempSync(join(tmpdir(), `berth-snap-${f.name}-`));
  let s: Snapshotter | undefined;
  t.after(async () => {
    try {
      await unmountAll(root);
    } finally {
      s?.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
  s = await f.open(root);
  return { s, root };
}

/** Mount at a temp dir under base, run fn on the mounted path, always unmount. */
async function withMounted<T>(base: string, mounts: readonly Mount[], fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(base, 'mnt-'));
  try {
    await mountAll(mounts, dir);
    try {
      return await fn(dir);
    } finally {
      await unmountAll(dir);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function writeTree(dir: string, files: Readonly<Record<string, string>>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, content);
  }
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (rel: string): Promise<void> => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      out.push(e.isDirectory() ? `${r}/` : r);
      if (e.isDirectory()) await visit(r);
    }
  };
  await visit('');
  return out.sort();
}

async function all(s: Snapshotter, filter?: (i: SnapshotInfo) => boolean): Promise<SnapshotInfo[]> {
  const out: SnapshotInfo[] = [];
  await s.walk((i) => { out.push(i); }, filter);
  return out;
}

export function snapshotterSuite(f: SnapshotterFactory): void {
  describe(`snapshotter conformance: ${f.name}`, () => {
    test('prepare, commit and view build a chain', async (t) => {
      const { s } = await fresh(t, f);
      const m0 = await s.prepare('a', '', { 'l': 'v' });
      assert.equal(m0.length, 1);
      let i = await s.stat('a');
      assert.deepEqual({ name: i.name, parent: i.parent, kind: i.kind, labels: i.labels }, { name: 'a', parent: '', kind: 'active', labels: { l: 'v' } });
      assert.deepEqual(await s.mounts('a'), m0);

      await s.commit('c1', 'a', { 'c': '1' });
      assert.equal((await kindOf(s.stat('a'))).kind, ErrorKind.NotFound);
      i = await s.stat('c1');
      assert.deepEqual({ name: i.name, parent: i.parent, kind: i.kind, labels: i.labels }, { name: 'c1', parent: '', kind: 'committed', labels: { c: '1' } });

      await s.prepare('b', 'c1');
      assert.equal((await s.stat('b')).parent, 'c1');
      await s.commit('c2', 'b');
      await s.view('v', 'c2');
      i = await s.stat('v');
      assert.deepEqual({ parent: i.parent, kind: i.kind }, { parent: 'c2', kind: 'view' });
      assert.equal((await s.mounts('v')).length, 1);
      await s.view('v1', 'c1');

      // What may not be done.
      assert.equal((await kindOf(s.prepare('v', 'c1'))).kind, ErrorKind.AlreadyExists, 'a key is taken');
      assert.equal((await kindOf(s.prepare('x', 'c2-missing'))).kind, ErrorKind.NotFound, 'a missing parent');
      await s.prepare('act', 'c2');
      assert.equal((await kindOf(s.prepare('y', 'act'))).kind, ErrorKind.InvalidArgument, 'an active parent');
      assert.equal((await kindOf(s.prepare('y', 'v'))).kind, ErrorKind.InvalidArgument, 'a view as parent');
      assert.equal((await kindOf(s.commit('c3', 'v'))).kind, ErrorKind.FailedPrecondition, 'committing a view');
      assert.equal((await kindOf(s.commit('c3', 'c2'))).kind, ErrorKind.FailedPrecondition, 'committing a committed');
      assert.equal((await kindOf(s.commit('c1', 'act'))).kind, ErrorKind.AlreadyExists, 'a name is taken');
      assert.equal((await kindOf(s.commit('c3', 'nope'))).kind, ErrorKind.NotFound);
      assert.equal((await kindOf(s.mounts('c1'))).kind, ErrorKind.FailedPrecondition, 'a committed snapshot has no mounts');
      assert.equal((await kindOf(s.prepare('', ''))).kind, ErrorKind.InvalidArgument, 'an empty key');
      assert.equal((await s.stat('act')).kind, 'active', 'failed calls changed nothing');
    });

    test('metadata survives close and reopen', async (t) => {
      const root = mkdtempSync(join(tmpdir(), `berth-snap-${f.name}-`));
      t.after(() => rmSync(root, { recursive: true, force: true }));
      let s = await f.open(root);
      try {
        await s.prepare('a', '');
        await s.commit('c', 'a', { k: 'v' });
        await s.prepare('b', 'c');
      } finally {
        s.close();
      }
      s = await f.open(root);
      try {
        assert.deepEqual((await all(s)).map((i) => [i.name, i.kind, i.parent]), [['b', 'active', 'c'], ['c', 'committed', '']]);
        assert.deepEqual((await s.stat('c')).labels, { k: 'v' });
      } finally {
        s.close();
      }
    });

    test('mounts mount: files flow from parent to child, deletions hide, views are read-only', { skip: ROOT_ONLY }, async (t) => {
      const { s, root } = await fresh(t, f);
      const work = join(root, 'work-area');
      mkdirSync(work);
      await withMounted(work, await s.prepare('base', ''), async (d) => {
        await writeTree(d, { 'keep': 'k', 'gone': 'g', 'change': 'old', 'dir/inner': 'i', 'deldir/x': 'x' });
      });
      await s.commit('l1', 'base');
      await withMounted(work, await s.prepare('top', 'l1'), async (d) => {
        assert.deepEqual(await listTree(d), ['change', 'deldir/', 'deldir/x', 'dir/', 'dir/inner', 'gone', 'keep']);
        await unlink(join(d, 'gone'));
        await rm(join(d, 'deldir'), { recursive: true });
        await writeFile(join(d, 'change'), 'new');
        await writeFile(join(d, 'added'), 'a');
      });
      await s.commit('l2', 'top');
      await s.view('v2', 'l2');
      await withMounted(work, await s.mounts('v2'), async (d) => {
        assert.deepEqual(await listTree(d), ['added', 'change', 'dir/', 'dir/inner', 'keep']);
        assert.equal(await readFile(join(d, 'change'), 'utf8'), 'new');
        await assert.rejects(writeFile(join(d, 'x'), 'x'), { code: 'EROFS' });
      });
      // The first layer is unchanged by its child.
      await withMounted(work, await s.view('v1', 'l1'), async (d) => {
        assert.deepEqual(await listTree(d), ['change', 'deldir/', 'deldir/x', 'dir/', 'dir/inner', 'gone', 'keep']);
        assert.equal(await readFile(join(d, 'change'), 'utf8'), 'old');
      });
      // A third level: a view over two layers, and an active snapshot over them.
      await withMounted(work, await s.prepare('third', 'l2'), async (d) => {
        await writeFile(join(d, 'dir', 'more'), 'm');
      });
      await s.commit('l3', 'third');
      await withMounted(work, await s.view('v3', 'l3'), async (d) => {
        assert.deepEqual(await listTree(d), ['added', 'change', 'dir/', 'dir/inner', 'dir/more', 'keep']);
        await assert.rejects(writeFile(join(d, 'x'), 'x'), { code: 'EROFS' });
      });
      // An empty view (no parent) mounts read-only.
      await withMounted(work, await s.view('empty', ''), async (d) => {
        assert.deepEqual(await listTree(d), []);
        await assert.rejects(writeFile(join(d, 'x'), 'x'), { code: 'EROFS' });
      });
    });

    test('the root directory of a child keeps the parent\'s owner and mode', { skip: ROOT_ONLY }, async (t) => {
      const { s, root } = await fresh(t, f);
      const work = join(root, 'work-area');
      mkdirSync(work);
      await withMounted(work, await s.prepare('base', ''), async (d) => {
        const { chmod, chown } = await import('node:fs/promises');
        await chown(d, 1234, 5678);
        await chmod(d, 0o750);
      });
      await s.commit('l1', 'base');
      await withMounted(work, await s.prepare('child', 'l1'), async (d) => {
        const st = await stat(d);
        assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [1234, 5678, 0o750]);
      });
    });

    test('remove: children first, then their parent', async (t) => {
      const { s } = await fresh(t, f);
      await s.prepare('a', '');
      await s.commit('p', 'a');
      await s.prepare('child', 'p');
      await s.view('look', 'p');
      const e = await kindOf(s.remove('p'));
      assert.equal(e.kind, ErrorKind.FailedPrecondition);
      assert.match(e.message, /cannot remove snapshot with child/);
      await s.remove('child');
      assert.equal((await kindOf(s.remove('p'))).kind, ErrorKind.FailedPrecondition, 'the view still holds it');
      await s.remove('look');
      await s.remove('p');
      assert.deepEqual(await all(s), []);
      assert.equal((await kindOf(s.remove('p'))).kind, ErrorKind.NotFound);
    });

    test('labels: replace, set one, remove one; other fields refused', async (t) => {
      const { s } = await fresh(t, f);
      await s.prepare('a', '', { one: '1', two: '2' });
      const before = await s.stat('a');
      await sleep(5);
      let i = await s.update({ name: 'a', labels: { three: '3' } });
      assert.deepEqual(i.labels, { three: '3' });
      assert.ok(i.updated.getTime() > before.updated.getTime(), 'updated moves');
      assert.equal(i.created.getTime(), before.created.getTime(), 'created stays');
      i = await s.update({ name: 'a', labels: { four: '4', ignored: 'x' } }, ['labels.four']);
      assert.deepEqual(i.labels, { three: '3', four: '4' });
      i = await s.update({ name: 'a', labels: {} }, ['labels.three']);
      assert.deepEqual(i.labels, { four: '4' });
      i = await s.update({ name: 'a', labels: { four: '' } }, ['labels.four']);
      assert.deepEqual(i.labels, {});
      i = await s.update({ name: 'a', labels: { x: 'y' } }, ['labels']);
      assert.deepEqual(i.labels, { x: 'y' });
      assert.equal((await kindOf(s.update({ name: 'a', labels: {} }, ['parent']))).kind, ErrorKind.InvalidArgument);
      assert.equal((await kindOf(s.update({ name: 'nope', labels: {} }))).kind, ErrorKind.NotFound);
      assert.equal((await kindOf(s.update({ name: 'a', labels: { big: 'x'.repeat(5000) } }))).kind, ErrorKind.InvalidArgument);
      assert.deepEqual((await s.stat('a')).labels, { x: 'y' }, 'refused updates changed nothing');
      await s.commit('c', 'a', { after: 'commit' });
      assert.deepEqual((await s.stat('c')).labels, { after: 'commit' }, 'commit sets the labels it is given');
    });

    test('walk: every snapshot in name order, filtered', async (t) => {
      const { s } = await fresh(t, f);
      await s.prepare('z', '');
      await s.commit('c', 'z', { role: 'base' });
      await s.prepare('b', 'c', { role: 'work' });
      await s.view('a', 'c');
      assert.deepEqual((await all(s)).map((i) => i.name), ['a', 'b', 'c']);
      assert.deepEqual((await all(s, (i) => i.kind === 'committed')).map((i) => i.name), ['c']);
      assert.deepEqual((await all(s, (i) => i.labels['role'] === 'work')).map((i) => i.name), ['b']);
      assert.deepEqual((await all(s, (i) => i.parent === 'c')).map((i) => i.name), ['a', 'b']);
      // fn may change the snapshotter while walking.
      await s.walk(async (i) => { if (i.kind !== 'committed') await s.remove(i.name); });
      assert.deepEqual((await all(s)).map((i) => i.name), ['c']);
    });

    test('usage counts the snapshot\'s own bytes and inodes', { skip: ROOT_ONLY }, async (t) => {
      const { s, root } = await fresh(t, f);
      const work = join(root, 'work-area');
      mkdirSync(work);
      await s.prepare('a', '');
      const empty = await s.usage('a');
      assert.ok(empty.inodes >= 1, 'the root directory counts');
      await withMounted(work, await s.mounts('a'), async (d) => {
        await writeFile(join(d, 'big'), Buffer.alloc(1 << 20, 1));
        await mkdir(join(d, 'dir'));
        await writeFile(join(d, 'dir', 'small'), 'x');
        const { link } = await import('node:fs/promises');
        await link(join(d, 'big'), join(d, 'big-link'));
      });
      const u = await s.usage('a');
      assert.equal(u.inodes - empty.inodes, 3, 'big, dir, dir/small; the hard link is the same inode');
      assert.ok(u.size >= (1 << 20) && u.size < (1 << 20) + 64 * 1024, `size ${u.size}`);
      await s.commit('c', 'a');
      assert.deepEqual(await s.usage('c'), u, 'committed usage is what was measured at commit');
      assert.equal((await kindOf(s.usage('nope'))).kind, ErrorKind.NotFound);
    });

    test('concurrent prepares: distinct keys all succeed, one key succeeds once', async (t) => {
      const { s } = await fresh(t, f);
      await s.prepare('a', '');
      await s.commit('base', 'a');
      const distinct = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => s.prepare(`k${i}`, 'base')));
      assert.deepEqual(distinct.map((r) => r.status), Array(16).fill('fulfilled'));
      const same = await Promise.allSettled(Array.from({ length: 8 }, () => s.prepare('same', 'base')));
      assert.equal(same.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of same) {
        if (r.status === 'rejected') assert.equal(r.reason instanceof BerthError ? r.reason.kind : undefined, ErrorKind.AlreadyExists);
      }
      const mounts = await Promise.all(Array.from({ length: 16 }, (_, i) => s.mounts(`k${i}`)));
      assert.equal(new Set(mounts.map((m) => JSON.stringify(m))).size, 16, 'each has its own directories');
      await Promise.all(Array.from({ length: 16 }, (_, i) => s.commit(`c${i}`, `k${i}`)));
      assert.equal((await all(s, (i) => i.kind === 'committed')).length, 17);
      await Promise.all(Array.from({ length: 16 }, (_, i) => s.remove(`c${i}`)));
      assert.deepEqual((await all(s)).map((i) => i.name), ['base', 'same']);
    });

    test('cleanup removes directories no snapshot owns and keeps the rest', { skip: ROOT_ONLY }, async (t) => {
      const { s, root } = await fresh(t, f);
      const work = join(root, 'work-area');
      mkdirSync(work);
      await withMounted(work, await s.prepare('a', ''), async (d) => writeTree(d, { f: 'data' }));
      await s.commit('c', 'a');
      await s.prepare('b', 'c');
      const dir = join(root, 'snapshots');
      const owned = readdirSync(dir).sort();
      mkdirSync(join(dir, '98765', 'fs'), { recursive: true });
      writeFileSync(join(dir, '98765', 'fs', 'junk'), 'x');
      mkdirSync(join(dir, 'new-leftover'));
      mkdirSync(join(dir, 'rm-7-leftover'));
      await s.cleanup();
      assert.deepEqual(readdirSync(dir).sort(), owned);
      await withMounted(work, await s.mounts('b'), async (d) => {
        assert.equal(await readFile(join(d, 'f'), 'utf8'), 'data');
      });
    });

    test('crash safety: a process killed mid-operation leaves consistent metadata', async (t) => {
      const root = mkdtempSync(join(tmpdir(), `berth-snap-${f.name}-`));
      const script = join(root, 'churn.mjs');
      t.after(() => rmSync(root, { recursive: true, force: true }));
      const index = new URL('./index.js', import.meta.url).href;
      writeFileSync(script, `
const m = await import(${JSON.stringify(index)});
const [kind, dir, run] = process.argv.slice(2);
const s = await m.openSnapshotter(kind, dir);
let prev = '';
for (let i = 0; ; i++) {
  const k = run + '-k' + i, c = run + '-c' + i;
  await s.prepare(k, prev, { i: String(i) });
  await s.commit(c, k);
  await s.prepare(run + '-x' + i, c);
  if (i % 2 === 1) await s.remove(run + '-x' + i);
  if (i % 3 === 2) await s.view(run + '-v' + i, c);
  prev = c;
  if (i === 3) process.stdout.write('going\\n');
}
`);
      const snapRoot = join(root, 'snap');
      for (let run = 0; run < 4; run++) {
        const child = spawn(process.execPath, [script, f.name, snapRoot, `r${run}`], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        try {
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`churn did not get going: ${stderr}`)), 20_000);
            child.stdout.once('data', () => { clearTimeout(timer); resolve(); });
            child.once('exit', () => { clearTimeout(timer); reject(new Error(`churn exited: ${stderr}`)); });
          });
          await sleep(20 + run * 37);
        } finally {
          if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
          await exited;
        }
      }
      const s = await f.open(snapRoot);
      try {
        const checkable = s as Snapshotter & { checkMetadata?: () => string[] };
        if (checkable.checkMetadata !== undefined) assert.deepEqual(checkable.checkMetadata(), [], 'SQLite integrity and foreign keys');
        const infos = await all(s);
        assert.ok(infos.length > 4, `some snapshots were made (${infos.length})`);
        // Every record's directories exist: mounts of each active snapshot and view point at real paths.
        for (const i of infos) {
          if (i.kind === 'committed') continue;
          for (const m of await s.mounts(i.name)) {
            const paths = m.type === 'bind' ? [m.source] : m.options.flatMap((o) => {
              const [k, v] = o.split('=', 2);
              return k === 'upperdir' || k === 'workdir' || k === 'lowerdir' ? (v ?? '').split(':') : [];
            });
            for (const p of paths) assert.ok(existsSync(p), `${i.name}: ${p} exists`);
          }
          if (i.parent !== '') assert.equal((await s.stat(i.parent)).kind, 'committed');
        }
        await s.cleanup();
        const dirs = readdirSync(join(snapRoot, 'snapshots'));
        assert.equal(dirs.length, infos.length, `after cleanup one directory per snapshot: ${dirs.join(' ')}`);
        // And it still works.
        await s.prepare('after', infos.find((i) => i.kind === 'committed')?.name ?? '');
        await s.commit('after-c', 'after');
      } finally {
        s.close();
      }
    });
  });
}
