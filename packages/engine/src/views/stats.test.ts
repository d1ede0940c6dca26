// Unit tests on the parsers and on a fake cgroup v2 tree, and (root only) on
// the real v1 hierarchies of this machine with a busy process of the test's own.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { detect, layoutFromMountinfo, openCgroup } from '@berth/cgroups';
import { collectStats, parseNetDev, parseProcStat, streamStats, ZERO_TIME } from './stats.js';
import type { Stats } from './stats.js';

test('parseProcStat: the first seven fields of "cpu" in nanoseconds, and the cpuN lines', () => {
  const s = parseProcStat('cpu  100 2 30 400 5 6 7 8 0 0\ncpu0 50 1 15 200 2 3 3 4 0 0\ncpu1 50 1 15 200 3 3 4 4 0 0\nintr 1\n');
  assert.equal(s.usage, ((100 + 2 + 30 + 400 + 5 + 6 + 7) * 1e9) / 100);
  assert.equal(s.onlineCpus, 2);
  const real = parseProcStat(readFileSync('/proc/stat', 'utf8'));
  assert.ok(real.usage > 0);
  assert.ok(real.onlineCpus >= 1);
});

test('parseNetDev: interfaces but lo, receive and transmit counters', () => {
  const text = [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16',
    '  eth0: 5338 36 1 2 0 0 0 0 648 8 3 4 0 0 0 0',
  ].join('\n');
  assert.deepEqual(parseNetDev(text), {
    eth0: { rx_bytes: 5338, rx_packets: 36, rx_errors: 1, rx_dropped: 2, tx_bytes: 648, tx_packets: 8, tx_errors: 3, tx_dropped: 4 },
  });
});

function fakeRoot(t: TestContext): string {
  const root = mkdtempSync(join(tmpdir(), 'berth-statsfake-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

test('collectStats on cgroup v2 (fake tree): docker fields, v1-only fields left out', async (t) => {
  const root = fakeRoot(t);
  const layout = layoutFromMountinfo('35 24 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n', { fsRoot: root });
  const dir = join(root, 'sys/fs/cgroup/berth/c1');
  mkdirSync(dir, { recursive: true });
  const files: Record<string, string> = {
    'cpu.stat': 'usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 10\nnr_throttled 2\nthrottled_usec 30\n',
    'memory.current': '1048576\n',
    'memory.max': 'max\n',
    'memory.stat': 'anon 4096\nfile 8192\ninactive_file 4096\n',
    'memory.peak': '2097152\n',
    'pids.current': '3\n',
    'pids.max': 'max\n',
    'io.stat': '8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n',
  };
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const s = await collectStats({ cgroupsPath: '/berth/c1', pid: 0, layout, name: '/web', id: 'c1' });
  assert.equal(s.name, '/web');
  assert.equal(s.id, 'c1');
  assert.equal(s.preread, ZERO_TIME);
  assert.ok(!Number.isNaN(Date.parse(s.read)));
  assert.deepEqual(s.cpu_stats.cpu_usage, { total_usage: 2_500_000, usage_in_kernelmode: 500_000, usage_in_usermode: 2_000_000 });
  assert.deepEqual(s.cpu_stats.throttling_data, { periods: 10, throttled_periods: 2, throttled_time: 30_000 });
  assert.ok((s.cpu_stats.system_cpu_usage ?? 0) > 0);
  assert.deepEqual(s.memory_stats, { usage: 1048576, stats: { anon: 4096, file: 8192, inactive_file: 4096 }, limit: totalmem() });
  assert.deepEqual(s.pids_stats, { current: 3 });
  assert.deepEqual(s.blkio_stats.io_service_bytes_recursive, [
    { major: 8, minor: 0, op: 'read', value: 100 },
    { major: 8, minor: 0, op: 'write', value: 200 },
  ]);
  assert.equal(s.blkio_stats.io_serviced_recursive, null);
  assert.equal(s.networks, undefined);
  assert.deepEqual(s.precpu_stats.cpu_usage, { total_usage: 0, usage_in_kernelmode: 0, usage_in_usermode: 0 });

  // a limit below the host's memory is reported as is; precpu from the previous sample
  writeFileSync(join(dir, 'memory.max'), '536870912\n');
  writeFileSync(join(dir, 'pids.max'), '100\n');
  writeFileSync(join(dir, 'cpu.stat'), 'usage_usec 4000\nuser_usec 3000\nsystem_usec 1000\n');
  const s2 = await collectStats({ cgroupsPath: '/berth/c1', pid: process.pid, layout }, s);
  assert.equal(s2.memory_stats.limit, 536870912);
  assert.deepEqual(s2.pids_stats, { current: 3, limit: 100 });
  assert.equal(s2.preread, s.read);
  assert.deepEqual(s2.precpu_stats, s.cpu_stats);
  assert.equal(s2.cpu_stats.cpu_usage.total_usage, 4_000_000);
  assert.ok((s2.cpu_stats.system_cpu_usage ?? 0) >= (s.cpu_stats.system_cpu_usage ?? 0));
  // this process's network namespace (the host's) has interfaces besides lo, or none at all
  const own = Object.keys(parseNetDev(readFileSync('/proc/self/net/dev', 'utf8'))).sort();
  assert.deepEqual(s2.networks === undefined ? [] : Object.keys(s2.networks).sort(), own);
  if (own.length === 0) assert.equal(s2.networks, undefined);
});

test('streamStats: one-shot, two-sample and streaming modes', async (t) => {
  const root = fakeRoot(t);
  const layout = layoutFromMountinfo('35 24 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n', { fsRoot: root });
  const dir = join(root, 'sys/fs/cgroup/c2');
  mkdirSync(dir, { recursive: true });
  let usage = 1000;
  const bump = (): void => {
    usage += 1000;
    writeFileSync(join(dir, 'cpu.stat'), `usage_usec ${usage}\n`);
  };
  bump();
  const target = { cgroupsPath: '/c2', pid: 0, layout };
  const ac = new AbortController();

  const once: Stats[] = [];
  for await (const s of streamStats(target, { stream: false, oneShot: true, signal: ac.signal })) once.push(s);
  assert.equal(once.length, 1);
  assert.equal(once[0]?.preread, ZERO_TIME);
  assert.equal(once[0]?.precpu_stats.cpu_usage.total_usage, 0);

  const timer = setTimeout(bump, 50);
  t.after(() => clearTimeout(timer));
  const twice: Stats[] = [];
  for await (const s of streamStats(target, { stream: false, oneShot: false, signal: ac.signal, intervalMs: 200 })) twice.push(s);
  assert.equal(twice.length, 1);
  assert.equal(twice[0]?.precpu_stats.cpu_usage.total_usage, 2_000_000);
  assert.equal(twice[0]?.cpu_stats.cpu_usage.total_usage, 3_000_000);
  assert.notEqual(twice[0]?.preread, ZERO_TIME);

  const streamed: Stats[] = [];
  for await (const s of streamStats(target, { stream: true, oneShot: false, signal: ac.signal, intervalMs: 20 })) {
    streamed.push(s);
    bump();
    if (streamed.length === 3) ac.abort();
  }
  assert.equal(streamed.length, 3);
  assert.equal(streamed[0]?.precpu_stats.cpu_usage.total_usage, 0);
  for (let i = 1; i < 3; i++) {
    assert.deepEqual(streamed[i]?.precpu_stats, streamed[i - 1]?.cpu_stats);
    assert.equal(streamed[i]?.preread, streamed[i - 1]?.read);
    assert.ok((streamed[i]?.cpu_stats.cpu_usage.total_usage ?? 0) > (streamed[i - 1]?.cpu_stats.cpu_usage.total_usage ?? 0));
  }
});

const isRoot = process.getuid?.() === 0;
const hostLayout = await detect();
const v1Skip = !isRoot ? 'needs root' : hostLayout.version !== 'v1' ? 'this host has no cgroup v1 controllers' : false;

test('collectStats on the real cgroup v1 hierarchies: a busy process in a new cgroup', { skip: v1Skip }, async (t) => {
  const path = `/berth-views-test-${process.pid}-${randomBytes(4).toString('hex')}`;
  const cg = await openCgroup({ cgroupsPath: path, containerId: 'x', layout: hostLayout });
  let child: ChildProcess | undefined;
  t.after(async () => {
    // the process first, then its cgroup
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((resolve) => child?.once('exit', resolve));
      process.kill(child.pid, 'SIGKILL');
      await gone;
    }
    await cg.destroy();
  });
  await cg.create({ memory: { limit: 256 * 1024 * 1024 }, pids: { limit: 50 } });
  // waits for a line on stdin (so that it can be moved first), then spins
  child = spawn('sh', ['-c', 'read _ && exec awk "BEGIN { while (1) {} }"'], { stdio: ['pipe', 'ignore', 'ignore'] });
  const pid = child.pid;
  assert.ok(pid !== undefined);
  for (const f of cg.procsFiles()) writeFileSync(f, String(pid));
  const target = { cgroupsPath: path, pid, layout: hostLayout };
  const first = await collectStats(target);
  child.stdin?.end('\n');
  await new Promise((r) => setTimeout(r, 500));
  const second = await collectStats(target, first);

  const used = second.cpu_stats.cpu_usage.total_usage - first.cpu_stats.cpu_usage.total_usage;
  assert.ok(used > 200_000_000, `the cgroup used ${used} ns of CPU in 500 ms of a busy loop`);
  const percpu = second.cpu_stats.cpu_usage.percpu_usage ?? [];
  assert.ok(percpu.length >= 1);
  // read a moment apart from the total while the process runs: close, not equal
  const sum = percpu.reduce((a, b) => a + b, 0);
  const total = second.cpu_stats.cpu_usage.total_usage;
  assert.ok(Math.abs(sum - total) < total * 0.1, `per-CPU sum ${sum}, total ${total}`);
  assert.ok(second.cpu_stats.cpu_usage.usage_in_usermode > first.cpu_stats.cpu_usage.usage_in_usermode);
  const systemDelta = (second.cpu_stats.system_cpu_usage ?? 0) - (first.cpu_stats.system_cpu_usage ?? 0);
  assert.ok(systemDelta >= used * 0.5, `system delta ${systemDelta} against cgroup delta ${used}`);
  assert.deepEqual(second.precpu_stats, first.cpu_stats);
  assert.equal(second.memory_stats.limit, 256 * 1024 * 1024);
  assert.ok((second.memory_stats.usage ?? 0) > 0);
  assert.ok(second.memory_stats.max_usage !== undefined);
  assert.ok(second.memory_stats.stats !== undefined && 'rss' in second.memory_stats.stats);
  assert.deepEqual(second.pids_stats, { current: 1, limit: 50 });
  assert.ok(Array.isArray(second.blkio_stats.io_service_bytes_recursive));
  // the process shares this test's network namespace
  const own = Object.keys(parseNetDev(readFileSync(`/proc/${pid}/net/dev`, 'utf8'))).sort();
  assert.deepEqual(second.networks === undefined ? [] : Object.keys(second.networks).sort(), own);
});
