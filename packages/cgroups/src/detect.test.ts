import test from 'node:test';
import assert from 'node:assert/strict';
import { isKind } from '@berth/base';
import { layoutFromMountinfo, parseMountinfo } from './detect.js';
import { expandSlice, parseProcCgroup, resolveCgroupPaths, systemdCgroupPath } from './paths.js';

// This development machine: v1 controllers, an empty cgroup2 at /sys/fs/cgroup/unified.
const HYBRID = `22 1 254:1 / / rw,relatime - ext4 /dev/vda rw
23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;

// A current systemd distribution.
const PURE_V2 = `24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;

// An older systemd distribution: comounted cpu,cpuacct and net_cls,net_prio
// (with cpu -> cpu,cpuacct symlinks that mountinfo does not show).
const PURE_V1 = `25 1 8:1 / / rw - ext4 /dev/sda1 rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid shared:15 - cgroup cgroup rw,net_cls,net_prio
36 30 0:32 / /sys/fs/cgroup/memory rw,nosuid shared:16 - cgroup cgroup rw,memory
37 30 0:33 / /sys/fs/cgroup/pids rw,nosuid shared:17 - cgroup cgroup rw,pids
38 30 0:34 / /sys/fs/cgroup/cpuset rw,nosuid shared:18 - cgroup cgroup rw,cpuset,clone_children
39 30 0:35 / /sys/fs/cgroup/hugetlb rw,nosuid shared:19 - cgroup cgroup rw,hugetlb
`;

test('detect: hybrid host (this machine)', () => {
  const l = layoutFromMountinfo(HYBRID);
  assert.equal(l.version, 'v1');
  assert.equal(l.hybrid, true);
  assert.deepEqual(Object.keys(l.mounts).sort(), [
    'blkio', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'memory', 'name=systemd', 'pids',
  ]);
  assert.equal(l.mounts['cpu']?.mountpoint, '/sys/fs/cgroup/cpu');
  assert.equal(l.mounts['cpuacct']?.mountpoint, '/sys/fs/cgroup/cpuacct');
  assert.equal(l.mounts['name=systemd']?.mountpoint, '/sys/fs/cgroup/systemd');
  assert.deepEqual(l.unified, { mountpoint: '/sys/fs/cgroup/unified', root: '/', controllers: [] });
});

test('detect: pure v2', () => {
  const l = layoutFromMountinfo(PURE_V2);
  assert.equal(l.version, 'v2');
  assert.equal(l.hybrid, false);
  assert.deepEqual(l.mounts, {});
  assert.equal(l.unified?.mountpoint, '/sys/fs/cgroup');
});

test('detect: pure v1 with comounted controllers and mount options that are not controllers', () => {
  const l = layoutFromMountinfo(PURE_V1);
  assert.equal(l.version, 'v1');
  assert.equal(l.hybrid, false);
  assert.equal(l.unified, undefined);
  assert.equal(l.mounts['cpu']?.mountpoint, '/sys/fs/cgroup/cpu,cpuacct');
  assert.equal(l.mounts['cpuacct'], l.mounts['cpu']);
  assert.deepEqual(l.mounts['cpu']?.controllers, ['cpu', 'cpuacct']);
  assert.equal(l.mounts['net_prio']?.mountpoint, '/sys/fs/cgroup/net_cls,net_prio');
  assert.deepEqual(l.mounts['cpuset']?.controllers, ['cpuset']);
  assert.deepEqual(l.mounts['name=systemd']?.controllers, ['name=systemd']);
});

test('detect: a named v1 hierarchy beside cgroup2 is still v2; no cgroup at all is an error', () => {
  const l = layoutFromMountinfo(`${PURE_V2}40 24 0:40 / /run/systemd-legacy rw - cgroup cgroup rw,name=systemd\n`);
  assert.equal(l.version, 'v2');
  assert.throws(() => layoutFromMountinfo('22 1 254:1 / / rw - ext4 /dev/vda rw\n'), (e) => isKind(e, 'FailedPrecondition'));
});

test('detect: fsRoot prefixes mount points; escapes are decoded', () => {
  const l = layoutFromMountinfo('41 31 0:38 / /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw\n', { fsRoot: '/tmp/fake' });
  assert.equal(l.unified?.mountpoint, '/tmp/fake/sys/fs/my cgroup');
  const e = parseMountinfo('41 31 0:38 /docker/abc /sys/fs/cgroup/memory rw shared:3 master:1 - cgroup cgroup rw,memory\n');
  assert.equal(e[0]?.root, '/docker/abc');
  assert.deepEqual(e[0]?.superOptions, ['rw', 'memory']);
});

const SELF_V1 = `9:name=systemd:/user.slice
4:memory:/process_api/abc
2:cpu,cpuacct:/user.slice
8:pids:/user.slice/x
7:cpuset:/
6:hugetlb:/
5:net_cls,net_prio:/
0::/init.scope
`;

test('parseProcCgroup: comounted controllers and the cgroup2 entry', () => {
  const p = parseProcCgroup(SELF_V1);
  assert.equal(p['memory'], '/process_api/abc');
  assert.equal(p['cpu'], '/user.slice');
  assert.equal(p['cpuacct'], '/user.slice');
  assert.equal(p['name=systemd'], '/user.slice');
  assert.equal(p[''], '/init.scope');
});

test('paths: absolute cgroupsPath is under each mount point', () => {
  const p = resolveCgroupPaths(layoutFromMountinfo(PURE_V1), { cgroupsPath: '/default/c1', containerId: 'c1' });
  assert.equal(p.relative, '/default/c1');
  assert.equal(p.dirs['memory'], '/sys/fs/cgroup/memory/default/c1');
  assert.equal(p.dirs['cpu'], '/sys/fs/cgroup/cpu,cpuacct/default/c1');
  assert.equal(p.dirs['cpuacct'], '/sys/fs/cgroup/cpu,cpuacct/default/c1');
  assert.equal(p.dirs['name=systemd'], '/sys/fs/cgroup/systemd/default/c1');
  assert.equal(p.dirs[''], undefined);
});

test('paths: hybrid hosts get the cgroup2 directory too', () => {
  const p = resolveCgroupPaths(layoutFromMountinfo(HYBRID), { containerId: 'c1' });
  assert.equal(p.dirs[''], '/sys/fs/cgroup/unified/c1');
  assert.equal(p.dirs['pids'], '/sys/fs/cgroup/pids/c1');
});

test('paths: empty cgroupsPath is /<containerId>', () => {
  const p = resolveCgroupPaths(layoutFromMountinfo(PURE_V2), { cgroupsPath: '', containerId: 'abc' });
  assert.deepEqual(p, { version: 'v2', relative: '/abc', dirs: { '': '/sys/fs/cgroup/abc' } });
});

test('paths: relative cgroupsPath is under the own cgroup of each hierarchy', () => {
  const p = resolveCgroupPaths(layoutFromMountinfo(PURE_V1), { cgroupsPath: 'ctr/c1', containerId: 'c1', selfCgroup: SELF_V1 });
  assert.equal(p.dirs['memory'], '/sys/fs/cgroup/memory/process_api/abc/ctr/c1');
  assert.equal(p.dirs['pids'], '/sys/fs/cgroup/pids/user.slice/x/ctr/c1');
  assert.equal(p.dirs['cpu'], '/sys/fs/cgroup/cpu,cpuacct/user.slice/ctr/c1');
  assert.equal(p.relative, '/user.slice/x/ctr/c1');
  const v2 = resolveCgroupPaths(layoutFromMountinfo(PURE_V2), { cgroupsPath: 'c1', containerId: 'c1', selfCgroup: '0::/init.scope\n' });
  assert.equal(v2.dirs[''], '/sys/fs/cgroup/init.scope/c1');
});

test('paths: the own cgroup is taken relative to a mount that shows a subtree', () => {
  const layout = layoutFromMountinfo('41 31 0:38 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n');
  const p = resolveCgroupPaths(layout, { cgroupsPath: 'sub', containerId: 'x', selfCgroup: '0::/docker/abc/init\n' });
  assert.equal(p.dirs[''], '/sys/fs/cgroup/init/sub');
});

test('paths: ".." never leaves the hierarchy', () => {
  const l = layoutFromMountinfo(PURE_V2);
  assert.throws(() => resolveCgroupPaths(l, { cgroupsPath: '/a/../../etc', containerId: 'x' }), (e) => isKind(e, 'InvalidArgument'));
  assert.throws(() => resolveCgroupPaths(l, { containerId: '..' }), (e) => isKind(e, 'InvalidArgument'));
});

test('paths: systemd "slice:prefix:name" maps to the scope systemd would create', () => {
  assert.equal(systemdCgroupPath('system.slice:docker:abc'), '/system.slice/docker-abc.scope');
  assert.equal(systemdCgroupPath('machine-libpod.slice:libpod:abc'), '/machine.slice/machine-libpod.slice/libpod-abc.scope');
  assert.equal(systemdCgroupPath(':runc:abc'), '/system.slice/runc-abc.scope');
  assert.equal(systemdCgroupPath('-.slice:x:abc'), '/x-abc.scope');
  assert.equal(systemdCgroupPath('system.slice:x:my-sub.slice'), '/my.slice/my-sub.slice');
  assert.equal(expandSlice('a-b-c.slice'), '/a.slice/a-b.slice/a-b-c.slice');
  assert.throws(() => expandSlice('a--b.slice'), (e) => isKind(e, 'InvalidArgument'));
  assert.throws(() => expandSlice('nota'), (e) => isKind(e, 'InvalidArgument'));
  const p = resolveCgroupPaths(layoutFromMountinfo(PURE_V2), { cgroupsPath: 'system.slice:docker:abc', containerId: 'abc' });
  assert.equal(p.dirs[''], '/sys/fs/cgroup/system.slice/docker-abc.scope');
});
