// Runtime-level regression tests (root): what berth-runc's operations do that
// the cross-runtime suite in test/runtime cannot see from the outside.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, cpSync, writeFileSync, readFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { Runtime } from './runtime.js';
import { defaultSpec } from '../spec/index.js';
import type { Spec } from '@berth/spec';

const rootfs = fileURLToPath(new URL('../../../../native/out/rootfs', import.meta.url));

function bundle(t: test.TestContext, mutate: (s: Spec) => void): { dir: string; rt: Runtime } {
  const dir = mkdtempSync(join(tmpdir(), 'berth-rt-'));
  const rt = new Runtime(join(dir, 'state'));
  t.after(async () => {
    for (const id of rt.store.ids()) await rt.delete(id, true).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  cpSync(rootfs, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  const spec = defaultSpec({ args: ['/bin/sleep', '30'] });
  if (spec.process) spec.process.terminal = false;
  mutate(spec);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  return { dir, rt };
}

function hookScript(dir: string, name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

test('hooks run by the executor get the state with the container host pid', async (t) => {
  const { dir, rt } = bundle(t, () => undefined);
  const out = join(dir, 'createContainer.json');
  const spec = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Spec;
  // createContainer hooks run in the container's mount namespace before pivot: the path
  // is resolved on the host, the output written through the bundle (still reachable).
  spec.hooks = { createContainer: [{ path: hookScript(dir, 'cc.sh', `cat > ${out}`) }] };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  const { record } = await rt.create('hookpid', { bundle: dir });
  const state = JSON.parse(readFileSync(out, 'utf8')) as { pid: number; id: string };
  assert.equal(state.id, 'hookpid');
  assert.equal(state.pid, record.pid);
  assert.ok(state.pid > 1);
});

test('start reports a failing startContainer hook instead of succeeding', async (t) => {
  const { dir, rt } = bundle(t, () => undefined);
  const spec = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Spec;
  // startContainer hooks run after pivot: the path is resolved in the container.
  spec.hooks = { startContainer: [{ path: '/bin/sh', args: ['sh', '-c', 'echo no-go >&2; exit 7'] }] };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  await rt.create('hookfail', { bundle: dir });
  await assert.rejects(rt.start('hookfail'), (e: Error) => {
    assert.match(e.message, /unable to start container process: .*startContainer.*\/bin\/sh/);
    assert.match(e.message, /7/);
    return true;
  });
  assert.equal((await rt.state('hookfail')).status, 'stopped');
});

test('start succeeds and the process runs when nothing fails after the fifo', async (t) => {
  const { dir, rt } = bundle(t, () => undefined);
  await rt.create('ok1', { bundle: dir });
  assert.equal((await rt.state('ok1')).status, 'created');
  await rt.start('ok1');
  assert.equal((await rt.state('ok1')).status, 'running');
  const cmdline = readFileSync(`/proc/${(await rt.state('ok1')).pid}/cmdline`, 'utf8');
  assert.match(cmdline, /sleep/);
});

test('a container whose process runs as a non-root user without capabilities starts (exec fifo reachable)', async (t) => {
  const { dir, rt } = bundle(t, (s) => {
    if (!s.process) return;
    s.process.user = { uid: 1000, gid: 1000 };
    s.process.capabilities = {};
  });
  await rt.create('nonroot', { bundle: dir });
  await rt.start('nonroot');
  const st = await rt.state('nonroot');
  assert.equal(st.status, 'running');
  const status = readFileSync(`/proc/${st.pid}/status`, 'utf8');
  assert.match(status, /^Uid:\s+1000\s/m);
  assert.match(status, /^CapEff:\s+0+$/m);
});

test('events reports an OOM kill, also when it killed the container process itself', async (t) => {
  const { dir, rt } = bundle(t, (s) => {
    if (!s.process || !s.linux) return;
    // The shell holds the whole output of the pipe: it is the one the OOM killer picks.
    s.process.args = ['sh', '-c', 'sleep 1; x=$(head -c 200000000 /dev/zero | tr "\\0" a); sleep 5'];
    s.linux.resources = { ...(s.linux.resources ?? {}), memory: { limit: 32 << 20, swap: 32 << 20 } };
  });
  await rt.create('oomer', { bundle: dir });
  await rt.start('oomer');
  const cli = fileURLToPath(new URL('../../bin/berth-runc.js', import.meta.url));
  const r = spawnSync(process.execPath, [cli, '--root', rt.root, 'events', '--interval', '1s', 'oomer'], { encoding: 'utf8', timeout: 20_000 });
  const types = r.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { type: string }).type);
  assert.ok(types.includes('stats'), r.stdout);
  assert.ok(types.includes('oom'), r.stdout + r.stderr);
  assert.ok(await rt.oomCount('oomer') >= 1);
});
