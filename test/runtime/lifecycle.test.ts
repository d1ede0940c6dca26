// Conformance: the container lifecycle through runc's command line (run, create,
// start, state, list, kill, delete, ps, pause, resume), for every runtime.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  RuntimeKit,
  describeResult,
  eachRuntime,
  probe,
  sleep,
  waitFor,
} from '../lib/index.js';
import type { OciState } from '../lib/index.js';

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

/** Gone, or a zombie waiting for its reaper. */
function processGone(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

function fileText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

eachRuntime('run', (rt) => {
  it('exits 0 when the process exits 0', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'exit', '0']; } });
    const r = await k.run(b);
    assert.equal(r.code, 0, describeResult(r));
  });

  it('passes the exit code through (3)', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'exit', '3']; } });
    const r = await k.run(b);
    assert.equal(r.code, 3, describeResult(r));
  });

  it('exits 128+9 = 137 when the process is killed by SIGKILL', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'sleep', '60']; } });
    const id = k.newId();
    const running = k.run(b, { id });
    await k.waitStatus(id, 'running');
    await k.ok(['kill', id, 'KILL']);
    const r = await running;
    assert.equal(r.code, 137, describeResult(r));
  });

  it('connects stdin and stdout to the container process', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'echo-stdin']; } });
    const r = await k.run(b, { input: 'hello through the container\n' });
    assert.equal(r.code, 0, describeResult(r));
    assert.equal(r.stdout, 'hello through the container\n');
  });

  it('removes the container after a foreground run', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'exit', '0']; } });
    const r = await k.run(b);
    assert.equal(r.code, 0, describeResult(r));
    const list = await k.ok(['list', '-q']);
    assert.equal(list.stdout.trim(), '');
  });
});

eachRuntime('lifecycle', (rt) => {
  it('create -> created (not yet exec), start -> running, kill -> stopped, delete -> gone', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'signals']; } });
    const pidFile = join(k.work, 'pid');
    const before = Date.now();
    const c = await k.create(b, { pidFile });
    assert.equal(c.code, 0, describeResult(c));

    const created = await k.state(c.id);
    assert.equal(created.status, 'created');
    assert.equal(created.id, c.id);
    assert.ok(typeof created.pid === 'number' && created.pid > 0, `created state has a pid: ${JSON.stringify(created)}`);
    const pid = created.pid;
    k.cleanup.pid(pid);
    assert.equal(Number(readFileSync(pidFile, 'utf8').trim()), pid, '--pid-file holds the container pid');
    assert.ok(!cmdline(pid).startsWith('/probe'), `the user process must not run before start; cmdline is ${cmdline(pid)}`);
    assert.equal(fileText(c.stdoutFile), '', 'the probe printed nothing before start');

    // The state fields (runtime.md "State"; runc adds rootfs, created, owner).
    assert.equal(typeof created.ociVersion, 'string');
    assert.ok(created.ociVersion.length > 0);
    assert.equal(created.bundle, b.dir);
    assert.ok(created.rootfs === b.rootfs || created.rootfs === 'rootfs', `rootfs is ${created.rootfs}`);
    assert.equal(typeof created.created, 'string');
    const at = Date.parse(created.created ?? '');
    assert.ok(at >= before - 5_000 && at <= Date.now() + 5_000, `created is a timestamp of now: ${created.created}`);
    assert.equal(typeof created.owner, 'string');

    await k.ok(['start', c.id]);
    await waitFor('the probe to start', () => (fileText(c.stdoutFile).includes('ready') ? true : undefined));
    const running = await k.state(c.id);
    assert.equal(running.status, 'running');
    assert.equal(running.pid, pid);
    assert.ok(cmdline(pid).startsWith('/probe signals'), `after start the pid runs the probe: ${cmdline(pid)}`);

    await k.ok(['kill', c.id]); // SIGTERM by default
    const stopped = await k.waitStatus(c.id, 'stopped');
    assert.equal(stopped.id, c.id);
    assert.ok(fileText(c.stdoutFile).includes('SIGTERM'), 'the default signal is SIGTERM');

    await k.ok(['delete', c.id]);
    const gone = await k.cmd(['state', c.id]);
    assert.notEqual(gone.code, 0, 'state of a deleted container fails');
    const list = await k.ok(['list', '-q']);
    assert.ok(!list.stdout.includes(c.id));
  });

  it('start runs the process exactly once: a second start fails', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'sleep', '30']; } });
    const c = await k.startContainer(b);
    const again = await k.cmd(['start', c.id]);
    assert.notEqual(again.code, 0, `second start must fail: ${describeResult(again)}`);
    assert.equal((await k.state(c.id)).status, 'running');
  });

  it('start of a stopped container fails', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'exit', '0']; } });
    const c = await k.startContainer(b);
    await k.waitStatus(c.id, 'stopped');
    const again = await k.cmd(['start', c.id]);
    assert.notEqual(again.code, 0, describeResult(again));
  });

  it('delete of a running container without -f fails and leaves it running', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'sleep', '30']; } });
    const c = await k.startContainer(b);
    const r = await k.cmd(['delete', c.id]);
    assert.notEqual(r.code, 0, describeResult(r));
    assert.equal((await k.state(c.id)).status, 'running');
  });

  it('delete -f kills and removes a running container', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'sleep', '60']; } });
    const c = await k.startContainer(b);
    await k.ok(['delete', '-f', c.id]);
    await waitFor(`pid ${c.pid} to end`, () => (processGone(c.pid) ? true : undefined));
    const s = await k.cmd(['state', c.id]);
    assert.notEqual(s.code, 0);
  });

  it('delete -f removes a created container that never started', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'sleep', '60']; } });
    const c = await k.create(b);
    assert.equal(c.code, 0, describeResult(c));
    const pid = (await k.state(c.id)).pid ?? 0;
    await k.ok(['delete', '-f', c.id]);
    await waitFor(`pid ${pid} to end`, () => (processGone(pid) ? true : undefined));
    assert.notEqual((await k.cmd(['state', c.id])).code, 0);
  });

  it('kill sends signals given by name, SIG-name and number', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'signals']; } });
    const c = await k.startContainer(b);
    const lines = (): string[] => fileText(c.stdoutFile).split('\n').filter(Boolean);
    await waitFor('ready', () => (lines().includes('ready') ? true : undefined));
    const sends: Array<[string, string]> = [['USR1', 'SIGUSR1'], ['SIGUSR2', 'SIGUSR2'], ['10', 'SIGUSR1'], ['SIGHUP', 'SIGHUP'], ['15', 'SIGTERM']];
    let n = 1;
    for (const [arg, expected] of sends) {
      await k.ok(['kill', c.id, arg]);
      n++;
      await waitFor(`${expected} after kill ${arg}`, () => (lines().length >= n ? true : undefined));
      assert.equal(lines()[n - 1], expected, `kill ${arg}`);
    }
    await k.waitStatus(c.id, 'stopped');
  });

  it('kill of a stopped container fails', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'exit', '0']; } });
    const c = await k.startContainer(b);
    await k.waitStatus(c.id, 'stopped');
    const r = await k.cmd(['kill', c.id, 'KILL']);
    assert.notEqual(r.code, 0, describeResult(r));
  });

  it('list shows containers as a table, as JSON and as ids (-q)', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const empty = await k.ok(['list', '-q']);
    assert.equal(empty.stdout.trim(), '');
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'sleep', '30']; } });
    const c1 = await k.create(b);
    assert.equal(c1.code, 0, describeResult(c1));
    const b2 = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'sleep', '30']; } });
    const c2 = await k.startContainer(b2);

    const table = await k.ok(['list']);
    const rows = table.stdout.split('\n').filter(Boolean);
    assert.match(rows[0] ?? '', /PID\s+STATUS\s+BUNDLE/, 'a header line');
    const row1 = rows.find((r) => r.startsWith(`${c1.id} `));
    const row2 = rows.find((r) => r.startsWith(`${c2.id} `));
    assert.ok(row1 && /\bcreated\b/.test(row1) && row1.includes(b.dir), `row for ${c1.id}: ${table.stdout}`);
    assert.ok(row2 && /\brunning\b/.test(row2) && row2.includes(String(c2.pid)), `row for ${c2.id}: ${table.stdout}`);

    const json = await k.ok(['list', '--format', 'json']);
    const parsed: unknown = JSON.parse(json.stdout);
    assert.ok(Array.isArray(parsed));
    const entries = parsed as OciState[];
    const e1 = entries.find((e) => e.id === c1.id);
    const e2 = entries.find((e) => e.id === c2.id);
    assert.equal(e1?.status, 'created');
    assert.equal(e1?.bundle, b.dir);
    assert.ok((e1?.pid ?? 0) > 0);
    assert.equal(e2?.status, 'running');
    assert.equal(e2?.pid, c2.pid);
    assert.equal(typeof e2?.created, 'string');

    const quiet = await k.ok(['list', '-q']);
    assert.deepEqual(quiet.stdout.split('\n').filter(Boolean).sort(), [c1.id, c2.id].sort());
  });

  it('ps --format json lists the container processes (host pids)', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'sleep', '30']; } });
    const c = await k.startContainer(b);
    const r = await k.ok(['ps', '--format', 'json', c.id]);
    const pids: unknown = JSON.parse(r.stdout);
    assert.ok(Array.isArray(pids));
    assert.ok((pids as unknown[]).includes(c.pid), `ps lists ${c.pid}: ${r.stdout}`);
  });

  it('pause freezes every process and resume thaws them', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({
      mutate: (c) => { c.process.args = ['/bin/sh', '-c', 'while :; do echo x >> /tmp/ticks; usleep 20000; done']; },
    });
    const c = await k.startContainer(b);
    const ticks = join(b.rootfs, 'tmp', 'ticks');
    const size = (): number => (existsSync(ticks) ? statSync(ticks).size : 0);
    await waitFor('the loop to tick', () => (size() > 0 ? true : undefined));

    await k.ok(['pause', c.id]);
    assert.equal((await k.state(c.id)).status, 'paused');
    await sleep(100); // let a write in flight land
    const frozen = size();
    await sleep(500);
    assert.equal(size(), frozen, 'no tick while paused');

    await k.ok(['resume', c.id]);
    assert.equal((await k.state(c.id)).status, 'running');
    await waitFor('ticks after resume', () => (size() > frozen ? true : undefined), 5_000);
  });
});

eachRuntime('exec', (rt) => {
  // One running container per test; each test checks one flag of exec.
  async function running(k: RuntimeKit): Promise<{ id: string; pid: number }> {
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'sleep', '60']; } });
    return k.startContainer(b);
  }

  it('runs args inside the container (its pid namespace, root)', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const c = await running(k);
    const r = await k.exec(c.id, ['/probe', 'ids', 'pid', 'ns', 'hostname']);
    assert.equal(r.code, 0, describeResult(r));
    const f = probe(r.stdout);
    assert.equal(f.ids?.uid, 0);
    assert.notEqual(f.pid, 1, 'not the init process');
    assert.equal(f.hostname, 'berth-test');
    for (const ns of ['pid', 'mnt', 'net', 'uts', 'ipc']) {
      assert.equal(f.ns?.[ns], readlinkSync(`/proc/${c.pid}/ns/${ns}`), `same ${ns} namespace as the container's init`);
    }
  });

  it('passes the exit code through', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const c = await running(k);
    const r = await k.exec(c.id, ['/probe', 'exit', '42']);
    assert.equal(r.code, 42, describeResult(r));
  });

  it('-e sets environment variables; --cwd sets the working directory', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const c = await running(k);
    const r = await k.exec(c.id, ['/probe', 'env', 'cwd'], { env: ['FOO=bar', 'SPACED=a b'], cwd: '/etc' });
    assert.equal(r.code, 0, describeResult(r));
    const f = probe(r.stdout);
    assert.ok(f.env?.includes('FOO=bar'), JSON.stringify(f.env));
    assert.ok(f.env?.includes('SPACED=a b'), JSON.stringify(f.env));
    assert.equal(f.cwd, '/etc');
  });

  // runc also has --additional-gids; crun 1.8 has not, so groups are checked through -p.
  it('-u uid:gid sets the identity', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const c = await running(k);
    const r = await k.exec(c.id, ['/probe', 'ids'], { user: '1000:1000' });
    assert.equal(r.code, 0, describeResult(r));
    const ids = probe(r.stdout).ids;
    assert.equal(ids?.uid, 1000);
    assert.equal(ids?.euid, 1000);
    assert.equal(ids?.gid, 1000);
    assert.equal(ids?.egid, 1000);
  });

  it('-p process.json gives args, env, cwd and user', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const c = await running(k);
    const processJson = join(k.work, 'process.json');
    writeFileSync(processJson, JSON.stringify({
      terminal: false,
      user: { uid: 65534, gid: 65534, additionalGids: [10, 20] },
      args: ['/probe', 'ids', 'env', 'cwd'],
      env: ['PATH=/bin', 'FROM_PROCESS_JSON=1'],
      cwd: '/tmp',
      noNewPrivileges: true,
    }));
    const r = await k.exec(c.id, [], { processJson });
    assert.equal(r.code, 0, describeResult(r));
    const f = probe(r.stdout);
    assert.equal(f.ids?.uid, 65534);
    assert.equal(f.ids?.gid, 65534);
    assert.deepEqual([...(f.ids?.groups ?? [])].sort((a, b) => a - b), [10, 20]);
    assert.ok(f.env?.includes('FROM_PROCESS_JSON=1'), JSON.stringify(f.env));
    assert.equal(f.cwd, '/tmp');
  });

  it('-d detaches: returns at once, the process keeps running in the container', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const c = await running(k);
    const pidFile = join(k.work, 'exec.pid');
    const started = Date.now();
    const r = await k.exec(c.id, ['/probe', 'sleep', '20'], { detach: true, extra: ['--pid-file', pidFile] }, {
      stdoutFile: join(k.work, 'exec-d.out'),
      stderrFile: join(k.work, 'exec-d.err'),
    });
    assert.equal(r.code, 0, describeResult(r));
    assert.ok(Date.now() - started < 15_000, 'exec -d did not wait for the process');
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    k.cleanup.pid(pid);
    // The runtime may return just before the process has called execve.
    await waitFor(`exec'd pid ${pid} to run the probe (cmdline: ${cmdline(pid)})`, () =>
      cmdline(pid).startsWith('/probe sleep 20') ? true : undefined, 5_000);
    const ps = await k.ok(['ps', '--format', 'json', c.id]);
    const pids = JSON.parse(ps.stdout) as number[];
    assert.ok(pids.includes(pid) && pids.includes(c.pid), `ps shows both: ${ps.stdout}`);
  });

  it('exec into a stopped container fails', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'exit', '0']; } });
    const c = await k.startContainer(b);
    await k.waitStatus(c.id, 'stopped');
    const r = await k.exec(c.id, ['/probe', 'exit', '0']);
    assert.notEqual(r.code, 0, describeResult(r));
  });
});

eachRuntime('errors', (rt) => {
  it('an unknown id fails with a message for state, start, kill, delete, exec, ps, pause', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const id = k.newId('missing');
    for (const args of [['state', id], ['start', id], ['kill', id, 'KILL'], ['delete', id], ['exec', id, '/probe'], ['ps', id], ['pause', id]]) {
      const r = await k.cmd(args);
      assert.notEqual(r.code, 0, describeResult(r));
      assert.ok(r.stderr.trim().length > 0, `a message on stderr: ${describeResult(r)}`);
    }
  });

  it('a config.json that is not JSON fails create, and leaves no container', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle();
    writeFileSync(b.configPath, '{ "ociVersion": "1.0.2", "process": ');
    const c = await k.create(b);
    assert.notEqual(c.code, 0, describeResult(c));
    assert.ok(c.stderr.trim().length > 0, 'an error message');
    assert.equal((await k.ok(['list', '-q'])).stdout.trim(), '');
  });

  it('a process that cannot be executed fails start or create', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/no/such/binary']; } });
    const c = await k.create(b);
    if (c.code === 0) {
      const s = await k.cmd(['start', c.id]);
      assert.notEqual(s.code, 0, `start of a missing binary must fail: ${describeResult(s)}`);
    }
  });

  it('a duplicate id is refused', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'sleep', '30']; } });
    const c = await k.create(b);
    assert.equal(c.code, 0, describeResult(c));
    const again = await k.create(b, { id: c.id });
    assert.notEqual(again.code, 0, describeResult(again));
    assert.equal((await k.state(c.id)).status, 'created');
  });
});
