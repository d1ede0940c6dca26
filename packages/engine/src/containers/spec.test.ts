import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, ErrorKind } from '@berth/base';
import type { Spec } from '@berth/spec';
import { ALL_CAPABILITIES, DEFAULT_CAPABILITIES } from './caps.js';
import type { ContainerConfig, HostConfig } from './config.js';
import { parseMounts } from './mounts.js';
import {
  DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, buildSpec, containerEnv, defaultDeviceRules, devicesFromPath, resolveUser,
  resolveUserFromFiles, secureJoin,
} from './spec.js';
import type { SpecContext } from './spec.js';

const ID = '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const CFG: ContainerConfig = { Cmd: ['/probe', 'all'] };
const ctx = (more: Partial<SpecContext> = {}): SpecContext => ({ id: ID, arch: 'amd64', kernel: '6.1.0', allCapabilities: ALL_CAPABILITIES, hostDevices: [], ...more });
const build = (cfg: ContainerConfig, host: HostConfig, more: Partial<SpecContext> = {}): Spec => buildSpec(cfg, host, ctx(more));
const mount = (s: Spec, dest: string): NonNullable<Spec['mounts']>[number] | undefined => (s.mounts ?? []).find((m) => m.destination === dest);

function rejects(fn: () => unknown, message: string, kind: string = ErrorKind.InvalidArgument): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BerthError, String(err));
    assert.equal(err.kind, kind);
    assert.equal(err.message, message);
    return true;
  });
}

test('buildSpec: Docker defaults for a plain container', () => {
  const s = build(CFG, {});
  assert.equal(s.ociVersion, '1.2.0');
  assert.deepEqual(s.root, { path: 'rootfs', readonly: false });
  assert.equal(s.hostname, ID.slice(0, 12));
  const p = s.process;
  assert.ok(p);
  assert.deepEqual(p.args, ['/probe', 'all']);
  assert.equal(p.cwd, '/');
  assert.equal(p.terminal, false);
  assert.deepEqual(p.user, { uid: 0, gid: 0 });
  assert.deepEqual(p.env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', `HOSTNAME=${ID.slice(0, 12)}`]);
  assert.deepEqual(p.capabilities, { bounding: [...DEFAULT_CAPABILITIES], effective: [...DEFAULT_CAPABILITIES], permitted: [...DEFAULT_CAPABILITIES] });
  assert.equal(p.noNewPrivileges, false);
  assert.equal(p.oomScoreAdj, 0);
  assert.equal(p.rlimits, undefined);
  const l = s.linux;
  assert.ok(l);
  assert.deepEqual(l.namespaces, [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }]);
  assert.equal(l.cgroupsPath, `/berth/${ID}`);
  assert.deepEqual(l.maskedPaths, DEFAULT_MASKED_PATHS);
  assert.deepEqual(l.readonlyPaths, DEFAULT_READONLY_PATHS);
  assert.deepEqual(l.resources, { devices: defaultDeviceRules() });
  assert.equal(l.devices, undefined);
  assert.equal(l.seccomp?.defaultAction, 'SCMP_ACT_ERRNO');
  assert.deepEqual((s.mounts ?? []).map((m) => [m.destination, m.type]), [
    ['/proc', 'proc'], ['/dev', 'tmpfs'], ['/dev/pts', 'devpts'], ['/sys', 'sysfs'], ['/sys/fs/cgroup', 'cgroup'],
    ['/dev/mqueue', 'mqueue'], ['/dev/shm', 'tmpfs'],
  ]);
  assert.deepEqual(mount(s, '/dev/shm')?.options, ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${64 * 1024 * 1024}`]);
  assert.ok(mount(s, '/sys')?.options?.includes('ro'));
  assert.ok(mount(s, '/sys/fs/cgroup')?.options?.includes('ro'));
});

test('buildSpec: process settings', () => {
  const s = build({ Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo hi'], Tty: true, WorkingDir: '/work', Env: ['PATH=/mine', 'A=1', 'HOSTNAME', 'A=2'], Hostname: 'web', Domainname: 'example.com' },
    { OomScoreAdj: 300, ConsoleSize: [40, 120], SecurityOpt: ['no-new-privileges'], Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }, { Name: 'core', Soft: -1, Hard: -1 }] },
    { user: { uid: 1000, gid: 1000, additionalGids: [10, 20] } });
  const p = s.process;
  assert.ok(p);
  assert.deepEqual(p.args, ['/bin/sh', '-c', 'echo hi']);
  assert.equal(p.cwd, '/work');
  assert.equal(p.terminal, true);
  assert.deepEqual(p.consoleSize, { height: 40, width: 120 });
  assert.deepEqual(p.env, ['PATH=/mine', 'TERM=xterm', 'A=2']);
  assert.deepEqual(p.user, { uid: 1000, gid: 1000, additionalGids: [10, 20] });
  assert.equal(p.oomScoreAdj, 300);
  assert.equal(p.noNewPrivileges, true);
  assert.deepEqual(p.rlimits, [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 2048 }, { type: 'RLIMIT_CORE', soft: 2 ** 64 - 1, hard: 2 ** 64 - 1 }]);
  assert.equal(s.hostname, 'web');
  assert.equal(s.domainname, 'example.com');
  assert.deepEqual(containerEnv({ Env: ['PATH'] }, 'h'), ['HOSTNAME=h']);
  rejects(() => build({}, {}), 'no command specified');
});

test('buildSpec: capabilities and security options', () => {
  const dropped = build(CFG, { CapDrop: ['ALL'], CapAdd: ['net_bind_service'] });
  assert.deepEqual(dropped.process?.capabilities?.bounding, ['CAP_NET_BIND_SERVICE']);
  assert.ok(!(dropped.linux?.seccomp?.syscalls ?? []).some((r) => r.names.includes('chroot')), 'seccomp follows the capabilities');
  const admin = build(CFG, { CapAdd: ['SYS_ADMIN'] });
  assert.ok((admin.linux?.seccomp?.syscalls ?? []).some((r) => r.names.includes('mount') && r.action === 'SCMP_ACT_ALLOW'));
  assert.equal(build(CFG, { SecurityOpt: ['seccomp=unconfined'] }).linux?.seccomp, undefined);
  assert.equal(build(CFG, { SecurityOpt: ['seccomp:builtin', 'apparmor=unconfined', 'label=disable'] }).linux?.seccomp?.defaultAction, 'SCMP_ACT_ERRNO');
  const custom = build(CFG, { SecurityOpt: [`seccomp=${JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }] })}`] });
  assert.deepEqual(custom.linux?.seccomp, { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }] });
  assert.deepEqual(build(CFG, { MaskedPaths: [], ReadonlyPaths: ['/proc/x'] }).linux?.maskedPaths, []);
  assert.deepEqual(build(CFG, { MaskedPaths: [], ReadonlyPaths: ['/proc/x'] }).linux?.readonlyPaths, ['/proc/x']);
});

test('buildSpec: privileged', () => {
  const dev = { path: '/dev/sda', type: 'b' as const, major: 8, minor: 0, fileMode: 0o660, uid: 0, gid: 6 };
  const s = build(CFG, { Privileged: true, CapDrop: ['ALL'] }, { hostDevices: [dev] });
  assert.deepEqual(s.process?.capabilities?.bounding, [...ALL_CAPABILITIES]);
  assert.equal(s.linux?.seccomp, undefined);
  assert.equal(s.linux?.maskedPaths, undefined);
  assert.equal(s.linux?.readonlyPaths, undefined);
  assert.deepEqual(s.linux?.devices, [dev]);
  assert.deepEqual(s.linux?.resources?.devices, [{ allow: true, access: 'rwm' }]);
  assert.ok(!mount(s, '/sys')?.options?.includes('ro'));
  assert.ok(!mount(s, '/sys/fs/cgroup')?.options?.includes('ro'));
});

test('buildSpec: namespaces by mode', () => {
  const types = (s: Spec): string[] => (s.linux?.namespaces ?? []).map((n) => (n.path ? `${n.type}=${n.path}` : n.type));
  assert.deepEqual(types(build(CFG, { NetworkMode: 'host', PidMode: 'host', IpcMode: 'host', UTSMode: 'host', CgroupnsMode: 'host' })), ['mount']);
  assert.deepEqual(types(build(CFG, { NetworkMode: 'none' })), ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup']);
  assert.deepEqual(types(build(CFG, {}, { network: { kind: 'path', path: '/run/berth/netns/x' } })), ['pid', 'network=/run/berth/netns/x', 'ipc', 'uts', 'mount', 'cgroup']);
  assert.deepEqual(types(build(CFG, { IpcMode: 'container:db', PidMode: 'container:db' }, { ipc: { kind: 'path', path: '/proc/9/ns/ipc' }, pid: { kind: 'path', path: '/proc/9/ns/pid' } })),
    ['pid=/proc/9/ns/pid', 'network', 'ipc=/proc/9/ns/ipc', 'uts', 'mount', 'cgroup']);
  assert.deepEqual(types(build(CFG, {}, { defaultCgroupns: 'host' })), ['pid', 'network', 'ipc', 'uts', 'mount']);
  rejects(() => build(CFG, { IpcMode: 'container:db' }), "IPC mode container:db: the other container's namespace path was not given", ErrorKind.FailedPrecondition);
  rejects(() => build(CFG, { NetworkMode: 'container:db' }), "network mode container:db: the other container's namespace path was not given", ErrorKind.FailedPrecondition);
  const uts = build(CFG, { UTSMode: 'host' });
  assert.equal(uts.hostname, undefined);
  const ipcHost = build(CFG, { IpcMode: 'host' });
  assert.deepEqual(mount(ipcHost, '/dev/shm'), { destination: '/dev/shm', type: 'bind', source: '/dev/shm', options: ['rbind'] });
  assert.equal(mount(ipcHost, '/dev/mqueue')?.type, 'bind');
  assert.equal(mount(build(CFG, { IpcMode: 'none' }), '/dev/shm'), undefined);
  assert.deepEqual(mount(build(CFG, { IpcMode: 'shareable' }, { shm: { hostPath: '/run/x/shm' } }), '/dev/shm')?.source, '/run/x/shm');
  assert.ok(mount(build(CFG, { ShmSize: 1 << 20 }), '/dev/shm')?.options?.includes('size=1048576'));
});

test('buildSpec: mounts, network files, init, read-only rootfs', () => {
  const host: HostConfig = { Binds: ['/srv:/data:ro,rshared', '/srv:/data/sub'], Tmpfs: { '/run': 'size=1m,exec' }, Mounts: [{ Type: 'volume', Source: 'vol1', Target: '/a' }], ReadonlyRootfs: true, Init: true };
  const reqs = parseMounts({ Volumes: { '/anon': {} } }, host, { exists: () => true });
  const s = build(CFG, host, {
    mounts: reqs.map((r) => ({ ...r, hostPath: r.type === 'bind' ? r.source : r.type === 'volume' ? `/vols/${r.volumeName || 'anon1'}` : '' })),
    hostnamePath: '/c/hostname', hostsPath: '/c/hosts', resolvConfPath: '/c/resolv.conf', initPath: '/opt/berth-init',
  });
  assert.equal(s.root?.readonly, true);
  const tail = (s.mounts ?? []).slice(7);
  assert.deepEqual(tail, [
    { destination: '/data', type: 'bind', source: '/srv', options: ['rbind', 'ro', 'rshared'] },
    { destination: '/a', type: 'bind', source: '/vols/vol1', options: ['rbind'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['noexec', 'nosuid', 'nodev', 'size=1m', 'exec', 'rprivate'].filter((o) => o !== 'noexec') },
    { destination: '/anon', type: 'bind', source: '/vols/anon1', options: ['rbind'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: '/c/resolv.conf', options: ['rbind', 'rprivate', 'ro'] },
    { destination: '/etc/hostname', type: 'bind', source: '/c/hostname', options: ['rbind', 'rprivate', 'ro'] },
    { destination: '/etc/hosts', type: 'bind', source: '/c/hosts', options: ['rbind', 'rprivate', 'ro'] },
    { destination: '/data/sub', type: 'bind', source: '/srv', options: ['rbind', 'rprivate'] },
    { destination: '/sbin/docker-init', type: 'bind', source: '/opt/berth-init', options: ['bind', 'ro'] },
  ]);
  assert.equal(s.linux?.rootfsPropagation, 'rshared');
  assert.deepEqual(s.process?.args, ['/sbin/docker-init', '--', '/probe', 'all']);
  rejects(() => build(CFG, { Init: true }), 'Init was requested but no init binary is configured', ErrorKind.FailedPrecondition);
  // A user mount on a default destination replaces it; one on /dev drops the /dev/* defaults.
  const shm = build(CFG, {}, { mounts: [{ type: 'tmpfs', source: '', destination: '/dev/shm', readOnly: false, options: ['size=1k'], propagation: '', mode: '', hostPath: '' }] });
  assert.deepEqual((s.mounts ?? []).filter((m) => m.destination === '/dev/shm').length, 1);
  assert.deepEqual(mount(shm, '/dev/shm')?.options, ['size=1k']);
  const dev = build(CFG, {}, { mounts: [{ type: 'bind', source: '/dev', destination: '/dev', readOnly: false, options: ['rbind'], propagation: '', mode: '', hostPath: '/dev' }] });
  assert.deepEqual((dev.mounts ?? []).map((m) => m.destination), ['/proc', '/sys', '/sys/fs/cgroup', '/dev']);
});

test('buildSpec: resources', () => {
  const s = build(CFG, {
    Memory: 64 << 20, MemoryReservation: 32 << 20, MemorySwap: -1, MemorySwappiness: 10, OomKillDisable: true, KernelMemory: 1 << 30,
    CpuShares: 512, NanoCpus: 1_500_000_000, CpusetCpus: '0', CpusetMems: '0', PidsLimit: 100, BlkioWeight: 300, CgroupParent: '/mine',
  });
  assert.deepEqual(s.linux?.resources?.memory, { limit: 64 << 20, reservation: 32 << 20, swap: -1, swappiness: 10, disableOOMKiller: true });
  assert.deepEqual(s.linux?.resources?.cpu, { shares: 512, period: 100000, quota: 150000, cpus: '0', mems: '0' });
  assert.deepEqual(s.linux?.resources?.pids, { limit: 100 });
  assert.deepEqual(s.linux?.resources?.blockIO, { weight: 300 });
  assert.equal(s.linux?.cgroupsPath, `/mine/${ID}`);
  assert.deepEqual(build(CFG, { CpuQuota: 50000, CpuPeriod: 100000 }).linux?.resources?.cpu, { quota: 50000, period: 100000 });
  assert.equal(build(CFG, {}, { cgroupsPath: 'system.slice:berth:x' }).linux?.cgroupsPath, 'system.slice:berth:x');
  rejects(() => build(CFG, { BlkioDeviceReadBps: [{ Path: '/dev/berth-none', Rate: 1 }] }), 'BlkioDeviceReadBps: /dev/berth-none: no such file or directory');
  rejects(() => build(CFG, { BlkioDeviceReadBps: [{ Path: '/dev/null', Rate: 1 }] }), 'BlkioDeviceReadBps: /dev/null is not a block device', ErrorKind.InvalidArgument);
});

test('buildSpec: devices, device cgroup rules, sysctls, annotations', () => {
  const s = build(CFG, {
    Devices: [{ PathOnHost: '/dev/null', PathInContainer: '/dev/mynull', CgroupPermissions: 'rw' }],
    DeviceCgroupRules: ['c 42:* rmw', 'a *:* r'], Sysctls: { 'net.ipv4.ip_forward': '1' }, Annotations: { 'org.example': 'x' },
  });
  assert.deepEqual(s.linux?.devices, [{ path: '/dev/mynull', type: 'c', major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0 }]);
  assert.deepEqual((s.linux?.resources?.devices ?? []).slice(-3), [
    { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' },
    { allow: true, type: 'c', major: 42, access: 'rmw' },
    { allow: true, access: 'r' },
  ]);
  assert.deepEqual(s.linux?.sysctl, { 'net.ipv4.ip_forward': '1' });
  assert.deepEqual(s.annotations, { 'org.example': 'x' });
  rejects(() => devicesFromPath('/dev/berth-none', '', ''), 'error gathering device information while adding custom device "/dev/berth-none": no such file or directory');
  rejects(() => devicesFromPath('/etc/hostname', '', ''), 'error gathering device information while adding custom device "/etc/hostname": not a device node');
  rejects(() => build(CFG, { NetworkMode: 'host', Sysctls: { 'net.core.somaxconn': '1' } }), 'sysctl "net.core.somaxconn" not allowed in host network namespace');
});

test('resolveUserFromFiles: Docker lookup rules', () => {
  const passwd = 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nweb:x:33:33::/:/bin/false\n';
  const group = 'root:x:0:\nwheel:x:10:root,user\nuser:x:1000:\nstaff:x:50:user\nwww:x:33:\n';
  const cases: Array<[string, string[], { uid: number; gid: number; additionalGids: number[] }]> = [
    ['', [], { uid: 0, gid: 0, additionalGids: [10] }],
    ['user', [], { uid: 1000, gid: 1000, additionalGids: [10, 50] }],
    ['1000', [], { uid: 1000, gid: 1000, additionalGids: [10, 50] }],
    ['user:www', [], { uid: 1000, gid: 33, additionalGids: [] }],
    ['user:77', [], { uid: 1000, gid: 77, additionalGids: [] }],
    ['4242', [], { uid: 4242, gid: 0, additionalGids: [] }],
    ['4242:4343', ['staff', '99', 'wheel'], { uid: 4242, gid: 4343, additionalGids: [50, 99, 10] }],
    ['web', ['www'], { uid: 33, gid: 33, additionalGids: [33] }],
  ];
  for (const [user, add, want] of cases) assert.deepEqual(resolveUserFromFiles(passwd, group, user, add), want, user);
  rejects(() => resolveUserFromFiles(passwd, group, 'nobody', []), 'unable to find user nobody: no matching entries in passwd file');
  rejects(() => resolveUserFromFiles(undefined, undefined, 'nobody', []), 'unable to find user nobody: no matching entries in passwd file');
  rejects(() => resolveUserFromFiles(passwd, group, 'user:nogroup', []), 'unable to find group nogroup: no matching entries in group file');
  rejects(() => resolveUserFromFiles(passwd, group, 'user', ['ghosts']), 'Unable to find group ghosts: no matching entries in group file');
  rejects(() => resolveUserFromFiles(passwd, group, '3000000000', []), 'uids and gids must be in range 0-2147483647');
  assert.deepEqual(resolveUserFromFiles(undefined, undefined, '', []), { uid: 0, gid: 0, additionalGids: [] });
});

test('resolveUser: reads the image files without leaving the root', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-spec-user-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = join(dir, 'rootfs');
  const outside = join(dir, 'outside');
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(outside, 'passwd'), 'evil:x:0:0::/:/bin/sh\n');
  writeFileSync(join(outside, 'group'), 'evil:x:0:\n');
  writeFileSync(join(root, 'etc', 'group'), 'app:x:500:\n');
  // An absolute symlink is resolved inside the root, not on the host.
  mkdirSync(join(root, 'data'));
  writeFileSync(join(root, 'data', 'passwd'), 'app:x:500:500::/:/bin/sh\n');
  symlinkSync('/data/passwd', join(root, 'etc', 'passwd'));
  assert.deepEqual(resolveUser(root, 'app', []), { uid: 500, gid: 500, additionalGids: [] });
  // Links that climb out land on the root's own files (missing here), never the host's.
  rmSync(join(root, 'etc', 'passwd'));
  symlinkSync('../../../../../../../../outside/passwd', join(root, 'etc', 'passwd'));
  rejects(() => resolveUser(root, 'evil', []), 'unable to find user evil: no matching entries in passwd file');
  rmSync(join(root, 'etc', 'passwd'));
  symlinkSync(join(outside, 'passwd'), join(root, 'etc', 'passwd'));
  rejects(() => resolveUser(root, 'evil', []), 'unable to find user evil: no matching entries in passwd file');
  // A directory symlinked out is followed inside the root too.
  rmSync(join(root, 'etc'), { recursive: true });
  symlinkSync(outside, join(root, 'etc'));
  rejects(() => resolveUser(root, 'evil', []), 'unable to find user evil: no matching entries in passwd file');
  assert.equal(secureJoin(root, '/etc/passwd'), join(root, outside, 'passwd'));
  assert.equal(secureJoin(root, '../../x'), join(root, 'x'));
});
