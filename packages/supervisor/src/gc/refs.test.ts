import test from 'node:test';
import assert from 'node:assert/strict';
import { RwLock } from './collector.js';
import { contentNode, expiryOf, isRoot, labelRefs, mark, resourceNode, snapshotNode } from './refs.js';
import type { NodeRefs } from './refs.js';

test('labelRefs: content refs with and without suffix, snapshot refs per snapshotter, others ignored', () => {
  const refs = labelRefs('ns', {
    'containerd.io/gc.ref.content': 'sha256:a',
    'containerd.io/gc.ref.content.l.0': 'sha256:b',
    'containerd.io/gc.ref.contentx': 'sha256:no',
    'containerd.io/gc.ref.snapshot.overlayfs': 'chain1',
    'containerd.io/gc.ref.snapshot.native/1': 'chain2',
    'containerd.io/gc.ref.snapshot.': 'no',
    'containerd.io/gc.root': 'x',
    'other': 'sha256:no',
  });
  assert.deepEqual(refs.sort(), [
    contentNode('ns', 'sha256:a'), contentNode('ns', 'sha256:b'),
    snapshotNode('ns', 'native', 'chain2'), snapshotNode('ns', 'overlayfs', 'chain1'),
  ].sort());
});

test('resourceNode, isRoot, expiryOf', () => {
  assert.equal(resourceNode('n', 'content', 'sha256:a'), contentNode('n', 'sha256:a'));
  assert.equal(resourceNode('n', 'snapshots/overlayfs', 'k'), snapshotNode('n', 'overlayfs', 'k'));
  assert.equal(resourceNode('n', 'ingests', 'ref'), undefined);
  assert.equal(isRoot({ 'containerd.io/gc.root': 'now' }), true);
  assert.equal(isRoot({ 'containerd.io/gc.root': '' }), false);
  assert.equal(expiryOf({ 'containerd.io/gc.expire': '2030-01-02T03:04:05Z' })?.toISOString(), '2030-01-02T03:04:05.000Z');
  assert.equal(expiryOf({ 'containerd.io/gc.expire': '2030-01-02T03:04:05.5+01:00' })?.toISOString(), '2030-01-02T02:04:05.500Z');
  assert.equal(expiryOf({ 'containerd.io/gc.expire': 'tomorrow' }), undefined);
  assert.equal(expiryOf({}), undefined);
});

test('mark: follows labels and parents, ignores dangling refs, and flat roots do not follow labels', () => {
  const c = (d: string): string => contentNode('ns', d);
  const s = (k: string): string => snapshotNode('ns', 'overlayfs', k);
  const graph = new Map<string, NodeRefs>([
    [c('index'), { labels: { 'containerd.io/gc.ref.content.m.0': 'manifest', 'containerd.io/gc.ref.content.m.1': 'missing' } }],
    [c('manifest'), { labels: { 'containerd.io/gc.ref.content.config': 'config' } }],
    [c('config'), { labels: { 'containerd.io/gc.ref.snapshot.overlayfs': 'top' } }],
    [s('top'), { labels: {}, parent: s('bottom') }],
    [s('bottom'), { labels: { 'containerd.io/gc.ref.content': 'extra' } }],
    [c('extra'), { labels: {} }],
    [c('loose'), { labels: {} }],
    [s('leased'), { labels: { 'containerd.io/gc.ref.content': 'viaflat' }, parent: s('leasedparent') }],
    [s('leasedparent'), { labels: {} }],
    [c('viaflat'), { labels: {} }],
  ]);
  const reached = mark([{ node: c('index'), flat: false }, { node: s('leased'), flat: true }], (n) => graph.get(n));
  assert.deepEqual([...reached].sort(), [c('index'), c('manifest'), c('config'), s('top'), s('bottom'), c('extra'), s('leased'), s('leasedparent')].sort());
});

test('RwLock: readers share, a writer waits for them and excludes later readers', async () => {
  const lock = new RwLock();
  const log: string[] = [];
  let releaseReader!: () => void;
  const r1 = lock.shared(async () => { log.push('r1 in'); await new Promise<void>((r) => { releaseReader = r; }); log.push('r1 out'); });
  const r2 = lock.shared(async () => { log.push('r2'); });
  await r2;
  const w = lock.exclusive(async () => { log.push('w'); });
  const r3 = lock.shared(async () => { log.push('r3'); });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(log, ['r1 in', 'r2']);
  releaseReader();
  await Promise.all([r1, w, r3]);
  assert.deepEqual(log, ['r1 in', 'r2', 'r1 out', 'w', 'r3']);
});
