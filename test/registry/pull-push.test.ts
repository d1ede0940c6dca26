// Push and pull against Debian's docker-registry (no auth), through a proxy
// that counts, corrupts and cuts. Needs /usr/bin/docker-registry.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { BerthError } from '@berth/base';
import { setTimeout as sleep } from 'node:timers/promises';
import { RegistryClient, fetchBlob, pull, push } from '@berth/images';
import type { ImageDescriptor, PullProgress, PushProgress } from '@berth/images';
import { MemoryStore, buildImage, buildIndex, sha256, startProxy, startRegistry } from './_registry.js';
import type { BuiltImage, Proxy, Registry } from './_registry.js';

let registry: Registry;
let proxy: Proxy;
let client: RegistryClient;

// Three layers, one of 3 MiB of random bytes (chunked uploads, resumes).
const big = randomBytes(3 * 1024 * 1024);
const image: BuiltImage = buildImage([
  [{ path: 'etc', dir: true }, { path: 'etc/hostname', content: 'berth\n' }],
  [{ path: 'bin', dir: true }, { path: 'bin/tool', content: randomBytes(4096) }],
  [{ path: 'data.bin', content: big }],
]);
const bigLayer = image.layers[2] as ImageDescriptor;

before(async () => {
  registry = await startRegistry();
  proxy = await startProxy(registry.port);
  client = new RegistryClient({ retryDelayMs: 20 });
  // Pushed once here; the tests pull it and push it elsewhere.
  await push(client, `${proxy.domain}/berth/app:v1`, {
    store: new MemoryStore(image.blobs),
    descriptor: image.manifest,
    chunkSize: 1024 * 1024,
    monolithicMax: 256 * 1024,
  });
});

after(async () => {
  client?.close();
  await proxy?.stop();
  await registry?.stop();
});

const since = (n: number): Proxy['requests'] => proxy.requests.slice(n);

test('push uploads small blobs whole and large ones in chunks; pull gets every byte back', async () => {
  const pushes = proxy.requests.filter((r) => r.method === 'PATCH');
  // 3 MiB in 1 MiB chunks (plus gzip's few bytes of overhead): 4 PATCHes.
  assert.equal(pushes.length, Math.ceil(bigLayer.size / (1024 * 1024)));
  assert.ok(pushes.every((r) => r.status === 202));

  const store = new MemoryStore();
  const events: PullProgress[] = [];
  const n = proxy.requests.length;
  const got = await pull(client, `${proxy.domain}/berth/app:v1`, { store, onProgress: (e) => events.push(e) });
  assert.equal(got.name, `${proxy.domain}/berth/app:v1`);
  assert.equal(got.target.digest, image.manifest.digest);
  assert.equal(got.manifests.config.descriptor.digest, image.config.digest);
  assert.deepEqual(got.layers.map((l) => l.digest), image.layers.map((l) => l.digest));
  for (const [digest, bytes] of image.blobs) assert.ok(store.blobs.get(digest)?.equals(bytes), `blob ${digest}`);
  for (const l of image.layers) {
    const mine = events.filter((e) => e.digest === l.digest).map((e) => e.status);
    assert.equal(mine[0], 'waiting');
    assert.equal(mine.at(-1), 'done');
    assert.ok(mine.includes('downloading'));
  }
  assert.ok(since(n).some((r) => r.method === 'HEAD' && r.path.endsWith('/manifests/v1')));

  // A second pull into the same store downloads no layer (the small config is read again).
  const m = proxy.requests.length;
  const again = await pull(client, `${proxy.domain}/berth/app:v1`, { store });
  assert.equal(again.target.digest, image.manifest.digest);
  const blobGets = since(m).filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
  assert.deepEqual(blobGets.map((r) => r.path.slice(r.path.lastIndexOf('/') + 1)), [image.config.digest]);

  // A second push finds every blob there already.
  const pevents: PushProgress[] = [];
  await push(client, `${proxy.domain}/berth/app:v1`, { store, descriptor: image.manifest, onProgress: (e) => pevents.push(e) });
  const blobEvents = pevents.filter((e) => e.kind === 'layer' || e.kind === 'config');
  assert.ok(blobEvents.filter((e) => e.status !== 'waiting').every((e) => e.status === 'exists'));
});

test('pull by digest, and a missing tag is NotFound with the registry\'s words', async () => {
  const store = new MemoryStore();
  const got = await pull(client, `${proxy.domain}/berth/app@${image.manifest.digest}`, { store });
  assert.equal(got.target.digest, image.manifest.digest);
  await assert.rejects(pull(client, `${proxy.domain}/berth/app:nope`, { store: new MemoryStore() }), (err: unknown) => {
    assert.ok(err instanceof BerthError);
    assert.equal(err.kind, 'NotFound');
    assert.equal(err.message, `manifest for ${proxy.domain}/berth/app:nope not found: manifest unknown: manifest unknown`);
    return true;
  });
  await assert.rejects(pull(client, `${proxy.domain}/berth/nothing:v1`, { store: new MemoryStore() }), (err: unknown) => {
    assert.ok(err instanceof BerthError);
    assert.equal(err.kind, 'NotFound');
    assert.equal(err.message, `manifest for ${proxy.domain}/berth/nothing:v1 not found: manifest unknown: manifest unknown`);
    return true;
  });
});

test('an index with two platforms: the host\'s by default, another on request', async () => {
  const amd = buildImage([[{ path: 'arch', content: 'amd64' }]], { label: 'amd64' });
  const arm = buildImage([[{ path: 'arch', content: 'arm64' }]], { architecture: 'arm64', variant: 'v8', label: 'arm64' });
  const { index, blobs } = buildIndex([
    { image: arm, os: 'linux', architecture: 'arm64', variant: 'v8' },
    { image: amd, os: 'linux', architecture: 'amd64' },
  ]);
  const pushed = await push(client, `${proxy.domain}/berth/multi:v1`, { store: new MemoryStore(blobs), descriptor: index });
  assert.equal(pushed.digest, index.digest);

  const host = await pull(client, `${proxy.domain}/berth/multi:v1`, { store: new MemoryStore(), platform: 'linux/amd64' });
  assert.equal(host.target.digest, index.digest);
  assert.equal(host.manifests.index?.descriptor.digest, index.digest);
  assert.equal(host.manifests.manifest.descriptor.digest, amd.manifest.digest);

  const store = new MemoryStore();
  const other = await pull(client, `${proxy.domain}/berth/multi:v1`, { store, platform: 'linux/arm64' });
  assert.equal(other.manifests.manifest.descriptor.digest, arm.manifest.digest);
  assert.ok(store.blobs.has(index.digest) && store.blobs.has(arm.config.digest));
  assert.ok(!store.blobs.has(amd.config.digest), 'only the chosen platform is fetched');

  await assert.rejects(pull(client, `${proxy.domain}/berth/multi:v1`, { store: new MemoryStore(), platform: 'linux/s390x' }), (err: unknown) => {
    assert.ok(err instanceof BerthError);
    assert.equal(err.kind, 'NotFound');
    assert.match(err.message, /no matching manifest for linux\/s390x .* \(has linux\/arm64\/v8, linux\/amd64\)/);
    return true;
  });
});

test('cross-repository mount: the blobs come from the other repository, 201 on POST ?mount=', async () => {
  const n = proxy.requests.length;
  const events: PushProgress[] = [];
  await push(client, `${proxy.domain}/berth/mounted:v1`, {
    store: new MemoryStore(image.blobs),
    descriptor: image.manifest,
    sources: () => ['berth/app'],
    onProgress: (e) => events.push(e),
  });
  const mounts = since(n).filter((r) => r.method === 'POST' && r.path.includes('mount='));
  assert.equal(mounts.length, 1 + image.layers.length);
  assert.ok(mounts.every((r) => r.status === 201 && r.path.includes('from=berth%2Fapp')));
  assert.ok(!since(n).some((r) => r.method === 'PATCH' || (r.method === 'PUT' && r.path.includes('/blobs/'))));
  assert.equal(events.filter((e) => e.status === 'mounted').length, 1 + image.layers.length);
  const got = await pull(client, `${proxy.domain}/berth/mounted:v1`, { store: new MemoryStore() });
  assert.equal(got.target.digest, image.manifest.digest);
});

test('a corrupted blob is an error and is not stored', async () => {
  const layer = image.layers[1] as ImageDescriptor;
  proxy.corrupt = layer.digest;
  const store = new MemoryStore();
  try {
    await assert.rejects(pull(client, `${proxy.domain}/berth/app:v1`, { store }), (err: unknown) => {
      assert.ok(err instanceof BerthError);
      assert.equal(err.kind, 'FailedPrecondition');
      assert.match(err.message, new RegExp(`blob ${layer.digest}: digest mismatch`));
      return true;
    });
    assert.ok(!store.blobs.has(layer.digest));
    // A corrupted config: nothing is returned, nothing stored.
    proxy.corrupt = image.config.digest;
    const store2 = new MemoryStore();
    await assert.rejects(pull(client, `${proxy.domain}/berth/app:v1`, { store: store2 }), /digest mismatch/);
    assert.equal(store2.blobs.size, 0);
  } finally {
    proxy.corrupt = undefined;
  }
});

test('a download cut in the middle resumes with a Range request', async () => {
  proxy.cut = { digest: bigLayer.digest, after: 100_000 };
  const n = proxy.requests.length;
  const store = new MemoryStore();
  await pull(client, `${proxy.domain}/berth/app:v1`, { store });
  assert.equal(proxy.cut, undefined, 'the cut happened');
  assert.ok(store.blobs.get(bigLayer.digest)?.equals(image.blobs.get(bigLayer.digest) as Buffer));
  const gets = since(n).filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${bigLayer.digest}`));
  assert.equal(gets.length, 2);
  assert.equal(gets[0]?.range, undefined);
  // It asks for the rest of what reached it (the proxy sent 100000 bytes, some died with the socket).
  const from = Number(/^bytes=(\d+)-$/.exec(gets[1]?.range ?? '')?.[1]);
  assert.ok(from > 0 && from <= 100_000, `resumed from ${from}`);
  assert.equal(gets[1]?.status, 206);
});

test('fetchBlob resumes from bytes already held', async () => {
  const whole = image.blobs.get(bigLayer.digest) as Buffer;
  const held = 1_000_000;
  const n = proxy.requests.length;
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(c: Buffer, _enc, cb) {
      chunks.push(c);
      cb();
    },
  });
  const repo = client.repository({ domain: proxy.domain, path: 'berth/app' });
  await fetchBlob(repo, bigLayer, sink, { resume: { offset: held, prefix: Readable.from([whole.subarray(0, held)]) } });
  assert.ok(Buffer.concat(chunks).equals(whole.subarray(held)));
  assert.equal(since(n).find((r) => r.path.includes(bigLayer.digest))?.range, `bytes=${held}-`);
  // A wrong prefix makes the whole a different digest: the stream fails.
  const bad = Buffer.from(whole.subarray(0, held));
  bad[0] = (bad[0] ?? 0) ^ 1;
  await assert.rejects(
    fetchBlob(repo, bigLayer, new Writable({ write: (_c, _e, cb) => cb() }), { resume: { offset: held, prefix: Readable.from([bad]) } }),
    /digest mismatch/,
  );
});

test('a layer shared by two concurrent pulls (into one store, through two adapters) is fetched once', async () => {
  const shared = [{ path: 'shared.bin', content: randomBytes(200_000) }];
  const a = buildImage([shared, [{ path: 'a', content: 'a' }]], { label: 'a' });
  const b = buildImage([shared, [{ path: 'b', content: 'b' }]], { label: 'b' });
  await push(client, `${proxy.domain}/berth/shared-a:v1`, { store: new MemoryStore(a.blobs), descriptor: a.manifest });
  await push(client, `${proxy.domain}/berth/shared-b:v1`, { store: new MemoryStore(b.blobs), descriptor: b.manifest, sources: () => ['berth/shared-a'] });
  const sharedDigest = (a.layers[0] as ImageDescriptor).digest;
  assert.equal(sharedDigest, (b.layers[0] as ImageDescriptor).digest);
  const store = new MemoryStore();
  const events: PullProgress[] = [];
  const n = proxy.requests.length;
  proxy.delayMs = 300;
  try {
    const [ra, rb] = await Promise.all([
      pull(client, `${proxy.domain}/berth/shared-a:v1`, { store, onProgress: (e) => events.push(e) }),
      pull(client, `${proxy.domain}/berth/shared-b:v1`, { store: store.view(), onProgress: (e) => events.push(e) }),
    ]);
    assert.equal(ra.target.digest, a.manifest.digest);
    assert.equal(rb.target.digest, b.manifest.digest);
  } finally {
    proxy.delayMs = 0;
  }
  const gets = since(n).filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${sharedDigest}`));
  assert.equal(gets.length, 1);
  assert.equal(store.writes.filter((d) => d === sharedDigest).length, 1);
  assert.ok(store.blobs.get(sharedDigest)?.equals(a.blobs.get(sharedDigest) as Buffer));
  const statuses = events.filter((e) => e.digest === sharedDigest).map((e) => e.status);
  assert.ok(statuses.includes('done') && statuses.includes('exists'), statuses.join(','));
});

test('idempotent requests are retried after 5xx', async () => {
  const n = proxy.requests.length;
  proxy.failNext = 2;
  const got = await pull(client, `${proxy.domain}/berth/app:v1`, { store: new MemoryStore(), concurrency: 1 });
  assert.equal(got.target.digest, image.manifest.digest);
  const first = since(n).slice(0, 3);
  assert.deepEqual(first.map((r) => r.status), [503, 503, 200]);
  assert.equal(new Set(first.map((r) => `${r.method} ${r.path}`)).size, 1);
});

test('digests of what we build match the registry\'s', async () => {
  const repo = client.repository({ domain: registry.domain, path: 'berth/app' });
  const head = await repo.headManifest('v1');
  assert.deepEqual(head, { mediaType: image.manifest.mediaType, digest: image.manifest.digest, size: image.manifest.size });
  assert.equal(await repo.headBlob(bigLayer.digest), bigLayer.size);
  assert.equal(await repo.headBlob(sha256(Buffer.from('nothing'))), undefined);
});

test('an aborted pull stops with Canceled and stores no layer', async () => {
  const store = new MemoryStore();
  const ac = new AbortController();
  proxy.delayMs = 200;
  try {
    const p = pull(client, `${proxy.domain}/berth/app:v1`, { store, signal: ac.signal });
    await sleep(50);
    ac.abort();
    await assert.rejects(p, (err: unknown) => {
      assert.ok(err instanceof BerthError);
      assert.equal(err.kind, 'Canceled');
      return true;
    });
  } finally {
    proxy.delayMs = 0;
  }
  for (const l of image.layers) assert.ok(!store.blobs.has(l.digest));
});
