// Whiteouts and opaque directories in both modes (with a real overlay mount), diffIDs
// against sha256sum, and the round trip apply -> makeLayer -> apply (as root).
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream, lstatSync, readdirSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { applyLayer } from './apply.js';
import { makeLayer, type LayerChanges } from './diff.js';
import { readTar } from './reader.js';
import { sys } from './_sys.js';
import {
  Collect, chunks, dir, ensureRoot, file, hardlink, sandbox, symlink, tarOf, tree, type Spec,
} from './_testkit.js';

const sorted = (p: string): string[] => readdirSync(p).sort();

const base: Spec[] = [
  dir('a'), file('a/file1', '1'), file('a/file2', '2'),
  dir('b'), file('b/x', 'x'),
  dir('c'), file('c/keep', 'k'), dir('c/sub'), file('c/sub/y', 'y'),
];
const change: Spec[] = [
  dir('a'), file('a/.wh.file1'),
  file('.wh.b'),
  dir('c'), file('c/.wh..wh..opq'), file('c/new', 'n'),
  // a whiteout of something this same layer adds leaves it alone
  file('d', 'd'), file('.wh.d'),
];

function xattrsOf(p: Buffer): string {
  const names = sys().llistxattr(p).filter((n) => !n.startsWith('trusted.overlay.')).sort();
  return names.map((n) => `${n}=${sys().lgetxattr(p, n)?.toString('hex') ?? ''}`).join(',');
}

async function layerEntries(tar: Buffer): Promise<string[]> {
  const out: string[] = [];
  for await (const e of readTar(chunks(tar))) out.push(e.path);
  return out;
}

test('copy mode: whiteouts delete, opaque markers empty their directory', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  await applyLayer(chunks(await tarOf(base)), s.root, { mode: 'copy' });
  await applyLayer(chunks(await tarOf(change)), s.root, { mode: 'copy' });
  assert.deepEqual(sorted(s.root), ['a', 'c', 'd']);
  assert.deepEqual(sorted(join(s.root, 'a')), ['file2']);
  assert.deepEqual(sorted(join(s.root, 'c')), ['new']);
  assert.deepEqual(sorted(s.sentinel), ['etc']);
});

test('copy mode: an opaque marker after the entries of its directory spares them (OCI example)', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  await applyLayer(chunks(await tarOf([dir('a'), dir('a/b'), dir('a/b/c'), file('a/b/c/bar', 'bar'), file('a/old')])), s.root, { mode: 'copy' });
  await applyLayer(chunks(await tarOf([dir('a'), dir('a/b'), dir('a/b/c'), file('a/b/c/foo', 'foo'), file('a/.wh..wh..opq')])), s.root, { mode: 'copy' });
  assert.deepEqual(sorted(join(s.root, 'a')), ['b']);
  assert.deepEqual(sorted(join(s.root, 'a/b/c')), ['foo']);
});

test('copy mode: whiteouts through symlinks only delete inside the target', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  await applyLayer(chunks(await tarOf([symlink('up', '../..'), symlink('abs', '/')])), s.root, { mode: 'copy' });
  await applyLayer(chunks(await tarOf([file('up/.wh.sentinel'), file('abs/.wh.sentinel'), file('up/sentinel/.wh..wh..opq')])), s.root, { mode: 'copy' });
  assert.deepEqual(sorted(s.parent), ['root', 'sentinel']);
  assert.deepEqual(sorted(join(s.sentinel, 'etc')), ['passwd']);
  await assert.rejects(applyLayer(chunks(await tarOf([file('../.wh.sentinel')])), s.root, { mode: 'copy' }), /climbs out/);
  await assert.rejects(applyLayer(chunks(await tarOf([file('.wh...')])), s.root, { mode: 'copy' }), /whiteout names nothing/);
  assert.deepEqual(sorted(s.parent), ['root', 'sentinel']);
});

test('overlay mode: whiteout devices and opaque xattrs, honoured by a real overlay mount', async (t) => {
  if (!ensureRoot(t)) return;
  const mounts: string[] = [];
  const s = await sandbox(t, mounts);
  const lower = join(s.root, 'lower');
  const upper = join(s.root, 'upper');
  const merged = join(s.root, 'merged');
  for (const d of [lower, upper, merged]) await fs.mkdir(d);
  await applyLayer(chunks(await tarOf(base)), lower, { mode: 'overlay' });
  await applyLayer(chunks(await tarOf(change)), upper, { mode: 'overlay' });

  const wh = lstatSync(join(upper, 'a/file1'));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'a/.wh.file1 is a 0/0 character device');
  assert.ok(lstatSync(join(upper, 'b')).isCharacterDevice());
  assert.ok(lstatSync(join(upper, 'd')).isFile(), 'the same layer\'s d wins over its whiteout');
  assert.deepEqual(sys().lgetxattr(join(upper, 'c'), 'trusted.overlay.opaque'), Buffer.from('y'));

  mounts.push(merged);
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${upper}:${lower}`, merged]);
  assert.deepEqual(sorted(merged), ['a', 'c', 'd']);
  assert.deepEqual(sorted(join(merged, 'a')), ['file2']);
  assert.deepEqual(sorted(join(merged, 'c')), ['new']);
  execFileSync('umount', [merged]);
  mounts.pop();

  // the layer made back from the upper directory says the same
  const out = new Collect();
  await makeLayer({ lower: [lower], upper }, out);
  assert.deepEqual(await layerEntries(out.bytes()), [
    '.wh.b', 'a/', 'a/.wh.file1', 'c/', 'c/.wh..wh..opq', 'c/new', 'd',
  ]);
});

test('overlay mode: changes made through a mount become a layer that copy mode replays', async (t) => {
  if (!ensureRoot(t)) return;
  const mounts: string[] = [];
  const s = await sandbox(t, mounts);
  const [lower, upper, work, merged, replay] = ['lower', 'upper', 'work', 'merged', 'replay'].map((n) => join(s.root, n)) as [string, string, string, string, string];
  for (const d of [lower, upper, work, merged, replay]) await fs.mkdir(d);
  await applyLayer(chunks(await tarOf(base)), lower, { mode: 'overlay' });
  await applyLayer(chunks(await tarOf(base)), replay, { mode: 'copy' });

  mounts.push(merged);
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged]);
  await fs.rm(join(merged, 'a/file1'));
  await fs.rm(join(merged, 'c'), { recursive: true });
  await fs.mkdir(join(merged, 'c'));
  await fs.writeFile(join(merged, 'c/z'), 'z');
  await fs.writeFile(join(merged, 'b/x'), 'changed');
  await fs.writeFile(join(merged, 'b/h1'), 'linked');
  await fs.link(join(merged, 'b/h1'), join(merged, 'b/h2'));
  await fs.chmod(join(merged, 'a'), 0o700);
  const want = await tree(merged);
  execFileSync('umount', [merged]);
  mounts.pop();

  const out = new Collect();
  await makeLayer({ lower: [lower], upper }, out);
  const entries = await layerEntries(out.bytes());
  assert.ok(entries.includes('a/.wh.file1'), entries.join(' '));
  assert.ok(entries.includes('c/.wh..wh..opq'), entries.join(' '));
  await applyLayer(chunks(out.bytes()), replay, { mode: 'copy' });
  const got = await tree(replay);
  // overlay reports the merged directory's own times; compare everything else
  for (const m of [want, got]) for (const v of m.values()) if (v.type === 'dir') v.mtimeMs = 0;
  assert.deepEqual(got, want);
  assert.equal(lstatSync(join(replay, 'b/h1')).ino, lstatSync(join(replay, 'b/h2')).ino, 'hard link kept');
});

const rich = (): Spec[] => {
  const long = `${'d'.repeat(90)}/${'e'.repeat(90)}/${'f'.repeat(120)}`;
  return [
    dir('bin', { mode: 0o755, mtime: 1_000_000_000 }),
    file('bin/tool', '#!/bin/sh\necho hi\n', { mode: 0o4755, uid: 0, gid: 0 }),
    hardlink('bin/tool2', 'bin/tool'),
    symlink('bin/sh', '/bin/busybox'),
    dir('etc', { uid: 3_000_000, gid: 3_000_001 }),
    file('etc/conf', 'x=1\n', { uid: 3_000_000, gid: 3_000_001, xattrs: new Map([['user.berth.k', Buffer.from([0, 1, 2, 255])]]) }),
    { type: 'fifo', path: 'etc/fifo', mode: 0o600, mtime: 1_234_567_890 },
    { type: 'char', path: 'etc/null', mode: 0o666, devmajor: 1, devminor: 3, mtime: 1_234_567_890 },
    dir(long.split('/').slice(0, 1).join('/')), dir(long.split('/').slice(0, 2).join('/')),
    file(long, 'deep'),
    symlink('longlink', `${'t'.repeat(200)}/target`),
    file(Buffer.from([0x6e, 0xff, 0x0a, 0x01]), 'raw name'),
    file('empty', ''),
    file('big', Buffer.alloc(3 << 20, 7)),
  ];
};

test('diffIDs match sha256sum of the uncompressed tar, for plain, gzip and zstd layers', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const tarPath = join(s.parent, 'layer.tar');
  writeFileSync(tarPath, await tarOf(rich()));
  execFileSync('gzip', ['-k', tarPath]);
  execFileSync('zstd', ['-q', '-k', tarPath]);
  const want = `sha256:${execFileSync('sha256sum', [tarPath]).toString().split(' ')[0]}`;
  const size = lstatSync(tarPath).size;
  for (const [i, p] of [tarPath, `${tarPath}.gz`, `${tarPath}.zst`].entries()) {
    const dest = join(s.root, String(i));
    await fs.mkdir(dest);
    const r = await applyLayer(createReadStream(p), dest, { mode: 'copy' });
    assert.equal(r.digest, want, p);
    assert.equal(r.size, size, p);
  }
  // an archive from GNU tar, padded to its 10 KiB records: the padding counts too
  const gnuTar = join(s.parent, 'gnu.tar');
  execFileSync('tar', ['-C', join(s.root, '0'), '-cf', gnuTar, '.']);
  const gnu = await applyLayer(createReadStream(gnuTar), join(s.root, '0'), { mode: 'copy' });
  assert.equal(gnu.digest, `sha256:${execFileSync('sha256sum', [gnuTar]).toString().split(' ')[0]}`);
  assert.equal(gnu.size, lstatSync(gnuTar).size);
  assert.equal(gnu.size % 10240, 0);
  // GNU tar reads what the writer wrote
  const listing = execFileSync('tar', ['-tf', tarPath]).toString();
  assert.match(listing, /bin\/tool\n/);
  assert.match(listing, /f{120}\n/);
});

test('round trip: apply, make a layer of the result, apply again: same tree, same diffID twice', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const [empty, first, second] = ['empty', 'first', 'second'].map((n) => join(s.root, n)) as [string, string, string];
  for (const d of [empty, first, second]) await fs.mkdir(d, { mode: 0o755 });
  await fs.chmod(empty, 0o755);
  await applyLayer(chunks(await tarOf(rich())), first, { mode: 'copy' });

  const made = join(s.parent, 'made.tar');
  const ws = createWriteStream(made);
  const r = await makeLayer({ base: empty, changed: first }, ws);
  await finished(ws);
  assert.equal(r.digest, `sha256:${execFileSync('sha256sum', [made]).toString().split(' ')[0]}`);
  execFileSync('tar', ['-tvf', made], { stdio: 'ignore' });

  const applied = await applyLayer(createReadStream(made), second, { mode: 'copy' });
  assert.equal(applied.digest, r.digest);
  const noRoot = <T>(m: Map<string, T>): Map<string, T> => (m.delete(''), m);
  assert.deepEqual(noRoot(await tree(second, { xattrs: xattrsOf })), noRoot(await tree(first, { xattrs: xattrsOf })));

  const again = new Collect();
  assert.equal((await makeLayer({ base: empty, changed: first }, again)).digest, r.digest, 'deterministic');
});

test('pair diff: additions, changes, deletions and type changes replay onto the base', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const [old, cur, replay] = ['old', 'cur', 'replay'].map((n) => join(s.root, n)) as [string, string, string];
  for (const d of [old, cur, replay]) await fs.mkdir(d);
  for (const d of [old, cur, replay]) await applyLayer(chunks(await tarOf(rich())), d, { mode: 'copy' });
  await fs.rm(join(cur, 'bin/sh'));
  await fs.writeFile(join(cur, 'etc/conf'), 'x=2\n');
  await fs.rm(join(cur, 'dd'.slice(1).repeat(90)), { recursive: true });
  await fs.rm(join(cur, 'empty'));
  await fs.mkdir(join(cur, 'empty'));
  await fs.writeFile(join(cur, 'empty/new'), 'new');
  await fs.chmod(join(cur, 'etc'), 0o700);
  await fs.symlink('elsewhere', join(cur, 'newlink'));

  const out = new Collect();
  await makeLayer({ base: old, changed: cur } satisfies LayerChanges, out);
  const entries = await layerEntries(out.bytes());
  assert.ok(entries.includes('bin/.wh.sh'), entries.join(' '));
  assert.ok(!entries.includes('big'), 'unchanged files are not in the layer');
  await applyLayer(chunks(out.bytes()), replay, { mode: 'copy' });
  const strip = (m: Map<string, { type: string; mtimeMs: number }>): typeof m => {
    for (const v of m.values()) if (v.type === 'dir') v.mtimeMs = 0;
    m.delete('');
    return m;
  };
  assert.deepEqual(strip(await tree(replay, { xattrs: xattrsOf })), strip(await tree(cur, { xattrs: xattrsOf })));
});
