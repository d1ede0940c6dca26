// The tar reader and writer: formats GNU tar writes, pax and base-256 numbers, strict
// validation, and backpressure with a slow consumer.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, openSync, ftruncateSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, ErrorKind } from '@berth/base';
import { BLOCK, F, putNumber, parseNumber, paxRecord } from './_format.js';
import { readTar, type TarEntry } from './reader.js';
import { TarWriter } from './writer.js';
import { compressionOfMediaType, decompress, detectCompression } from './compress.js';
import { Collect, chunks, tarOf, file, dir, symlink } from './_testkit.js';

/** A bare header block: name, type flag and declared size, with a valid checksum. */
function header(name: string, typeflag: string, size: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, F.name[0], 'latin1');
  putNumber(h, 'mode', 0o644);
  putNumber(h, 'uid', 0);
  putNumber(h, 'gid', 0);
  putNumber(h, 'size', size);
  putNumber(h, 'mtime', 0);
  h[F.typeflag[0]] = typeflag.charCodeAt(0);
  h.write('ustar\x0000', F.magic[0], 'latin1');
  return sealed(h);
}

function sealed(h: Buffer): Buffer {
  h.fill(0x20, F.chksum[0], F.chksum[0] + 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i] as number;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, F.chksum[0], 'latin1');
  return h;
}

const padded = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((BLOCK - (b.length % BLOCK)) % BLOCK)]);

type Seen = Omit<TarEntry, 'body'> & { data: Buffer };

async function readAll(tar: Buffer | AsyncIterable<Buffer>): Promise<Seen[]> {
  const out: Seen[] = [];
  for await (const e of readTar(Buffer.isBuffer(tar) ? chunks(tar, 333) : tar)) {
    const parts: Buffer[] = [];
    for await (const c of e.body) parts.push(c);
    const { body: _body, ...rest } = e;
    out.push({ ...rest, data: Buffer.concat(parts) });
  }
  return out;
}

function withTmp(t: import('node:test').TestContext): string {
  const d = mkdtempSync('/tmp/berth-tar-test-');
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('reads what GNU tar writes, in gnu (long names/links) and posix (pax) formats', async (t) => {
  const d = withTmp(t);
  const src = join(d, 'src');
  const longDir = join(src, 'x'.repeat(150));
  mkdirSync(longDir, { recursive: true });
  writeFileSync(join(longDir, 'y'.repeat(120)), 'long');
  execFileSync('ln', ['-s', 'z'.repeat(180), join(src, 'sym')]);
  for (const format of ['gnu', 'posix']) {
    const tar = execFileSync('tar', [`--format=${format}`, '--owner=4242', '--group=77', '-C', src, '-cf', '-', '.'], { maxBuffer: 1 << 24 });
    const seen = await readAll(tar);
    const f = seen.find((e) => e.path.endsWith('y'.repeat(120)));
    assert.ok(f !== undefined, format);
    assert.equal(f.path, `./${'x'.repeat(150)}/${'y'.repeat(120)}`);
    assert.equal(f.data.toString(), 'long');
    assert.equal(f.uid, 4242);
    assert.equal(f.gid, 77);
    assert.equal(seen.find((e) => e.type === 'symlink')?.linkpath, 'z'.repeat(180));
  }
  // ustar: a name split into prefix and name fields
  const usrc = join(d, 'usrc');
  mkdirSync(join(usrc, 'p'.repeat(90)), { recursive: true });
  writeFileSync(join(usrc, 'p'.repeat(90), 'q'.repeat(90)), 'split');
  const tar = execFileSync('tar', ['--format=ustar', '-C', usrc, '-cf', '-', '.']);
  const f = (await readAll(tar)).find((e) => e.type === 'file');
  assert.equal(f?.path, `./${'p'.repeat(90)}/${'q'.repeat(90)}`);
  assert.equal(f?.data.toString(), 'split');
});

test('writer: long names, long links, big ids and xattrs read back, and GNU tar agrees', async (t) => {
  const d = withTmp(t);
  const name = `${'a'.repeat(200)}/${'b'.repeat(150)}`;
  const tar = await tarOf([
    file(name, 'n', { uid: 5_000_000, gid: 9, mtime: 1_700_000_000 }),
    symlink('l', 'c'.repeat(300)),
    file('x', 'xa', { xattrs: new Map([['user.a', Buffer.from('1')]]) }),
    dir('d/'),
    file('p/q', 'prefix split', { uid: 1 }),
  ]);
  const seen = await readAll(tar);
  assert.deepEqual(seen.map((e) => e.path), [name, 'l', 'x', 'd/', 'p/q']);
  assert.equal(seen[0]?.uid, 5_000_000);
  assert.equal(seen[0]?.mtime, 1_700_000_000);
  assert.equal(seen[1]?.linkpath, 'c'.repeat(300));
  assert.deepEqual(seen[2]?.xattrs.get('user.a'), Buffer.from('1'));
  writeFileSync(join(d, 't.tar'), tar);
  const listing = execFileSync('tar', ['-tvf', join(d, 't.tar'), '--numeric-owner']).toString();
  assert.match(listing, new RegExp(`5000000/9 .* ${name}\n`));
});

test('numbers: octal with spaces, base-256 positive and negative', () => {
  const b = Buffer.alloc(BLOCK);
  assert.equal(parseNumber(Buffer.from('  0755 \0')), 0o755);
  assert.equal(parseNumber(Buffer.from('\0\0\0\0')), 0);
  assert.equal(parseNumber(Buffer.from('12x\0')), undefined);
  assert.ok(putNumber(b, 'size', 2 ** 40));
  assert.equal(parseNumber(b.subarray(F.size[0], F.size[0] + F.size[1])), 2 ** 40);
  assert.ok(putNumber(b, 'uid', 8 ** 7 + 5));
  assert.equal(b[F.uid[0]], 0x80);
  assert.equal(parseNumber(b.subarray(F.uid[0], F.uid[0] + F.uid[1])), 8 ** 7 + 5);
  assert.ok(putNumber(b, 'mtime', -100));
  assert.equal(parseNumber(b.subarray(F.mtime[0], F.mtime[0] + F.mtime[1])), -100);
});

test('a base-256 size in a hand-made header is honoured', async () => {
  const tar = Buffer.from(await tarOf([file('f', 'abc')]));
  const size = tar.subarray(F.size[0], F.size[0] + F.size[1]);
  size.fill(0);
  size[0] = 0x80;
  size[11] = 3;
  tar.fill(0x20, F.chksum[0], F.chksum[0] + 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += tar[i] as number;
  tar.write(`${sum.toString(8).padStart(6, '0')}\0 `, F.chksum[0], 'latin1');
  const seen = await readAll(tar);
  assert.equal(seen[0]?.data.toString(), 'abc');
});

test('strict: bad checksums, bad numbers, bad pax records, unknown types, trailing garbage', async () => {
  const good = await tarOf([file('f', 'abc')]);
  const bad = Buffer.from(good);
  bad[0] = 0x67;
  await assert.rejects(readAll(bad), /header at offset 0 has a bad checksum/);

  const pax = Buffer.from('9 a=\n');
  await assert.rejects(
    readAll(Buffer.concat([header('PaxHeaders/f', 'x', pax.length), padded(pax), good])),
    /malformed pax record at offset 512: length 9 does not fit/,
  );
  const uid = paxRecord('uid', Buffer.from('12z'));
  await assert.rejects(
    readAll(Buffer.concat([header('PaxHeaders/f', 'x', uid.length), padded(uid), good])),
    /pax record uid="12z" at offset 0 is not a valid number/,
  );
  const big = Buffer.alloc(2 << 20, 0x41);
  await assert.rejects(
    readAll(Buffer.concat([header('././@LongLink', 'L', big.length), big, good])),
    /GNU long name at offset 0 has 2097152 bytes, more than the limit/,
  );
  // a GNU long name applies to the next entry
  const long = Buffer.from(`${'n'.repeat(300)}\0`);
  const named = await readAll(Buffer.concat([header('././@LongLink', 'L', long.length), padded(long), good]));
  assert.equal(named[0]?.path, 'n'.repeat(300));
  // global pax headers set defaults for the entries after them
  const g = paxRecord('uid', Buffer.from('777'));
  const gl = await readAll(Buffer.concat([header('pax_global_header', 'g', g.length), padded(g), good]));
  assert.equal(gl[0]?.uid, 777);
  assert.equal(gl[0]?.offset, 1024);

  const odd = sealed(Buffer.from(good.subarray(0, BLOCK)));
  odd[F.typeflag[0]] = 0x5a; // 'Z'
  await assert.rejects(readAll(Buffer.concat([sealed(odd), good.subarray(BLOCK)])), /unsupported entry type "Z"/);

  const trailing = Buffer.concat([good.subarray(0, good.length - 1024), Buffer.alloc(BLOCK), Buffer.from(good.subarray(0, BLOCK))]);
  await assert.rejects(readAll(trailing), /single zero block at offset \d+ is followed by data/);
  // data after a complete end marker is read and ignored
  assert.equal((await readAll(Buffer.concat([good, Buffer.alloc(10240)]))).length, 1);
});

test('sparse files are refused clearly (GNU and pax sparse formats)', async (t) => {
  const d = withTmp(t);
  const p = join(d, 'sparse');
  const fd = openSync(p, 'w');
  writeSync(fd, 'data', 0);
  ftruncateSync(fd, 1 << 24);
  writeSync(fd, 'end', (1 << 24) - 3);
  closeSync(fd);
  for (const format of ['gnu', 'posix']) {
    const tar = execFileSync('tar', [`--format=${format}`, '--sparse', '-C', d, '-cf', '-', 'sparse'], { maxBuffer: 1 << 26 });
    await assert.rejects(readAll(tar), (err: unknown) => {
      assert.ok(err instanceof BerthError);
      assert.equal(err.kind, ErrorKind.NotImplemented);
      assert.match(err.message, /sparse/);
      return true;
    }, format);
  }
});

test('backpressure: a slow consumer keeps the source from being read ahead', async () => {
  const size = 64 << 20;
  let pulled = 0;
  const source = async function* (): AsyncGenerator<Buffer> {
    const out = new Collect();
    const w = new TarWriter(out);
    await w.add({ type: 'file', path: 'big', mode: 0o644, size }, Buffer.alloc(size));
    await w.finish();
    const tar = out.bytes();
    for (let i = 0; i < tar.length; i += 64 << 10) {
      pulled += 64 << 10;
      yield tar.subarray(i, i + (64 << 10));
    }
  };
  for await (const e of readTar(decompress(source()))) {
    let n = 0;
    for await (const c of e.body) {
      n += c.length;
      if (n === c.length) {
        await new Promise((r) => setTimeout(r, 20));
        assert.ok(pulled <= 256 << 10, `pulled ${pulled} bytes ahead of a consumer that read ${n}`);
      }
    }
    assert.equal(n, size);
  }
});

test('an entry whose body is not read is skipped', async () => {
  const tar = await tarOf([file('a', 'x'.repeat(3000)), file('b', 'y')]);
  const names: string[] = [];
  let bData = '';
  for await (const e of readTar(chunks(tar, 100))) {
    names.push(e.path);
    if (e.path === 'b') for await (const c of e.body) bData += c.toString();
  }
  assert.deepEqual(names, ['a', 'b']);
  assert.equal(bData, 'y');
});

test('compression: media types and magic bytes', async () => {
  assert.equal(compressionOfMediaType('application/vnd.oci.image.layer.v1.tar+zstd'), 'zstd');
  assert.equal(compressionOfMediaType('application/vnd.docker.image.rootfs.diff.tar.gzip'), 'gzip');
  assert.equal(compressionOfMediaType('application/vnd.oci.image.layer.nondistributable.v1.tar'), 'none');
  assert.equal(compressionOfMediaType('application/json'), undefined);
  assert.equal(detectCompression(Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0])), 'gzip');
  assert.equal(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0])), 'zstd');
  assert.throws(() => detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])), /xz/);
  const tar = await tarOf([file('f', 'abc')]);
  const zst = execFileSync('zstd', ['-q', '-c'], { input: tar });
  const parts: Buffer[] = [];
  for await (const c of decompress(chunks(zst, 5))) parts.push(c);
  assert.deepEqual(Buffer.concat(parts), tar);
  await assert.rejects(async () => {
    for await (const _ of decompress(chunks(tar), { mediaType: 'text/plain' })) void _;
  }, /not a layer type/);
});
