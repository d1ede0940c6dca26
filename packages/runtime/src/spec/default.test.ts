import test from 'node:test';
import assert from 'node:assert/strict';
import { parseSpec } from '@berth/spec';
import { planCreate } from '../plan/planner.js';
import { defaultSpec } from './default.js';

test('defaultSpec is what runc spec writes, with hostname berth', () => {
  const s = defaultSpec();
  assert.deepEqual(parseSpec(JSON.parse(JSON.stringify(s))), s);
  assert.equal(s.ociVersion, '1.0.2');
  assert.equal(s.hostname, 'berth');
  assert.deepEqual(s.root, { path: 'rootfs', readonly: true });
  const p = s.process!;
  assert.equal(p.terminal, true);
  assert.deepEqual(p.args, ['sh']);
  assert.deepEqual(p.env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm']);
  assert.equal(p.cwd, '/');
  assert.deepEqual(p.user, { uid: 0, gid: 0 });
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  assert.deepEqual(p.capabilities, { bounding: caps, effective: caps, permitted: caps });
  assert.deepEqual(p.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }]);
  assert.equal(p.noNewPrivileges, true);
  assert.deepEqual(s.mounts?.map((m) => [m.destination, m.type, m.source]), [
    ['/proc', 'proc', 'proc'], ['/dev', 'tmpfs', 'tmpfs'], ['/dev/pts', 'devpts', 'devpts'], ['/dev/shm', 'tmpfs', 'shm'],
    ['/dev/mqueue', 'mqueue', 'mqueue'], ['/sys', 'sysfs', 'sysfs'], ['/sys/fs/cgroup', 'cgroup', 'cgroup'],
  ]);
  assert.deepEqual(s.mounts?.[1]?.options, ['nosuid', 'strictatime', 'mode=755', 'size=65536k']);
  assert.deepEqual(s.mounts?.[2]?.options, ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5']);
  assert.deepEqual(s.mounts?.[5]?.options, ['nosuid', 'noexec', 'nodev', 'ro']);
  assert.deepEqual(s.mounts?.[6]?.options, ['nosuid', 'noexec', 'nodev', 'relatime', 'ro']);
  assert.deepEqual(s.linux?.resources, { devices: [{ allow: false, access: 'rwm' }] });
  assert.deepEqual(s.linux?.namespaces?.map((n) => n.type), ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup']);
  assert.ok(s.linux?.maskedPaths?.includes('/proc/kcore'));
  assert.ok(s.linux?.readonlyPaths?.includes('/proc/sys'));
});

test('defaultSpec takes args and returns a fresh object each time', () => {
  const a = defaultSpec({ args: ['/hello'] });
  assert.deepEqual(a.process?.args, ['/hello']);
  a.process!.env!.push('X=1');
  assert.equal(defaultSpec().process?.env?.length, 2);
});

test('defaultSpec rootless: user namespace mapping the caller, no netns, /sys bound, no cgroups', () => {
  const s = defaultSpec({ rootless: true, uid: 1000, gid: 1001 });
  assert.deepEqual(parseSpec(JSON.parse(JSON.stringify(s))), s);
  assert.deepEqual(s.linux?.namespaces?.map((n) => n.type), ['pid', 'ipc', 'uts', 'mount', 'cgroup', 'user']);
  assert.deepEqual(s.linux?.uidMappings, [{ containerID: 0, hostID: 1000, size: 1 }]);
  assert.deepEqual(s.linux?.gidMappings, [{ containerID: 0, hostID: 1001, size: 1 }]);
  assert.equal(s.linux?.resources, undefined);
  assert.deepEqual(s.mounts?.find((m) => m.destination === '/sys'),
    { destination: '/sys', type: 'none', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] });
  assert.equal(s.mounts?.some((m) => m.type === 'cgroup'), false);
  assert.deepEqual(s.mounts?.find((m) => m.destination === '/dev/pts')?.options,
    ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620']);
  const own = defaultSpec({ rootless: true });
  assert.equal(own.linux?.uidMappings?.[0]?.hostID, process.getuid?.());
});

test('both default specs plan without errors', () => {
  const fs = { kind: (p: string) => (p === '/sys' ? 'dir' as const : 'missing' as const) };
  const base = { bundle: '/b', containerId: 'c', consoleSocket: '/s', fs, cgroupMounts: { version: 'v2' as const } };
  assert.ok(planCreate(defaultSpec(), base).length > 30);
  const plan = planCreate(defaultSpec({ rootless: true, uid: 1000, gid: 1000 }), { ...base, rootless: true });
  assert.ok(plan.some((r) => r.tag === 'setgroups'));
  assert.ok(plan.some((r) => r.tag === 'device_bind' && r.path === '/dev/null'));
});
