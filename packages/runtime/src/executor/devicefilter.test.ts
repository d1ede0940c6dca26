// Root-only: the executor's device_filter record on a real cgroup2 directory.
// The process runs the host's /bin/sh with no new namespaces and no rootfs, in
// a fresh cgroup2 directory whose only device check is the BPF program (the
// v1 devices cgroup stays the root one, which allows everything).
// Build first: make -C native && npx tsc -b;
// run: node --test packages/runtime/dist/executor/devicefilter.test.js
import test from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { deviceFilterProgram, hostCgroupLayout } from '@berth/cgroups';
import type { LinuxDeviceCgroup } from '@berth/spec';
import type { Plan, PlanRecord } from '../plan/types.js';
import { startExecutor, executorPath, ExecutorError } from './index.js';
import { bpfQuery, haveCompiler, PROG_TYPE_CGROUP_DEVICE } from './_bpfquery.js';

const isRoot = process.getuid?.() === 0;
const unified = await hostCgroupLayout().then((l) => l.unified?.mountpoint, () => undefined);
const skip = !isRoot ? 'needs root'
  : !existsSync(executorPath()) ? 'needs native/out/berth-executor (make -C native)'
  : unified === undefined ? 'needs a cgroup2 hierarchy' : false;

const EPERM = 'Operation not permitted';
const RULES: LinuxDeviceCgroup[] = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }, // /dev/null
  { allow: true, type: 'c', major: 1, minor: 5, access: 'r' }, // /dev/zero, read only
];

/** A fresh cgroup2 directory, removed after the test (once its processes are gone). */
function makeCgroup(t: TestContext): string {
  const dir = join(unified ?? '/nonexistent', `berth-test-devfilter-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(dir);
  t.after(async () => {
    for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter((l) => l !== '')) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
    }
    for (let i = 0; ; i++) {
      try {
        rmdirSync(dir);
        return;
      } catch (e) {
        if (i >= 100) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  });
  return dir;
}

function tempDir(t: TestContext): string {
  const d = mkdtempSync(join(tmpdir(), 'berth-devfilter-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Each check prints "<name> ok" or "<name> fail: <its stderr>". */
const SCRIPT = `
check() { name=$1; shift; if out=$("$@" 2>&1); then echo "$name ok"; else echo "$name fail: $out"; fi; }
check null-read head -c1 /dev/null
check null-write sh -c 'echo x > /dev/null'
check zero-read sh -c 'head -c4 /dev/zero | od -An -tx1'
check zero-write sh -c 'echo x > /dev/zero'
check full-open head -c1 /dev/full
check mknod-null mknod "$1/null" c 1 3
check mknod-zero mknod "$1/zero" c 1 5
`;

function plan(pre: PlanRecord[], tmp: string): Plan {
  return [
    { tag: 'version', version: 1 },
    ...pre,
    { tag: 'env', value: 'PATH=/usr/bin:/bin' },
    { tag: 'args', args: ['/bin/sh', '-c', SCRIPT, 'sh', tmp] },
    { tag: 'wait' },
  ];
}

/** Runs a plan in wait mode; stdout parsed into check name -> result. */
async function run(t: TestContext, p: Plan): Promise<{ code: number; checks: Map<string, string> }> {
  const dir = tempDir(t);
  const outPath = join(dir, 'out');
  const out = openSync(outPath, 'w');
  try {
    const h = await startExecutor(p, { stdio: ['ignore', out, out] });
    t.after(() => { try { process.kill(h.pid, 'SIGKILL'); } catch { /* gone */ } });
    const code = await h.exited;
    const checks = new Map<string, string>();
    for (const line of readFileSync(outPath, 'utf8').split('\n')) {
      const m = /^(\S+) (ok|fail: .*)$/.exec(line);
      if (m) checks.set(m[1] ?? '', m[2] ?? '');
    }
    return { code, checks };
  } finally {
    closeSync(out);
  }
}

function filterRecord(dir: string, rules: LinuxDeviceCgroup[]): PlanRecord {
  return { tag: 'device_filter', dir, program: deviceFilterProgram(rules).toString('hex') };
}

test('device_filter: the program allows /dev/null (with mknod) and reading /dev/zero, and nothing else', { skip }, async (t) => {
  const cg = makeCgroup(t);
  const tmp = tempDir(t);
  const { code, checks } = await run(t, plan([
    { tag: 'cgroup_join', file: join(cg, 'cgroup.procs') },
    filterRecord(cg, RULES),
  ], tmp));
  assert.equal(code, 0);
  assert.equal(checks.get('null-read'), 'ok');
  assert.equal(checks.get('null-write'), 'ok');
  assert.equal(checks.get('zero-read'), 'ok');
  assert.match(checks.get('zero-write') ?? '', new RegExp(`^fail: .*/dev/zero.*${EPERM}`));
  assert.match(checks.get('full-open') ?? '', new RegExp(`^fail: .*/dev/full.*${EPERM}`));
  assert.equal(checks.get('mknod-null'), 'ok'); // c 1:3 rwm includes m
  assert.match(checks.get('mknod-zero') ?? '', new RegExp(`^fail: .*${EPERM}`)); // c 1:5 r does not
  assert.equal(existsSync(join(tmp, 'null')), true);
  assert.equal(existsSync(join(tmp, 'zero')), false);
});

test('device_filter: without the record the same checks all pass (the program made the difference)', { skip }, async (t) => {
  const cg = makeCgroup(t);
  const tmp = tempDir(t);
  const { code, checks } = await run(t, plan([{ tag: 'cgroup_join', file: join(cg, 'cgroup.procs') }], tmp));
  assert.equal(code, 0);
  for (const name of ['null-read', 'null-write', 'zero-read', 'zero-write', 'full-open', 'mknod-null', 'mknod-zero']) {
    assert.equal(checks.get(name), 'ok', name);
  }
});

test('device_filter: a second filter replaces the first one berth attached', { skip: skip || (!haveCompiler() && 'needs cc') }, async (t) => {
  const q = bpfQuery();
  t.after(q.cleanup);
  const cg = makeCgroup(t);
  const tmp = tempDir(t);
  assert.deepEqual(q.query(cg), []);
  await run(t, plan([filterRecord(cg, RULES)], tmp));
  const first = q.query(cg);
  assert.equal(first.length, 1);
  assert.equal(first[0]?.name, 'berth_devices');
  assert.equal(first[0]?.type, PROG_TYPE_CGROUP_DEVICE);

  // The second allows writing /dev/zero too.
  const second = [...RULES, { allow: true, type: 'c' as const, major: 1, minor: 5, access: 'w' }];
  const { checks } = await run(t, plan([
    { tag: 'cgroup_join', file: join(cg, 'cgroup.procs') },
    filterRecord(cg, second),
  ], tmp));
  const now = q.query(cg);
  assert.equal(now.length, 1, JSON.stringify(now));
  assert.notEqual(now[0]?.id, first[0]?.id);
  assert.equal(checks.get('zero-write'), 'ok');
  assert.match(checks.get('full-open') ?? '', new RegExp(EPERM));
});

test('device_filter: a program the verifier refuses fails with the verifier\'s words', { skip }, async (t) => {
  const cg = makeCgroup(t);
  const exitOnly = '9500000000000000'; // exit with r0 never set
  try {
    await startExecutor(plan([{ tag: 'device_filter', dir: cg, program: exitOnly }], '/nonexistent'));
    assert.fail('the executor should have failed');
  } catch (e) {
    assert.ok(e instanceof ExecutorError, String(e));
    assert.equal(e.stage, 'device_filter');
    assert.ok(e.errno > 0);
    assert.ok(e.message.startsWith(`bpf prog load (device filter for ${cg}): E`), e.message);
    assert.match(e.message, /R0 !read_ok/);
  }
});

test('device_filter: an attach to a missing directory names it', { skip }, async (t) => {
  const dir = join(tempDir(t), 'missing');
  const program = deviceFilterProgram(RULES).toString('hex');
  await assert.rejects(startExecutor(plan([{ tag: 'device_filter', dir, program }], '/nonexistent')), (e: unknown) => {
    assert.ok(e instanceof ExecutorError, String(e));
    assert.equal(e.stage, 'device_filter');
    assert.equal(e.message, `open cgroup ${dir} for the device filter: ENOENT (No such file or directory)`);
    return true;
  });
});

test('device_filter: a malformed program is a plan error', { skip }, async () => {
  for (const [program, re] of [
    ['95000000', /8 hex digits are not a whole number of 8-byte instructions/],
    ['950000000000000g', /not a hex digit at offset 15/],
  ] as const) {
    await assert.rejects(startExecutor(plan([{ tag: 'device_filter', dir: '/sys/fs/cgroup', program }], '/nonexistent')), (e: unknown) => {
      assert.ok(e instanceof ExecutorError, String(e));
      assert.equal(e.stage, 'plan');
      assert.match(e.message, re);
      return true;
    });
  }
  await assert.rejects(startExecutor(plan([{ tag: 'device_filter', dir: 'rel', program: '9500000000000000' }], '/x')), /not an absolute path/);
});
