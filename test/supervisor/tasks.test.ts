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
import { status } from '@grpc/grpc-js';
import {
  Api, CONTAINERS, CTR, cleanup, ctr, ctrOk, grpcError, loadProtos, rows, specAny, startDaemon, tempDirs,
} from './_daemon.js';
import type { DaemonProcess } from './_daemon.js';
import { BERTH_RUNC, CRUN, RUNC, copyRootfs, crunWrapper, killLeftovers, liveEvents, removeCtrFifos, underPty, until } from './_tasks.js';

const TASKS = 'containerd.services.tasks.v1.Tasks';
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
    removeCtrFifos(['d1', 'e1', 'e2', 'f1', 'ev1', 'e1', 'bad']);
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

test('fast path: berth-runc sees the container, update, metrics, file:// logs, errors', async () => {
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

    const api = new Api(a);
    try {
      const resources = { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from(JSON.stringify({ memory: { limit: 64 << 20 } })) };
      await api.unary(TASKS, 'Update', { container_id: 'f1', resources }, ns);
      const limitFile = `/sys/fs/cgroup/memory/${ns}/f1/memory.limit_in_bytes`;
      if (existsSync(limitFile)) assert.equal(readFileSync(limitFile, 'utf8').trim(), String(64 << 20));
      assert.match(ctrOk(a, ['task', 'metrics', 'f1'], ns), new RegExp(`memory\\.limit_in_bytes\\s+${64 << 20}`));
    } finally {
      api.close();
    }

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
  // ctr prints labels from a Go map: in any order.
  const labels = (ls[0]?.[ls[0].length - 1] ?? '').split(',').sort();
  assert.equal(labels.length, 2);
  assert.match(labels[0] ?? '', /^containerd\.io\/gc\.expire=.+/);
  assert.equal(labels[1], 'team=blue');
  const dup = ctr(a, ['leases', 'create', '--id', 'l1'], ns);
  assert.match(dup.stderr, /lease "l1": already exists/);
  ctrOk(a, ['leases', 'rm', 'l1'], ns);
  assert.deepEqual(rows(ctrOk(a, ['leases', 'ls'], ns)), []);
  assert.match(ctr(a, ['leases', 'rm', 'l1'], ns).stderr, /lease "l1": not found/);
});

test('task events: create, start, exec added and started, exits, paused, resumed, delete', async () => {
  const a = dirs.address;
  const ns = extraNs;
  const api = new Api(a);
  try {
    const { stream, until: eventsUntil } = await liveEvents(api, ns, [`topic~="^/tasks/",namespace==${ns}`]);
    const protos = loadProtos();
    ctrOk(a, ['run', '-d', '--rootfs', rootfs, 'ev1', '/bin/sleep', '300'], ns);
    ctrOk(a, ['task', 'exec', '--exec-id', 'e1', 'ev1', '/bin/true'], ns);
    ctrOk(a, ['task', 'pause', 'ev1'], ns);
    ctrOk(a, ['task', 'resume', 'ev1'], ns);
    ctrOk(a, ['task', 'kill', '-s', 'SIGKILL', 'ev1'], ns);
    await statusBecomes(ns, 'ev1', 'STOPPED');
    ctr(a, ['task', 'rm', 'ev1'], ns);
    ctrOk(a, ['containers', 'rm', 'ev1'], ns);
    const msgs = await eventsUntil((got) => got.some((m) => m['topic'] === '/tasks/delete'));
    stream.cancel();
    const events = msgs.map((m) => {
      const any = m['event'] as { type_url: string; value: Buffer };
      return { topic: String(m['topic']), type: any.type_url, body: protos.decode(any.type_url, any.value) };
    });
    assert.deepEqual(events.map((e) => e.topic), [
      '/tasks/create', '/tasks/start', '/tasks/exec-added', '/tasks/exec-started', '/tasks/exit',
      '/tasks/paused', '/tasks/resumed', '/tasks/exit', '/tasks/delete',
    ]);
    const [create, start, , execStarted, execExit, , , exit, del] = events;
    assert.equal(create?.type, 'containerd.events.TaskCreate');
    assert.equal(create?.body['bundle'], join(dirs.state, 'io.containerd.runtime.v2.task', ns, 'ev1'));
    assert.equal(create?.body['pid'], start?.body['pid']);
    assert.deepEqual([execStarted?.body['exec_id'], execExit?.body['id'], execExit?.body['exit_status']], ['e1', 'e1', 0]);
    assert.deepEqual([exit?.body['id'], exit?.body['exit_status']], ['ev1', 137]);
    assert.deepEqual([del?.type, del?.body['exit_status'], del?.body['pid']], ['containerd.events.TaskDelete', 137, start?.body['pid']]);
  } finally {
    api.close();
  }
});

test('Tasks API: errors in containerd words, checkpoint not supported, hooks take the runtime path', async () => {
  const a = dirs.address;
  const ns = extraNs;
  const api = new Api(a);
  try {
    const spec = JSON.parse(spawnSync(process.execPath, [BERTH_RUNC, 'spec', '--bundle', dirs.base], { encoding: 'utf8' }).status === 0
      ? readFileSync(join(dirs.base, 'config.json'), 'utf8') : '{}') as Record<string, unknown> & { process: Record<string, unknown>; linux: Record<string, unknown> };
    spec['root'] = { path: rootfs, readonly: false };
    spec.process['terminal'] = false;
    spec.process['args'] = ['/bin/sh', '-c', 'echo hooked; exit 6'];
    spec.linux['cgroupsPath'] = `/${ns}/h1`;
    spec['hooks'] = { prestart: [{ path: '/bin/true' }] };
    await api.unary(CONTAINERS, 'Create', { container: { id: 'h1', runtime: { name: 'io.containerd.runc.v2' }, spec: specAny(spec) } }, ns);

    const missing = await grpcError(api.unary(TASKS, 'Get', { container_id: 'h1' }, ns));
    assert.deepEqual(missing, { code: status.NOT_FOUND, details: 'no running task found: task h1 not found: not found' });
    const cp = await grpcError(api.unary(TASKS, 'Create', { container_id: 'h1', checkpoint: { digest: 'sha256:00', media_type: 'x', size: 1 } }, ns));
    assert.deepEqual(cp, { code: status.UNIMPLEMENTED, details: 'checkpoint is not supported: not implemented' });
    assert.equal((await grpcError(api.unary(TASKS, 'Checkpoint', { container_id: 'h1' }, ns))).code, status.UNIMPLEMENTED);

    const out = join(dirs.base, 'logs', 'h1.log');
    const created = await api.unary(TASKS, 'Create', { container_id: 'h1', stdout: `file://${out}`, stderr: `file://${out}` }, ns);
    const shimPid = Number(readFileSync(join(dirs.state, 'shims', ns, 'h1', 'shim.pid'), 'utf8'));
    assert.match(readFileSync(`/proc/${shimPid}/cmdline`, 'utf8'), /--runtime\0[^\0]*berth-runc\.js\0/);
    const again = await grpcError(api.unary(TASKS, 'Create', { container_id: 'h1' }, ns));
    assert.deepEqual(again, { code: status.ALREADY_EXISTS, details: 'task h1: already exists' });
    const waited = api.unary(TASKS, 'Wait', { container_id: 'h1' }, ns);
    const started = await api.unary(TASKS, 'Start', { container_id: 'h1' }, ns);
    assert.equal(started['pid'], created['pid']);
    const w = await waited;
    assert.equal(w['exit_status'], 6);
    assert.equal(readFileSync(out, 'utf8'), 'hooked\n');
    const restart = await grpcError(api.unary(TASKS, 'Start', { container_id: 'h1' }, ns));
    assert.deepEqual(restart, { code: status.FAILED_PRECONDITION, details: 'cannot start a task in stopped state: failed precondition' });
    const got = await api.unary(TASKS, 'Get', { container_id: 'h1' }, ns);
    assert.deepEqual((({ status: s, exit_status: e }) => ({ s, e }))(got['process'] as { status: string; exit_status: number }), { s: 'STOPPED', e: 6 });
    const del = await api.unary(TASKS, 'Delete', { container_id: 'h1' }, ns);
    assert.equal(del['exit_status'], 6);
    await api.unary(CONTAINERS, 'Delete', { id: 'h1' }, ns);
  } finally {
    api.close();
  }
});
