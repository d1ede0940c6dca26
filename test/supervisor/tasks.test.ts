/**
 * Tasks through the real ctr (Debian containerd 1.6) against berth-containerd,
 * for each runtime: the fast path (the default: the shim runs berth-runc's
 * executor on a plan the supervisor made), and ctr's --runc-binary with
 * berth-runc, runc and crun. Root only.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CTR, DaemonProcess, cleanup, ctr, ctrOk, rows, startDaemon, tempDirs } from './_daemon.js';
import { BERTH_RUNC, CRUN, RUNC, copyRootfs, crunWrapper, killLeftovers, underPty, until } from './_tasks.js';

const dirs = tempDirs();
let daemon: DaemonProcess | undefined;
let rootfs = '';
let crun = '';

interface Variant {
  readonly name: string;
  readonly ns: string;
  readonly flags: () => string[];
  readonly skip: string | false;
}

const tag = `${process.pid}`;
const variants: Variant[] = [
  { name: 'the fast path', ns: `tfast${tag}`, flags: () => [], skip: false },
  { name: 'berth-runc', ns: `tbrunc${tag}`, flags: () => ['--runc-binary', BERTH_RUNC], skip: false },
  { name: 'runc', ns: `trunc${tag}`, flags: () => ['--runc-binary', RUNC], skip: existsSync(RUNC) ? false : 'runc is not installed' },
  { name: 'crun', ns: `tcrun${tag}`, flags: () => ['--runc-binary', crun], skip: existsSync(CRUN) ? false : 'crun is not installed' },
];
const extraNs = `textra${tag}`;
const allNs = [...variants.map((v) => v.ns), extraNs];

before(async () => {
  rootfs = copyRootfs(dirs.base);
  crun = crunWrapper(dirs.base);
  daemon = await startDaemon(dirs);
});

after(async () => {
  try {
    await killLeftovers(dirs.state, allNs);
  } finally {
    await cleanup(daemon, dirs);
  }
});

function taskRow(address: string, ns: string, id: string): string[] | undefined {
  return rows(ctrOk(address, ['task', 'ls'], ns)).find((r) => r[0] === id);
}

async function statusBecomes(ns: string, id: string, status: string): Promise<void> {
  await until(`task ${id} ${status}`, () => taskRow(dirs.address, ns, id)?.[2] === status);
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

for (const v of variants) {
  test(`ctr runs and manages containers with ${v.name}`, { skip: v.skip }, async () => {
    const a = dirs.address;
    const ns = v.ns;
    const run = (args: string[]): ReturnType<typeof ctr> => ctr(a, ['run', ...v.flags(), '--rootfs', ...args], ns);

    // Output and exit codes pass through.
    const hi = run(['--rm', rootfs, 'echo1', '/bin/echo', 'hi']);
    assert.equal(hi.code, 0, hi.stderr);
    assert.equal(hi.stdout, 'hi\n');
    const three = run(['--rm', rootfs, 'exit1', '/bin/sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.equal(three.code, 3, three.stderr);
    assert.equal(three.stdout, 'out\n');
    assert.match(three.stderr, /err\n/);

    // Detached, then managed.
    ctrOk(a, ['run', '-d', ...v.flags(), '--rootfs', rootfs, 'd1', '/bin/sleep', '300'], ns);
    const row = taskRow(a, ns, 'd1');
    assert.equal(row?.[2], 'RUNNING');
    const pid = Number(row?.[1]);
    assert.ok(pid > 1 && alive(pid), `init pid ${pid} runs`);

    const ex = ctr(a, ['task', 'exec', '--exec-id', 'e1', 'd1', '/bin/sh', '-c', 'echo from exec; exit 4'], ns);
    assert.equal(ex.code, 4, ex.stderr);
    assert.equal(ex.stdout, 'from exec\n');
    ctrOk(a, ['task', 'exec', '-d', '--exec-id', 'e2', 'd1', '/bin/sleep', '300'], ns);
    const dup = ctr(a, ['task', 'exec', '-d', '--exec-id', 'e2', 'd1', '/bin/true'], ns);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /id e2: already exists/);

    const ps = rows(ctrOk(a, ['task', 'ps', 'd1'], ns));
    assert.equal(ps.length, 2, JSON.stringify(ps));
    assert.deepEqual(ps.find((r) => Number(r[0]) === pid), [String(pid), '-']);
    assert.match(ps.find((r) => Number(r[0]) !== pid)?.join(' ') ?? '', /ExecID:e2/);

    ctrOk(a, ['task', 'pause', 'd1'], ns);
    assert.equal(taskRow(a, ns, 'd1')?.[2], 'PAUSED');
    const again = ctr(a, ['task', 'pause', 'd1'], ns);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /cannot pause a task in paused state: failed precondition/);
    ctrOk(a, ['task', 'resume', 'd1'], ns);
    assert.equal(taskRow(a, ns, 'd1')?.[2], 'RUNNING');

    const busy = ctr(a, ['task', 'rm', 'd1'], ns);
    assert.notEqual(busy.code, 0);
    assert.match(busy.stderr, /task must be stopped before deletion: running/);

    ctrOk(a, ['task', 'kill', '-s', 'SIGKILL', 'd1'], ns);
    await statusBecomes(ns, 'd1', 'STOPPED');
    assert.ok(!alive(pid), 'the init process is gone');
    const finished = ctr(a, ['task', 'kill', 'd1'], ns);
    assert.match(finished.stderr, /process already finished: not found/);
    const rm = ctr(a, ['task', 'rm', 'd1'], ns);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stderr, /exit code 137/);
    assert.equal(taskRow(a, ns, 'd1'), undefined);

    assert.deepEqual(rows(ctrOk(a, ['containers', 'ls'], ns)).map((r) => [r[0], r[2]]), [['d1', 'io.containerd.runc.v2']]);
    const info = JSON.parse(ctrOk(a, ['containers', 'info', 'd1'], ns)) as { Runtime?: { Name?: string } };
    assert.equal(info.Runtime?.Name, 'io.containerd.runc.v2');
    ctrOk(a, ['containers', 'rm', 'd1'], ns);
    assert.deepEqual(rows(ctrOk(a, ['containers', 'ls'], ns)), []);

    // A terminal: the process sees a pty, its exit code comes back.
    const flags = v.flags().map((f) => `'${f}'`).join(' ');
    const tty = underPty(`${CTR} --address ${a} -n ${ns} run -t --rm ${flags} --rootfs ${rootfs} tty1 /bin/sh -c 'tty; exit 5'`);
    assert.equal(tty.code, 5, tty.output);
    assert.match(tty.output, /\/dev\/pts\/\d+/);
    const typed = underPty(`${CTR} --address ${a} -n ${ns} run -t --rm ${flags} --rootfs ${rootfs} tty2 /bin/sh`, 'echo typed-$((6*7)); exit 7\n');
    assert.equal(typed.code, 7, typed.output);
    assert.match(typed.output, /typed-42/);
    assert.doesNotMatch(typed.output, /resize pty/);

    // Nothing is left of the tasks.
    assert.deepEqual(rows(ctrOk(a, ['task', 'ls'], ns)), []);
    for (const d of ['shims', 'io.containerd.runtime.v2.task']) {
      const dir = join(dirs.state, d, ns);
      assert.deepEqual(existsSync(dir) ? readdirSync(dir) : [], [], `${dir} is empty`);
    }
  });
}

test('fast path: berth-runc sees the container, metrics, file:// logs, errors', async () => {
  const a = dirs.address;
  const ns = extraNs;
  ctrOk(a, ['run', '-d', '--rootfs', rootfs, 'f1', '/bin/sleep', '300'], ns);
  try {
    const pid = Number(taskRow(a, ns, 'f1')?.[1]);
    const runcRoot = join(dirs.state, 'runc', ns);
    const st = spawnSync(process.execPath, [BERTH_RUNC, '--root', runcRoot, 'state', 'f1'], { encoding: 'utf8' });
    assert.equal(st.status, 0, st.stderr);
    const state = JSON.parse(st.stdout) as { status: string; pid: number; bundle: string };
    assert.equal(state.status, 'running');
    assert.equal(state.pid, pid);
    assert.equal(state.bundle, join(dirs.state, 'io.containerd.runtime.v2.task', ns, 'f1'));

    const metrics = ctrOk(a, ['task', 'metrics', 'f1'], ns);
    assert.match(metrics, /memory\.usage_in_bytes\s+[1-9]\d*/);
    assert.match(metrics, /pids\.current\s+[1-9]/);

    const exec = ctr(a, ['task', 'exec', '--exec-id', 'bad', 'f1', '/no/such/binary'], ns);
    assert.notEqual(exec.code, 0);
    assert.match(exec.stderr, /no\/such\/binary/);
  } finally {
    ctr(a, ['task', 'kill', '-s', 'SIGKILL', 'f1'], ns);
    await statusBecomes(ns, 'f1', 'STOPPED');
    ctrOk(a, ['task', 'rm', 'f1'], ns);
    ctrOk(a, ['containers', 'rm', 'f1'], ns);
  }
  assert.ok(!existsSync(join(dirs.state, 'runc', ns, 'f1')), 'the runtime state is removed');

  const log = join(dirs.base, 'logs', 'f2.log');
  const r = ctr(a, ['run', '--rm', '--log-uri', `file://${log}`, '--rootfs', rootfs, 'f2', '/bin/sh', '-c', 'echo to-log; echo err-log >&2'], ns);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(log, 'utf8').split('\n').sort().join(','), ',err-log,to-log');

  const missing = ctr(a, ['run', '--rm', '--rootfs', rootfs, 'f3', '/no/such/binary'], ns);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /failed to create task f3: .*no\/such\/binary/);
  ctr(a, ['containers', 'rm', 'f3'], ns);
  assert.deepEqual(rows(ctrOk(a, ['task', 'ls'], ns)), []);
});

test('ctr leases create, ls, rm', () => {
  const a = dirs.address;
  const ns = extraNs;
  assert.equal(ctrOk(a, ['leases', 'create', '--id', 'l1', 'team=blue'], ns).trim(), 'l1');
  const ls = rows(ctrOk(a, ['leases', 'ls'], ns));
  assert.deepEqual(ls.map((r) => r[0]), ['l1']);
  assert.match(ls[0]?.[ls[0].length - 1] ?? '', /^containerd\.io\/gc\.expire=[^,]+,team=blue$/);
  const dup = ctr(a, ['leases', 'create', '--id', 'l1'], ns);
  assert.match(dup.stderr, /lease "l1": already exists/);
  ctrOk(a, ['leases', 'rm', 'l1'], ns);
  assert.deepEqual(rows(ctrOk(a, ['leases', 'ls'], ns)), []);
  assert.match(ctr(a, ['leases', 'rm', 'l1'], ns).stderr, /lease "l1": not found/);
});
