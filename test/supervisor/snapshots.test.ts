/**
 * The Snapshots service against the real ctr (overlayfs and native), and
 * through a grpc-js client for what ctr does not reach: filters, update
 * masks, namespaces, events, error codes. The mounts ctr prints are carried
 * out with mount(8) and checked; every mount is undone even on failure.
 * Needs root.
 */
import test from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { status } from '@grpc/grpc-js';
import { EVENTS, INTROSPECTION, ctr, ctrOk, grpcError, loadProtos, rows, useDaemon } from './_daemon.js';
import type { Msg } from './_daemon.js';

const SNAPSHOTS = 'containerd.services.snapshots.v1.Snapshots';
const isRoot = process.getuid?.() === 0;

const { dirs, client } = useDaemon();

/** Mount points made by a test, unmounted (deepest and latest first) and removed after it. */
function mountArea(t: TestContext): { dir: (name: string) => string; mountPrinted: (printed: string) => string; umount: (target: string) => void } {
  const base = mkdtempSync(join(dirs.base, 'mnt-'));
  const mounted: string[] = [];
  const umount = (target: string): void => {
    const r = spawnSync('umount', [target], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`umount ${target}: ${r.stderr}`);
    const i = mounted.lastIndexOf(target);
    if (i >= 0) mounted.splice(i, 1);
  };
  t.after(() => {
    for (const m of mounted.reverse()) spawnSync('umount', ['-l', m]);
    rmSync(base, { recursive: true, force: true });
  });
  return {
    dir: (name) => {
      const d = join(base, name);
      mkdirSync(d, { recursive: true });
      return d;
    },
    /** Run the mount command ctr printed ("mount -t T SRC TARGET -o OPTS"), as a user would. */
    mountPrinted: (printed) => {
      const lines = printed.trim().split('\n');
      assert.equal(lines.length, 1, `one mount: ${printed}`);
      const argv = (lines[0] ?? '').split(' ');
      assert.equal(argv[0], 'mount');
      const target = argv[4] ?? '';
      const r = spawnSync('mount', argv.slice(1), { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${printed.trim()}: ${r.stderr}`);
      mounted.push(target);
      return target;
    },
    umount,
  };
}

function files(dir: string): string[] {
  const out: string[] = [];
  const visit = (rel: string): void => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      out.push(e.isDirectory() ? `${r}/` : r);
      if (e.isDirectory()) visit(r);
    }
  };
  visit('');
  return out.sort();
}

/** The whole life of a layered snapshot with ctr, for one snapshotter. */
async function ctrLifecycle(t: TestContext, snapshotter: string, ns: string): Promise<void> {
  const a = dirs.address;
  const sn = ['snapshots', '--snapshotter', snapshotter];
  const area = mountArea(t);

  ctrOk(a, [...sn, 'prepare', 'base'], ns);
  let m = area.mountPrinted(ctrOk(a, [...sn, 'mounts', area.dir('base'), 'base'], ns));
  writeFileSync(join(m, 'keep'), 'k');
  writeFileSync(join(m, 'gone'), 'g');
  mkdirSync(join(m, 'dir'));
  writeFileSync(join(m, 'dir', 'inner'), 'i');
  area.umount(m);
  ctrOk(a, [...sn, 'commit', 'layer1', 'base'], ns);

  ctrOk(a, [...sn, 'prepare', 'work', 'layer1'], ns);
  m = area.mountPrinted(ctrOk(a, [...sn, 'mounts', area.dir('work'), 'work'], ns));
  assert.deepEqual(files(m), ['dir/', 'dir/inner', 'gone', 'keep'], 'the child sees its parent');
  unlinkSync(join(m, 'gone'));
  writeFileSync(join(m, 'dir', 'inner'), 'changed');
  writeFileSync(join(m, 'added'), 'a');
  area.umount(m);
  ctrOk(a, [...sn, 'commit', 'layer2', 'work'], ns);

  ctrOk(a, [...sn, 'view', 'look', 'layer2'], ns);
  m = area.mountPrinted(ctrOk(a, [...sn, 'mounts', area.dir('look'), 'look'], ns));
  assert.deepEqual(files(m), ['added', 'dir/', 'dir/inner', 'keep'], 'the deletion shows in the view');
  assert.equal(readFileSync(join(m, 'dir', 'inner'), 'utf8'), 'changed');
  assert.throws(() => writeFileSync(join(m, 'x'), 'x'), { code: 'EROFS' });
  area.umount(m);

  // ls, info, label, usage, tree.
  const listed = rows(ctrOk(a, [...sn, 'ls'], ns)).sort((x, y) => (x[0] ?? '').localeCompare(y[0] ?? ''));
  assert.deepEqual(listed, [['layer1', 'Committed'], ['layer2', 'layer1', 'Committed'], ['look', 'layer2', 'View']]);
  const info = JSON.parse(ctrOk(a, [...sn, 'info', 'layer2'], ns)) as Msg;
  assert.equal(info['Kind'], 'Committed');
  assert.equal(info['Name'], 'layer2');
  assert.equal(info['Parent'], 'layer1');
  ctrOk(a, [...sn, 'label', 'layer2', 'role=test', 'other=x'], ns);
  ctrOk(a, [...sn, 'label', 'layer2', 'other='], ns);
  const labels = (JSON.parse(ctrOk(a, [...sn, 'info', 'layer2'], ns)) as { Labels: Record<string, string> }).Labels;
  assert.equal(labels['role'], 'test');
  assert.equal(labels['other'], undefined, 'an empty value removes a label');
  const usage = rows(ctrOk(a, [...sn, 'usage'], ns));
  assert.deepEqual(usage.map((r) => r[0]).sort(), ['layer1', 'layer2', 'look']);
  const one = rows(ctrOk(a, [...sn, 'usage', 'layer1'], ns));
  // KEY SIZE INODES, with the size printed as "20.0 KiB": root, keep, gone, dir, dir/inner.
  assert.equal(one.length, 1);
  assert.match(`${one[0]?.[1]} ${one[0]?.[2]}`, /^[0-9.]+ KiB$/);
  assert.equal(one[0]?.[3], '5');
  const tree = ctrOk(a, [...sn, 'tree'], ns);
  assert.match(tree, /layer1\n\s+\\_ layer2\n\s+\\_ look/);

  // Removal order.
  const refused = ctr(a, [...sn, 'rm', 'layer1'], ns);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /cannot remove snapshot with child/);
  ctrOk(a, [...sn, 'rm', 'look'], ns);
  ctrOk(a, [...sn, 'rm', 'layer2'], ns);
  ctrOk(a, [...sn, 'rm', 'layer1'], ns);
  assert.deepEqual(rows(ctrOk(a, [...sn, 'ls'], ns)), []);
}

test('ctr snapshots with overlayfs: prepare, mounts, commit, view, ls, info, label, usage, tree, rm', { skip: isRoot ? false : 'needs root' }, async (t) => {
  await ctrLifecycle(t, 'overlayfs', 'snap-overlay');
  // The overlay lower dirs really are the committed layers: the root holds no other trees.
  assert.deepEqual(readdirSync(join(dirs.root, 'snapshots', 'overlayfs', 'snapshots')), []);
});

test('ctr snapshots with native: the same life, with copies', { skip: isRoot ? false : 'needs root' }, async (t) => {
  await ctrLifecycle(t, 'native', 'snap-native');
  assert.deepEqual(readdirSync(join(dirs.root, 'snapshots', 'native', 'snapshots')), []);
});

test('the default snapshotter is overlayfs, and ctr plugins lists both', () => {
  ctrOk(dirs.address, ['snapshots', 'prepare', 'dflt'], 'snap-default');
  const printed = ctrOk(dirs.address, ['snapshots', 'mounts', '/target', 'dflt'], 'snap-default');
  assert.match(printed, /^mount -t bind \S+\/snapshots\/overlayfs\/snapshots\/\d+\/fs \/target -o rw,rbind\n$/);
  ctrOk(dirs.address, ['snapshots', 'rm', 'dflt'], 'snap-default');
  const plugins = rows(ctrOk(dirs.address, ['plugins', 'ls']));
  for (const id of ['overlayfs', 'native']) {
    const row = plugins.find((r) => r[0] === 'io.containerd.snapshotter.v1' && r[1] === id);
    assert.deepEqual(row?.slice(2), ['linux/amd64', 'ok'].slice(process.arch === 'x64' ? 0 : 1), `plugin ${id}: ${JSON.stringify(row)}`);
  }
});

test('namespaces have separate key spaces', async () => {
  const api = client();
  for (const ns of ['nsa', 'nsb']) {
    await api.unary(SNAPSHOTS, 'Prepare', { key: 'same', labels: { owner: ns } }, ns);
  }
  for (const ns of ['nsa', 'nsb']) {
    const st = await api.unary(SNAPSHOTS, 'Stat', { key: 'same' }, ns);
    assert.deepEqual((st['info'] as Msg)['labels'], { owner: ns });
  }
  await api.unary(SNAPSHOTS, 'Commit', { key: 'same', name: 'base' }, 'nsa');
  // nsb cannot use nsa's committed snapshot as a parent.
  const e = await grpcError(api.unary(SNAPSHOTS, 'Prepare', { key: 'child', parent: 'base' }, 'nsb'));
  assert.equal(e.code, status.NOT_FOUND);
  assert.match(e.details, /"base"/);
  assert.doesNotMatch(e.details, /nsb\//, 'the error names the key as the client wrote it');
  assert.deepEqual(await list('nsa', []), ['base']);
  assert.deepEqual(await list('nsb', []), ['same']);
  await api.unary(SNAPSHOTS, 'Remove', { key: 'base' }, 'nsa');
  await api.unary(SNAPSHOTS, 'Remove', { key: 'same' }, 'nsb');
  const none = await grpcError(api.unary(SNAPSHOTS, 'Stat', { key: 'same' }));
  assert.equal(none.code, status.FAILED_PRECONDITION, 'a namespace is required');
});

async function list(ns: string, filters: string[], snapshotter = ''): Promise<string[]> {
  const got: Msg[] = [];
  await new Promise<void>((resolve, reject) => {
    const s = client().stream(SNAPSHOTS, 'List', { snapshotter, filters }, ns);
    s.on('data', (m: Msg) => got.push(m));
    s.on('end', () => resolve());
    s.on('error', reject);
  });
  return got.flatMap((m) => (m['info'] as Msg[]).map((i) => String(i['name']))).sort();
}

test('List filters, Update masks, Usage, Cleanup and error codes over gRPC', async () => {
  const api = client();
  const ns = 'snap-grpc';
  await api.unary(SNAPSHOTS, 'Prepare', { snapshotter: 'native', key: 'a', labels: { tier: 'base' } }, ns);
  await api.unary(SNAPSHOTS, 'Commit', { snapshotter: 'native', key: 'a', name: 'base', labels: { tier: 'base' } }, ns);
  await api.unary(SNAPSHOTS, 'Prepare', { snapshotter: 'native', key: 'w1', parent: 'base', labels: { tier: 'work' } }, ns);
  await api.unary(SNAPSHOTS, 'View', { snapshotter: 'native', key: 'v1', parent: 'base' }, ns);

  assert.deepEqual(await list(ns, [], 'native'), ['base', 'v1', 'w1']);
  assert.deepEqual(await list(ns, ['kind==committed'], 'native'), ['base']);
  assert.deepEqual(await list(ns, ['labels.tier==work', 'kind==view'], 'native'), ['v1', 'w1']);
  assert.deepEqual(await list(ns, ['parent==base,kind==active'], 'native'), ['w1']);
  assert.deepEqual(await list(ns, ['name~=^v'], 'native'), ['v1']);
  assert.deepEqual(await list(ns, [], 'overlayfs'), [], 'each snapshotter has its own snapshots');

  let r = await api.unary(SNAPSHOTS, 'Update', {
    snapshotter: 'native', info: { name: 'w1', labels: { extra: 'x', tier: 'ignored' } }, update_mask: { paths: ['labels.extra'] },
  }, ns);
  assert.deepEqual((r['info'] as Msg)['labels'], { tier: 'work', extra: 'x' });
  r = await api.unary(SNAPSHOTS, 'Update', { snapshotter: 'native', info: { name: 'w1', labels: { only: 'y' } } }, ns);
  assert.deepEqual((r['info'] as Msg)['labels'], { only: 'y' });
  assert.equal((r['info'] as Msg)['kind'], 'ACTIVE');
  assert.equal((r['info'] as Msg)['parent'], 'base');
  const badMask = await grpcError(api.unary(SNAPSHOTS, 'Update', {
    snapshotter: 'native', info: { name: 'w1', parent: 'x' }, update_mask: { paths: ['parent'] },
  }, ns));
  assert.equal(badMask.code, status.INVALID_ARGUMENT);

  const u = await api.unary(SNAPSHOTS, 'Usage', { snapshotter: 'native', key: 'base' }, ns);
  assert.ok(Number(u['inodes']) >= 1 && Number(u['size']) >= 0);

  const cases: [string, Msg, number][] = [
    ['Stat', { snapshotter: 'native', key: 'missing' }, status.NOT_FOUND],
    ['Prepare', { snapshotter: 'native', key: 'w1' }, status.ALREADY_EXISTS],
    ['Prepare', { snapshotter: 'nope', key: 'z' }, status.INVALID_ARGUMENT],
    ['Prepare', { snapshotter: 'native', key: '' }, status.INVALID_ARGUMENT],
    ['Prepare', { snapshotter: 'native', key: 'z', parent: 'w1' }, status.INVALID_ARGUMENT],
    ['Commit', { snapshotter: 'native', key: 'v1', name: 'c' }, status.FAILED_PRECONDITION],
    ['Commit', { snapshotter: 'native', key: 'w1', name: 'c', parent: 'other' }, status.UNIMPLEMENTED],
    ['Mounts', { snapshotter: 'native', key: 'base' }, status.FAILED_PRECONDITION],
    ['Remove', { snapshotter: 'native', key: 'base' }, status.FAILED_PRECONDITION],
    ['Remove', { snapshotter: 'native', key: 'missing' }, status.NOT_FOUND],
  ];
  for (const [method, req, code] of cases) {
    const e = await grpcError(api.unary(SNAPSHOTS, method, req, ns));
    assert.equal(e.code, code, `${method} ${JSON.stringify(req)}: ${e.details}`);
  }

  // Cleanup removes a directory no snapshot owns.
  const stray = join(dirs.root, 'snapshots', 'native', 'snapshots', 'new-stray');
  mkdirSync(stray);
  await api.unary(SNAPSHOTS, 'Cleanup', { snapshotter: 'native' }, ns);
  assert.equal(existsSync(stray), false);

  for (const k of ['w1', 'v1', 'base']) await api.unary(SNAPSHOTS, 'Remove', { snapshotter: 'native', key: k }, ns);
});

test('prepare, commit and remove publish snapshot events', async (t) => {
  const api = client();
  const protos = loadProtos();
  const ns = 'snap-events';
  const stream = api.stream(EVENTS, 'Subscribe', { filters: [`namespace==${ns}`] });
  t.after(() => stream.cancel());
  stream.on('error', () => { /* cancelled at the end */ });
  const got: Msg[] = [];
  stream.on('data', (m: Msg) => got.push(m));
  // Wait until the subscription is live.
  const deadline = Date.now() + 10_000;
  while (!got.some((m) => m['topic'] === '/probe')) {
    if (Date.now() > deadline) throw new Error('subscription never became live');
    await api.unary(EVENTS, 'Publish', { topic: '/probe', event: { type_url: 'example.probe', value: Buffer.alloc(0) } }, ns);
    await sleep(50);
  }
  await api.unary(SNAPSHOTS, 'Prepare', { key: 'e1' }, ns);
  await api.unary(SNAPSHOTS, 'Commit', { key: 'e1', name: 'ec' }, ns);
  await api.unary(SNAPSHOTS, 'View', { key: 'ev', parent: 'ec' }, ns);
  await api.unary(SNAPSHOTS, 'Remove', { key: 'ev' }, ns);
  await api.unary(SNAPSHOTS, 'Remove', { key: 'ec' }, ns);
  const until = Date.now() + 10_000;
  const snapshotEvents = (): Msg[] => got.filter((m) => String(m['topic']).startsWith('/snapshot/'));
  while (snapshotEvents().length < 4 && Date.now() < until) await sleep(20);
  const decoded = snapshotEvents().map((m) => {
    const any = m['event'] as { type_url: string; value: Buffer };
    return [m['topic'], any.type_url, protos.decode(any.type_url, any.value)];
  });
  assert.deepEqual(decoded, [
    ['/snapshot/prepare', 'containerd.events.SnapshotPrepare', { key: 'e1', parent: '', snapshotter: 'overlayfs' }],
    ['/snapshot/commit', 'containerd.events.SnapshotCommit', { key: 'e1', name: 'ec', snapshotter: 'overlayfs' }],
    ['/snapshot/remove', 'containerd.events.SnapshotRemove', { key: 'ev', snapshotter: 'overlayfs' }],
    ['/snapshot/remove', 'containerd.events.SnapshotRemove', { key: 'ec', snapshotter: 'overlayfs' }],
  ]);
});

test('introspection lists the snapshotter plugins with their roots', async () => {
  const r = await client().unary(INTROSPECTION, 'Plugins', { filters: ['type==io.containerd.snapshotter.v1'] });
  const plugins = (r['plugins'] as Msg[]).map((p) => [p['id'], (p['exports'] as Msg)['root']]);
  assert.deepEqual(plugins, [
    ['overlayfs', join(dirs.root, 'snapshots', 'overlayfs')],
    ['native', join(dirs.root, 'snapshots', 'native')],
  ]);
});
