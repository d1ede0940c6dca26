/**
 * The Images service of berth-containerd: records made through the API and
 * seen, tagged, labelled and removed by the real ctr (Debian's containerd
 * 1.6), which reads the manifest and config through the Content service to
 * show sizes and platforms; filters, field masks, errors in containerd's
 * words, and the /images/* events with their payloads.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { status } from '@grpc/grpc-js';
import { CTR, EVENTS, ctrOk, grpcError, loadProtos, rows, useDaemon } from './_daemon.js';
import type { Msg } from './_daemon.js';

const IMAGES = 'containerd.services.images.v1.Images';
const NS = 'imgtest';
const { dirs, client } = useDaemon();

function digestOf(b: Uint8Array): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** Put bytes into the content store with ctr content ingest. */
function ingest(data: Buffer, ref: string): { digest: string; size: number } {
  const digest = digestOf(data);
  const r = spawnSync(CTR, ['--address', dirs.address, '--namespace', NS, 'content', 'ingest', '--expected-digest', digest, '--expected-size', String(data.length), ref], { input: data });
  assert.equal(r.status, 0, r.stderr.toString());
  return { digest, size: data.length };
}

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

function makeImage(): { target: Msg; total: number } {
  const layer = randomBytes(20_000);
  const layerDesc = ingest(layer, 'layer');
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [digestOf(randomBytes(8))] },
  }));
  const configDesc = ingest(config, 'config');
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configDesc },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layerDesc }],
  }));
  const manifestDesc = ingest(manifest, 'manifest');
  return {
    target: { media_type: MANIFEST, digest: manifestDesc.digest, size: manifestDesc.size, annotations: {} },
    total: layerDesc.size + configDesc.size + manifestDesc.size,
  };
}

test('images: API records that ctr lists, tags, labels and removes; filters, masks, errors, events', async (t) => {
  const api = client();
  const protos = loadProtos();
  const events = api.stream(EVENTS, 'Subscribe', { filters: [`namespace==${NS},topic~="^/images/"`] });
  t.after(() => events.cancel());
  const got: Msg[] = [];
  events.on('data', (m: Msg) => got.push(m));
  events.on('error', () => { /* cancelled at the end */ });
  await sleep(200);

  const { target, total } = makeImage();
  const name = 'example.com/berth/app:1';
  const created = (await api.unary(IMAGES, 'Create', { image: { name, target, labels: { a: '1' } } }, NS))['image'] as Msg;
  assert.equal(created['name'], name);
  assert.deepEqual(created['labels'], { a: '1' });
  assert.deepEqual(created['target'], target);
  assert.ok(Number((created['created_at'] as Msg)['seconds']) > 0);
  assert.deepEqual(created['created_at'], created['updated_at']);

  // Errors in containerd's words.
  const dup = await grpcError(api.unary(IMAGES, 'Create', { image: { name, target } }, NS));
  assert.deepEqual(dup, { code: status.ALREADY_EXISTS, details: `image "${name}": already exists` });
  assert.deepEqual(await grpcError(api.unary(IMAGES, 'Create', { image: { target } }, NS)), { code: status.INVALID_ARGUMENT, details: 'Image.Name required: invalid argument' });
  const badDigest = await grpcError(api.unary(IMAGES, 'Create', { image: { name: 'x', target: { ...target, digest: 'sha256:12' } } }, NS));
  assert.equal(badDigest.code, status.INVALID_ARGUMENT);
  assert.match(badDigest.details, /^Target.Digest "sha256:12" invalid: invalid checksum digest length/);
  assert.match((await grpcError(api.unary(IMAGES, 'Create', { image: { name: 'x', target: { ...target, size: 0 } } }, NS))).details, /Target.Size must be greater than zero/);
  assert.match((await grpcError(api.unary(IMAGES, 'Create', { image: { name: 'x', target: { ...target, media_type: '' } } }, NS))).details, /Target.MediaType must be set/);
  assert.deepEqual(await grpcError(api.unary(IMAGES, 'Get', { name: 'nope' }, NS)), { code: status.NOT_FOUND, details: 'image "nope": not found' });
  assert.equal((await grpcError(api.unary(IMAGES, 'List', {}))).code, status.FAILED_PRECONDITION);

  // ctr reads the manifest and config through the Content service for size and platform.
  const ls = rows(ctrOk(dirs.address, ['images', 'ls'], NS));
  assert.equal(ls.length, 1);
  // Columns: REF TYPE DIGEST SIZE (two words: "20.1 KiB") PLATFORMS LABELS; the size sums manifest, config and layer.
  const [ref, type, digest, size, unit, platform, labels] = ls[0] ?? [];
  assert.deepEqual([ref, type, digest, `${size ?? ''} ${unit ?? ''}`, platform, labels], [name, MANIFEST, target['digest'], `${(total / 1024).toFixed(1)} KiB`, 'linux/amd64', 'a=1']);

  ctrOk(dirs.address, ['images', 'tag', name, 'example.com/berth/app:2'], NS);
  ctrOk(dirs.address, ['images', 'label', name, 'b=2'], NS);
  assert.deepEqual(rows(ctrOk(dirs.address, ['images', 'ls', '-q'], NS).replace(/^/, 'REF\n')).map((r) => r[0]), [name, 'example.com/berth/app:2']);
  const tagged = (await api.unary(IMAGES, 'Get', { name: 'example.com/berth/app:2' }, NS))['image'] as Msg;
  assert.deepEqual(tagged['target'], target);
  assert.deepEqual(((await api.unary(IMAGES, 'Get', { name }, NS))['image'] as Msg)['labels'], { a: '1', b: '2' });

  // Filters.
  const names = async (filters: string[]): Promise<string[]> =>
    ((await api.unary(IMAGES, 'List', { filters }, NS))['images'] as Msg[]).map((i) => String(i['name']));
  assert.deepEqual(await names([]), [name, 'example.com/berth/app:2']);
  assert.deepEqual(await names([`name==${name}`]), [name]);
  assert.deepEqual(await names([`name~=":2$"`]), ['example.com/berth/app:2']);
  assert.deepEqual(await names([`target.digest==${String(target['digest'])}`]), [name, 'example.com/berth/app:2']);
  assert.deepEqual(await names([`target.mediatype=="${MANIFEST}"`]), [name, 'example.com/berth/app:2']);
  assert.deepEqual(await names(['labels.b==2']), [name]);
  assert.deepEqual(await names(['labels.a', 'name==nothing']), [name, 'example.com/berth/app:2']);
  assert.deepEqual(await names(['labels.a==2']), []);

  // Update: masks on labels and annotations; no mask replaces; unknown paths refused.
  const upd = async (image: Msg, paths?: string[]): Promise<Msg> =>
    (await api.unary(IMAGES, 'Update', { image, ...(paths === undefined ? {} : { update_mask: { paths } }) }, NS))['image'] as Msg;
  const u1 = await upd({ name, labels: { a: '', c: '3' }, target: { annotations: { 'org.example': 'yes' } } }, ['labels.a', 'labels.c', 'annotations.org.example']);
  assert.deepEqual(u1['labels'], { b: '2', c: '3' });
  assert.deepEqual((u1['target'] as Msg)['annotations'], { 'org.example': 'yes' });
  assert.equal((u1['target'] as Msg)['digest'], target['digest']);
  assert.deepEqual(u1['created_at'], created['created_at']);
  assert.notDeepEqual(u1['updated_at'], created['updated_at']);
  const u2 = await upd({ name, labels: { only: 'x' }, target });
  assert.deepEqual(u2['labels'], { only: 'x' });
  assert.deepEqual(u2['target'], target);
  assert.match((await grpcError(api.unary(IMAGES, 'Update', { image: { name }, update_mask: { paths: ['name'] } }, NS))).details, /cannot update "name" field on image/);
  assert.equal((await grpcError(api.unary(IMAGES, 'Update', { image: { name: 'nope', target } }, NS))).code, status.NOT_FOUND);
  assert.deepEqual(await grpcError(api.unary(IMAGES, 'Update', { image: { target } }, NS)), { code: status.INVALID_ARGUMENT, details: 'Image.Name required: invalid argument' });

  // A namespace holding images cannot be deleted.
  const nsDel = await grpcError(api.unary('containerd.services.namespaces.v1.Namespaces', 'Delete', { name: NS }));
  assert.equal(nsDel.code, status.FAILED_PRECONDITION);
  assert.match(nsDel.details, /images/);

  // Delete: ctr rm, then through the API with a target that must match.
  ctrOk(dirs.address, ['images', 'rm', 'example.com/berth/app:2'], NS);
  assert.deepEqual(await names([]), [name]);
  const other = { ...target, digest: digestOf(Buffer.from('other')) };
  assert.equal((await grpcError(api.unary(IMAGES, 'Delete', { name, target: other }, NS))).code, status.NOT_FOUND);
  await api.unary(IMAGES, 'Delete', { name, sync: true, target }, NS);
  assert.deepEqual(await names([]), []);
  assert.equal((await grpcError(api.unary(IMAGES, 'Delete', { name }, NS))).code, status.NOT_FOUND);
  assert.deepEqual(rows(ctrOk(dirs.address, ['images', 'ls'], NS)), []);

  // The events, in order, with containerd's payload types.
  const deadline = Date.now() + 5000;
  while (got.length < 7 && Date.now() < deadline) await sleep(50);
  const seen = got.map((e) => {
    const any = e['event'] as Msg;
    const v = protos.decode(String(any['type_url']), any['value'] as Buffer);
    return [e['topic'], any['type_url'], v['name'], v['labels'] ?? null];
  });
  assert.deepEqual(seen, [
    ['/images/create', 'containerd.services.images.v1.ImageCreate', name, { a: '1' }],
    ['/images/create', 'containerd.services.images.v1.ImageCreate', 'example.com/berth/app:2', { a: '1' }],
    ['/images/update', 'containerd.services.images.v1.ImageUpdate', name, { a: '1', b: '2' }],
    ['/images/update', 'containerd.services.images.v1.ImageUpdate', name, { b: '2', c: '3' }],
    ['/images/update', 'containerd.services.images.v1.ImageUpdate', name, { only: 'x' }],
    ['/images/delete', 'containerd.services.images.v1.ImageDelete', 'example.com/berth/app:2', null],
    ['/images/delete', 'containerd.services.images.v1.ImageDelete', name, null],
  ]);
});
