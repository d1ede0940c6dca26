import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isKind } from '@berth/base';
import { parseFilters } from '../filters.js';
import { MetadataStore } from './store.js';
import type { ContainerInput } from './store.js';

function tempStore(t: test.TestContext): { dir: string; store: MetadataStore } {
  const dir = mkdtempSync(join(tmpdir(), 'berth-meta-'));
  const store = MetadataStore.open(join(dir, 'meta.db'));
  t.after(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, store };
}

const spec = { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Spec', value: Buffer.from('{"ociVersion":"1.0.2"}') };

function container(id: string, extra: Partial<ContainerInput> = {}): ContainerInput {
  return {
    id, labels: {}, image: '', runtime: { name: 'io.containerd.runc.v2', options: undefined }, spec,
    snapshotter: '', snapshotKey: '', extensions: {}, sandbox: '', ...extra,
  };
}

test('namespaces: create, labels, list, delete only when empty', (t) => {
  const { store } = tempStore(t);
  store.createNamespace({ name: 'a', labels: { x: '1', empty: '' } });
  assert.deepEqual(store.getNamespace('a'), { name: 'a', labels: { x: '1' } });
  assert.throws(() => store.createNamespace({ name: 'a', labels: {} }), (e) => isKind(e, 'AlreadyExists'));
  assert.throws(() => store.createNamespace({ name: 'bad/name', labels: {} }), (e) => isKind(e, 'InvalidArgument'));
  store.updateNamespace('a', (cur) => ({ ...cur.labels, y: '2' }));
  assert.deepEqual(store.getNamespace('a').labels, { x: '1', y: '2' });
  store.createContainer('a', container('c1'));
  assert.throws(() => store.deleteNamespace('a'), (e: unknown) =>
    isKind(e, 'FailedPrecondition') && /namespace "a" must be empty, but it still has containers/.test((e as Error).message));
  store.deleteContainer('a', 'c1');
  store.deleteNamespace('a');
  assert.throws(() => store.getNamespace('a'), (e) => isKind(e, 'NotFound'));
  assert.throws(() => store.deleteNamespace('a'), (e) => isKind(e, 'NotFound'));
});

test('containers: round trip with Any bytes, labels, extensions; implicit namespace', (t) => {
  const { store } = tempStore(t);
  const opts = { type_url: 'containerd.runc.v1.Options', value: Buffer.from([0x0a, 0x03, 0x00, 0xff, 0x80]) };
  const ext = { type_url: 'x/y', value: Buffer.alloc(0) };
  const created = store.createContainer('ns1', container('c1', {
    labels: { a: 'b', gone: '' }, image: 'img', runtime: { name: 'io.containerd.runc.v2', options: opts },
    snapshotter: 'overlayfs', snapshotKey: 'c1-snap', extensions: { e1: ext }, sandbox: 'sb',
  }));
  assert.deepEqual(created.labels, { a: 'b' });
  assert.deepEqual(created.runtime.options, opts);
  assert.deepEqual(created.spec, spec);
  assert.deepEqual(created.extensions, { e1: ext });
  assert.equal(created.snapshotKey, 'c1-snap');
  assert.deepEqual(store.listNamespaces().map((n) => n.name), ['ns1']);
  assert.deepEqual(store.getContainer('ns1', 'c1'), created);
  assert.throws(() => store.getContainer('other', 'c1'), (e) => isKind(e, 'NotFound'));
  assert.throws(() => store.createContainer('ns1', container('c1')), (e) => isKind(e, 'AlreadyExists'));
  assert.throws(() => store.createContainer('ns1', container('c2', { runtime: { name: '', options: undefined } })), (e) => isKind(e, 'InvalidArgument'));
  assert.throws(() => store.createContainer('ns1', container('c3', { snapshotKey: 'k' })), (e) => isKind(e, 'InvalidArgument'));

  const updated = store.updateContainer('ns1', 'c1', (cur) => ({ ...cur, image: 'img2', labels: { ...cur.labels, z: 'w' } }));
  assert.equal(updated.image, 'img2');
  assert.deepEqual(updated.createdAt, created.createdAt);
  assert.ok(updated.updatedAt.seconds * 1e9 + updated.updatedAt.nanos >= created.updatedAt.seconds * 1e9 + created.updatedAt.nanos);
  assert.deepEqual(updated.extensions, { e1: ext });
});

test('a failed update leaves the record as it was', (t) => {
  const { store } = tempStore(t);
  store.createContainer('ns', container('c1', { labels: { a: '1' } }));
  assert.throws(() => store.updateContainer('ns', 'c1', (cur) => ({ ...cur, labels: { b: '2' }, runtime: { name: '', options: undefined } })));
  assert.deepEqual(store.getContainer('ns', 'c1').labels, { a: '1' });
  assert.deepEqual(store.check(), []);
});

test('list with filters', (t) => {
  const { store } = tempStore(t);
  store.createContainer('ns', container('a1', { image: 'busybox', labels: { tier: 'web' } }));
  store.createContainer('ns', container('b2', { image: 'nginx', labels: { tier: 'db' } }));
  store.createContainer('ns', container('c3', { image: 'nginx' }));
  const ids = (f: string[]): string[] => store.listContainers('ns', parseFilters(f)).map((c) => c.id);
  assert.deepEqual(ids([]), ['a1', 'b2', 'c3']);
  assert.deepEqual(ids(['image==nginx']), ['b2', 'c3']);
  assert.deepEqual(ids(['image==nginx,labels.tier']), ['b2']);
  assert.deepEqual(ids(['labels.tier==web', 'id==c3']), ['a1', 'c3']);
  assert.deepEqual(ids(['runtime.name==io.containerd.runc.v2,image~=^busy']), ['a1']);
});

test('a second open of the same database is refused while the first holds it', (t) => {
  const { dir } = tempStore(t);
  assert.throws(() => MetadataStore.open(join(dir, 'meta.db')), (e: unknown) =>
    isKind(e, 'Unavailable') && /in use by another process/.test((e as Error).message));
});
