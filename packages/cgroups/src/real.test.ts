// Root only: the real cgroup hierarchies of this machine (v1 controllers,
// and the cgroup2 mount, which on a hybrid host has no controllers).
// Every cgroup and process a test creates is removed in t.after.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { isKind } from '@berth/base';
import { detect } from './detect.js';
import type { CgroupLayout } from './detect.js';
import { openCgroup } from './manager.js';
import type { CgroupManager } from './manager.js';

const isRoot = process.getuid?.() === 0;
const layout = await detect();
const v1Skip = !isRoot ? 'needs root' : layout.version !== 'v1' || layout.mounts['memory'] === undefined ? 'no cgroup v1 memory hierarchy' : false;
const unified = layout.unified;
const v2Skip = !isRoot ? 'needs root' : unified === undefined ? 'no cgroup2 mount' : false;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const uniqueName = (): string => `berth-test-${process.pid}-${randomBytes(4).toString('hex')}`;

/** Nanoseconds the process has run on a CPU (/proc/PID/schedstat). */
const cpuTime = (pid: number): number => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);

/**
 * A process that, once started, takes 8 MiB and spins in a busy loop (awk
 * after exec, so its memory is charged to the cgroup it was moved to).
 * Ended by the test in any case.
 */
function busyChild(t: TestContext): {
  child: ChildProcess;
  pid: number;
  start: () => void;
  exited: Promise<NodeJS.Signals | null>;
} {
  const program = 'BEGIN { s = "x"; for (i = 0; i < 23; i++) s = s s; while (1) {} }';
  const child = spawn('sh', ['-c', `read _ && exec awk '${program}'`], { stdio: ['pipe', 'ignore', 'ignore'] });
  const pid = child.pid;
  assert.ok(pid !== undefined);
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
    }
  });
  return { child, pid, exited, start: () => child.stdin?.end('\n') };
}

/** Remove the top directory of the test's cgroups after the test, whatever happened. */
async function cleanupTop(t: TestContext, l: CgroupLayout, top: string): Promise<void> {
  const topCg = await openCgroup({ layout: l, containerId: top, cgroupsPath: `/${top}` });
  t.after(async () => {
    // Runs before the per-child hooks (registered later): empty the cgroups first.
    await topCg.killAll('SIGKILL');
    await topCg.destroy();
    for (const d of Object.values(topCg.paths.dirs)) assert.equal(existsSync(d), false, `${d} removed`);
  });
}

function moveInto(cg: CgroupManager, pid: number): void {
  for (const f of cg.procsFiles()) writeFileSync(f, String(pid));
}

test('real v1: create, join, limits, stats, freeze, kill, destroy', { skip: v1Skip }, async (t) => {
  const top = uniqueName();
  await cleanupTop(t, layout, top);
  const cg = await openCgroup({ layout, containerId: 'c1', cgroupsPath: `/${top}/c1` });
  const dirs = cg.paths.dirs;
  await cg.create();
  for (const d of Object.values(dirs)) assert.ok(existsSync(d), `${d} created`);
  if (layout.hybrid) assert.ok(dirs[''] !== undefined && existsSync(dirs['']), 'the cgroup2 directory too');

  // cpuset: the kernel refuses tasks into an empty cpuset, so create() filled it.
  const cpusetDir = dirs['cpuset'];
  if (cpusetDir !== undefined) {
    const parentCpus = readFileSync(join(layout.mounts['cpuset']?.mountpoint ?? '', 'cpuset.cpus'), 'utf8');
    assert.equal(readFileSync(join(cpusetDir, 'cpuset.cpus'), 'utf8'), parentCpus);
  }

  const { pid, exited, start } = busyChild(t);
  moveInto(cg, pid);
  start();
  const own = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  assert.match(own, new RegExp(`:memory:/${top}/c1\\n`));
  assert.deepEqual(await cg.pids(), [pid]);

  const report = await cg.apply({ memory: { limit: 64 << 20, reservation: 32 << 20 }, pids: { limit: 16 }, cpu: { shares: 512 } });
  assert.ok(report.writes.length >= 4);
  const memDir = dirs['memory'] ?? '';
  assert.equal(readFileSync(join(memDir, 'memory.limit_in_bytes'), 'utf8').trim(), String(64 << 20));
  assert.equal(readFileSync(join(memDir, 'memory.soft_limit_in_bytes'), 'utf8').trim(), String(32 << 20));
  assert.equal(readFileSync(join(dirs['pids'] ?? '', 'pids.max'), 'utf8').trim(), '16');
  assert.equal(readFileSync(join(dirs['cpu'] ?? '', 'cpu.shares'), 'utf8').trim(), '512');

  // A value the kernel refuses: the error names the file, the value and the errno.
  if (cpusetDir !== undefined) {
    await assert.rejects(cg.apply({ cpu: { cpus: '99' } }), (e: unknown) => {
      assert.ok(isKind(e, 'InvalidArgument'));
      // The kernel answers ERANGE for a CPU it does not have (EINVAL on older kernels).
      const file = join(cpusetDir, 'cpuset.cpus');
      assert.ok([`write 99 to ${file}: ERANGE`, `write 99 to ${file}: EINVAL`].includes((e as Error).message), (e as Error).message);
      return true;
    });
  }

  // The 8 MiB the child takes after joining are charged here.
  const deadline = Date.now() + 3000;
  while ((await cg.stats()).memory.usage.usage < 8 << 20 && Date.now() < deadline) await sleep(20);
  const s = await cg.stats();
  assert.equal(s.memory.usage.limit, 64 << 20);
  assert.ok(s.memory.usage.usage >= 8 << 20, `memory usage ${s.memory.usage.usage}`);
  assert.ok(s.memory.usage.max >= s.memory.usage.usage);
  assert.ok('rss' in s.memory.raw && 'cache' in s.memory.raw, 'memory.stat as is');
  assert.deepEqual(s.pids, { current: 1, limit: 16 });
  assert.ok(s.cpu.usage.total > 0, 'cpu usage');
  assert.ok(s.cpu.usage.percpu.length > 0 && s.cpu.usage.percpu.reduce((a, b) => a + b, 0) > 0, 'per-CPU usage');
  assert.ok(s.cpu.usage.user + s.cpu.usage.kernel > 0);
  assert.equal(await cg.oomCount(), 0);

  // Frozen: the busy loop gets no more CPU time; thawed, it runs again.
  await cg.freeze();
  assert.equal(await cg.freezerState(), 'frozen');
  assert.equal(readFileSync(join(dirs['freezer'] ?? '', 'freezer.state'), 'utf8').trim(), 'FROZEN');
  assert.doesNotMatch(readFileSync(`/proc/${pid}/status`, 'utf8'), /State:\s+R/);
  const frozenAt = cpuTime(pid);
  await sleep(200);
  assert.equal(cpuTime(pid), frozenAt);
  await cg.thaw();
  assert.equal(await cg.freezerState(), 'thawed');
  await sleep(200);
  assert.ok(cpuTime(pid) > frozenAt, 'runs again after thaw');

  await cg.killAll('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  assert.deepEqual(await cg.pids(), []);
  await cg.destroy();
  for (const d of Object.values(dirs)) assert.equal(existsSync(d), false, `${d} removed`);
});

test('real v1: killAll with SIGTERM signals every process and leaves the cgroup thawed', { skip: v1Skip }, async (t) => {
  const top = uniqueName();
  await cleanupTop(t, layout, top);
  const cg = await openCgroup({ layout, containerId: top, cgroupsPath: `/${top}` });
  await cg.create();
  const a = busyChild(t);
  const b = busyChild(t);
  moveInto(cg, a.pid);
  moveInto(cg, b.pid);
  a.start();
  b.start();
  assert.deepEqual(await cg.pids(), [a.pid, b.pid].sort((x, y) => x - y));
  await cg.killAll('SIGTERM');
  assert.equal(await a.exited, 'SIGTERM');
  assert.equal(await b.exited, 'SIGTERM');
  assert.equal(await cg.freezerState(), 'thawed');
});

test('real v2: create, join, freeze, controllers, kill, destroy on the cgroup2 mount', { skip: v2Skip }, async (t) => {
  assert.ok(unified !== undefined);
  const v2: CgroupLayout = { version: 'v2', hybrid: false, mounts: {}, unified };
  const top = uniqueName();
  await cleanupTop(t, v2, top);
  const cg = await openCgroup({ layout: v2, containerId: 'c1', cgroupsPath: `/${top}/c1` });
  const dir = cg.paths.dirs[''] ?? '';
  assert.equal(dir, join(unified.mountpoint, top, 'c1'));
  await cg.create();
  assert.ok(existsSync(join(dir, 'cgroup.procs')));

  const { pid, exited, start } = busyChild(t);
  moveInto(cg, pid);
  start();
  assert.match(readFileSync(`/proc/${pid}/cgroup`, 'utf8'), new RegExp(`^0::/${top}/c1$`, 'm'));
  assert.deepEqual(await cg.pids(), [pid]);

  // cpu.stat exists in every cgroup2 directory, with or without the cpu controller.
  await sleep(100);
  assert.ok((await cg.stats()).cpu.usage.total > 0);

  // Limits need controllers; where the hierarchy has none, the error says so.
  const controllers = readFileSync(join(dir, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
  if (controllers.includes('pids')) {
    await cg.apply({ pids: { limit: 8 } });
    assert.equal(readFileSync(join(dir, 'pids.max'), 'utf8').trim(), '8');
  } else {
    await assert.rejects(cg.apply({ pids: { limit: 8 } }), (e: unknown) => {
      assert.ok(isKind(e, 'FailedPrecondition'));
      assert.match((e as Error).message, /the pids controller is not enabled for .*\/c1/);
      return true;
    });
  }

  // On a hybrid host, hugetlb is often the one controller cgroup2 has.
  if (controllers.includes('hugetlb') && existsSync(join(dir, 'hugetlb.2MB.max'))) {
    await cg.apply({ hugepageLimits: [{ pageSize: '2MB', limit: 8 << 20 }] });
    assert.equal(readFileSync(join(dir, 'hugetlb.2MB.max'), 'utf8').trim(), String(8 << 20));
    if (existsSync(join(dir, 'hugetlb.2MB.rsvd.max'))) {
      assert.equal(readFileSync(join(dir, 'hugetlb.2MB.rsvd.max'), 'utf8').trim(), String(8 << 20));
    }
    assert.deepEqual((await cg.stats()).hugetlb['2MB'], { usage: 0, max: 0, failcnt: 0 });
  }

  if (existsSync(join(dir, 'cgroup.freeze'))) {
    await cg.freeze();
    assert.equal(await cg.freezerState(), 'frozen');
    assert.match(readFileSync(join(dir, 'cgroup.events'), 'utf8'), /^frozen 1$/m);
    const frozenAt = cpuTime(pid);
    await sleep(200);
    assert.equal(cpuTime(pid), frozenAt);
    await cg.thaw();
    assert.equal(await cg.freezerState(), 'thawed');
    await sleep(200);
    assert.ok(cpuTime(pid) > frozenAt, 'runs again after thaw');
  }

  await cg.killAll();
  assert.equal(await exited, 'SIGKILL');
  assert.deepEqual(await cg.pids(), []);
  await cg.destroy();
  assert.equal(existsSync(dir), false);
});
