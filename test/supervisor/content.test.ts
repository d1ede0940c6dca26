/**
 * The Content service of berth-containerd, through the real ctr (Debian's
 * containerd 1.6) and through a grpc-js client: ingest, list, read, label,
 * delete; the bidirectional Write stream with resumption, verification,
 * locking and abort; namespaces sharing blobs; an ingest that survives a
 * kill -9 of the daemon. Runs as root; every daemon and directory is removed.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Metadata, credentials, status } from '@grpc/grpc-js';
import type { ClientDuplexStream, ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import {
  Api, CTR, EVENTS, cleanup, collect, ctr, ctrOk, grpcError, loadProtos, rows, startDaemon, tempDirs, useDaemon,
} from './_daemon.js';
import type { DaemonProcess, Msg } from './_daemon.js';

const CONTENT = 'containerd.services.content.v1.Content';

const { dirs, client } = useDaemon();

function digestOf(b: Uint8Array): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

const blobFile = (root: string, digest: string): string => join(root, 'content', 'blobs', 'sha256', digest.slice('sha256:'.length));
const blobNames = (root: string): string[] => readdirSync(join(root, 'content', 'blobs', 'sha256')).sort();
const ingestNames = (root: string): string[] => readdirSync(join(root, 'content', 'ingest'));

/** One Write stream: send a message, get its response (in order). */
class WriteStream {
  private readonly call: ClientDuplexStream<Msg, Msg>;
  private readonly queue: Msg[] = [];
  private failure: ServiceError | undefined;
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(address: string, namespace: string) {
    const protos = loadProtos();
    const m = protos.service(CONTENT)['Write'];
    if (m === undefined) throw new Error('no Write method');
    const c = new Client(`unix:${address}`, credentials.createInsecure());
    const md = new Metadata();
    md.set('containerd-namespace', namespace);
    this.call = c.makeBidiStreamRequest<Msg, Msg>(m.path, (v) => m.requestSerialize(v), (b) => m.responseDeserialize(b) as Msg, md);
    this.call.on('data', (msg: Msg) => { this.queue.push(msg); this.wake?.(); });
    this.call.on('error', (e: ServiceError) => { this.failure = e; this.wake?.(); });
    this.call.on('end', () => { this.ended = true; this.wake?.(); });
    this.call.on('status', () => c.close());
  }

  /** Send and wait for the one response (or the stream's error). */
  async send(req: Msg): Promise<Msg> {
    this.call.write(req);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const m = this.queue.shift();
      if (m !== undefined) return m;
      if (this.failure !== undefined) throw this.failure;
      if (this.ended) throw new Error('write stream ended without a response');
      if (Date.now() > deadline) throw new Error('no write response within 10 s');
      await new Promise<void>((resolve) => { this.wake = resolve; setTimeout(resolve, 100); });
    }
  }

  /** Half-close and wait for the status. */
  async end(): Promise<void> {
    this.call.end();
    const deadline = Date.now() + 10_000;
    while (!this.ended && this.failure === undefined && Date.now() < deadline) await sleep(20);
    if (this.failure !== undefined) throw this.failure;
  }

  cancel(): void {
    this.call.cancel();
  }
}

async function failure(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as ServiceError;
    assert.equal(typeof err.code, 'number', String(e));
    return { code: err.code, details: err.details };
  }
  throw new Error('expected the call to fail');
}

/** Every message of a server stream, until it ends (rejects with the stream's error). */
function drain(stream: ClientReadableStream<Msg>): Promise<Msg[]> {
  const msgs: Msg[] = [];
  return new Promise((resolve, reject) => {
    stream.on('data', (m: Msg) => msgs.push(m));
    stream.on('error', reject);
    stream.on('end', () => resolve(msgs));
  });
}

async function readAll(api: Api, req: Msg, ns: string): Promise<{ data: Buffer; offsets: number[] }> {
  const msgs = await drain(api.stream(CONTENT, 'Read', req, ns));
  return { data: Buffer.concat(msgs.map((m) => m['data'] as Buffer)), offsets: msgs.map((m) => Number(m['offset'])) };
}

/** Write a blob in one COMMIT message. */
async function put(data: Buffer, ns: string, labels: Record<string, string> = {}): Promise<string> {
  const dg = digestOf(data);
  const w = new WriteStream(dirs.address, ns);
  try {
    const res = await w.send({ action: 'COMMIT', ref: `put-${dg}`, total: data.length, expected: dg, data, labels });
    assert.equal(res['digest'], dg);
    await w.end();
  } catch (e) {
    if ((e as ServiceError).code !== status.ALREADY_EXISTS) throw e;
  }
  return dg;
}

test('ctr content ingest, ls, get, label, active and rm', async () => {
  const ns = 'ctrcontent';
  const data = randomBytes(300_000);
  const dg = digestOf(data);
  const ingest = spawnSync(CTR, ['--address', dirs.address, '--namespace', ns, 'content', 'ingest', '--expected-digest', dg, '--expected-size', String(data.length), 'my-ref'], { input: data });
  assert.equal(ingest.status, 0, ingest.stderr.toString());
  assert.deepEqual(readFileSync(blobFile(dirs.root, dg)), data);

  const listed = rows(ctrOk(dirs.address, ['content', 'ls'], ns));
  assert.deepEqual(listed.map((r) => [r[0], r[1]]), [[dg, '300kB']]);
  assert.deepEqual(rows(ctrOk(dirs.address, ['content', 'active'], ns)), []);

  const got = spawnSync(CTR, ['--address', dirs.address, '--namespace', ns, 'content', 'get', dg]);
  assert.equal(got.status, 0, got.stderr.toString());
  assert.deepEqual(got.stdout, data);

  ctrOk(dirs.address, ['content', 'label', dg, 'a=1', 'b=two'], ns);
  const info = await client().unary(CONTENT, 'Info', { digest: dg }, ns);
  assert.deepEqual((info['info'] as Msg)['labels'], { a: '1', b: 'two' });
  assert.equal((info['info'] as Msg)['size'], data.length);
  // ctr prints labels from a Go map: in any order.
  const labelled = ctrOk(dirs.address, ['content', 'ls'], ns);
  assert.match(labelled, /(a=1,b=two|b=two,a=1)/);
  ctrOk(dirs.address, ['content', 'label', dg, 'a='], ns);
  assert.deepEqual(((await client().unary(CONTENT, 'Info', { digest: dg }, ns))['info'] as Msg)['labels'], { b: 'two' });

  // Ingesting it again is fine and writes nothing.
  const again = spawnSync(CTR, ['--address', dirs.address, '--namespace', ns, 'content', 'ingest', '--expected-digest', dg, 'other-ref'], { input: data });
  assert.equal(again.status, 0, again.stderr.toString());

  // A wrong digest: nothing committed, the ingest is left (as containerd) and shows as active.
  const bad = randomBytes(1000);
  const wrongDigest = digestOf(Buffer.from('something else'));
  const before = blobNames(dirs.root);
  const failed = spawnSync(CTR, ['--address', dirs.address, '--namespace', ns, 'content', 'ingest', '--expected-digest', wrongDigest, 'bad-ref'], { input: bad });
  assert.notEqual(failed.status, 0);
  assert.match(failed.stderr.toString(), new RegExp(`unexpected commit digest ${digestOf(bad)}, expected ${wrongDigest}: failed precondition`));
  assert.deepEqual(blobNames(dirs.root), before);
  const active = rows(ctrOk(dirs.address, ['content', 'active'], ns));
  assert.deepEqual(active.map((r) => [r[0], r[1]]), [['bad-ref', '1kB']]);
  await client().unary(CONTENT, 'Abort', { ref: 'bad-ref' }, ns);
  assert.deepEqual(rows(ctrOk(dirs.address, ['content', 'active'], ns)), []);

  ctrOk(dirs.address, ['content', 'rm', dg], ns);
  assert.deepEqual(rows(ctrOk(dirs.address, ['content', 'ls'], ns)), []);
  assert.equal(existsSync(blobFile(dirs.root, dg)), false);
  const r = ctr(dirs.address, ['content', 'get', dg], ns);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /not found/);
});

test('a write broken off mid-way resumes from the reported offset and commits the right blob', async () => {
  const ns = 'resume';
  const data = randomBytes(5 << 20);
  const dg = digestOf(data);
  const half = 2 * 1024 * 1024 + 123;

  const w1 = new WriteStream(dirs.address, ns);
  const st = await w1.send({ action: 'STAT', ref: 'layer-1', total: data.length, expected: dg });
  assert.equal(st['offset'], 0);
  assert.equal(st['total'], data.length);
  for (let off = 0; off < half;) {
    const n = Math.min(1 << 20, half - off);
    const res = await w1.send({ action: 'WRITE', offset: off, data: data.subarray(off, off + n) });
    off += n;
    assert.equal(res['offset'], off);
  }
  w1.cancel();

  const status1 = await client().unary(CONTENT, 'Status', { ref: 'layer-1' }, ns);
  assert.equal((status1['status'] as Msg)['offset'], half);
  assert.equal((status1['status'] as Msg)['expected'], dg);
  await failure(client().unary(CONTENT, 'Info', { digest: dg }, ns));

  // The broken stream may still hold the ref for a moment.
  let w2: WriteStream | undefined;
  let resumedAt = -1;
  for (let i = 0; i < 50 && w2 === undefined; i++) {
    const w = new WriteStream(dirs.address, ns);
    try {
      resumedAt = Number((await w.send({ action: 'STAT', ref: 'layer-1' }))['offset']);
      w2 = w;
    } catch (e) {
      assert.equal((e as ServiceError).code, status.UNAVAILABLE, String(e));
      await sleep(50);
    }
  }
  assert.ok(w2 !== undefined);
  assert.equal(resumedAt, half);
  await w2.send({ action: 'WRITE', offset: half, data: data.subarray(half) });
  const done = await w2.send({ action: 'COMMIT', offset: data.length, total: data.length, expected: dg, labels: { 'x.y/z': 'resumed' } });
  assert.equal(done['digest'], dg);
  assert.equal(done['offset'], data.length);
  await w2.end();

  assert.deepEqual(readFileSync(blobFile(dirs.root, dg)), data);
  const info = (await client().unary(CONTENT, 'Info', { digest: dg }, ns))['info'] as Msg;
  assert.deepEqual(info['labels'], { 'x.y/z': 'resumed' });
  assert.deepEqual((await client().unary(CONTENT, 'ListStatuses', {}, ns))['statuses'], []);

  // Read with offsets and sizes.
  const api = client();
  assert.deepEqual((await readAll(api, { digest: dg, offset: 1000, size: 5000 }, ns)).data, data.subarray(1000, 6000));
  const tail = await readAll(api, { digest: dg, offset: data.length - 10 }, ns);
  assert.deepEqual(tail.data, data.subarray(data.length - 10));
  assert.deepEqual(tail.offsets, [data.length - 10]);
  const whole = await readAll(api, { digest: dg }, ns);
  assert.deepEqual(whole.data, data);
  assert.deepEqual(whole.offsets, [0, 1, 2, 3, 4].map((i) => i << 20));
  assert.deepEqual((await readAll(api, { digest: dg, offset: data.length + 5 }, ns)).data, Buffer.alloc(0));
  const missing = await failure(readAll(api, { digest: digestOf(Buffer.from('nope')) }, ns));
  assert.equal(missing.code, status.NOT_FOUND);
});

test('a wrong digest commits nothing and leaves the store unchanged; abort removes the ingest', async () => {
  const ns = 'wrong';
  const data = randomBytes(10_000);
  const wrong = digestOf(Buffer.from('not these bytes'));
  const beforeBlobs = blobNames(dirs.root);
  const w = new WriteStream(dirs.address, ns);
  await w.send({ action: 'WRITE', ref: 'bad', offset: 0, data });
  const err = await failure(w.send({ action: 'COMMIT', offset: data.length, total: data.length, expected: wrong }));
  assert.equal(err.code, status.FAILED_PRECONDITION);
  assert.equal(err.details, `unexpected commit digest ${digestOf(data)}, expected ${wrong}: failed precondition`);
  assert.deepEqual(blobNames(dirs.root), beforeBlobs);
  assert.equal((await grpcError(client().unary(CONTENT, 'Info', { digest: digestOf(data) }, ns))).code, status.NOT_FOUND);
  assert.equal((await grpcError(client().unary(CONTENT, 'Info', { digest: wrong }, ns))).code, status.NOT_FOUND);

  const statuses = (await client().unary(CONTENT, 'ListStatuses', { filters: ['ref==bad'] }, ns))['statuses'] as Msg[];
  assert.deepEqual(statuses.map((s) => [s['ref'], s['offset']]), [['bad', data.length]]);
  const wrongSize = new WriteStream(dirs.address, ns);
  const e2 = await failure(wrongSize.send({ action: 'COMMIT', ref: 'bad', offset: data.length, total: data.length + 1 }));
  assert.equal(e2.details, `unexpected commit size ${data.length}, expected ${data.length + 1}: failed precondition`);

  const ingestsBefore = ingestNames(dirs.root).length;
  await client().unary(CONTENT, 'Abort', { ref: 'bad' }, ns);
  assert.equal(ingestNames(dirs.root).length, ingestsBefore - 1);
  assert.deepEqual((await client().unary(CONTENT, 'ListStatuses', {}, ns))['statuses'], []);
  assert.equal((await grpcError(client().unary(CONTENT, 'Status', { ref: 'bad' }, ns))).code, status.NOT_FOUND);
  assert.equal((await grpcError(client().unary(CONTENT, 'Abort', { ref: 'bad' }, ns))).code, status.NOT_FOUND);
  assert.deepEqual(blobNames(dirs.root), beforeBlobs);
});

test('offsets: a write elsewhere than the current offset is refused; offset 0 starts over', async () => {
  const ns = 'offsets';
  const w = new WriteStream(dirs.address, ns);
  assert.equal((await w.send({ action: 'WRITE', ref: 'o', offset: 0, data: Buffer.from('abcdef') }))['offset'], 6);
  const restarted = await w.send({ action: 'WRITE', offset: 0, data: Buffer.from('xyz') });
  assert.equal(restarted['offset'], 3);
  assert.equal(restarted['digest'], digestOf(Buffer.from('xyz')));
  const err = await failure(w.send({ action: 'WRITE', offset: 10, data: Buffer.from('!') }));
  assert.equal(err.code, status.INVALID_ARGUMENT);
  assert.match(err.details, /write @10 must occur at current offset 3/);
  await client().unary(CONTENT, 'Abort', { ref: 'o' }, ns);

  const first = new WriteStream(dirs.address, ns);
  const noRef = await failure(first.send({ action: 'STAT' }));
  assert.equal(noRef.code, status.INVALID_ARGUMENT);
  assert.match(noRef.details, /first message must have a reference/);
});

test('two writers of one ref: the second gets Unavailable "ref ... locked" until the first is done', async () => {
  const ns = 'locks';
  const data = Buffer.from('locked content');
  const dg = digestOf(data);
  const a = new WriteStream(dirs.address, ns);
  await a.send({ action: 'STAT', ref: 'shared-ref', total: data.length, expected: dg });
  const b = new WriteStream(dirs.address, ns);
  const err = await failure(b.send({ action: 'STAT', ref: 'shared-ref' }));
  assert.equal(err.code, status.UNAVAILABLE);
  assert.match(err.details, /^ref locks\/shared-ref locked for .* \(since .*\): unavailable$/);
  assert.equal((await grpcError(client().unary(CONTENT, 'Abort', { ref: 'shared-ref' }, ns))).code, status.UNAVAILABLE);
  await a.send({ action: 'COMMIT', offset: 0, data, total: data.length, expected: dg });
  await a.end();
  // Now the digest is there: a writer expecting it is told so at once.
  const c = new WriteStream(dirs.address, ns);
  const exists = await failure(c.send({ action: 'STAT', ref: 'shared-ref', expected: dg }));
  assert.equal(exists.code, status.ALREADY_EXISTS);
  assert.deepEqual(readFileSync(blobFile(dirs.root, dg)), data);
});

test('namespaces see their own blobs; a blob present elsewhere is adopted without a write; delete, list filters, update masks, events', async (t) => {
  const data = randomBytes(4096);
  const dg = await put(data, 'nsa', { 'containerd.io/gc.root': 'x', team: 'a' });
  assert.equal((await grpcError(client().unary(CONTENT, 'Info', { digest: dg }, 'nsb'))).code, status.NOT_FOUND);

  // nsb writing the same digest: AlreadyExists on the first message, and the blob is now visible there.
  const w = new WriteStream(dirs.address, 'nsb');
  const adopted = await failure(w.send({ action: 'STAT', ref: 'again', total: data.length, expected: dg }));
  assert.equal(adopted.code, status.ALREADY_EXISTS);
  const infoB = (await client().unary(CONTENT, 'Info', { digest: dg }, 'nsb'))['info'] as Msg;
  assert.equal(infoB['size'], data.length);
  assert.deepEqual(infoB['labels'], {});
  assert.deepEqual((await client().unary(CONTENT, 'ListStatuses', {}, 'nsb'))['statuses'], []);

  // Filters.
  const other = await put(randomBytes(10), 'nsa', { team: 'b' });
  const list = async (filters: string[]): Promise<string[]> => {
    const msgs = await drain(client().stream(CONTENT, 'List', { filters }, 'nsa'));
    return msgs.flatMap((m) => (m['info'] as Msg[]).map((i) => String(i['digest']))).sort();
  };
  assert.deepEqual(await list([]), [dg, other].sort());
  assert.deepEqual(await list(['labels.team==a']), [dg]);
  assert.deepEqual(await list(['labels."containerd.io/gc.root"']), [dg]);
  assert.deepEqual(await list([`digest==${other}`]), [other]);
  assert.deepEqual(await list(['size==10']), [other]);
  assert.deepEqual(await list(['labels.team==a', 'size==10']), [dg, other].sort());

  // Update with and without a mask.
  const upd = async (labels: Record<string, string>, paths?: string[]): Promise<Msg> =>
    ((await client().unary(CONTENT, 'Update', { info: { digest: dg, labels }, ...(paths === undefined ? {} : { update_mask: { paths } }) }, 'nsa'))['info'] as Msg)['labels'] as Msg;
  assert.deepEqual(await upd({ team: 'c', extra: '1' }, ['labels.team']), { 'containerd.io/gc.root': 'x', team: 'c' });
  assert.deepEqual(await upd({ only: 'this' }), { only: 'this' });
  assert.deepEqual(await upd({ only: '' }, ['labels.only']), {});
  const badPath = await grpcError(client().unary(CONTENT, 'Update', { info: { digest: dg }, update_mask: { paths: ['size'] } }, 'nsa'));
  assert.equal(badPath.code, status.INVALID_ARGUMENT);
  assert.match(badPath.details, /cannot update "size" field on content info/);
  const badDigest = await grpcError(client().unary(CONTENT, 'Info', { digest: 'sha256:1234' }, 'nsa'));
  assert.equal(badDigest.code, status.INVALID_ARGUMENT);

  // A namespace holding blobs cannot be deleted.
  const nsDel = await grpcError(client().unary('containerd.services.namespaces.v1.Namespaces', 'Delete', { name: 'nsb' }));
  assert.equal(nsDel.code, status.FAILED_PRECONDITION);
  assert.match(nsDel.details, /still has blobs/);

  // Delete: the blob stays while another namespace sees it, goes with the last; events say so.
  const events = client().stream(EVENTS, 'Subscribe', { filters: ['topic=="/content/delete"'] });
  t.after(() => events.cancel());
  events.on('error', () => { /* cancelled at the end */ });
  await sleep(200);
  await client().unary(CONTENT, 'Delete', { digest: dg }, 'nsa');
  assert.equal(existsSync(blobFile(dirs.root, dg)), true);
  assert.equal((await grpcError(client().unary(CONTENT, 'Info', { digest: dg }, 'nsa'))).code, status.NOT_FOUND);
  await client().unary(CONTENT, 'Delete', { digest: dg }, 'nsb');
  assert.equal(existsSync(blobFile(dirs.root, dg)), false);
  assert.equal((await grpcError(client().unary(CONTENT, 'Delete', { digest: dg }, 'nsb'))).code, status.NOT_FOUND);
  const got = await collect(events, (m) => m.length >= 2);
  const protos = loadProtos();
  assert.deepEqual(got.map((e) => {
    const any = e['event'] as Msg;
    return [e['namespace'], any['type_url'], protos.decode(String(any['type_url']), any['value'] as Buffer)['digest']];
  }), [['nsa', 'containerd.events.ContentDelete', dg], ['nsb', 'containerd.events.ContentDelete', dg]]);
  await client().unary(CONTENT, 'Delete', { digest: other }, 'nsa');
});

test('kill -9 during an ingest: after a restart the ingest resumes and no partial blob is visible', async (t) => {
  const own = tempDirs();
  let d: DaemonProcess | undefined;
  t.after(() => cleanup(d, own));
  d = await startDaemon(own);
  const ns = 'crash';
  const data = randomBytes(3 << 20);
  const dg = digestOf(data);
  const part = (1 << 20) + 17;
  const w = new WriteStream(own.address, ns);
  await w.send({ action: 'STAT', ref: 'crashing', total: data.length, expected: dg });
  await w.send({ action: 'WRITE', offset: 0, data: data.subarray(0, part) });
  await d.kill9();
  w.cancel();

  d = await startDaemon(own);
  const api = new Api(own.address);
  t.after(() => api.close());
  assert.deepEqual(blobNames(own.root), []);
  assert.equal((await grpcError(api.unary(CONTENT, 'Info', { digest: dg }, ns))).code, status.NOT_FOUND);
  const statuses = (await api.unary(CONTENT, 'ListStatuses', {}, ns))['statuses'] as Msg[];
  assert.deepEqual(statuses.map((s) => [s['ref'], s['offset'], s['total'], s['expected']]), [['crashing', part, data.length, dg]]);
  assert.ok(Number((statuses[0]?.['started_at'] as Msg)['seconds']) > 0);
  assert.deepEqual(rows(ctrOk(own.address, ['content', 'active'], ns)).map((r) => r[0]), ['crashing']);

  const w2 = new WriteStream(own.address, ns);
  const st = await w2.send({ action: 'STAT', ref: 'crashing' });
  assert.equal(st['offset'], part);
  assert.equal(st['digest'], digestOf(data.subarray(0, part)));
  await w2.send({ action: 'WRITE', offset: part, data: data.subarray(part) });
  assert.equal((await w2.send({ action: 'COMMIT', offset: data.length, total: data.length, expected: dg }))['digest'], dg);
  await w2.end();
  assert.deepEqual(readFileSync(blobFile(own.root, dg)), data);
  assert.deepEqual(ingestNames(own.root), []);
});
