/**
 * berth-shim, run for real (root): started directly, with runc and berth-runc as
 * the runtime and with the executor on the fast path. Every test removes what it
 * made (shim, container, state, cgroup, temp dirs) even when it fails.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, rmdirSync, writeFileSync, writeSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { encodePlan, planCreate, planExec } from '@berth/runtime';
import {
  Attach, Cleanup, Control, EXECUTOR, alive, makeBundle, mkfifo, readLog, runtimes, sleep, startShim, until, vmRssKb,
} from './harness.js';
import type { Json, Runtime } from './harness.js';

let seq = 0;
const newId = (): string => `shimt-${process.pid}-${++seq}`;

function readAll(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    createReadStream(path, { encoding: 'utf8' })
      .on('data', (d) => { s += String(d); })
      .on('end', () => resolve(s))
      .on('error', reject);
  });
}

async function withRuntime(rt: Runtime, c: Cleanup, args: string[], opts: { extra?: string[]; edit?: Parameters<typeof makeBundle>[2] } = {}) {
  const tmp = c.tempDir('berth-shim-');
  const bundle = makeBundle(c, args, opts.edit);
  const id = newId();
  const root = join(tmp, 'root');
  const shim = await startShim(c, {
    id, bundle: bundle.dir, stateDir: join(tmp, 'st'), mode: rt.args(root), runtime: { rt, root }, extra: opts.extra ?? [],
  });
  return { tmp, id, root, shim, bundle };
}

for (const rt of runtimes) {
  test(`${rt.name}: create, start, wait; the json log line by line, in order; exit file; delete cleans up`, async (t) => {
    const c = new Cleanup();
    t.after(() => c.run());
    const tmpLog = c.tempDir('berth-shim-log-');
    const logPath = join(tmpLog, 'c-json.log');
    const script = 'i=1; while [ $i -le 300 ]; do echo "line $i"; i=$((i+1)); done; echo "oops <&>" >&2; printf "no newline"; exit 7';
    const { shim, root, id } = await withRuntime(rt, c, ['sh', '-c', script], { extra: ['--log-path', logPath] });
    const ctl = await Control.open(shim.control);
    try {
      const created = await ctl.ok('create');
      assert.ok(typeof created['pid'] === 'number' && created['pid'] > 0);
      c.pid(created['pid']);
      assert.equal((await ctl.ok('state'))['status'], 'created');
      await ctl.ok('subscribe');
      await ctl.ok('start');
      const w = await ctl.ok('wait');
      assert.equal(w['exit_code'], 7);
      assert.match(String(w['exited_at']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
      const ev = await ctl.event((e) => e['event'] === 'exit');
      assert.equal(ev['exit_code'], 7);
      assert.equal(ev['exec_id'], '');

      const log = readLog(logPath);
      const out = log.filter((e) => e.stream === 'stdout');
      assert.equal(out.length, 301);
      out.slice(0, 300).forEach((e, i) => assert.equal(e.log, `line ${i + 1}\n`));
      assert.equal(out[300]?.log, 'no newline');
      assert.deepEqual(log.filter((e) => e.stream === 'stderr').map((e) => e.log), ['oops <&>\n']);
      assert.ok(readFileSync(logPath, 'utf8').includes('"log":"oops \\u003c\\u0026\\u003e\\n"'), 'escaped as Docker does');
      for (const e of log) assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);

      const exit = JSON.parse(readFileSync(join(shim.stateDir, 'exit'), 'utf8')) as Json;
      assert.equal(exit['exit_code'], 7);
      assert.equal(exit['pid'], created['pid']);

      const del = await ctl.ok('delete');
      assert.equal(del['exit_code'], 7);
      await until(() => !alive(shim.pid), 5000, 'the shim to exit');
      assert.equal(existsSync(shim.stateDir), false, 'state dir removed');
      assert.equal(existsSync(join(root, id)), false, 'runtime state removed');
    } finally {
      ctl.close();
    }
  });
}

test('berth-runc: a failing create comes back as the create answer, with the runtime\'s message', async (t) => {
  const c = new Cleanup();
  t.after(() => c.run());
  const rt = runtimes.find((r) => r.name === 'berth-runc');
  assert.ok(rt);
  const { shim } = await withRuntime(rt, c, ['/no/such/binary']);
  const ctl = await Control.open(shim.control);
  try {
    const a = await ctl.call('create');
    assert.equal(a['ok'], false);
    assert.equal(a['code'], 'failed_precondition');
    assert.match(String(a['error']), /no\/such\/binary/);
    const st = await ctl.ok('state');
    assert.equal(st['status'], 'failed');
    await ctl.ok('delete');
    await until(() => !alive(shim.pid), 5000, 'the shim to exit');
  } finally {
    ctl.close();
  }
});

test('runc: log rotation by size keeps max-file files, in order', async (t) => {
  const c = new Cleanup();
  t.after(() => c.run());
  const logPath = join(c.tempDir('berth-shim-log-'), 'c-json.log');
  const script = 'i=1; while [ $i -le 400 ]; do echo "row $i"; i=$((i+1)); done';
  const rt = runtimes[0];
  assert.ok(rt);
  const { shim } = await withRuntime(rt, c, ['sh', '-c', script],
    { extra: ['--log-path', logPath, '--log-max-size', '2000', '--log-max-files', '3'] });
  const ctl = await Control.open(shim.control);
  try {
    await ctl.ok('create');
    await ctl.ok('start');
    assert.equal((await ctl.ok('wait'))['exit_code'], 0);
    assert.ok(existsSync(`${logPath}.1`) && existsSync(`${logPath}.2`));
    assert.equal(existsSync(`${logPath}.3`), false, 'no more than 3 files');
    const lines = [...readLog(`${logPath}.2`), ...readLog(`${logPath}.1`), ...readLog(logPath)].map((e) => e.log);
    const first = Number(/row (\d+)/.exec(lines[0] ?? '')?.[1]);
    assert.ok(first > 1, 'the oldest rows were rotated away');
    lines.forEach((l, i) => assert.equal(l, `row ${first + i}\n`));
    assert.equal(lines.at(-1), 'row 400\n');
    for (const f of [`${logPath}.1`, `${logPath}.2`]) {
      const size = readFileSync(f).length;
      assert.ok(size >= 2000 && size < 2200, `${f}: ${size} bytes`);
    }
    await ctl.ok('delete');
  } finally {
    ctl.close();
  }
});

test('runc: stdout and stderr fifos get the output; the stdin fifo feeds stdin and its EOF closes it', async (t) => {
  const c = new Cleanup();
  t.after(() => c.run());
  const dir = c.tempDir('berth-shim-fifo-');
  const [sin, sout, serr] = ['in', 'out', 'err'].map((n) => join(dir, n));
  assert.ok(sin && sout && serr);
  for (const f of [sin, sout, serr]) mkfifo(f);
  const rt = runtimes[0];
  assert.ok(rt);
  const { shim } = await withRuntime(rt, c, ['sh', '-c', 'while read l; do echo "out $l"; echo "err $l" >&2; done; echo bye'],
    { extra: ['--stdin-fifo', sin, '--stdout-fifo', sout, '--stderr-fifo', serr] });
  const ctl = await Control.open(shim.control);
  try {
    await ctl.ok('create');
    const outP = readAll(sout);
    const errP = readAll(serr);
    await ctl.ok('start');
    const w = openSync(sin, fsc.O_WRONLY);
    writeSync(w, 'a\nb\n');
    await sleep(100);
    writeSync(w, 'c\n');
    closeSync(w);
    assert.equal((await ctl.ok('wait'))['exit_code'], 0);
    assert.equal(await outP, 'out a\nout b\nout c\nbye\n');
    assert.equal(await errP, 'err a\nerr b\nerr c\n');
    await ctl.ok('delete');
  } finally {
    ctl.close();
  }
});

test('runc: a terminal: output through the pty, resize, stdin through attach', async (t) => {
  const c = new Cleanup();
  t.after(() => c.run());
  const logPath = join(c.tempDir('berth-shim-log-'), 'c-json.log');
  const rt = runtimes[0];
  assert.ok(rt);
  const { shim } = await withRuntime(rt, c, ['sh', '-c', 'tty; read x; stty size; echo "got $x"'], {
    extra: ['--terminal', '--stdin', '--log-path', logPath],
    edit: (s) => { if (s.process) s.process.terminal = true; },
  });
  const ctl = await Control.open(shim.control);
  try {
    await ctl.ok('create');
    const a = await Attach.open(shim.attach, { stdin: true, stdout: true, stderr: true });
    assert.deepEqual(a.answer, { ok: true, terminal: true });
    await ctl.ok('start');
    await until(() => a.out[0]?.includes('/dev/pts/') === true, 10_000, 'tty output');
    await ctl.ok('resize', { rows: 33, cols: 77 });
    a.sock.write('hello\n');
    assert.equal((await ctl.ok('wait'))['exit_code'], 0);
    await a.closed;
    assert.match(a.out[0] ?? '', /33 77\r\n/);
    assert.match(a.out[0] ?? '', /got hello\r\n/);
    const log = readLog(logPath);
    assert.ok(log.every((e) => e.stream === 'stdout'));
    assert.match(log.map((e) => e.log).join(''), /\/dev\/pts\/\d+\r\n[^]*33 77\r\n/);
    await ctl.ok('delete');
  } finally {
    ctl.close();
  }
});

for (const rt of runtimes) {
  test(`${rt.name}: exec with its own output and exit code; kill; events`, async (t) => {
    const c = new Cleanup();
    t.after(() => c.run());
    const { shim, tmp } = await withRuntime(rt, c, ['sleep', '1000']);
    const ctl = await Control.open(shim.control);
    try {
      const pid = (await ctl.ok('create'))['pid'];
      assert.ok(typeof pid === 'number');
      c.pid(pid);
      await ctl.ok('subscribe');
      await ctl.ok('start');
      const proc = { terminal: false, user: { uid: 0, gid: 0 }, cwd: '/', env: ['PATH=/bin'], args: ['sh', '-c', 'echo from exec; echo to err >&2; exit 5'] };
      const pj = join(tmp, 'process.json');
      writeFileSync(pj, JSON.stringify(proc));
      const fout = join(tmp, 'e-out');
      mkfifo(fout);
      await ctl.ok('exec', { exec_id: 'e1', process: pj, stdout_fifo: fout });
      assert.equal((await ctl.ok('state', { exec_id: 'e1' }))['status'], 'created');
      const a = await Attach.open(shim.attach, { exec_id: 'e1', stdout: true, stderr: true });
      const outP = readAll(fout);
      const started = await ctl.ok('start', { exec_id: 'e1' });
      const w = await ctl.ok('wait', { exec_id: 'e1' });
      assert.equal(w['exit_code'], 5);
      assert.equal(w['pid'], started['pid']);
      assert.equal(await outP, 'from exec\n');
      await a.closed;
      assert.equal(a.out[2], 'to err\n');
      assert.equal(a.out[1], 'from exec\n');
      const ev = await ctl.event((e) => e['event'] === 'exec_started');
      assert.equal(ev['exec_id'], 'e1');
      await ctl.event((e) => e['event'] === 'exit' && e['exec_id'] === 'e1');
      const exitFile = JSON.parse(readFileSync(join(shim.stateDir, 'exec-e1.exit'), 'utf8')) as Json;
      assert.equal(exitFile['exit_code'], 5);
      await ctl.ok('delete', { exec_id: 'e1' });
      assert.equal((await ctl.call('state', { exec_id: 'e1' }))['code'], 'not_found');

      assert.equal((await ctl.ok('state'))['status'], 'running');
      await ctl.ok('kill', { signal: 9 });
      assert.equal((await ctl.ok('wait'))['exit_code'], 137);
      const kill2 = await ctl.call('kill', { signal: 9 });
      assert.equal(kill2['code'], 'not_found');
      await ctl.ok('delete');
    } finally {
      ctl.close();
    }
  });
}

test('runc: attach: two readers get stdcopy frames, one writer feeds stdin, stdin_once closes it', async (t) => {
  const c = new Cleanup();
  t.after(() => c.run());
  const rt = runtimes[0];
  assert.ok(rt);
  const { shim } = await withRuntime(rt, c, ['sh', '-c', 'while read l; do echo "got $l"; echo "e $l" >&2; done; echo end'],
    { extra: ['--stdin'] });
  const ctl = await Control.open(shim.control);
  try {
    await ctl.ok('create');
    await ctl.ok('start');
    const r1 = await Attach.open(shim.attach, { stdout: true, stderr: true });
    const r2 = await Attach.open(shim.attach, { stdout: true });
    const wr = await Attach.open(shim.attach, { stdin: true, stdin_once: true });
    assert.equal(wr.answer?.['ok'], true);
    const second = await Attach.open(shim.attach, { stdin: true });
    assert.equal(second.answer?.['ok'], false, 'only one stdin writer');
    wr.sock.write('one\ntwo\n');
    await until(() => (r1.out[1] ?? '').includes('got two'), 5000, 'echo');
    wr.sock.end();
    assert.equal((await ctl.ok('wait'))['exit_code'], 0);
    await Promise.all([r1.closed, r2.closed]);
    assert.equal(r1.out[1], 'got one\ngot two\nend\n');
    assert.equal(r1.out[2], 'e one\ne two\n');
    assert.equal(r2.out[1], 'got one\ngot two\nend\n');
    assert.equal(r2.out[2], '');
    await ctl.ok('delete');
  } finally {
    ctl.close();
  }
});

test('runc: the shim keeps logging without a client; a new connection sees state and the exit; RSS < 2 MB', async (t) => {
  const c = new Cleanup();
  t.after(() => c.run());
  const logPath = join(c.tempDir('berth-shim-log-'), 'c-json.log');
  const rt = runtimes[0];
  assert.ok(rt);
  const { shim } = await withRuntime(rt, c, ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo "n $i"; [ -e /tmp/stop ] && exit 3; sleep 0.02; done'],
    { extra: ['--log-path', logPath], edit: (s) => { s.mounts = [...(s.mounts ?? []), { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid'] }]; } });
  let ctl = await Control.open(shim.control);
  const pid = (await ctl.ok('create'))['pid'];
  assert.ok(typeof pid === 'number');
  c.pid(pid);
  await ctl.ok('start');
  ctl.close();

  await sleep(400);
  const before = readLog(logPath).length;
  await sleep(400);
  const after = readLog(logPath).length;
  assert.ok(after > before && before > 0, `log grows without a client (${before} -> ${after})`);
  const rss = vmRssKb(shim.pid);
  assert.ok(rss < 2048, `shim VmRSS ${rss} kB`);

  ctl = await Control.open(shim.control);
  try {
    const st = await ctl.ok('state');
    assert.equal(st['status'], 'running');
    assert.equal(st['pid'], pid);
    ctl.close();
    // the container ends while nobody is connected
    const r = spawnSync('nsenter', ['-t', String(pid), '-m', 'touch', '/tmp/stop']);
    assert.equal(r.status, 0, String(r.stderr));
    await until(() => existsSync(join(shim.stateDir, 'exit')), 10_000, 'the exit file');
    ctl = await Control.open(shim.control);
    const st2 = await ctl.ok('state');
    assert.equal(st2['status'], 'stopped');
    assert.equal(st2['exit_code'], 3);
    assert.equal((await ctl.ok('wait'))['exit_code'], 3);
    const lines = readLog(logPath).map((e) => e.log);
    lines.forEach((l, i) => assert.equal(l, `n ${i + 1}\n`));
    await ctl.ok('delete');
  } finally {
    ctl.close();
  }
});

/** A v1 memory cgroup for a fast-path container, removed at the end. */
function memoryCgroup(c: Cleanup, name: string): string | undefined {
  const base = '/sys/fs/cgroup/memory';
  if (!existsSync(join(base, 'cgroup.procs'))) return undefined;
  const dir = join(base, name);
  mkdirSync(dir);
  c.defer(`remove cgroup ${dir}`, async () => {
    for (let i = 0; i < 100; i++) {
      try { rmdirSync(dir); return; } catch { await sleep(20); }
    }
    rmdirSync(dir);
  });
  return dir;
}

test('fast path: the executor on a plan: create, start, log, exec, kill --all, OOM', async (t) => {
  const c = new Cleanup();
  t.after(() => c.run());
  const tmp = c.tempDir('berth-shim-fast-');
  const id = newId();
  const cg = memoryCgroup(c, id);
  const { dir: bundle, spec } = makeBundle(c, ['sh', '-c', 'echo started; exec sleep 1000'], (s) => {
    // no cgroup mount: the test's cgroup is joined, not described to the planner
    s.mounts = (s.mounts ?? []).filter((m) => m.type !== 'cgroup');
  });
  const fifo = join(tmp, 'exec.fifo');
  mkfifo(fifo);
  const stateDir = join(tmp, 'st');
  const planFile = join(tmp, 'plan');
  const procs = cg !== undefined ? [join(cg, 'cgroup.procs')] : [];
  writeFileSync(planFile, encodePlan(planCreate(spec, { bundle, containerId: id, execFifo: fifo, cgroupProcsFiles: procs })));
  const logPath = join(tmp, 'c-json.log');
  const shim = await startShim(c, {
    id, bundle, stateDir,
    mode: ['--executor', EXECUTOR, '--plan', planFile, '--exec-fifo', fifo, ...(cg !== undefined ? ['--cgroup', cg] : [])],
    extra: ['--log-path', logPath],
  });
  const ctl = await Control.open(shim.control);
  try {
    const pid = (await ctl.ok('create'))['pid'];
    assert.ok(typeof pid === 'number' && pid > 0);
    c.pid(pid);
    assert.equal(readFileSync(join(stateDir, 'init.pid'), 'utf8'), String(pid));
    await ctl.ok('subscribe');
    assert.equal(readLog(logPath).length, 0, 'nothing runs before start');
    await ctl.ok('start');
    assert.equal(existsSync(fifo), false, 'the exec fifo is gone once started');
    await until(() => readLog(logPath).length === 1, 10_000, 'the first line');
    assert.equal(readLog(logPath)[0]?.log, 'started\n');

    const execPlan = join(tmp, 'exec-plan');
    const proc = { terminal: false, user: { uid: 0, gid: 0 }, cwd: '/', env: ['PATH=/bin'], args: ['sh', '-c', 'echo in exec; exit 4'] };
    writeFileSync(execPlan, encodePlan(planExec(proc, {
      containerPid: pid, containerId: id, namespaces: (spec.linux?.namespaces ?? []).map((n) => n.type), config: spec, cgroupProcsFiles: procs,
    })));
    await ctl.ok('exec', { exec_id: 'x', plan: execPlan });
    const a = await Attach.open(shim.attach, { exec_id: 'x', stdout: true });
    await ctl.ok('start', { exec_id: 'x' });
    assert.equal((await ctl.ok('wait', { exec_id: 'x' }))['exit_code'], 4);
    await a.closed;
    assert.equal(a.out[1], 'in exec\n');
    assert.equal(readLog(logPath).length, 1, 'exec output is not in the container log');

    if (cg !== undefined) {
      // OOM: a 16 MiB buffer under an 8 MiB limit
      writeFileSync(join(cg, 'memory.limit_in_bytes'), String(8 * 1024 * 1024));
      const oomPlan = join(tmp, 'oom-plan');
      const oomProc = { ...proc, args: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=32M', 'count=1'] };
      writeFileSync(oomPlan, encodePlan(planExec(oomProc, {
        containerPid: pid, containerId: id, namespaces: (spec.linux?.namespaces ?? []).map((n) => n.type), config: spec, cgroupProcsFiles: procs,
      })));
      await ctl.ok('exec', { exec_id: 'oom', plan: oomPlan });
      await ctl.ok('start', { exec_id: 'oom' });
      assert.equal((await ctl.ok('wait', { exec_id: 'oom' }))['exit_code'], 137);
      await ctl.event((e) => e['event'] === 'oom');

      await ctl.ok('kill', { signal: 9, all: true });
    } else {
      await ctl.ok('kill', { signal: 9 });
    }
    assert.equal((await ctl.ok('wait'))['exit_code'], 137);
    await ctl.ok('delete');
    await until(() => !alive(shim.pid), 5000, 'the shim to exit');
    assert.equal(existsSync(stateDir), false);
    assert.deepEqual(readdirSync(tmp).filter((f) => f === 'st'), []);
  } finally {
    ctl.close();
  }
});

test('runc: output is never held up by a fifo nobody reads or an attach client that does not read', async (t) => {
  const c = new Cleanup();
  t.after(() => c.run());
  const dir = c.tempDir('berth-shim-slow-');
  const logPath = join(dir, 'c-json.log');
  const fout = join(dir, 'out');
  mkfifo(fout);
  const rt = runtimes[0];
  assert.ok(rt);
  // 100000 lines, about 3.5 MB
  const { shim } = await withRuntime(rt, c, ['sh', '-c', 'yes "0123456789abcdefghijklmnopqrstuv" | head -n 100000; echo last'],
    { extra: ['--log-path', logPath, '--stdout-fifo', fout] });
  const ctl = await Control.open(shim.control);
  try {
    await ctl.ok('create');
    const stuck = await Attach.open(shim.attach, { stdout: true });
    stuck.sock.pause();
    const t0 = Date.now();
    await ctl.ok('start');
    assert.equal((await ctl.ok('wait'))['exit_code'], 0);
    assert.ok(Date.now() - t0 < 10_000, `the container ran in ${Date.now() - t0} ms`);
    const log = readLog(logPath);
    assert.equal(log.length, 100001);
    assert.ok(log.slice(0, 100000).every((e) => e.log === '0123456789abcdefghijklmnopqrstuv\n'));
    assert.equal(log[100000]?.log, 'last\n');
    stuck.sock.destroy();
    await ctl.ok('delete');
  } finally {
    ctl.close();
  }
});
