// v1 and v2 logic on a fake cgroupfs: plain directories and files in a temp dir.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { LinuxResources } from '@berth/spec';
import { isKind } from '@berth/base';
import { layoutFromMountinfo } from './detect.js';
import { resolveCgroupPaths } from './paths.js';
import { cgroupManager } from './manager.js';
import type { CgroupManager } from './manager.js';

function fakeRoot(t: TestContext): string {
  const root = mkdtempSync(join(tmpdir(), 'berth-cgfake-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

function files(base: string, entries: Record<string, string>): void {
  for (const [name, content] of Object.entries(entries)) {
    mkdirSync(dirname(join(base, name)), { recursive: true });
    writeFileSync(join(base, name), content);
  }
}

const read = (path: string): string => readFileSync(path, 'utf8');

// ------------------------------------------------------------------ v2

const V2_MOUNTINFO = '35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n';

function fakeV2(t: TestContext, cgroupsPath = '/default/c1'): { root: string; dir: string; cg: CgroupManager } {
  const root = fakeRoot(t);
  const layout = layoutFromMountinfo(V2_MOUNTINFO, { fsRoot: root });
  const paths = resolveCgroupPaths(layout, { cgroupsPath, containerId: 'c1' });
  const dir = paths.dirs[''];
  assert.ok(dir !== undefined);
  return { root, dir, cg: cgroupManager(layout, paths) };
}

const V2_FILES = [
  'pids.max', 'memory.max', 'memory.low', 'memory.high', 'memory.swap.max', 'io.weight', 'io.max', 'cpu.weight',
  'cpu.max', 'cpu.max.burst', 'cpu.idle', 'cpuset.cpus', 'cpuset.mems', 'hugetlb.2MB.max', 'rdma.max',
];

const EXTRA_DEVICE = { allow: true, type: 'c' as const, major: 10, minor: 229, access: 'rw' };

const FULL: LinuxResources = {
  devices: [
    { allow: false, access: 'rwm' },
    { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
    EXTRA_DEVICE,
  ],
  memory: { limit: 536870912, reservation: 268435456, swap: 1073741824, swappiness: 10, disableOOMKiller: false },
  cpu: { shares: 1024, quota: 50000, period: 100000, burst: 10000, cpus: '0-1', mems: '0', idle: 0 },
  pids: { limit: 100 },
  blockIO: {
    weight: 500,
    weightDevice: [{ major: 8, minor: 0, weight: 300 }],
    throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }],
    throttleWriteIOPSDevice: [{ major: 8, minor: 16, rate: 300 }],
  },
  hugepageLimits: [{ pageSize: '2MB', limit: 209715200 }],
  rdma: { mlx5_1: { hcaHandles: 3, hcaObjects: 10000 } },
};

test('v2 apply: the exact files and values for a full LinuxResources', async (t) => {
  const { dir, cg } = fakeV2(t);
  files(dir, Object.fromEntries(V2_FILES.map((f) => [f, ''])));
  files(dir, { 'cgroup.controllers': 'cpuset cpu io memory hugetlb pids rdma\n' });
  const report = await cg.apply({ ...FULL, unified: { 'memory.high': '400000000' } });
  const rel = report.writes.map((w) => [w.file.slice(dir.length + 1), w.value]);
  assert.deepEqual(rel, [
    ['pids.max', '100'],
    ['memory.swap.max', '536870912'],
    ['memory.max', '536870912'],
    ['memory.low', '268435456'],
    ['io.weight', 'default 4950'],
    ['io.weight', '8:0 2930'],
    ['io.max', '8:0 rbps=1048576'],
    ['io.max', '8:16 wiops=300'],
    ['cpu.weight', '100'],
    ['cpu.max.burst', '10000'],
    ['cpu.max', '50000 100000'],
    ['cpu.idle', '0'],
    ['cpuset.cpus', '0-1'],
    ['cpuset.mems', '0'],
    ['hugetlb.2MB.max', '209715200'],
    ['rdma.max', 'mlx5_1 hca_handle=3 hca_object=10000'],
    ['memory.high', '400000000'],
  ]);
  assert.equal(read(join(dir, 'memory.max')), '536870912');
  assert.equal(read(join(dir, 'cpu.max')), '50000 100000');
  assert.deepEqual(report.warnings, ['memory.swappiness: cgroup v2 has no per-cgroup swappiness; ignored']);
  assert.deepEqual(report.unappliedDeviceRules, FULL.devices);
  assert.deepEqual(report.deviceRulesBeyondDefault, [EXTRA_DEVICE]);
});

test('v2 apply: unlimited values, BFQ weights, quota without period', async (t) => {
  const { dir, cg } = fakeV2(t);
  files(dir, Object.fromEntries([...V2_FILES, 'io.bfq.weight'].map((f) => [f, ''])));
  files(dir, { 'cgroup.controllers': 'cpu io memory pids\n' });
  const report = await cg.apply({
    memory: { limit: -1 },
    pids: { limit: -1 },
    cpu: { quota: -1 },
    blockIO: { weight: 500, weightDevice: [{ major: 8, minor: 0, weight: 300 }] },
    devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }],
  });
  assert.deepEqual(report.writes.map((w) => [w.file.slice(dir.length + 1), w.value]), [
    ['pids.max', 'max'],
    ['memory.swap.max', 'max'],
    ['memory.max', 'max'],
    ['io.bfq.weight', '500'],
    ['io.bfq.weight', '8:0 300'],
    ['cpu.max', 'max'],
  ]);
  assert.deepEqual(report.deviceRulesBeyondDefault, []);
  assert.equal(report.unappliedDeviceRules.length, 2);
});

test('v2 apply: a controller that is not enabled is refused before anything is written', async (t) => {
  const { dir, cg } = fakeV2(t);
  files(dir, { 'cgroup.controllers': 'pids\n', 'pids.max': 'max', 'memory.max': 'max' });
  await assert.rejects(cg.apply({ pids: { limit: 5 }, memory: { limit: 1 << 20 } }), (e: unknown) => {
    assert.ok(isKind(e, 'FailedPrecondition'));
    assert.match(String(e), /cannot set memory limits: the memory controller is not enabled for .*default\/c1 \(cgroup.controllers: pids\)/);
    return true;
  });
  assert.equal(read(join(dir, 'pids.max')), 'max');
  await assert.rejects(cg.apply({ unified: { 'memory.high': '1' } }), /unified memory.high: the memory controller is not enabled/);
  await assert.rejects(cg.apply({ unified: { '../x.y': '1' } }), (e: unknown) => isKind(e, 'InvalidArgument'));
  await assert.rejects(cg.apply({ cpu: { realtimeRuntime: 1000 } }), /no realtime/);
});

test('v2 apply: a failed write names the file, the value and the errno', async (t) => {
  const { dir, cg } = fakeV2(t);
  files(dir, { 'cgroup.controllers': 'pids\n' });
  await assert.rejects(cg.apply({ pids: { limit: 100 } }), (e: unknown) => {
    assert.ok(isKind(e, 'NotFound'));
    assert.equal((e as Error).message, `write 100 to ${join(dir, 'pids.max')}: ENOENT`);
    return true;
  });
});

test('v2 create: enables the available controllers in every ancestor, then creates the directory', async (t) => {
  const { root, dir, cg } = fakeV2(t);
  const mount = join(root, 'sys/fs/cgroup');
  files(mount, {
    'cgroup.controllers': 'cpu memory pids\n',
    'cgroup.subtree_control': 'memory\n',
    'default/cgroup.controllers': 'cpu memory pids\n',
    'default/cgroup.subtree_control': '',
  });
  const report = await cg.create();
  assert.deepEqual(report.writes, [
    { file: join(mount, 'cgroup.subtree_control'), value: '+cpu +pids' },
    { file: join(mount, 'default/cgroup.subtree_control'), value: '+cpu +memory +pids' },
  ]);
  assert.equal(read(join(mount, 'default/cgroup.subtree_control')), '+cpu +memory +pids');
  assert.deepEqual(cg.procsFiles(), [join(dir, 'cgroup.procs')]);
});

test('v2 freeze and thaw: cgroup.freeze, then wait for cgroup.events', async (t) => {
  const { dir, cg } = fakeV2(t);
  files(dir, { 'cgroup.freeze': '0\n', 'cgroup.events': 'populated 1\nfrozen 0\n' });
  assert.equal(await cg.freezerState(), 'thawed');
  // The kernel reports "frozen 1" once every task has stopped; here the test does.
  const later = setTimeout(() => writeFileSync(join(dir, 'cgroup.events'), 'populated 1\nfrozen 1\n'), 50);
  t.after(() => clearTimeout(later));
  const pending = cg.freeze();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(read(join(dir, 'cgroup.freeze')), '1');
  assert.equal(await cg.freezerState(), 'freezing');
  await pending;
  assert.equal(await cg.freezerState(), 'frozen');

  setTimeout(() => writeFileSync(join(dir, 'cgroup.events'), 'populated 1\nfrozen 0\n'), 30);
  await cg.thaw();
  assert.equal(read(join(dir, 'cgroup.freeze')), '0');
  assert.equal(await cg.freezerState(), 'thawed');
});

test('v2 stats: from sample files', async (t) => {
  const { dir, cg } = fakeV2(t);
  files(dir, {
    'cpu.stat': 'usage_usec 2500\nuser_usec 1500\nsystem_usec 1000\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\n',
    'cpuset.cpus.effective': '0-1\n',
    'cpuset.mems.effective': '0\n',
    'memory.current': '1048576\n',
    'memory.max': '4194304\n',
    'memory.peak': '2097152\n',
    'memory.events': 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n',
    'memory.stat': 'anon 524288\nfile 262144\nkernel 4096\n',
    'memory.swap.current': '4096\n',
    'memory.swap.max': 'max\n',
    'pids.current': '3\n',
    'pids.max': 'max\n',
    'io.stat': '8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n',
    'hugetlb.2MB.current': '0\n',
    'hugetlb.2MB.max': 'max\n',
    'hugetlb.2MB.events': 'max 5\n',
  });
  const s = await cg.stats();
  assert.deepEqual(s.cpu, {
    usage: { total: 2500000, percpu: [], percpu_kernel: [], percpu_user: [], kernel: 1000000, user: 1500000 },
    throttling: { periods: 7, throttledPeriods: 2, throttledTime: 30000 },
  });
  assert.deepEqual(s.cpuset, { cpus: [0, 1], mems: [0] });
  assert.equal(s.memory.cache, 262144);
  assert.deepEqual(s.memory.usage, { limit: 4194304, usage: 1048576, max: 2097152, failcnt: 4 });
  assert.deepEqual(s.memory.swap, { limit: 2 ** 64, usage: 1048576 + 4096, max: 0, failcnt: 0 });
  assert.deepEqual(s.memory.raw, { anon: 524288, file: 262144, kernel: 4096 });
  assert.deepEqual(s.pids, { current: 3, limit: 0 });
  assert.deepEqual(s.blkio.ioServiceBytesRecursive, [
    { major: 8, minor: 0, op: 'Read', value: 4096 },
    { major: 8, minor: 0, op: 'Write', value: 8192 },
  ]);
  assert.deepEqual(s.hugetlb, { '2MB': { usage: 0, max: 0, failcnt: 5 } });
  assert.equal(await cg.oomCount(), 1);
  assert.deepEqual(cg.oomEventFiles(), [join(dir, 'memory.events')]);
  assert.deepEqual(await cg.pids(), []);
});

test('v2 pids: every cgroup.procs below the directory', async (t) => {
  const { dir, cg } = fakeV2(t);
  files(dir, { 'cgroup.procs': '12\n10\n', 'sub/cgroup.procs': '11\n', 'sub/deeper/cgroup.procs': '10\n13\n' });
  assert.deepEqual(await cg.pids(), [10, 11, 12, 13]);
});

// ------------------------------------------------------------------ v1

const V1_MOUNTINFO = [
  '31 30 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd',
  '32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct',
  '33 30 0:29 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset',
  '34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory',
  '35 30 0:31 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices',
  '36 30 0:32 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer',
  '37 30 0:33 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio',
  '38 30 0:34 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids',
  '39 30 0:35 / /sys/fs/cgroup/hugetlb rw - cgroup cgroup rw,hugetlb',
  '40 30 0:36 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio',
  '41 30 0:37 / /sys/fs/cgroup/rdma rw - cgroup cgroup rw,rdma',
  '',
].join('\n');

const V1_FILES: Record<string, string[]> = {
  'cpuset': ['cpuset.cpus', 'cpuset.mems'],
  'cpu,cpuacct': ['cpu.shares', 'cpu.cfs_period_us', 'cpu.cfs_quota_us', 'cpu.cfs_burst_us', 'cpu.rt_period_us', 'cpu.rt_runtime_us', 'cpu.idle'],
  'memory': ['memory.memsw.limit_in_bytes', 'memory.soft_limit_in_bytes', 'memory.swappiness', 'memory.oom_control', 'memory.kmem.tcp.limit_in_bytes'],
  'devices': ['devices.allow', 'devices.deny'],
  'pids': ['pids.max'],
  'blkio': ['blkio.weight', 'blkio.weight_device', 'blkio.leaf_weight', 'blkio.throttle.read_bps_device', 'blkio.throttle.write_iops_device'],
  'hugetlb': ['hugetlb.2MB.limit_in_bytes'],
  'net_cls,net_prio': ['net_cls.classid', 'net_prio.ifpriomap'],
  'rdma': ['rdma.max'],
  'freezer': ['freezer.state'],
};

function fakeV1(t: TestContext, memoryLimit = '9223372036854771712\n'): { base: string; cg: CgroupManager } {
  const root = fakeRoot(t);
  const base = join(root, 'sys/fs/cgroup');
  const layout = layoutFromMountinfo(V1_MOUNTINFO, { fsRoot: root });
  const cg = cgroupManager(layout, resolveCgroupPaths(layout, { cgroupsPath: '/default/c1', containerId: 'c1' }));
  for (const [hier, names] of Object.entries(V1_FILES)) {
    files(join(base, hier, 'default/c1'), Object.fromEntries(names.map((n) => [n, ''])));
  }
  files(join(base, 'memory/default/c1'), { 'memory.limit_in_bytes': memoryLimit });
  files(join(base, 'cpuset'), { 'cpuset.cpus': '0-3\n', 'cpuset.mems': '0\n', 'default/cpuset.cpus': '\n', 'default/cpuset.mems': '\n' });
  return { base, cg };
}

const V1_FULL: LinuxResources = {
  ...FULL,
  cpu: { ...FULL.cpu, realtimePeriod: 1000000, realtimeRuntime: 950000 },
  network: { classID: 1048577, priorities: [{ name: 'eth0', priority: 5 }] },
  memory: { ...FULL.memory, kernelTCP: 1048576, kernel: 1048576, disableOOMKiller: true },
  blockIO: { ...FULL.blockIO, leafWeight: 200 },
};

test('v1 apply: the exact files and values for a full LinuxResources', async (t) => {
  const { base, cg } = fakeV1(t);
  const report = await cg.apply(V1_FULL);
  const rel = report.writes.map((w) => [w.file.slice(base.length + 1), w.value]);
  assert.deepEqual(rel, [
    ['cpuset/default/c1/cpuset.cpus', '0-1'],
    ['cpuset/default/c1/cpuset.mems', '0'],
    ['devices/default/c1/devices.deny', 'a'],
    ['devices/default/c1/devices.allow', 'c 1:3 rwm'],
    ['devices/default/c1/devices.allow', 'c 10:229 rw'],
    ['memory/default/c1/memory.limit_in_bytes', '536870912'],
    ['memory/default/c1/memory.memsw.limit_in_bytes', '1073741824'],
    ['memory/default/c1/memory.soft_limit_in_bytes', '268435456'],
    ['memory/default/c1/memory.kmem.tcp.limit_in_bytes', '1048576'],
    ['memory/default/c1/memory.swappiness', '10'],
    ['memory/default/c1/memory.oom_control', '1'],
    ['cpu,cpuacct/default/c1/cpu.shares', '1024'],
    ['cpu,cpuacct/default/c1/cpu.cfs_period_us', '100000'],
    ['cpu,cpuacct/default/c1/cpu.cfs_quota_us', '50000'],
    ['cpu,cpuacct/default/c1/cpu.cfs_burst_us', '10000'],
    ['cpu,cpuacct/default/c1/cpu.rt_period_us', '1000000'],
    ['cpu,cpuacct/default/c1/cpu.rt_runtime_us', '950000'],
    ['cpu,cpuacct/default/c1/cpu.idle', '0'],
    ['pids/default/c1/pids.max', '100'],
    ['blkio/default/c1/blkio.weight', '500'],
    ['blkio/default/c1/blkio.leaf_weight', '200'],
    ['blkio/default/c1/blkio.weight_device', '8:0 300'],
    ['blkio/default/c1/blkio.throttle.read_bps_device', '8:0 1048576'],
    ['blkio/default/c1/blkio.throttle.write_iops_device', '8:16 300'],
    ['hugetlb/default/c1/hugetlb.2MB.limit_in_bytes', '209715200'],
    ['net_cls,net_prio/default/c1/net_cls.classid', '1048577'],
    ['net_cls,net_prio/default/c1/net_prio.ifpriomap', 'eth0 5'],
    ['rdma/default/c1/rdma.max', 'mlx5_1 hca_handle=3 hca_object=10000'],
  ]);
  assert.deepEqual(report.warnings, ['memory.kernel: kernel memory limits are not supported; ignored']);
  assert.deepEqual(report.unappliedDeviceRules, []);
});

test('v1 apply: memory+swap is raised before the memory limit when it grows', async (t) => {
  const { base, cg } = fakeV1(t, '104857600\n');
  const report = await cg.apply({ memory: { limit: 209715200, swap: 419430400 } });
  assert.deepEqual(report.writes.map((w) => [w.file.slice(base.length + 1), w.value]), [
    ['memory/default/c1/memory.memsw.limit_in_bytes', '419430400'],
    ['memory/default/c1/memory.limit_in_bytes', '209715200'],
  ]);
  const unlimited = await cg.apply({ memory: { limit: -1 }, pids: { limit: -1 } });
  assert.deepEqual(unlimited.writes.map((w) => [w.file.slice(base.length + 1), w.value]), [
    ['memory/default/c1/memory.memsw.limit_in_bytes', '-1'],
    ['memory/default/c1/memory.limit_in_bytes', '-1'],
    ['pids/default/c1/pids.max', 'max'],
  ]);
});

test('v1 apply: unified is refused, and so is a controller that is not mounted', async (t) => {
  const { cg } = fakeV1(t);
  await assert.rejects(cg.apply({ unified: { 'memory.high': '1' } }), (e: unknown) => {
    assert.ok(isKind(e, 'FailedPrecondition'));
    assert.match(String(e), /unified \(memory.high\) needs cgroup v2; this host uses cgroup v1/);
    return true;
  });
  const layout = layoutFromMountinfo('34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n', { fsRoot: '/nonexistent' });
  const cg2 = cgroupManager(layout, resolveCgroupPaths(layout, { containerId: 'x' }));
  await assert.rejects(cg2.apply({ pids: { limit: 1 } }), /cannot set pids.limit: the pids cgroup controller is not mounted/);
  await assert.rejects(cg.apply({ memory: { swappiness: 101 } }), (e: unknown) => isKind(e, 'InvalidArgument'));
});

test('v1 create: every hierarchy gets its directory; cpuset copies cpus and mems from the parent', async (t) => {
  const { base, cg } = fakeV1(t);
  const report = await cg.create({ pids: { limit: 7 } });
  assert.deepEqual(report.writes.map((w) => [w.file.slice(base.length + 1), w.value]), [
    ['cpuset/default/cpuset.cpus', '0-3'],
    ['cpuset/default/cpuset.mems', '0'],
    ['cpuset/default/c1/cpuset.cpus', '0-3'],
    ['cpuset/default/c1/cpuset.mems', '0'],
    ['pids/default/c1/pids.max', '7'],
  ]);
  assert.deepEqual(cg.procsFiles().map((f) => f.slice(base.length + 1)).sort(), [
    'blkio/default/c1/cgroup.procs',
    'cpu,cpuacct/default/c1/cgroup.procs',
    'cpuset/default/c1/cgroup.procs',
    'devices/default/c1/cgroup.procs',
    'freezer/default/c1/cgroup.procs',
    'hugetlb/default/c1/cgroup.procs',
    'memory/default/c1/cgroup.procs',
    'net_cls,net_prio/default/c1/cgroup.procs',
    'pids/default/c1/cgroup.procs',
    'rdma/default/c1/cgroup.procs',
    'systemd/default/c1/cgroup.procs',
  ]);
});

test('v1 stats: from sample files', async (t) => {
  const { base, cg } = fakeV1(t);
  files(join(base, 'cpu,cpuacct/default/c1'), {
    'cpuacct.usage': '3000\n',
    'cpuacct.usage_percpu': '1000 2000 \n',
    'cpuacct.usage_percpu_sys': '400 600 \n',
    'cpuacct.usage_percpu_user': '600 1400 \n',
    'cpuacct.stat': 'user 2\nsystem 1\n',
    'cpu.stat': 'nr_periods 9\nnr_throttled 3\nthrottled_time 123456\n',
  });
  files(join(base, 'memory/default/c1'), {
    'memory.stat': 'cache 8192\nrss 4096\ntotal_cache 8192\n',
    'memory.usage_in_bytes': '12288\n',
    'memory.max_usage_in_bytes': '16384\n',
    'memory.failcnt': '2\n',
    'memory.memsw.usage_in_bytes': '12288\n',
    'memory.memsw.max_usage_in_bytes': '16384\n',
    'memory.memsw.failcnt': '0\n',
    'memory.memsw.limit_in_bytes': '9223372036854771712\n',
    'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
  });
  files(join(base, 'pids/default/c1'), { 'pids.current': '4\n', 'pids.max': '100\n' });
  files(join(base, 'blkio/default/c1'), {
    'blkio.throttle.io_service_bytes_recursive': '8:0 Read 4096\n8:0 Write 0\n8:0 Total 4096\nTotal 4096\n',
    'blkio.throttle.io_serviced_recursive': '8:0 Read 1\n8:0 Write 0\n8:0 Total 1\nTotal 1\n',
  });
  files(join(base, 'hugetlb/default/c1'), {
    'hugetlb.2MB.usage_in_bytes': '2097152\n',
    'hugetlb.2MB.max_usage_in_bytes': '4194304\n',
    'hugetlb.2MB.failcnt': '1\n',
  });
  const s = await cg.stats();
  assert.deepEqual(s.cpu.usage, {
    total: 3000, percpu: [1000, 2000], percpu_kernel: [400, 600], percpu_user: [600, 1400], kernel: 10000000, user: 20000000,
  });
  assert.deepEqual(s.cpu.throttling, { periods: 9, throttledPeriods: 3, throttledTime: 123456 });
  assert.equal(s.memory.cache, 8192);
  assert.deepEqual(s.memory.usage, { limit: 9223372036854771712, usage: 12288, max: 16384, failcnt: 2 });
  assert.deepEqual(s.memory.swap, { limit: 9223372036854771712, usage: 12288, max: 16384, failcnt: 0 });
  assert.equal(s.memory.raw['rss'], 4096);
  assert.deepEqual(s.pids, { current: 4, limit: 100 });
  assert.deepEqual(s.blkio.ioServiceBytesRecursive.slice(0, 2), [
    { major: 8, minor: 0, op: 'Read', value: 4096 },
    { major: 8, minor: 0, op: 'Write', value: 0 },
  ]);
  assert.equal(s.blkio.ioServicedRecursive[0]?.value, 1);
  assert.deepEqual(s.hugetlb, { '2MB': { usage: 2097152, max: 4194304, failcnt: 1 } });
  assert.equal(await cg.oomCount(), 2);
});

test('v1 freezer on the fake tree: FROZEN is written and read back', async (t) => {
  const { base, cg } = fakeV1(t);
  const state = join(base, 'freezer/default/c1/freezer.state');
  writeFileSync(state, 'THAWED\n');
  assert.equal(await cg.freezerState(), 'thawed');
  await cg.freeze();
  assert.equal(read(state), 'FROZEN');
  assert.equal(await cg.freezerState(), 'frozen');
  await cg.thaw();
  assert.equal(await cg.freezerState(), 'thawed');
});
