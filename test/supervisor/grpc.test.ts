/**
 * The Containers, Namespaces, Version and Introspection services through a
 * grpc-js client: what ctr cannot do without tasks and snapshots. Error codes
 * and messages are compared with a real containerd 1.6 doing the same calls.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import {
  Api, CONTAINERS, INTROSPECTION, NAMESPACES, EVENTS, VERSION_SVC, grpcError, specAny, useDaemon,
} from './_daemon.js';
import type { Msg } from './_daemon.js';
import { RealContainerd, containerdMissing } from './_containerd.js';

const { daemon: currentDaemon, client } = useDaemon();

const RUNC = 'io.containerd.runc.v2';
const asRecord = (v: unknown): Msg => {
  assert.ok(typeof v === 'object' && v !== null);
  return v as Msg;
};

test('Version and Introspection.Server', async () => {
  assert.deepEqual(await client().unary(VERSION_SVC, 'Version', {}), { version: '0.1.0+berth', revision: 'berth-containerd' });
  const server = await client().unary(INTROSPECTION, 'Server', {});
  assert.match(String(server['uuid']), /^[0-9a-f-]{36}$/);
  assert.equal(server['pid'], currentDaemon()?.pid);
  assert.ok(Number(server['pidns']) > 0);
  const info = await client().unary(INTROSPECTION, 'PluginInfo', { type: 'io.containerd.grpc.v1', id: 'containers' });
  assert.equal(asRecord(info['plugin'])['id'], 'containers');
});

test('containers: Any payloads and every field round trip byte for byte', async () => {
  const opts = { type_url: 'containerd.runc.v1.Options', value: randomBytes(300) };
  const spec = { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Spec', value: randomBytes(4096) };
  const ext = { type_url: 'example.com/ext', value: Buffer.from([0, 1, 2, 0xff]) };
  const before = Date.now() / 1000;
  const created = asRecord((await client().unary(CONTAINERS, 'Create', {
    container: {
      id: 'rt1', image: 'docker.io/library/busybox:latest', labels: { a: '1', 'containerd.io/x': 'y' },
      runtime: { name: RUNC, options: opts }, spec, snapshotter: 'overlayfs', snapshot_key: 'rt1-snap',
      extensions: { ext1: ext }, sandbox: 'sb1',
    },
  }, 'rt'))['container']);
  const got = asRecord((await client().unary(CONTAINERS, 'Get', { id: 'rt1' }, 'rt'))['container']);
  assert.deepEqual(got, created);
  assert.equal(got['id'], 'rt1');
  assert.deepEqual(got['labels'], { a: '1', 'containerd.io/x': 'y' });
  assert.deepEqual(asRecord(got['runtime']), { name: RUNC, options: opts });
  assert.deepEqual(got['spec'], spec);
  assert.deepEqual(got['extensions'], { ext1: ext });
  assert.equal(got['snapshotter'], 'overlayfs');
  assert.equal(got['snapshot_key'], 'rt1-snap');
  assert.equal(got['sandbox'], 'sb1');
  const createdAt = asRecord(got['created_at']);
  assert.ok(Number(createdAt['seconds']) >= Math.floor(before) && Number(createdAt['seconds']) <= Date.now() / 1000 + 1);
  assert.deepEqual(got['updated_at'], got['created_at']);
});

test('containers: list with filters, ListStream, namespaces kept apart', async () => {
  const mk = (id: string, image: string, labels: Record<string, string>, ns = 'flt'): Promise<Msg> =>
    client().unary(CONTAINERS, 'Create', { container: { id, image, labels, runtime: { name: RUNC }, spec: specAny({ id }) } }, ns);
  await mk('a1', 'docker.io/library/nginx:1', { tier: 'web', 'com.example.team': 'x y' });
  await mk('a2', 'docker.io/library/nginx:2', { tier: 'web' });
  await mk('b1', 'docker.io/library/postgres:16', { tier: 'db' });
  await mk('a1', 'other', {}, 'flt2');
  const ids = async (filters: string[]): Promise<string[]> => {
    const r = await client().unary(CONTAINERS, 'List', { filters }, 'flt');
    return (r['containers'] as Msg[]).map((c) => String(c['id']));
  };
  assert.deepEqual(await ids([]), ['a1', 'a2', 'b1']);
  assert.deepEqual(await ids(['labels.tier==web']), ['a1', 'a2']);
  assert.deepEqual(await ids(['labels."com.example.team"=="x y"']), ['a1']);
  assert.deepEqual(await ids(['labels.com.example.team']), ['a1']);
  assert.deepEqual(await ids(['image~=nginx:[2-9]', 'id==b1']), ['a2', 'b1']);
  assert.deepEqual(await ids(['image~=nginx,labels.tier!=web']), []);
  assert.deepEqual(await ids(['runtime.name==io.containerd.runc.v2,id!=a1']), ['a2', 'b1']);
  assert.deepEqual(await ids(['image~=/library\\/postgres/']), ['b1']);

  const s = client().stream(CONTAINERS, 'ListStream', { filters: ['labels.tier==web'] }, 'flt');
  const msgs: Msg[] = [];
  for await (const m of s) msgs.push(m as Msg);
  assert.deepEqual(msgs.map((m) => asRecord(m['container'])['id']), ['a1', 'a2']);

  const other = await client().unary(CONTAINERS, 'List', {}, 'flt2');
  assert.deepEqual((other['containers'] as Msg[]).map((c) => [c['id'], c['image']]), [['a1', 'other']]);
});

test('containers: Update with and without field masks', async () => {
  const spec1 = specAny({ v: 1 });
  const spec2 = specAny({ v: 2 });
  const opts = { type_url: 'containerd.runc.v1.Options', value: Buffer.from('opts') };
  await client().unary(CONTAINERS, 'Create', {
    container: { id: 'u1', image: 'img:1', labels: { keep: 'k', drop: 'd' }, runtime: { name: RUNC, options: opts }, spec: spec1, extensions: { e1: spec1 } },
  }, 'upd');
  const update = async (container: Msg, paths?: string[]): Promise<Msg> =>
    asRecord((await client().unary(CONTAINERS, 'Update', paths === undefined ? { container } : { container, update_mask: { paths } }, 'upd'))['container']);

  let c = await update({ id: 'u1', labels: { add: 'a' } }, ['labels.add', 'labels.drop']);
  assert.deepEqual(c['labels'], { add: 'a', keep: 'k' });
  assert.equal(c['image'], 'img:1');

  c = await update({ id: 'u1', image: 'img:2', spec: spec2 }, ['image', 'spec']);
  assert.equal(c['image'], 'img:2');
  assert.deepEqual(c['spec'], spec2);
  assert.deepEqual(c['labels'], { add: 'a', keep: 'k' });

  c = await update({ id: 'u1', extensions: { e2: spec2 } }, ['extensions.e2', 'extensions.e1']);
  assert.deepEqual(c['extensions'], { e2: spec2 });

  // No mask: labels, spec, extensions, image, snapshot key replaced; runtime (with its options) kept.
  c = await update({ id: 'u1', image: 'img:3', labels: { only: 'o' }, runtime: { name: RUNC }, spec: spec1 });
  assert.deepEqual(c['labels'], { only: 'o' });
  assert.equal(c['image'], 'img:3');
  assert.deepEqual(c['spec'], spec1);
  assert.deepEqual(c['extensions'], {});
  assert.deepEqual(asRecord(c['runtime']), { name: RUNC, options: opts });
  const ts = (v: unknown): number => Number(asRecord(v)['seconds']) * 1e9 + Number(asRecord(v)['nanos']);
  assert.ok(ts(c['updated_at']) > ts(c['created_at']));
});

interface Case {
  readonly name: string;
  readonly service: string;
  readonly method: string;
  readonly request: Msg;
  readonly namespace: string | undefined;
  /** The message must equal containerd's too (some of containerd's are accidents of its wrapping). */
  readonly sameMessage: boolean;
}

const spec = specAny({ ociVersion: '1.0.2' });
const CASES: readonly Case[] = [
  ['list without namespace', CONTAINERS, 'List', {}, undefined, true],
  ['invalid namespace', CONTAINERS, 'List', {}, 'bad ns', true],
  ['get missing', CONTAINERS, 'Get', { id: 'nope' }, 'cf', true],
  ['get empty id', CONTAINERS, 'Get', { id: '' }, 'cf', true],
  ['create', CONTAINERS, 'Create', { container: { id: 'c1', runtime: { name: RUNC }, spec, labels: { a: '1' } } }, 'cf', true],
  ['create again', CONTAINERS, 'Create', { container: { id: 'c1', runtime: { name: RUNC }, spec } }, 'cf', true],
  ['create without spec', CONTAINERS, 'Create', { container: { id: 'c2', runtime: { name: RUNC } } }, 'cf', true],
  ['create without runtime', CONTAINERS, 'Create', { container: { id: 'c2', spec } }, 'cf', true],
  ['create with bad id', CONTAINERS, 'Create', { container: { id: 'bad/id', runtime: { name: RUNC }, spec } }, 'cf', true],
  ['snapshot key without snapshotter', CONTAINERS, 'Create', { container: { id: 'c3', runtime: { name: RUNC }, spec, snapshot_key: 'k' } }, 'cf', true],
  ['update path runtime', CONTAINERS, 'Update', { container: { id: 'c1' }, update_mask: { paths: ['runtime'] } }, 'cf', true],
  ['update path snapshot_key', CONTAINERS, 'Update', { container: { id: 'c1' }, update_mask: { paths: ['snapshot_key'] } }, 'cf', true],
  ['update changes snapshotter', CONTAINERS, 'Update', { container: { id: 'c1', runtime: { name: RUNC }, spec, snapshotter: 'overlayfs' } }, 'cf', true],
  ['update changes runtime', CONTAINERS, 'Update', { container: { id: 'c1', runtime: { name: 'other' }, spec } }, 'cf', true],
  ['update missing', CONTAINERS, 'Update', { container: { id: 'zz', runtime: { name: RUNC }, spec } }, 'cf', true],
  ['update without id', CONTAINERS, 'Update', { container: {} }, 'cf', false],
  ['update labels', CONTAINERS, 'Update', { container: { id: 'c1', labels: { b: '2' } }, update_mask: { paths: ['labels.b', 'labels.a'] } }, 'cf', true],
  ['update snapshot key alone', CONTAINERS, 'Update', { container: { id: 'c1', snapshot_key: 'x' }, update_mask: { paths: ['snapshotkey'] } }, 'cf', true],
  ['bad filter operator', CONTAINERS, 'List', { filters: ['id=x'] }, 'cf', false],
  ['unquoted label with slash', CONTAINERS, 'List', { filters: ['labels.containerd.io/x==y'] }, 'cf', false],
  ['delete non-empty namespace', NAMESPACES, 'Delete', { name: 'cf' }, 'cf', true],
  ['get never-used namespace', NAMESPACES, 'Get', { name: 'nope' }, undefined, true],
  ['create bad namespace', NAMESPACES, 'Create', { namespace: { name: 'Bad Name' } }, undefined, true],
  ['create namespace', NAMESPACES, 'Create', { namespace: { name: 'cfns', labels: { a: 'b' } } }, 'cf', true],
  ['create namespace again', NAMESPACES, 'Create', { namespace: { name: 'cfns' } }, 'cf', true],
  ['namespace update bad path', NAMESPACES, 'Update', { namespace: { name: 'cfns' }, update_mask: { paths: ['name'] } }, 'cf', false],
  ['delete missing namespace', NAMESPACES, 'Delete', { name: 'nope' }, 'cf', true],
  ['publish without namespace', EVENTS, 'Publish', { topic: '/x', event: { type_url: 'a', value: Buffer.from('x') } }, undefined, false],
  ['publish bad topic', EVENTS, 'Publish', { topic: 'x', event: { type_url: 'a', value: Buffer.from('x') } }, 'cf', true],
  ['publish empty topic component', EVENTS, 'Publish', { topic: '/a//b', event: { type_url: 'a', value: Buffer.from('x') } }, 'cf', true],
  ['delete container', CONTAINERS, 'Delete', { id: 'c1' }, 'cf', true],
  ['delete missing container', CONTAINERS, 'Delete', { id: 'c1' }, 'cf', false],
].map(([name, service, method, request, namespace, sameMessage]) => ({ name, service, method, request, namespace, sameMessage } as Case));

type Outcome = { ok: true; response: Msg } | { ok: false; code: number; details: string };

async function run(api: Api, c: Case): Promise<Outcome> {
  try {
    return { ok: true, response: await api.unary(c.service, c.method, c.request, c.namespace) };
  } catch (e) {
    const { code, details } = await grpcError(Promise.reject(e));
    return { ok: false, code, details };
  }
}

/** Responses carry server times; compare everything else. */
function stripTimes(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripTimes);
  if (typeof v === 'object' && v !== null && !Buffer.isBuffer(v)) {
    return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'created_at' && k !== 'updated_at').map(([k, x]) => [k, stripTimes(x)]));
  }
  return v;
}

test('error codes and messages as a real containerd 1.6 gives them', { skip: containerdMissing() }, async (t) => {
  const real = new RealContainerd();
  t.after(() => real.stop());
  await real.start();
  const realApi = new Api(real.address);
  t.after(() => realApi.close());
  for (const c of CASES) {
    const want = await run(realApi, c);
    const got = await run(client(), c);
    if (want.ok) {
      assert.ok(got.ok, `${c.name}: containerd answered ${JSON.stringify(want.response)}, berth ${JSON.stringify(got)}`);
      assert.deepEqual(stripTimes(got.response), stripTimes(want.response), c.name);
      continue;
    }
    assert.ok(!got.ok, `${c.name}: containerd failed with ${status[want.code]} ${want.details}, berth succeeded`);
    assert.equal(status[got.code], status[want.code], `${c.name}: ${got.details} vs containerd's ${want.details}`);
    if (c.sameMessage) assert.equal(got.details, want.details, c.name);
  }
});
