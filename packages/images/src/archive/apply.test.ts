// applyLayer against hostile archives (as root): each test proves that nothing outside
// the target directory was created or changed, and that errors name the entry.
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, rmSync, readFileSync, readdirSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGzip, gzipSync } from 'node:zlib';
import { TarWriter } from './writer.js';
import { BerthError, ErrorKind } from '@berth/base';
import { applyEntries, applyLayer, type ApplyOptions, type EntryNames } from './apply.js';
import { readTar, type TarEntry } from './reader.js';
import { sys } from './_sys.js';
import { BLOCK, F, putNumber } from './_format.js';
import {
  chunks, dir, ensureRoot, file, hardlink, outside, sandbox, symlink, tarOf,
  type Sandbox, type Spec,
} from './_testkit.js';

const copy: ApplyOptions = { mode: 'copy' };
const marker = (): string => `berth-pwned-${randomBytes(4).toString('hex')}`;

async function refused(s: Sandbox, tar: Buffer | AsyncIterable<Buffer>, re: RegExp, opts: ApplyOptions = copy): Promise<BerthError> {
  const before = await outside(s);
  let caught: unknown;
  try {
    await applyLayer(Buffer.isBuffer(tar) ? chunks(tar) : tar, s.root, opts);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof BerthError, `expected a BerthError, got ${String(caught)}`);
  assert.match(caught.message, re);
  assert.deepEqual(await outside(s), before, 'something outside the target changed');
  return caught;
}

async function applied(s: Sandbox, entries: Spec[], opts: ApplyOptions = copy): Promise<void> {
  const before = await outside(s);
  await applyLayer(chunks(await tarOf(entries)), s.root, opts);
  assert.deepEqual(await outside(s), before, 'something outside the target changed');
}

test('".." paths that climb out are refused, naming the entry; ".." that stays inside is folded', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  for (const name of ['../escape', 'a/../../escape', './../../../tmp/x', '..', 'a/b/../../../sentinel/etc/passwd']) {
    await refused(s, await tarOf([file(name, 'pwned')]), new RegExp(`entry ${JSON.stringify(name).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}.*climbs out`));
  }
  await applied(s, [dir('a'), file('a/../b', 'inside')]);
  assert.equal(readFileSync(join(s.root, 'b'), 'utf8'), 'inside');
  assert.equal(readFileSync(join(s.sentinel, 'etc/passwd'), 'utf8'), 'sentinel\n');
});

test('absolute paths land inside the target', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const m = marker();
  await applied(s, [file(`/tmp/${m}`, 'x'), file(`//etc/${m}`, 'y')]);
  assert.equal(readFileSync(join(s.root, 'tmp', m), 'utf8'), 'x');
  assert.equal(readFileSync(join(s.root, 'etc', m), 'utf8'), 'y');
  assert.ok(!existsSync(`/tmp/${m}`) && !existsSync(`/etc/${m}`));
});

test('a symlink pointing out, then an entry written through it, stays inside', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  // no etc/ in the target: the symlink dangles inside the root, so the write is refused
  await refused(s, await tarOf([symlink('x', '/etc'), file('x/passwd', 'pwned')]), /entry "x\/passwd".*symlink to a missing directory/);
  // with etc/ in the target, the write lands in the target's etc/
  await applied(s, [dir('etc'), symlink('y', '/etc'), file('y/passwd', 'pwned')]);
  assert.equal(readFileSync(join(s.root, 'etc/passwd'), 'utf8'), 'pwned');
  // relative symlinks that climb out are clamped at the root too
  await applied(s, [dir('sentinel'), dir('sentinel/etc'), symlink('z', '../../../../../sentinel/etc'), file('z/passwd', 'pwned2')]);
  assert.equal(readFileSync(join(s.root, 'sentinel/etc/passwd'), 'utf8'), 'pwned2');
  assert.equal(readFileSync(join(s.sentinel, 'etc/passwd'), 'utf8'), 'sentinel\n');
  // an entry replacing a symlink replaces the link, never writes to its target
  const m = marker();
  await applied(s, [symlink('f', `/tmp/${m}`), file('f', 'data')]);
  assert.ok(lstatSync(join(s.root, 'f')).isFile());
  assert.ok(!existsSync(`/tmp/${m}`));
  // a directory entry through an outward symlink
  await applied(s, [symlink('d', '/'), dir(`d/${m}`)]);
  assert.ok(lstatSync(join(s.root, m)).isDirectory());
  assert.ok(!existsSync(`/${m}`));
});

test('symlink chains resolve inside the target; loops are refused', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const m = marker();
  await applied(s, [
    dir('tmp'), symlink('l1', 'l2'), symlink('l2', '/'), symlink('l3', 'l1/../..'), symlink('l4', 'l3/../../tmp'),
    file(`l3/tmp/${m}`, 'a'), file(`l4/${m}.2`, 'b'),
  ]);
  assert.equal(readFileSync(join(s.root, 'tmp', m), 'utf8'), 'a');
  assert.equal(readFileSync(join(s.root, 'tmp', `${m}.2`), 'utf8'), 'b');
  assert.ok(!existsSync(`/tmp/${m}`) && !existsSync(`/tmp/${m}.2`));
  await refused(s, await tarOf([symlink('la', 'lb'), symlink('lb', 'la'), file('la/x', 'x')]), /entry "la\/x".*(ELOOP|symbolic links)/);
});

test('hard links to outside files are refused; links stay inside', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  await refused(s, await tarOf([hardlink('pw', '/etc/passwd')]), /entry "pw".*hard link target "\/etc\/passwd" is not in the layer root/);
  await refused(s, await tarOf([hardlink('pw', '../../../../etc/passwd')]), /entry "pw".*climbs out/);
  await refused(s, await tarOf([symlink('s', '/etc'), hardlink('pw', 's/passwd')]), /entry "pw".*not in the layer root/);
  await refused(s, await tarOf([symlink('t', '../sentinel/etc'), hardlink('pw2', 't/passwd')]), /entry "pw2".*not in the layer root/);
  await applied(s, [dir('etc'), file('etc/passwd', 'inner'), symlink('u', '/etc'), hardlink('pw3', 'u/passwd')]);
  assert.equal(lstatSync(join(s.root, 'pw3')).ino, lstatSync(join(s.root, 'etc/passwd')).ino);
  assert.equal(lstatSync(join(s.root, 'pw3')).nlink, 2);
  // a hard link to a symlink that points out links the symlink itself
  await applied(s, [symlink('sl', '/etc/passwd'), hardlink('hl', 'sl')]);
  assert.ok(lstatSync(join(s.root, 'hl')).isSymbolicLink());
  assert.equal(readlinkSync(join(s.root, 'hl')), '/etc/passwd');
});

test('device nodes and fifos are made inside the target only', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const m = marker();
  const dev = (type: 'char' | 'block' | 'fifo', path: string, major = 0, minor = 0): Spec =>
    ({ type, path, mode: 0o640, uid: 0, gid: 6, devmajor: major, devminor: minor, mtime: 1_600_000_000 });
  await applied(s, [dir('dev'), dev('char', 'dev/null', 1, 3), dev('block', 'dev/loop9', 7, 9), dev('fifo', 'dev/fifo'),
    symlink('d', '/dev'), dev('char', `d/${m}`, 1, 3)]);
  const st = lstatSync(join(s.root, 'dev/null'));
  assert.ok(st.isCharacterDevice());
  assert.equal(st.rdev, (1 << 8) | 3);
  assert.equal(st.mode & 0o7777, 0o640);
  assert.equal(st.gid, 6);
  assert.ok(lstatSync(join(s.root, 'dev/loop9')).isBlockDevice());
  assert.equal(lstatSync(join(s.root, 'dev/loop9')).rdev, (7 << 8) | 9);
  assert.ok(lstatSync(join(s.root, 'dev/fifo')).isFIFO());
  assert.ok(lstatSync(join(s.root, 'dev', m)).isCharacterDevice());
  assert.ok(!existsSync(`/dev/${m}`));
  await refused(s, await tarOf([dev('char', '../evil', 1, 3)]), /entry "..\/evil".*climbs out/);
  await refused(s, await tarOf([dev('block', `../../../dev/${m}`, 8, 0)]), /climbs out/);
  assert.ok(!existsSync(`/dev/${m}`));
});

test('setuid and setgid bits survive chown; owners and times are applied', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  await applied(s, [
    file('su', '#!/bin/sh\n', { mode: 0o4755, uid: 1000, gid: 1000, mtime: 1_500_000_000 }),
    file('sg', 'x', { mode: 0o2711, uid: 0, gid: 50 }),
    dir('sgdir', { mode: 0o3775, gid: 50, mtime: 1_400_000_000 }),
    file('sgdir/inner', 'y'),
    symlink('ln', 'su', { uid: 1001, gid: 1002, mtime: 1_300_000_000 }),
  ]);
  const su = lstatSync(join(s.root, 'su'));
  assert.equal(su.mode & 0o7777, 0o4755);
  assert.equal(su.uid, 1000);
  assert.equal(su.gid, 1000);
  assert.equal(su.mtimeMs, 1_500_000_000_000);
  assert.equal(lstatSync(join(s.root, 'sg')).mode & 0o7777, 0o2711);
  const d = lstatSync(join(s.root, 'sgdir'));
  assert.equal(d.mode & 0o7777, 0o3775);
  assert.equal(d.mtimeMs, 1_400_000_000_000, 'directory times are set after their contents');
  const ln = lstatSync(join(s.root, 'ln'));
  assert.equal(ln.uid, 1001);
  assert.equal(ln.mtimeMs, 1_300_000_000_000);
});

test('extended attributes are set, overlay ones from the archive are not', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const xattrs = new Map([['user.berth', Buffer.from('v1')], ['trusted.overlay.opaque', Buffer.from('y')]]);
  await applied(s, [dir('d', { xattrs }), file('f', 'x', { xattrs })]);
  for (const p of ['d', 'f']) {
    assert.deepEqual(sys().lgetxattr(join(s.root, p), 'user.berth'), Buffer.from('v1'));
    assert.equal(sys().lgetxattr(join(s.root, p), 'trusted.overlay.opaque'), null);
  }
});

/** A header for `name` with a declared size, followed by endless zeros. */
async function* hugeEntry(name: string, size: number, yielded: { bytes: number }): AsyncGenerator<Buffer> {
  const h = Buffer.alloc(BLOCK);
  h.write(name, F.name[0], 'latin1');
  putNumber(h, 'mode', 0o644);
  putNumber(h, 'size', size);
  putNumber(h, 'mtime', 0);
  h[F.typeflag[0]] = 0x30;
  h.write('ustar\x0000', F.magic[0], 'latin1');
  h.fill(0x20, F.chksum[0], F.chksum[0] + 8);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, F.chksum[0], 'latin1');
  yield h;
  const zeros = Buffer.alloc(1 << 20);
  for (;;) {
    yielded.bytes += zeros.length;
    yield zeros;
  }
}

test('huge sparse-looking files: refused beyond the limit, written sparsely within it', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const y = { bytes: 0 };
  const err = await refused(s, hugeEntry('huge', 2 ** 40, y), /entry "huge".*declares 1099511627776 bytes.*limit/);
  assert.equal(err.kind, ErrorKind.ResourceExhausted);
  assert.ok(y.bytes <= 2 << 20, `read ${y.bytes} bytes of a refused entry`);
  // beyond a configured limit
  const y2 = { bytes: 0 };
  const limited = await refused(s, hugeEntry('big', 2 ** 30, y2), /entry "big".*declares 1073741824 bytes.*limit of 16777216/, { mode: 'copy', maxBytes: 16 << 20 });
  assert.equal(limited.kind, ErrorKind.ResourceExhausted);
  // a 64 MiB file of zeros costs (almost) no disk
  await applied(s, [file('sparse', Buffer.alloc(64 << 20))]);
  const st = lstatSync(join(s.root, 'sparse'));
  assert.equal(st.size, 64 << 20);
  assert.ok(st.blocks * 512 < 1 << 20, `sparse file uses ${st.blocks * 512} bytes`);
});

test('names with control characters and raw bytes are kept as bytes and never escape', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const names = [Buffer.from('new\nline'), Buffer.from('ctl\x01\x1b[31m\r\t'), Buffer.from([0x66, 0xff, 0xfe, 0x80])];
  await applied(s, names.map((n) => file(n, 'x')));
  const got = readdirSync(Buffer.from(s.root), { encoding: 'buffer' }).map((b) => b.toString('hex')).sort();
  assert.deepEqual(got, names.map((b) => b.toString('hex')).sort());
  await refused(s, await tarOf([file('x\n/../../escape', 'x')]), /entry "x\\n\/..\/..\/escape".*climbs out/);
});

test('truncated tar streams fail naming the entry and the offset', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const tar = await tarOf([file('first', 'a'.repeat(100)), file('second', 'b'.repeat(5000))]);
  // inside the second entry's data
  await refused(s, tar.subarray(0, 1024 + 512 + 1000), /entry "second" at offset 1024.*truncated archive.*data needs 5000 bytes from offset 1536, the stream ends at offset 2536/);
  // inside a header
  await refused(s, tar.subarray(0, 1024 + 100), /truncated archive: header needs 512 bytes from offset 1024/);
  // no end-of-archive marker
  await refused(s, tar.subarray(0, tar.length - 1024), /ends at offset \d+ without an end-of-archive marker/);
  // garbage instead of a tar
  await refused(s, Buffer.alloc(4096, 0x41), /bad checksum/);
});

test('truncated gzip and zstd streams fail cleanly', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const tar = await tarOf([file('a', randomBytes(200_000))]);
  const gz = gzipSync(tar);
  await refused(s, gz.subarray(0, gz.length >> 1), /gzip: unexpected end of file/);
  const { execFileSync } = await import('node:child_process');
  const zst = execFileSync('zstd', ['-q', '-c'], { input: tar });
  await refused(s, zst.subarray(0, zst.length >> 1), /zstd: /);
});

test('a gzip bomb is stopped by the size limit', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  // 8 entries of 32 MiB of zeros each, gzipped to well under 1 MiB
  const gzip = createGzip({ level: 9 });
  const parts: Buffer[] = [];
  const collected = (async () => {
    for await (const c of gzip) parts.push(c as Buffer);
  })();
  const w = new TarWriter(gzip);
  const zeros = Buffer.alloc(1 << 20);
  for (let i = 0; i < 8; i++) {
    const body = async function* (): AsyncGenerator<Buffer> {
      for (let j = 0; j < 32; j++) yield zeros;
    };
    await w.add({ type: 'file', path: `bomb${i}`, mode: 0o644, size: 32 << 20 }, body());
  }
  await w.finish();
  gzip.end();
  await collected;
  const bomb = Buffer.concat(parts);
  assert.ok(bomb.length < 1 << 20, `bomb is ${bomb.length} bytes`);
  const err = await refused(s, bomb, /entry "bomb1".*uncompressed size exceeds the limit of 67108864 bytes/, { mode: 'copy', maxBytes: 64 << 20 });
  assert.equal(err.kind, ErrorKind.ResourceExhausted);
  assert.ok(!existsSync(join(s.root, 'bomb2')));
});

// ---- applyEntries: parsed entries, names mapped by the caller ----

/** The entries of a tar, each passed to `between` before it is handed on (to change the tree meanwhile). */
async function* entriesOf(tar: Buffer, between: (e: TarEntry) => void = () => undefined): AsyncGenerator<TarEntry> {
  for await (const e of readTar(chunks(tar))) {
    between(e);
    yield e;
  }
}

const under = (prefix: string[]) => (e: TarEntry): EntryNames | null => {
  const path = e.rawPath.toString('latin1').split('/').filter((p) => p !== '' && p !== '.');
  if (path.includes('..')) throw new Error(`caller refuses ${e.path}`);
  if (path[0] === 'skip') return null;
  const names: EntryNames = { path: [...prefix, ...path] };
  if (e.type === 'hardlink') names.linkpath = [...prefix, ...e.rawLinkpath.toString('latin1').split('/')];
  return names;
};

test('applyEntries: names mapped by the caller, skipped entries, the caller\'s errors as they are', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const before = await outside(s);
  const big = randomBytes(3 << 20);
  const tar = await tarOf([dir('a'), file('a/f', 'one'), file('a/big', big), hardlink('a/h', 'a/f'), symlink('a/l', '/etc'), file('skip/x', 'no'), file('b', 'two')]);
  const n = await applyEntries(entriesOf(tar), s.root, { mode: 'copy', mapNames: under(['dest', 'sub']) });
  assert.equal(n, 7);
  assert.equal(readFileSync(join(s.root, 'dest/sub/a/f'), 'utf8'), 'one');
  assert.ok(readFileSync(join(s.root, 'dest/sub/a/big')).equals(big));
  assert.equal(lstatSync(join(s.root, 'dest/sub/a/h')).ino, lstatSync(join(s.root, 'dest/sub/a/f')).ino);
  assert.equal(readlinkSync(join(s.root, 'dest/sub/a/l')), '/etc');
  assert.equal(readFileSync(join(s.root, 'dest/sub/b'), 'utf8'), 'two');
  assert.ok(!existsSync(join(s.root, 'dest/sub/skip')) && !existsSync(join(s.root, 'skip')));
  assert.equal(lstatSync(join(s.root, 'dest/sub/a/f')).mtimeMs, 1_600_000_000_000);

  const caller = new Error('from the caller');
  await assert.rejects(applyEntries(entriesOf(await tarOf([file('x', 'x')])), s.root, { mode: 'copy', mapNames: () => { throw caller; } }), (err) => err === caller);
  await assert.rejects(
    applyEntries(entriesOf(await tarOf([file('x', 'x')])), s.root, { mode: 'copy', mapNames: () => ({ path: ['a', '..', 'x'] }), label: 'extracting into /d' }),
    /^BerthError\(InvalidArgument\): extracting into \/d: entry "x" at offset 0: the name component "\.\." is not a plain name/,
  );
  assert.deepEqual(await outside(s), before);
});

test('applyEntries: onReplace sees a directory replaced by a file and the reverse, and can refuse', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  mkdirSync(join(s.root, 'd'));
  writeFileSync(join(s.root, 'd/keep'), 'k');
  writeFileSync(join(s.root, 'f'), 'f');
  const seen: string[] = [];
  const refuse = new Error('refused');
  const onReplace = (p: readonly string[], isDir: boolean): void => {
    seen.push(`${p.join('/')}:${isDir}`);
    throw refuse;
  };
  for (const entry of [file('d', 'x'), symlink('d', '/'), hardlink('d', 'f'), dir('f')]) {
    await assert.rejects(applyEntries(entriesOf(await tarOf([entry])), s.root, { mode: 'copy', onReplace }), (err) => err === refuse);
  }
  assert.deepEqual(seen, ['d:true', 'd:true', 'd:true', 'f:false']);
  assert.equal(readFileSync(join(s.root, 'd/keep'), 'utf8'), 'k');
  assert.equal(readFileSync(join(s.root, 'f'), 'utf8'), 'f');
  // file over file and directory over directory are no replacement of a kind
  await applyEntries(entriesOf(await tarOf([file('f', 'new'), dir('d', { mode: 0o700 })])), s.root, { mode: 'copy', onReplace });
  assert.equal(readFileSync(join(s.root, 'f'), 'utf8'), 'new');
  assert.equal(lstatSync(join(s.root, 'd')).mode & 0o777, 0o700);
  assert.equal(seen.length, 4);
});

test('a parent directory kept open is looked up again once the archive replaced it', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const before = await outside(s);
  // d/f1 is written through d; then d becomes a link to /e (in the root): d/f2 lands in e
  await applyEntries(entriesOf(await tarOf([dir('e'), dir('d'), file('d/f1', '1'), symlink('d', '/e'), file('d/f2', '2')])), s.root, { mode: 'copy' });
  assert.equal(readlinkSync(join(s.root, 'd')), '/e');
  assert.equal(readFileSync(join(s.root, 'e/f2'), 'utf8'), '2');
  assert.deepEqual(readdirSync(join(s.root, 'e')), ['f2']);
  // the same through a whiteout in a layer: d2 (of an earlier layer) goes, then d2/g makes a new d2
  mkdirSync(join(s.root, 'd2'));
  writeFileSync(join(s.root, 'd2/old'), 'old');
  await applied(s, [file('d2/a', 'a'), file('.wh.d2'), file('d2/g', 'g')]);
  assert.deepEqual(readdirSync(join(s.root, 'd2')), ['g']);
  assert.deepEqual(await outside(s), before);
});

test('a parent directory swapped for a symlink out of the root between entries never leads out', async (t) => {
  if (!ensureRoot(t)) return;
  const s = await sandbox(t);
  const before = await outside(s);
  let i = 0;
  // between entries, d is moved aside and replaced by links to the sentinel (absolute and relative)
  const swap = (): void => {
    const d = join(s.root, 'd');
    if (!existsSync(join(s.root, 'a'))) mkdirSync(join(s.root, 'a'));
    if (lstatSync(d, { throwIfNoEntry: false })?.isDirectory() === true) renameSync(d, join(s.root, 'a', `moved${i}`));
    else rmSync(d, { force: true });
    symlinkSync(i % 2 === 0 ? s.sentinel : '../../../../../sentinel', d);
    i++;
  };
  const tar = await tarOf([dir('d'), file('d/f0', '0'), file('d/f1', '1'), file('d/f2', '2'), dir('d/x'), file('d/x/y', 'y')]);
  let first = true;
  await applyEntries(entriesOf(tar, () => {
    if (first) first = false;
    else swap();
  }), s.root, { mode: 'copy' }).catch(() => undefined);
  assert.deepEqual(await outside(s), before, 'nothing written outside the root');
  assert.deepEqual(readdirSync(s.sentinel), ['etc']);
});
