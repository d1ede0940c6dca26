/**
 * Garbage collection in berth-containerd, against the real daemon and ctr:
 * what leases, images (through gc.ref labels), containers and gc.root keep
 * survives a collection and the rest goes, records and files both; leased
 * writes in progress survive a collection; expiring leases expire.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Metadata, credentials } from '@grpc/grpc-js';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { CONTAINERS, CTR, ctrOk, loadProtos, rows, specAny, useDaemon } from './_daemon.js';
import type { Msg } from './_daemon.js';

const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root (overlayfs snapshots)';

const CONTENT = 'containerd.services.content.v1.Content';
const IMAGES = 'containerd.services.images.v1.Images';
const LEASES = 'containerd.services.leases.v1.Leases';
const SNAPSHOTS = 'containerd.services.snapshots.v1.Snapshots';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const CONFIG = 'application/vnd.oci.image.config.v1+json';
const LAYER = 'application/vnd.oci.image.layer.v1.tar';

const { dirs, client } = useDaemon();

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

function blobFile(digest: string): string {
  return join(dirs.root, 'content', 'blobs', 'sha256', digest.slice('sha256:'.length));
}

function metadata(ns: string, lease?: string): Metadata {
  const md = new Metadata();
  md.set('containerd-namespace', ns);
  if (lease !== undefined) md.set('containerd-lease', lease);
  return md;
}

/** Calls with a lease in their metadata, as the Go client sends them. */
class Leased {
  private readonly client = new Client(`unix:${dirs.address}`, credentials.createInsecure());
  private readonly protos = loadProtos();

  constructor(readonly ns: string, readonly lease: string) {}

  unary(service: string, name: string, request: Msg): Promise<Msg> {
    const m = this.protos.service(service)[name];
    if (m === undefined) throw new Error(`no method ${service}/${name}`);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest<Msg, Msg>(m.path, (v) => m.requestSerialize(v), (b) => m.responseDeserialize(b) as Msg,
        request, metadata(this.ns, this.lease), { deadline: Date.now() + 20_000 },
        (err: ServiceError | null, res?: Msg) => (err ? reject(err) : resolve(res ?? {})));
    });
  }

  /** A Write stream: send one message, get its response. */
  writer(): { send(m: Msg): Promise<Msg>; end(): void } {
    const m = this.protos.service(CONTENT)['Write'];
    if (m === undefined) throw new Error('no Write method');
    const call: ClientDuplexStream<Msg, Msg> = this.client.makeBidiStreamRequest<Msg, Msg>(
      m.path, (v) => m.requestSerialize(v), (b) => m.responseDeserialize(b) as Msg, metadata(this.ns, this.lease));
    const waiting: { resolve(v: Msg): void; reject(e: Error): void }[] = [];
    call.on('data', (d: Msg) => waiting.shift()?.resolve(d));
    call.on('error', (e: Error) => { for (const w of waiting.splice(0)) w.reject(e); });
    return {
      send: (msg) => new Promise<Msg>((resolve, reject) => {
        waiting.push({ resolve, reject });
        call.write(msg);
      }),
      end: () => call.end(),
    };
  }

  close(): void {
    this.client.close();
  }
}

async function createLease(ns: string, id: string, labels: Record<string, string> = {}): Promise<void> {
  await client().unary(LEASES, 'Create', { id, labels }, ns);
}

/** A collection that starts now, waited for: `ctr leases rm --sync` of a throwaway lease. */
async function collect(ns: string): Promise<void> {
  const id = `gc-${Math.random().toString(16).slice(2)}`;
  await createLease(ns, id);
  ctrOk(dirs.address, ['leases', 'rm', '--sync', id], ns);
}

/** Write a blob in one leased Write stream. */
async function leasedBlob(l: Leased, data: Buffer, labels: Record<string, string> = {}): Promise<string> {
  const digest = sha256(data);
  const w = l.writer();
  try {
    await w.send({ action: 'COMMIT', ref: `w-${digest}`, total: data.length, expected: digest, offset: 0, data, labels });
  } finally {
    w.end();
  }
  return digest;
}

/** Ingest a blob with ctr (no lease, as ctr content ingest does). */
function ingest(ns: string, data: Buffer): string {
  const digest = sha256(data);
  const r = spawnSync(CTR, ['--address', dirs.address, '--namespace', ns, 'content', 'ingest', '--expected-digest', digest,
    '--expected-size', String(data.length), `in-${digest.slice(7, 19)}`], { input: data, timeout: 20_000 });
  if (r.status !== 0) throw new Error(`ctr content ingest: ${r.stderr.toString()}`);
  return digest;
}

function contentList(ns: string): string[] {
  return rows(ctrOk(dirs.address, ['content', 'ls', '--quiet'], ns).replace(/^/, 'DIGEST\n')).map((r) => r[0] ?? '').sort();
}

function snapshotNames(ns: string): string[] {
  return rows(ctrOk(dirs.address, ['snapshots', 'ls'], ns)).map((r) => r[0] ?? '').sort();
}

function overlayDirs(): string[] {
  const d = join(dirs.root, 'snapshots', 'overlayfs', 'snapshots');
  return existsSync(d) ? readdirSync(d) : [];
}

async function until(what: string, pred: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

/** Leave the namespace empty (and collect), whatever a test left behind. */
async function clear(ns: string): Promise<void> {
  for (const id of rows(ctrOk(dirs.address, ['containers', 'ls', '--quiet'], ns).replace(/^/, 'ID\n')).map((r) => r[0] ?? '')) {
    if (id !== '') await client().unary(CONTAINERS, 'Delete', { id }, ns);
  }
  for (const r of rows(ctrOk(dirs.address, ['images', 'ls', '--quiet'], ns).replace(/^/, 'REF\n'))) {
    if (r[0] !== undefined && r[0] !== '') await client().unary(IMAGES, 'Delete', { name: r[0] }, ns);
  }
  for (const r of rows(ctrOk(dirs.address, ['leases', 'ls'], ns))) {
    if (r[0] !== undefined && r[0] !== '') await client().unary(LEASES, 'Delete', { id: r[0] }, ns);
  }
  await collect(ns);
}

test('content written under a lease survives collections until the lease goes, then the record and the blob go', { skip }, async (t) => {
  const ns = 'gc-lease';
  t.after(() => clear(ns));
  await createLease(ns, 'hold');
  const l = new Leased(ns, 'hold');
  t.after(() => l.close());
  const kept = await leasedBlob(l, Buffer.from('held by a lease\n'));
  const loose = ingest(ns, Buffer.from('held by nothing\n'));
  assert.deepEqual(contentList(ns), [kept, loose].sort());
  const res = await client().unary(LEASES, 'ListResources', { id: 'hold' }, ns);
  assert.deepEqual(res['resources'], [{ id: kept, type: 'content' }], 'the commit put the digest (and took the ingest) in the lease');

  await collect(ns);
  assert.deepEqual(contentList(ns), [kept]);
  assert.ok(existsSync(blobFile(kept)));
  assert.ok(!existsSync(blobFile(loose)), 'the unreferenced blob file is gone');

  ctrOk(dirs.address, ['leases', 'rm', '--sync', 'hold'], ns);
  assert.deepEqual(contentList(ns), []);
  assert.ok(!existsSync(blobFile(kept)));
});

test('a blob another namespace still sees keeps its file when one namespace lets go', { skip }, async (t) => {
  t.after(async () => { await clear('gc-ns-a'); await clear('gc-ns-b'); });
  await createLease('gc-ns-a', 'a');
  await createLease('gc-ns-b', 'b');
  const data = Buffer.from('shared between namespaces\n');
  const la = new Leased('gc-ns-a', 'a');
  const lb = new Leased('gc-ns-b', 'b');
  t.after(() => { la.close(); lb.close(); });
  const d = await leasedBlob(la, data);
  await assert.rejects(leasedBlob(lb, data), /already exists/, 'the blob is adopted, not written again');
  assert.deepEqual((await client().unary(LEASES, 'ListResources', { id: 'b' }, 'gc-ns-b'))['resources'], [{ id: d, type: 'content' }]);
  ctrOk(dirs.address, ['leases', 'rm', '--sync', 'a'], 'gc-ns-a');
  assert.deepEqual(contentList('gc-ns-a'), []);
  assert.deepEqual(contentList('gc-ns-b'), [d]);
  assert.ok(existsSync(blobFile(d)));
  ctrOk(dirs.address, ['leases', 'rm', '--sync', 'b'], 'gc-ns-b');
  assert.ok(!existsSync(blobFile(d)));
});

/** A manifest, config and layer, labelled as ctr pull labels them. */
function writeImage(ns: string, configLabels: Record<string, string> = {}): { manifest: string; config: string; layer: string; size: number } {
  const layer = ingest(ns, Buffer.from(`a layer of ${ns}\n`.padEnd(1024, '.')));
  const configBytes = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer] } }));
  const config = ingest(ns, configBytes);
  const manifestBytes = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MANIFEST,
    config: { mediaType: CONFIG, digest: config, size: configBytes.length },
    layers: [{ mediaType: LAYER, digest: layer, size: 1024 }],
  }));
  const manifest = ingest(ns, manifestBytes);
  ctrOk(dirs.address, ['content', 'label', manifest, `containerd.io/gc.ref.content.config=${config}`, `containerd.io/gc.ref.content.l.0=${layer}`], ns);
  const extra = Object.entries(configLabels).map(([k, v]) => `${k}=${v}`);
  if (extra.length > 0) ctrOk(dirs.address, ['content', 'label', config, ...extra], ns);
  return { manifest, config, layer, size: manifestBytes.length };
}

test('an image keeps its manifest, config and layers through gc.ref labels; ctr images rm --sync removes them all', { skip }, async (t) => {
  const ns = 'gc-image';
  t.after(() => clear(ns));
  const img = writeImage(ns);
  await client().unary(IMAGES, 'Create', { image: { name: 'example.com/gc/app:1', target: { media_type: MANIFEST, digest: img.manifest, size: img.size } } }, ns);
  await collect(ns);
  assert.deepEqual(contentList(ns), [img.manifest, img.config, img.layer].sort());

  ctrOk(dirs.address, ['images', 'rm', '--sync', 'example.com/gc/app:1'], ns);
  assert.deepEqual(contentList(ns), []);
  for (const d of [img.manifest, img.config, img.layer]) assert.ok(!existsSync(blobFile(d)), `${d} is removed from disk`);
});

test('a container keeps its snapshot chain; deleting it lets the chain go (children before parents)', { skip }, async (t) => {
  const ns = 'gc-container';
  t.after(() => clear(ns));
  const before = overlayDirs().length;
  await createLease(ns, 'unpack');
  const l = new Leased(ns, 'unpack');
  t.after(() => l.close());
  await l.unary(SNAPSHOTS, 'Prepare', { key: 'k1' });
  await l.unary(SNAPSHOTS, 'Commit', { key: 'k1', name: 'layer1' });
  await l.unary(SNAPSHOTS, 'Prepare', { key: 'k2', parent: 'layer1' });
  await l.unary(SNAPSHOTS, 'Commit', { key: 'k2', name: 'layer2' });
  await l.unary(SNAPSHOTS, 'Prepare', { key: 'rootfs', parent: 'layer2' });
  const held = (await client().unary(LEASES, 'ListResources', { id: 'unpack' }, ns))['resources'] as Msg[];
  assert.deepEqual(held.map((r) => `${String(r['type'])} ${String(r['id'])}`).sort(),
    ['snapshots/overlayfs layer1', 'snapshots/overlayfs layer2', 'snapshots/overlayfs rootfs'], 'commits replace the active keys in the lease');
  await client().unary(SNAPSHOTS, 'Prepare', { key: 'stray' }, ns);
  await client().unary(CONTAINERS, 'Create', {
    container: { id: 'c1', runtime: { name: 'io.containerd.runc.v2' }, spec: specAny({}), snapshotter: 'overlayfs', snapshot_key: 'rootfs', image: 'not/a/ref' },
  }, ns);

  ctrOk(dirs.address, ['leases', 'rm', '--sync', 'unpack'], ns);
  assert.deepEqual(snapshotNames(ns), ['layer1', 'layer2', 'rootfs']);
  assert.equal(overlayDirs().length, before + 3);

  await client().unary(CONTAINERS, 'Delete', { id: 'c1' }, ns);
  await until('the chain is collected after the container delete', () => snapshotNames(ns).length === 0);
  await until('its directories are gone', () => overlayDirs().length === before);
});

test('a snapshot referenced only by a gc.ref.snapshot label on an image config survives; the image delete takes it', { skip }, async (t) => {
  const ns = 'gc-unpacked';
  t.after(() => clear(ns));
  await createLease(ns, 'pull');
  const l = new Leased(ns, 'pull');
  t.after(() => l.close());
  await l.unary(SNAPSHOTS, 'Prepare', { key: 'extract-1', labels: { 'containerd.io/snapshot.ref': 'chain-a' } });
  await l.unary(SNAPSHOTS, 'Commit', { key: 'extract-1', name: 'chain-a' });
  const img = writeImage(ns, { 'containerd.io/gc.ref.snapshot.overlayfs': 'chain-a' });
  await client().unary(IMAGES, 'Create', { image: { name: 'example.com/gc/unpacked:1', target: { media_type: MANIFEST, digest: img.manifest, size: img.size } } }, ns);
  // Labelled root snapshots stay whatever else happens.
  await client().unary(SNAPSHOTS, 'Prepare', { key: 'pinned', labels: { 'containerd.io/gc.root': '2024-01-01T00:00:00Z' } }, ns);

  ctrOk(dirs.address, ['leases', 'rm', '--sync', 'pull'], ns);
  assert.deepEqual(snapshotNames(ns), ['chain-a', 'pinned']);
  assert.equal(contentList(ns).length, 3);

  ctrOk(dirs.address, ['images', 'rm', '--sync', 'example.com/gc/unpacked:1'], ns);
  assert.deepEqual(snapshotNames(ns), ['pinned']);
  assert.deepEqual(contentList(ns), []);
  await client().unary(SNAPSHOTS, 'Remove', { key: 'pinned' }, ns);
});

test('collections while another client is in the middle of leased writes remove nothing of them', { skip }, async (t) => {
  const ns = 'gc-race';
  t.after(() => clear(ns));
  await createLease(ns, 'busy');
  const l = new Leased(ns, 'busy');
  t.after(() => l.close());
  const data = Buffer.alloc(256 * 1024, 7);
  const digest = sha256(data);
  const w = l.writer();
  try {
    await w.send({ action: 'WRITE', ref: 'slow', total: data.length, expected: digest, offset: 0, data: data.subarray(0, 100_000) });
    await collect(ns);
    const st = await client().unary(CONTENT, 'Status', { ref: 'slow' }, ns);
    assert.equal((st['status'] as Msg)['offset'], 100_000, 'the ingest is still there, at its offset');
    // Commit while collections run alongside.
    const [done] = await Promise.all([
      w.send({ action: 'COMMIT', ref: 'slow', total: data.length, expected: digest, offset: 100_000, data: data.subarray(100_000) }),
      collect(ns), collect(ns),
    ]);
    assert.equal(done['digest'], digest);
  } finally {
    w.end();
  }
  // Snapshots prepared under the lease while collections run.
  await Promise.all([
    ...['p1', 'p2', 'p3'].map((key) => l.unary(SNAPSHOTS, 'Prepare', { key })),
    collect(ns), collect(ns),
  ]);
  await collect(ns);
  assert.deepEqual(contentList(ns), [digest]);
  assert.ok(existsSync(blobFile(digest)));
  assert.deepEqual(snapshotNames(ns), ['p1', 'p2', 'p3']);

  ctrOk(dirs.address, ['leases', 'rm', '--sync', 'busy'], ns);
  assert.deepEqual(contentList(ns), []);
  assert.deepEqual(snapshotNames(ns), []);
});

test('a lease with containerd.io/gc.expire expires by itself, and what it held goes', { skip }, async (t) => {
  const ns = 'gc-expire';
  t.after(() => clear(ns));
  await createLease(ns, 'short', { 'containerd.io/gc.expire': new Date(Date.now() + 1500).toISOString() });
  await createLease(ns, 'long', { 'containerd.io/gc.expire': new Date(Date.now() + 3_600_000).toISOString() });
  const l = new Leased(ns, 'short');
  t.after(() => l.close());
  const d = await leasedBlob(l, Buffer.from('for a short while\n'));
  await l.unary(SNAPSHOTS, 'Prepare', { key: 'brief' });
  assert.deepEqual(contentList(ns), [d]);
  await until('the lease expires', () => !rows(ctrOk(dirs.address, ['leases', 'ls'], ns)).some((r) => r[0] === 'short'), 5000);
  await until('its content is collected', () => contentList(ns).length === 0, 2000);
  assert.ok(!existsSync(blobFile(d)));
  assert.deepEqual(snapshotNames(ns), []);
  assert.deepEqual(rows(ctrOk(dirs.address, ['leases', 'ls'], ns)).map((r) => r[0]), ['long']);
});

test('a write naming a lease that does not exist is refused', { skip }, async (t) => {
  const ns = 'gc-nolease';
  t.after(() => clear(ns));
  const l = new Leased(ns, 'missing');
  t.after(() => l.close());
  await assert.rejects(leasedBlob(l, Buffer.from('x')), /lease "missing": not found/);
  await assert.rejects(l.unary(SNAPSHOTS, 'Prepare', { key: 'x' }), /lease "missing": not found/);
  assert.deepEqual(snapshotNames(ns), []);
});
