import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { lstat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { snapshotterSuite } from './_testsuite.js';
import { NativeSnapshotter, OverlaySnapshotter, chainId, chainIds, mountAll, unmountAll } from './index.js';

snapshotterSuite({ name: 'overlayfs', open: (root) => OverlaySnapshotter.open(root) });
snapshotterSuite({ name: 'native', open: (root) => NativeSnapshotter.open(root) });

const isRoot = process.getuid?.() === 0;

test('chain IDs follow the OCI image spec', () => {
  const a = 'sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4';
  const b = 'sha256:6f8d3b6b2d0f5f1e4d8b3e0c8a6d1c9f0a7e2b3c4d5e6f708192a3b4c5d6e7f8';
  assert.equal(chainId([a]), a);
  const ab = chainId([a, b]);
  // printf '%s' "$a $b" | sha256sum
  assert.equal(ab, 'sha256:860dc6f1da4a0c473990116befa6dcfa7c063b00d14305765e5f7bf0954239c9');
  assert.deepEqual(chainIds([a, b]), [a, ab]);
  assert.notEqual(chainId([b, a]), ab, 'order matters');
  assert.throws(() => chainId([]), /empty/);
  assert.throws(() => chainId(['nope']), /not a digest/);
});

test('overlayfs: mounts are data in containerd\'s shape', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'berth-snap-shape-'));
  const s = await OverlaySnapshotter.open(root);
  t.after(() => { s.close(); rmSync(root, { recursive: true, force: true }); });
  const m0 = await s.prepare('a', '');
  assert.deepEqual(m0, [{ type: 'bind', source: join(root, 'snapshots', '1', 'fs'), target: '', options: ['rw', 'rbind'] }]);
  await s.commit('c1', 'a');
  const [m1] = await s.prepare('b', 'c1');
  assert.equal(m1?.type, 'overlay');
  assert.deepEqual(m1?.options.filter((o) => !o.startsWith('index=')), [
    `workdir=${join(root, 'snapshots', '2', 'work')}`,
    `upperdir=${join(root, 'snapshots', '2', 'fs')}`,
    `lowerdir=${join(root, 'snapshots', '1', 'fs')}`,
  ]);
  await s.commit('c2', 'b');
  assert.deepEqual(await s.view('v1', 'c1'), [{ type: 'bind', source: join(root, 'snapshots', '1', 'fs'), target: '', options: ['ro', 'rbind'] }]);
  const [v] = await s.view('v2', 'c2');
  assert.equal(v?.type, 'overlay');
  assert.deepEqual(v?.options.filter((o) => !o.startsWith('index=')), [`lowerdir=${join(root, 'snapshots', '2', 'fs')}:${join(root, 'snapshots', '1', 'fs')}`]);
});

test('overlayfs: a deletion in a child is a whiteout in its upper dir', { skip: isRoot ? false : 'needs root (mounts)' }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'berth-snap-wh-'));
  const s = await OverlaySnapshotter.open(root);
  const mnt = join(root, 'mnt');
  mkdirSync(mnt);
  t.after(async () => {
    try { await unmountAll(mnt); } finally { s.close(); rmSync(root, { recursive: true, force: true }); }
  });
  const base = await s.prepare('a', '');
  await mountAll(base, mnt);
  await writeFile(join(mnt, 'f'), 'x');
  await unmountAll(mnt);
  await s.commit('c', 'a');
  const top = await s.prepare('b', 'c');
  await mountAll(top, mnt);
  await unlink(join(mnt, 'f'));
  await unmountAll(mnt);
  const upper = top[0]?.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length) ?? '';
  const st = await lstat(join(upper, 'f'));
  assert.ok(st.isCharacterDevice() && st.rdev === 0, 'a 0:0 character device');
});

test('native: a child\'s copy keeps owners, modes, hard links, xattrs, device nodes and symlinks', { skip: isRoot ? false : 'needs root (mknod, mounts)' }, async (t) => {
  const { execFileSync } = await import('node:child_process');
  const { chown, chmod, link, symlink, readlink, stat: statP } = await import('node:fs/promises');
  const root = mkdtempSync(join(tmpdir(), 'berth-snap-native-'));
  const s = await NativeSnapshotter.open(root);
  const mnt = join(root, 'mnt');
  mkdirSync(mnt);
  t.after(async () => {
    try { await unmountAll(mnt); } finally { s.close(); rmSync(root, { recursive: true, force: true }); }
  });
  await mountAll(await s.prepare('a', ''), mnt);
  await writeFile(join(mnt, 'file'), 'data');
  await chown(join(mnt, 'file'), 1001, 1002);
  await chmod(join(mnt, 'file'), 0o4751);
  await link(join(mnt, 'file'), join(mnt, 'hard'));
  await symlink('/etc/passwd', join(mnt, 'sym'));
  const py = (code: string, path: string): string => execFileSync('python3', ['-c', code, path], { encoding: 'utf8' });
  py('import os, sys; os.setxattr(sys.argv[1], "user.berth", b"yes")', join(mnt, 'file'));
  execFileSync('mknod', [join(mnt, 'null'), 'c', '1', '3']);
  await unmountAll(mnt);
  await s.commit('c', 'a');
  await mountAll(await s.prepare('b', 'c'), mnt);
  const f = await statP(join(mnt, 'file'));
  assert.deepEqual([f.uid, f.gid, f.mode & 0o7777, f.nlink], [1001, 1002, 0o4751, 2]);
  assert.equal((await statP(join(mnt, 'hard'))).ino, f.ino, 'the hard link is kept');
  assert.equal(await readlink(join(mnt, 'sym')), '/etc/passwd');
  assert.equal(py('import os, sys; print(os.getxattr(sys.argv[1], "user.berth").decode(), end="")', join(mnt, 'file')), 'yes');
  const dev = await lstat(join(mnt, 'null'));
  assert.ok(dev.isCharacterDevice() && dev.rdev === ((1 << 8) | 3));
});
