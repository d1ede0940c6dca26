/**
 * berth-containerd driven by the real ctr (Debian containerd 1.6): version,
 * namespaces, containers listing and labels, plugins, events. Root only.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONTAINERS, ctr, ctrOk, rows, specAny, useDaemon } from './_daemon.js';

const { dirs, daemon: currentDaemon, client } = useDaemon();

test('ctr version reports the server version, revision and a UUID kept in the root', () => {
  const out = ctrOk(dirs.address, ['version']);
  assert.match(out, /Server:\s+Version:\s+0\.1\.0\+berth\s+Revision:\s+berth-containerd\s+UUID:\s+([0-9a-f-]{36})/);
  const uuid = /UUID:\s+([0-9a-f-]{36})/.exec(out)?.[1];
  assert.equal(readFileSync(join(dirs.root, 'io.containerd.grpc.v1.introspection', 'uuid'), 'utf8'), uuid);
});

test('the socket is mode 0660', () => {
  assert.equal(statSync(dirs.address).mode & 0o777, 0o660);
});

test('ctr namespaces create, label, ls, rm', () => {
  ctrOk(dirs.address, ['namespaces', 'create', 'alpha', 'team=blue']);
  ctrOk(dirs.address, ['namespaces', 'create', 'beta']);
  const dup = ctr(dirs.address, ['namespaces', 'create', 'alpha']);
  assert.notEqual(dup.code, 0);
  assert.match(dup.stderr, /namespace "alpha": already exists/);

  ctrOk(dirs.address, ['namespaces', 'label', 'alpha', 'env=prod']);
  ctrOk(dirs.address, ['namespaces', 'label', 'alpha', 'team=']);
  const ls = rows(ctrOk(dirs.address, ['namespaces', 'ls']));
  assert.deepEqual(ls.filter((r) => r[0] === 'alpha' || r[0] === 'beta'), [['alpha', 'env=prod'], ['beta']]);
  assert.equal(ctrOk(dirs.address, ['namespaces', 'ls', '-q']).split('\n').filter((l) => l === 'alpha').length, 1);

  ctrOk(dirs.address, ['namespaces', 'rm', 'beta']);
  assert.ok(!rows(ctrOk(dirs.address, ['namespaces', 'ls'])).some((r) => r[0] === 'beta'));
  // As against containerd: removing a missing namespace is a warning, not a failure.
  const gone = ctr(dirs.address, ['namespaces', 'rm', 'beta']);
  assert.equal(gone.code, 0);
  assert.equal(gone.stdout, 'beta\n');
});

test('ctr containers ls/info/label/rm on containers made through the API', async () => {
  const api = client();
  const spec = { ociVersion: '1.0.2', process: { user: { uid: 0, gid: 0 }, args: ['/bin/sh'], cwd: '/' }, root: { path: 'rootfs' } };
  for (const id of ['web', 'db']) {
    await api.unary(CONTAINERS, 'Create', {
      container: { id, image: `docker.io/library/${id}:1`, runtime: { name: 'io.containerd.runc.v2' }, spec: specAny(spec), labels: { role: id } },
    }, 'ctrtest');
  }
  assert.deepEqual(rows(ctrOk(dirs.address, ['containers', 'ls'], 'ctrtest')), [
    ['db', 'docker.io/library/db:1', 'io.containerd.runc.v2'],
    ['web', 'docker.io/library/web:1', 'io.containerd.runc.v2'],
  ]);
  assert.deepEqual(rows(ctrOk(dirs.address, ['containers', 'ls', 'labels.role==web'], 'ctrtest')).map((r) => r[0]), ['web']);
  assert.deepEqual(rows(ctrOk(dirs.address, ['containers', 'ls', 'image~=db', 'id==web'], 'ctrtest')).map((r) => r[0]), ['db', 'web']);
  assert.deepEqual(rows(ctrOk(dirs.address, ['containers', 'ls'], 'default')), []);
  const badFilter = ctr(dirs.address, ['containers', 'ls', 'id=web'], 'ctrtest');
  assert.notEqual(badFilter.code, 0);
  assert.match(badFilter.stderr, /unsupported operator/);

  const info = JSON.parse(ctrOk(dirs.address, ['containers', 'info', 'web'], 'ctrtest')) as Record<string, unknown>;
  assert.equal(info['ID'], 'web');
  assert.deepEqual(info['Labels'], { role: 'web' });
  assert.deepEqual(info['Spec'], spec);

  ctrOk(dirs.address, ['containers', 'label', 'web', 'tier=front'], 'ctrtest');
  const got = await api.unary(CONTAINERS, 'Get', { id: 'web' }, 'ctrtest');
  assert.deepEqual((got['container'] as Record<string, unknown>)['labels'], { role: 'web', tier: 'front' });

  const nsRm = ctr(dirs.address, ['namespaces', 'rm', 'ctrtest']);
  assert.notEqual(nsRm.code, 0);
  assert.match(nsRm.stderr, /namespace "ctrtest" must be empty, but it still has containers/);

  ctrOk(dirs.address, ['containers', 'rm', 'web', 'db'], 'ctrtest');
  assert.deepEqual(rows(ctrOk(dirs.address, ['containers', 'ls'], 'ctrtest')), []);
  const missing = ctr(dirs.address, ['containers', 'info', 'web'], 'ctrtest');
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /container "web" in namespace "ctrtest": not found/);
  ctrOk(dirs.address, ['namespaces', 'rm', 'ctrtest']);
});

test('ctr plugins ls, with filters', () => {
  const all = rows(ctrOk(dirs.address, ['plugins', 'ls']));
  for (const id of ['version', 'namespaces', 'introspection', 'containers', 'events']) {
    assert.ok(all.some((r) => r[0] === 'io.containerd.grpc.v1' && r[1] === id && r.at(-1) === 'ok'), `${id} in ${JSON.stringify(all)}`);
  }
  assert.ok(all.some((r) => r[0] === 'io.containerd.metadata.v1' && r[1] === 'sqlite'));
  const grpcOnly = rows(ctrOk(dirs.address, ['plugins', 'ls', 'type==io.containerd.grpc.v1']));
  assert.ok(grpcOnly.length >= 5 && grpcOnly.every((r) => r[0] === 'io.containerd.grpc.v1'));
  assert.deepEqual(rows(ctrOk(dirs.address, ['plugins', 'ls', 'id==containers'])).map((r) => r[1]), ['containers']);
});

test('ctr events sees namespace and container events as they happen', async (t) => {
  const api = client();
  const out = join(dirs.base, 'ctr-events.out');
  const fd = openSync(out, 'w');
  const child = spawn('/usr/bin/ctr', ['--address', dirs.address, 'events'], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  });
  // ctr subscribes right after it connects; keep causing events until one shows up.
  const deadline = Date.now() + 10_000;
  let n = 0;
  while (!readFileSync(out, 'utf8').includes('/namespaces/create') && Date.now() < deadline) {
    ctrOk(dirs.address, ['namespaces', 'create', `evwarm${n++}`]);
    await sleep(100);
  }
  await api.unary(CONTAINERS, 'Create', {
    container: { id: 'ev1', image: 'img:ev', runtime: { name: 'io.containerd.runc.v2' }, spec: specAny({ ociVersion: '1.0.2' }) },
  }, 'evns');
  ctrOk(dirs.address, ['containers', 'label', 'ev1', 'k=v'], 'evns');
  ctrOk(dirs.address, ['containers', 'rm', 'ev1'], 'evns');
  ctrOk(dirs.address, ['namespaces', 'rm', 'evns']);
  while (!readFileSync(out, 'utf8').includes('/namespaces/delete {"name":"evns"}') && Date.now() < deadline) await sleep(50);
  const lines = readFileSync(out, 'utf8').split('\n');
  const find = (re: RegExp): string | undefined => lines.find((l) => re.test(l));
  assert.ok(find(/ evns \/containers\/create \{"id":"ev1","image":"img:ev","runtime":\{"name":"io.containerd.runc.v2"\}\}$/), lines.join('\n'));
  assert.ok(find(/ evns \/containers\/update \{"id":"ev1","image":"img:ev","labels":\{"k":"v"\}\}$/), lines.join('\n'));
  assert.ok(find(/ evns \/containers\/delete \{"id":"ev1"\}$/), lines.join('\n'));
  assert.ok(find(/ evns \/namespaces\/delete \{"name":"evns"\}$/), lines.join('\n'));
  assert.ok(find(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \+0000 UTC default \/namespaces\/create \{"name":"evwarm\d+"\}$/), lines.join('\n'));
});

test('SIGTERM: clean exit, socket removed', async () => {
  const daemon = currentDaemon();
  assert.ok(daemon);
  client().close();
  const r = await daemon.stop();
  assert.deepEqual(r, { code: 0, signal: null }, daemon.log());
  assert.equal(existsSync(dirs.address), false);
  assert.match(daemon.log(), /msg="stopped"/);
});
