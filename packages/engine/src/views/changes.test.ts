// Root only: a real overlay mount, changed through the mount, then read from
// its upper directory. The mount and the temp dir are removed in t.after.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  appendFileSync, chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { changes, ChangeKind } from './changes.js';
import type { Change } from './changes.js';
import { sys } from '@berth/images';

const isRoot = process.getuid?.() === 0;

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) assert.fail(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

function files(base: string, entries: Record<string, string | null>): void {
  for (const [name, content] of Object.entries(entries)) {
    const p = join(base, name);
    if (content === null) mkdirSync(p, { recursive: true });
    else {
      mkdirSync(join(p, '..'), { recursive: true });
      writeFileSync(p, content);
    }
  }
}

interface Overlay {
  lowers: string[];
  upper: string;
  merged: string;
}

/** An overlay mount of `lowers` (top first) with an empty upper directory. */
function overlay(t: TestContext, lowerTrees: Array<Record<string, string | null>>): Overlay {
  const dir = mkdtempSync(join(tmpdir(), 'berth-changes-'));
  const lowers = lowerTrees.map((_, i) => join(dir, `lower${i}`));
  const upper = join(dir, 'upper');
  const work = join(dir, 'work');
  const merged = join(dir, 'merged');
  for (const d of [...lowers, upper, work, merged]) mkdirSync(d);
  lowerTrees.forEach((tree, i) => files(lowers[i] as string, tree));
  // old times in the lower layers, so that a directory changed later differs surely
  for (const l of lowers) run('find', [l, '-exec', 'touch', '-h', '-d', '2020-01-01T00:00:00', '{}', '+']);
  let mounted = false;
  t.after(() => {
    if (mounted) spawnSync('umount', [merged]);
    rmSync(dir, { recursive: true, force: true });
  });
  run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`, merged]);
  mounted = true;
  return { lowers, upper, merged };
}

const show = (cs: Change[]): string[] => cs.map((c) => `${'CAD'[c.Kind]} ${c.Path}`);

test('changes: an overlay upper directory against its lower layers', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const o = overlay(t, [{
    'etc/passwd': 'root:x:0:0\n',
    'etc/hosts': '127.0.0.1 localhost\n',
    'd/x': 'x', 'd/y': 'y',
    'o/p': 'p', 'o/q': 'q',
    'keep/k': 'k',
    f: 'f',
    'sub/deep/file': 'old',
    'ren/a': 'a',
  }]);
  const m = o.merged;
  writeFileSync(join(m, 'new.txt'), 'new');
  appendFileSync(join(m, 'etc/passwd'), 'daemon:x:1:1\n');
  unlinkSync(join(m, 'd/x'));
  rmSync(join(m, 'o'), { recursive: true });
  mkdirSync(join(m, 'o'));
  writeFileSync(join(m, 'o/p'), 'P');
  files(m, { 'newdir/z': 'z' });
  chmodSync(join(m, 'f'), 0o600);
  appendFileSync(join(m, 'sub/deep/file'), 'more');
  renameSync(join(m, 'ren/a'), join(m, 'ren/b'));

  // facts about the upper directory the expectations rest on
  assert.ok(lstatSync(join(o.upper, 'd/x')).isCharacterDevice());
  assert.equal(lstatSync(join(o.upper, 'd/x')).rdev, 0);
  assert.equal(existsSync(join(o.upper, 'keep')), false);

  const got = await changes(o.upper, o.lowers);
  assert.deepEqual(show(got), [
    'C /d', 'D /d/x', 'C /etc/passwd', 'C /f', 'A /new.txt', 'A /newdir', 'A /newdir/z', 'D /o', 'A /o/p',
    'C /ren', 'D /ren/a', 'A /ren/b', 'C /sub/deep/file',
  ]);
  const kinds = new Map(got.map((c) => [c.Path, c.Kind]));
  const paths = got.map((c) => c.Path);
  assert.deepEqual(paths, [...paths].sort(), 'sorted by path');
  assert.equal(kinds.get('/new.txt'), ChangeKind.Added);
  assert.equal(kinds.get('/etc/passwd'), ChangeKind.Modified);
  assert.equal(kinds.get('/d/x'), ChangeKind.Deleted);
  assert.equal(kinds.get('/d'), ChangeKind.Modified);
  assert.equal(kinds.get('/o'), ChangeKind.Deleted, 'an opaque directory that was below');
  assert.equal(kinds.get('/o/p'), ChangeKind.Added, 'the lower /o/p is hidden by the opaque /o');
  assert.equal(kinds.get('/newdir'), ChangeKind.Added);
  assert.equal(kinds.get('/newdir/z'), ChangeKind.Added);
  assert.equal(kinds.get('/f'), ChangeKind.Modified);
  assert.equal(kinds.get('/sub/deep/file'), ChangeKind.Modified);
  assert.equal(kinds.get('/ren'), ChangeKind.Modified);
  assert.equal(kinds.get('/ren/a'), ChangeKind.Deleted);
  assert.equal(kinds.get('/ren/b'), ChangeKind.Added);
  for (const untouched of ['/keep', '/keep/k', '/etc/hosts', '/d/y', '/o/q', '/']) assert.equal(kinds.has(untouched), false, untouched);
  // directories only copied up keep the lower mtime and are not reported for themselves
  for (const dir of ['etc', 'sub', 'sub/deep']) {
    const up = lstatSync(join(o.upper, dir), { bigint: true });
    const low = lstatSync(join(o.lowers[0] as string, dir), { bigint: true });
    assert.equal(kinds.has(`/${dir}`), up.mtimeNs !== low.mtimeNs || up.mode !== low.mode, dir);
  }

  // with only a predicate, every directory that exists below is modified
  const below = new Set(['/etc', '/etc/passwd', '/etc/hosts', '/d', '/d/x', '/d/y', '/o', '/o/p', '/o/q', '/keep', '/keep/k', '/f', '/sub', '/sub/deep', '/sub/deep/file', '/ren', '/ren/a']);
  const byPredicate = new Map((await changes(o.upper, (p) => below.has(p))).map((c) => [c.Path, c.Kind]));
  for (const dir of ['/etc', '/sub', '/sub/deep', '/d', '/ren']) assert.equal(byPredicate.get(dir), ChangeKind.Modified, dir);
  assert.equal(byPredicate.get('/o'), ChangeKind.Deleted);
  assert.equal(byPredicate.get('/new.txt'), ChangeKind.Added);
});

test('changes: whiteouts and opaque directories of the lower layers hide what is below them', { skip: isRoot ? false : 'needs root' }, async (t) => {
  // lower0 (top) removes /gone and makes /dir opaque over lower1
  const o = overlay(t, [{ 'dir/mine': 'm' }, { gone: 'g', 'dir/theirs': 't' }]);
  spawnSync('umount', [o.merged]);
  run('mknod', [join(o.lowers[0] as string, 'gone'), 'c', '0', '0']);
  sys().lsetxattr(join(o.lowers[0] as string, 'dir'), 'trusted.overlay.opaque', Buffer.from('y'), 0);
  run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${o.lowers.join(':')},upperdir=${o.upper},workdir=${join(o.upper, '..', 'work')}`, o.merged]);
  assert.equal(existsSync(join(o.merged, 'gone')), false);
  assert.equal(existsSync(join(o.merged, 'dir/theirs')), false);
  writeFileSync(join(o.merged, 'gone'), 'again');
  writeFileSync(join(o.merged, 'dir/theirs'), 'again');
  utimesSync(join(o.merged, 'dir'), new Date('2020-01-01T00:00:00Z'), new Date('2020-01-01T00:00:00Z'));
  const kinds = new Map((await changes(o.upper, o.lowers)).map((c) => [c.Path, c.Kind]));
  assert.equal(kinds.get('/gone'), ChangeKind.Added);
  assert.equal(kinds.get('/dir/theirs'), ChangeKind.Added);
});

test('changes: an empty upper directory has no changes', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const o = overlay(t, [{ a: 'a' }]);
  assert.deepEqual(await changes(o.upper, o.lowers), []);
});
