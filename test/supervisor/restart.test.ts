/**
 * Durability: the metadata outlives the daemon. Containers created, the daemon
 * killed with SIGKILL (also in the middle of a burst of writes), started again
 * on the same root: every acknowledged write is there and the database passes
 * SQLite's integrity and foreign-key checks. One daemon per root and per socket.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { MetadataStore } from '@berth/supervisor';
import {
  Api, CONTAINERS, DAEMON_BIN, NAMESPACES, INTROSPECTION, cleanup, ctrOk, rows, specAny, startDaemon, tempDirs,
} from './_daemon.js';
import type { DaemonProcess, Msg } from './_daemon.js';

const RUNC = 'io.containerd.runc.v2';

function checkDatabase(root: string): void {
  const store = MetadataStore.open(join(root, 'meta.db'));
  try {
    assert.deepEqual(store.check(), []);
  } finally {
    store.close();
  }
}

test('kill -9 and restart: containers, labels, Any payloads and the server UUID are all still there', async (t) => {
  const dirs = tempDirs();
  let daemon: DaemonProcess | undefined;
  const clients: Api[] = [];
  t.after(async () => {
    for (const c of clients) c.close();
    await cleanup(daemon, dirs);
  });
  daemon = await startDaemon(dirs);
  let api = new Api(dirs.address);
  clients.push(api);

  const made: Msg[] = [];
  for (let i = 0; i < 30; i++) {
    const r = await api.unary(CONTAINERS, 'Create', {
      container: {
        id: `keep-${i}`, image: `img:${i}`, labels: { n: String(i) }, runtime: { name: RUNC, options: { type_url: 'opts', value: randomBytes(16) } },
        spec: specAny({ i }), extensions: { ext: { type_url: 'e', value: randomBytes(8) } },
      },
    }, i % 2 === 0 ? 'even' : 'odd');
    made.push(r['container'] as Msg);
  }
  await api.unary(NAMESPACES, 'Create', { namespace: { name: 'labelled', labels: { k: 'v' } } });
  await api.unary(CONTAINERS, 'Delete', { id: 'keep-0' }, 'even');
  const uuid = (await api.unary(INTROSPECTION, 'Server', {}))['uuid'];

  await daemon.kill9();
  assert.equal(existsSync(dirs.address), true, 'a killed daemon leaves its socket behind');
  checkDatabase(dirs.root);

  daemon = await startDaemon(dirs);
  api = new Api(dirs.address);
  clients.push(api);
  assert.equal((await api.unary(INTROSPECTION, 'Server', {}))['uuid'], uuid);
  const listed = [
    ...((await api.unary(CONTAINERS, 'List', {}, 'even'))['containers'] as Msg[]),
    ...((await api.unary(CONTAINERS, 'List', {}, 'odd'))['containers'] as Msg[]),
  ];
  const byId = new Map(listed.map((c) => [String(c['id']), c]));
  assert.equal(byId.size, 29);
  assert.equal(byId.has('keep-0'), false);
  for (const c of made.slice(1)) assert.deepEqual(byId.get(String(c['id'])), c);
  assert.deepEqual(rows(ctrOk(dirs.address, ['namespaces', 'ls'])).filter((r) => r[0] === 'labelled'), [['labelled', 'k=v']]);
  assert.equal(rows(ctrOk(dirs.address, ['containers', 'ls'], 'odd')).length, 15);
});

test('kill -9 in the middle of a burst of writes: every acknowledged create survives, the database is consistent', async (t) => {
  const dirs = tempDirs();
  let daemon: DaemonProcess | undefined;
  const clients: Api[] = [];
  t.after(async () => {
    for (const c of clients) c.close();
    await cleanup(daemon, dirs);
  });
  daemon = await startDaemon(dirs);
  const api = new Api(dirs.address);
  clients.push(api);

  const acked = new Set<string>();
  let stop = false;
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; !stop; i++) {
      const id = `w${w}-${i}`;
      try {
        await api.unary(CONTAINERS, 'Create', {
          container: { id, labels: { w: String(w) }, runtime: { name: RUNC }, spec: specAny({ id, pad: 'x'.repeat(2000) }) },
        }, 'burst');
        acked.add(id);
        if (i % 3 === 2) {
          await api.unary(CONTAINERS, 'Update', { container: { id, labels: { done: 'yes' } }, update_mask: { paths: ['labels.done'] } }, 'burst');
        }
      } catch {
        return; // the daemon is gone
      }
    }
  };
  const writers = [0, 1, 2, 3].map(writer);
  while (acked.size < 60) await new Promise((r) => setTimeout(r, 5));
  await daemon.kill9();
  stop = true;
  await Promise.all(writers);

  checkDatabase(dirs.root);
  daemon = await startDaemon(dirs);
  const api2 = new Api(dirs.address);
  clients.push(api2);
  const listed = (await api2.unary(CONTAINERS, 'List', {}, 'burst'))['containers'] as Msg[];
  const ids = new Set(listed.map((c) => String(c['id'])));
  for (const id of acked) assert.ok(ids.has(id), `acknowledged ${id} is missing after the restart`);
  assert.ok(ids.size <= acked.size + 4, 'at most one unacknowledged create per writer');
  for (const c of listed) {
    const labels = c['labels'] as Record<string, string>;
    assert.ok(labels['w'] !== undefined, `${String(c['id'])} lost its labels`);
  }
  // And the store still takes writes.
  await api2.unary(CONTAINERS, 'Create', { container: { id: 'after', runtime: { name: RUNC }, spec: specAny({}) } }, 'burst');
});

test('one daemon per root and per socket; a stale socket is replaced', async (t) => {
  const dirs = tempDirs();
  let daemon: DaemonProcess | undefined;
  t.after(() => cleanup(daemon, dirs));
  daemon = await startDaemon(dirs);

  const run = (args: string[]): { code: number | null; out: string } => {
    const r = spawnSync(process.execPath, [DAEMON_BIN, ...args], { encoding: 'utf8', timeout: 20_000 });
    return { code: r.status, out: r.stdout + r.stderr };
  };
  const sameRoot = run(['--address', join(dirs.base, 'other.sock'), '--root', dirs.root, '--state', join(dirs.base, 'state2')]);
  assert.equal(sameRoot.code, 1);
  assert.match(sameRoot.out, /in use by another process/);
  assert.equal(existsSync(join(dirs.base, 'other.sock')), false);

  const sameSocket = run(['--address', dirs.address, '--root', join(dirs.base, 'root2'), '--state', join(dirs.base, 'state2')]);
  assert.equal(sameSocket.code, 1);
  assert.match(sameSocket.out, /in use by a running server/);
  assert.equal(existsSync(dirs.address), true, 'the running daemon keeps its socket');
  ctrOk(dirs.address, ['version']);

  await daemon.kill9();
  daemon = await startDaemon(dirs);
  ctrOk(dirs.address, ['version']);

  assert.match(run(['--version']).out, /^berth-containerd 0\.1\.0\+berth/);
  assert.equal(run(['--no-such-flag']).code, 1);
});
