import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { BerthError, ErrorKind } from '@berth/base';
import { LocalContentStore } from './local.js';
import { readBlob, writeBlob } from './write-blob.js';

function digestOf(b: Uint8Array): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

function tempStore(t: { after(fn: () => void): void }): { root: string; store: LocalContentStore } {
  const base = mkdtempSync(join(tmpdir(), 'berth-content-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const root = join(base, 'content');
  return { root, store: LocalContentStore.open(root) };
}

async function rejectsKind(p: Promise<unknown>, kind: ErrorKind, re?: RegExp): Promise<BerthError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof BerthError, `expected a BerthError, got ${String(e)}`);
    assert.equal(e.kind, kind, e.message);
    if (re !== undefined) assert.match(e.message, re);
    return e;
  }
  assert.fail(`expected ${kind}`);
}

async function* chunksOf(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

const ingests = (root: string): string[] => readdirSync(join(root, 'ingest'));
const blobs = (root: string): string[] => readdirSync(join(root, 'blobs', 'sha256'));

test('write, commit, info, read at offsets, list, delete', async (t) => {
  const { root, store } = tempStore(t);
  const data = Buffer.from('hello content store\n'.repeat(1000));
  const dg = digestOf(data);
  const w = await store.writer({ ref: 'r1', total: data.length, expected: dg });
  await w.write(data.subarray(0, 100));
  await w.write(data.subarray(100), 100);
  assert.equal(w.digest(), dg);
  const info = await w.commit(data.length, dg);
  assert.equal(info.digest, dg);
  assert.equal(info.size, data.length);
  assert.deepEqual(ingests(root), []);
  const path = join(root, 'blobs', 'sha256', dg.slice(7));
  assert.deepEqual(readFileSync(path), data);
  assert.equal(statSync(path).mode & 0o777, 0o444);

  const r = await store.reader(dg);
  try {
    assert.equal(r.size, data.length);
    assert.deepEqual(await r.readAt(5, 10), data.subarray(5, 15));
    assert.deepEqual(await r.readAt(data.length - 3, 100), data.subarray(data.length - 3));
    assert.equal((await r.readAt(data.length + 10, 5)).length, 0);
    assert.equal(await text(r.stream(6, 7)), data.subarray(6, 13).toString());
    assert.equal(await text(r.stream()), data.toString());
  } finally {
    await r.close();
  }
  assert.deepEqual((await store.list()).map((i) => i.digest), [dg]);
  assert.deepEqual(await readBlob(store, dg), data);
  await store.delete(dg);
  await rejectsKind(store.info(dg), ErrorKind.NotFound, /content digest sha256:[0-9a-f]{64}/);
  await rejectsKind(store.delete(dg), ErrorKind.NotFound);
});

test('an interrupted ingest resumes at its offset, also in a new store instance (re-hashed)', async (t) => {
  const { root, store } = tempStore(t);
  const data = Buffer.alloc(3 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  const dg = digestOf(data);
  const w1 = await store.writer({ ref: 'layer', total: data.length, expected: dg });
  await w1.write(data.subarray(0, 1234567));
  await w1.close();
  const s = await store.status('layer');
  assert.equal(s.offset, 1234567);
  assert.equal(s.total, data.length);
  assert.equal(s.expected, dg);

  const again = LocalContentStore.open(root);
  const w2 = await again.writer({ ref: 'layer' });
  assert.equal(w2.status().offset, 1234567);
  assert.equal(w2.status().expected, dg);
  await w2.write(data.subarray(1234567), 1234567);
  await w2.commit(data.length, dg);
  assert.deepEqual(readFileSync(join(root, 'blobs', 'sha256', dg.slice(7))), data);
});

test('a wrong digest or size commits nothing; the ingest stays until aborted', async (t) => {
  const { root, store } = tempStore(t);
  const data = Buffer.from('the real bytes');
  const wrong = digestOf(Buffer.from('other bytes'));
  const w = await store.writer({ ref: 'bad' });
  await w.write(data);
  await rejectsKind(w.commit(data.length, wrong), ErrorKind.FailedPrecondition,
    new RegExp(`^unexpected commit digest ${digestOf(data)}, expected ${wrong}$`));
  assert.deepEqual(blobs(root), []);
  await rejectsKind(store.info(digestOf(data)), ErrorKind.NotFound);
  assert.equal((await store.status('bad')).offset, data.length);

  const w2 = await store.writer({ ref: 'bad' });
  await rejectsKind(w2.commit(data.length + 1, ''), ErrorKind.FailedPrecondition, /^unexpected commit size 14, expected 15$/);
  assert.deepEqual(blobs(root), []);

  await store.abort('bad');
  assert.deepEqual(ingests(root), []);
  await rejectsKind(store.status('bad'), ErrorKind.NotFound);
  await rejectsKind(store.abort('bad'), ErrorKind.NotFound);
});

test('offsets: only the current one, or 0 to start over; nothing past the expected total', async (t) => {
  const { store } = tempStore(t);
  const w = await store.writer({ ref: 'o', total: 10 });
  try {
    await w.write(Buffer.from('abcdef'));
    await rejectsKind(w.write(Buffer.from('x'), 3), ErrorKind.InvalidArgument, /must occur at the current offset 6/);
    await w.write(Buffer.from('0123'), 0);
    assert.equal(w.status().offset, 4);
    assert.equal(w.digest(), digestOf(Buffer.from('0123')));
    await rejectsKind(w.write(Buffer.alloc(7)), ErrorKind.FailedPrecondition, /past the expected size 10/);
    await w.truncate(0);
    assert.equal(w.status().offset, 0);
  } finally {
    await w.close();
  }
});

test('one writer per ref: the second gets Unavailable "ref ... locked", or waits', async (t) => {
  const { store } = tempStore(t);
  const w = await store.writer({ ref: 'busy' });
  await rejectsKind(store.writer({ ref: 'busy' }), ErrorKind.Unavailable, /^ref busy locked for .* \(since .*\)$/);
  await rejectsKind(store.abort('busy'), ErrorKind.Unavailable);
  let second = false;
  const waiting = store.writer({ ref: 'busy', wait: true }).then((w2) => { second = true; return w2; });
  await w.write(Buffer.from('abc'));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(second, false);
  await w.close();
  const w2 = await waiting;
  assert.equal(w2.status().offset, 3);
  await w2.close();
  await store.abort('busy');
});

test('a blob already present: AlreadyExists on open with its digest and on commit', async (t) => {
  const { root, store } = tempStore(t);
  const data = Buffer.from('twice');
  const dg = digestOf(data);
  await writeBlob(store, chunksOf(data, 2), { digest: dg, size: data.length });
  await rejectsKind(store.writer({ ref: 'x', expected: dg }), ErrorKind.AlreadyExists, new RegExp(`^content ${dg}$`));
  const w = await store.writer({ ref: 'y' });
  await w.write(data);
  await rejectsKind(w.commit(0, ''), ErrorKind.AlreadyExists);
  assert.deepEqual(ingests(root), []);
  assert.deepEqual(blobs(root), [dg.slice(7)]);
});

test('writeBlob resumes with a positioned source, drops bad data, and shares one write between concurrent callers', async (t) => {
  const { root, store } = tempStore(t);
  const data = Buffer.from('0123456789'.repeat(5000));
  const desc = { digest: digestOf(data), size: data.length };

  // Interrupted: the source fails half-way; the ingest stays.
  async function* failing(): AsyncGenerator<Buffer> {
    yield data.subarray(0, 20000);
    throw new Error('connection reset');
  }
  await assert.rejects(writeBlob(store, failing(), desc, { ref: 'pull-1' }), /connection reset/);
  assert.equal((await store.status('pull-1')).offset, 20000);
  const offsets: number[] = [];
  const info = await writeBlob(store, (offset) => { offsets.push(offset); return chunksOf(data.subarray(offset), 4096); }, desc, { ref: 'pull-1' });
  assert.deepEqual(offsets, [20000]);
  assert.equal(info.digest, desc.digest);
  assert.deepEqual(readFileSync(join(root, 'blobs', 'sha256', desc.digest.slice(7))), data);

  // Bad data: nothing committed, no ingest left.
  const other = Buffer.from('x'.repeat(data.length));
  const bad = { digest: digestOf(Buffer.from('not this')), size: other.length };
  await rejectsKind(writeBlob(store, chunksOf(other, 1000), bad, { ref: 'pull-2' }), ErrorKind.FailedPrecondition, /unexpected commit digest/);
  await rejectsKind(writeBlob(store, chunksOf(Buffer.concat([other, other]), 1000), bad, { ref: 'pull-3' }), ErrorKind.FailedPrecondition, /past the expected size/);
  await rejectsKind(writeBlob(store, chunksOf(other.subarray(10), 1000), bad, { ref: 'pull-4' }), ErrorKind.FailedPrecondition, /ended after/);
  assert.deepEqual((await store.listStatuses()).map((s) => s.ref), ['pull-4']);
  await store.abort('pull-4');

  // Concurrent writers of one digest: one writes, the other waits and finds it.
  const fresh = Buffer.from('shared layer '.repeat(10000));
  const fdesc = { digest: digestOf(fresh), size: fresh.length };
  let reads = 0;
  const src = (): AsyncGenerator<Buffer> => { reads++; return chunksOf(fresh, 1000); };
  const [a, b] = await Promise.all([writeBlob(store, src, fdesc), writeBlob(store, src, fdesc)]);
  assert.equal(a.digest, fdesc.digest);
  assert.equal(b.digest, fdesc.digest);
  assert.equal(reads, 1);
  assert.deepEqual(ingests(root), []);
});

test('opening the store removes half-created ingest directories', (t) => {
  const { root } = tempStore(t);
  mkdirSync(join(root, 'ingest', '.tmp-deadbeef'));
  writeFileSync(join(root, 'ingest', '.tmp-deadbeef', 'ref'), 'x');
  LocalContentStore.open(root);
  assert.equal(existsSync(join(root, 'ingest', '.tmp-deadbeef')), false);
});

test('digests are checked', async (t) => {
  const { store } = tempStore(t);
  await rejectsKind(store.info('sha256:abc'), ErrorKind.InvalidArgument, /invalid checksum digest length/);
  await rejectsKind(store.info('md5:abc'), ErrorKind.InvalidArgument, /unsupported digest algorithm/);
  await rejectsKind(store.info(`sha256:${'A'.repeat(64)}`), ErrorKind.InvalidArgument, /invalid checksum digest format/);
  await rejectsKind(store.writer({ ref: '' }), ErrorKind.InvalidArgument, /ref must not be empty/);
});
