/**
 * The Events service through a grpc-js client: Publish, Forward and Subscribe
 * with containerd's filters; payloads pass through byte for byte; services'
 * own events arrive with payloads of the right type; subscribers that go away
 * are dropped.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { status } from '@grpc/grpc-js';
import type { ClientReadableStream } from '@grpc/grpc-js';
import {
  CONTAINERS, EVENTS, collect, grpcError, loadProtos, specAny, useDaemon,
} from './_daemon.js';
import type { Msg } from './_daemon.js';

const { daemon: currentDaemon, client } = useDaemon();

const rec = (v: unknown): Msg => {
  assert.ok(typeof v === 'object' && v !== null);
  return v as Msg;
};

/** Subscribe and wait until the subscription is live (a probe event published in its own namespace arrives). */
async function subscribe(filters: string[], t: test.TestContext): Promise<{ stream: ClientReadableStream<Msg>; next: (n: number) => Promise<Msg[]> }> {
  const probeNs = `probe${randomBytes(4).toString('hex')}`;
  const stream = client().stream(EVENTS, 'Subscribe', { filters: [...filters, `namespace==${probeNs}`] });
  t.after(() => stream.cancel());
  const queue: Msg[] = [];
  let wake: (() => void) | undefined;
  stream.on('data', (m: Msg) => {
    queue.push(m);
    wake?.();
  });
  stream.on('error', () => { /* cancelled at the end */ });
  const probe = { type_url: 'example.probe', value: Buffer.alloc(0) };
  const deadline = Date.now() + 10_000;
  for (;;) {
    await client().unary(EVENTS, 'Publish', { topic: '/probe', event: probe }, probeNs);
    await sleep(50);
    if (queue.some((m) => m['namespace'] === probeNs)) break;
    if (Date.now() > deadline) throw new Error('subscription never became live');
  }
  const pending = (): Msg[] => queue.filter((m) => m['namespace'] !== probeNs);
  queue.splice(0, queue.length, ...pending());
  const next = async (n: number): Promise<Msg[]> => {
    const until = Date.now() + 10_000;
    while (queue.length < n) {
      if (Date.now() > until) throw new Error(`expected ${n} events, got ${JSON.stringify(queue)}`);
      await new Promise<void>((resolve) => { wake = resolve; setTimeout(resolve, 100); });
    }
    return queue.splice(0, n);
  };
  return { stream, next };
}

test('container events carry containerd.events payloads; filters on topic, namespace and event fields', async (t) => {
  const protos = loadProtos();
  const all = await subscribe(['namespace==evt'], t);
  const onlyC2 = await subscribe(['namespace==evt,event.id==c2', 'topic~=^/containers/d'], t);

  const opts = { type_url: 'containerd.runc.v1.Options', value: randomBytes(40) };
  for (const id of ['c1', 'c2']) {
    await client().unary(CONTAINERS, 'Create', { container: { id, image: `img-${id}`, runtime: { name: 'io.containerd.runc.v2', options: opts }, spec: specAny({}) } }, 'evt');
  }
  await client().unary(CONTAINERS, 'Update', { container: { id: 'c1', labels: { x: 'y' } }, update_mask: { paths: ['labels.x'] } }, 'evt');
  await client().unary(CONTAINERS, 'Delete', { id: 'c1' }, 'evt');

  const got = await all.next(4);
  assert.deepEqual(got.map((e) => [e['namespace'], e['topic'], rec(e['event'])['type_url']]), [
    ['evt', '/containers/create', 'containerd.events.ContainerCreate'],
    ['evt', '/containers/create', 'containerd.events.ContainerCreate'],
    ['evt', '/containers/update', 'containerd.events.ContainerUpdate'],
    ['evt', '/containers/delete', 'containerd.events.ContainerDelete'],
  ]);
  const payload = (e: Msg): Msg => {
    const any = rec(e['event']);
    return protos.decode(String(any['type_url']), any['value'] as Buffer);
  };
  const create = payload(got[0] ?? {});
  assert.equal(create['id'], 'c1');
  assert.equal(create['image'], 'img-c1');
  assert.deepEqual(rec(create['runtime'])['options'], opts);
  assert.deepEqual(payload(got[2] ?? {})['labels'], { x: 'y' });
  assert.deepEqual(payload(got[3] ?? {}), { id: 'c1' });
  const ts = rec(got[0]?.['timestamp']);
  assert.ok(Math.abs(Number(ts['seconds']) - Date.now() / 1000) < 30);

  const filtered = await onlyC2.next(2);
  assert.deepEqual(filtered.map((e) => [e['topic'], payload(e)['id']]), [['/containers/create', 'c2'], ['/containers/delete', 'c1']]);
  await client().unary(CONTAINERS, 'Delete', { id: 'c2' }, 'evt');
  await all.next(1);
});

test('Publish and Forward pass the payload through byte for byte; Forward keeps the timestamp', async (t) => {
  const sub = await subscribe(['topic~=^/custom/'], t);
  const raw = { type_url: 'example.com/not.a.known.Type', value: randomBytes(1000) };
  await client().unary(EVENTS, 'Publish', { topic: '/custom/one', event: raw }, 'pub');
  const stamp = { seconds: 1_700_000_000, nanos: 123_456_789 };
  await client().unary(EVENTS, 'Forward', { envelope: { timestamp: stamp, namespace: 'fwd', topic: '/custom/two', event: raw } });
  const [a, b] = await sub.next(2);
  assert.deepEqual([a?.['namespace'], a?.['topic'], a?.['event']], ['pub', '/custom/one', raw]);
  assert.deepEqual(b, { timestamp: stamp, namespace: 'fwd', topic: '/custom/two', event: raw });
});

test('a known payload type can be filtered on its fields (task events from a shim)', async (t) => {
  const protos = loadProtos();
  const sub = await subscribe(['topic=="/tasks/exit",event.exit_status==137'], t);
  for (const code of [0, 137]) {
    await client().unary(EVENTS, 'Publish', {
      topic: '/tasks/exit',
      event: protos.pack('containerd.events.TaskExit', { container_id: `t${code}`, id: `t${code}`, pid: 42, exit_status: code }),
    }, 'tasks');
  }
  const [e] = await sub.next(1);
  const any = rec(e?.['event']);
  assert.equal(protos.decode(String(any['type_url']), any['value'] as Buffer)['container_id'], 't137');
});

test('bad requests: filter syntax, topic, missing namespace or event', async () => {
  const badFilter = client().stream(EVENTS, 'Subscribe', { filters: ['topic=/x'] });
  const err = await collect(badFilter, () => false, 5000).then(() => undefined, (e: unknown) => e as { code: number; details: string });
  assert.equal(err?.code, status.INVALID_ARGUMENT);
  assert.match(err?.details ?? '', /unsupported operator "="/);
  const ev = { type_url: 'x', value: Buffer.from('y') };
  assert.equal((await grpcError(client().unary(EVENTS, 'Publish', { topic: '/x', event: ev }))).code, status.FAILED_PRECONDITION);
  assert.equal((await grpcError(client().unary(EVENTS, 'Publish', { topic: 'x', event: ev }, 'n'))).code, status.INVALID_ARGUMENT);
  assert.equal((await grpcError(client().unary(EVENTS, 'Publish', { topic: '/x' }, 'n'))).code, status.INVALID_ARGUMENT);
  assert.equal((await grpcError(client().unary(EVENTS, 'Forward', { envelope: { namespace: 'n', topic: '/x', event: ev } }))).code, status.INVALID_ARGUMENT);
});

test('a cancelled subscriber is dropped, and the daemon keeps serving', async (t) => {
  const sub = await subscribe([], t);
  sub.stream.cancel();
  await sleep(200);
  for (let i = 0; i < 50; i++) {
    await client().unary(EVENTS, 'Publish', { topic: '/after/cancel', event: { type_url: 'x', value: Buffer.from([i]) } }, 'gone');
  }
  const live = await subscribe(['topic=="/still/here"'], t);
  await client().unary(EVENTS, 'Publish', { topic: '/still/here', event: { type_url: 'x', value: Buffer.from('ok') } }, 'gone');
  const [e] = await live.next(1);
  assert.equal(e?.['topic'], '/still/here');
  assert.doesNotMatch(currentDaemon()?.log() ?? '', /level=error/);
});
