import test from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '@berth/base';
import { parseSpec } from '@berth/spec';
import type { Spec } from '@berth/spec';
import { defaultSpec } from '../spec/default.js';
import { decodeRecords, encodePlan } from './encode.js';
import { planCreate, planExec } from './planner.js';
import type { CreateContext, HostFs } from './planner.js';
import type { Plan, PlanRecord } from './types.js';

/** A host with a few files and directories, and /proc/kcore. */
function fakeFs(files: Record<string, 'file' | 'dir'> = {}): HostFs {
  const all: Record<string, 'file' | 'dir'> = { '/proc/kcore': 'file', ...files };
  return { kind: (p) => all[p] ?? 'missing' };
}

const V1 = {
  version: 'v1' as const,
  controllers: [
    { name: 'cpu,cpuacct', hostDir: '/sys/fs/cgroup/cpu,cpuacct/berth/c1' },
    { name: 'memory', hostDir: '/sys/fs/cgroup/memory/berth/c1' },
  ],
};

function ctx(extra: Partial<CreateContext> = {}): CreateContext {
  return {
    bundle: '/b',
    containerId: 'c1',
    consoleSocket: '/run/console.sock',
    cgroupMounts: V1,
    fs: fakeFs(),
    ...extra,
  };
}

/** A small valid config; `patch` edits a copy. */
function cfg(patch: (s: Spec) => void = () => {}): Spec {
  const s: Spec = {
    ociVersion: '1.2.0',
    process: { user: { uid: 0, gid: 0 }, args: ['/bin/true'], cwd: '/' },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'mount' }] },
  };
  patch(s);
  return s;
}

const only = (plan: Plan, ...tags: PlanRecord['tag'][]): PlanRecord[] => plan.filter((r) => tags.includes(r.tag));

function throwsBerth(fn: () => unknown, kind: string, message: string | RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof BerthError, `not a BerthError: ${String(e)}`);
    assert.equal(e.kind, kind);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

test('planCreate: the default spec gives exactly these records', () => {
  const plan = planCreate(parseSpec(defaultSpec()), ctx({
    execFifo: '/run/berth/runc/c1/exec.fifo',
    cgroupProcsFiles: ['/sys/fs/cgroup/memory/berth/c1/cgroup.procs'],
  }));
  const caps = (1n << 29n) | (1n << 5n) | (1n << 10n); // AUDIT_WRITE, KILL, NET_BIND_SERVICE
  const cgroupRo = 0x1 | 0x2 | 0x4 | 0x8 | 0x200000; // ro nosuid nodev noexec relatime
  const expected: PlanRecord[] = [
    { tag: 'version', version: 1 },
    { tag: 'cgroup_join', file: '/sys/fs/cgroup/memory/berth/c1/cgroup.procs' },
    { tag: 'ns', type: 'pid', path: '' },
    { tag: 'ns', type: 'net', path: '' },
    { tag: 'ns', type: 'ipc', path: '' },
    { tag: 'ns', type: 'uts', path: '' },
    { tag: 'ns', type: 'cgroup', path: '' },
    { tag: 'ns', type: 'mnt', path: '' },
    { tag: 'keyring', name: '_ses.c1' },
    { tag: 'hostname', name: 'berth' },
    { tag: 'rootfs', path: '/b/rootfs' },
    { tag: 'rootfs_propagation', flags: 0x4000 | 0x80000 },
    { tag: 'mount', source: 'proc', target: '/proc', fstype: 'proc', flags: 0, data: '', mkdir: 'dir', propagation: 0 },
    { tag: 'mount', source: 'tmpfs', target: '/dev', fstype: 'tmpfs', flags: 0x2 | 0x1000000,
      data: 'mode=755,size=65536k', mkdir: 'dir', propagation: 0 },
    { tag: 'mount', source: 'devpts', target: '/dev/pts', fstype: 'devpts', flags: 0x2 | 0x8,
      data: 'newinstance,ptmxmode=0666,mode=0620,gid=5', mkdir: 'dir', propagation: 0 },
    { tag: 'mount', source: 'shm', target: '/dev/shm', fstype: 'tmpfs', flags: 0x2 | 0x4 | 0x8,
      data: 'mode=1777,size=65536k', mkdir: 'dir', propagation: 0 },
    { tag: 'mount', source: 'mqueue', target: '/dev/mqueue', fstype: 'mqueue', flags: 0x2 | 0x4 | 0x8,
      data: '', mkdir: 'dir', propagation: 0 },
    { tag: 'mount', source: 'sysfs', target: '/sys', fstype: 'sysfs', flags: 0x1 | 0x2 | 0x4 | 0x8,
      data: '', mkdir: 'dir', propagation: 0 },
    { tag: 'mount', source: 'tmpfs', target: '/sys/fs/cgroup', fstype: 'tmpfs', flags: cgroupRo & ~0x1,
      data: 'mode=755', mkdir: 'dir', propagation: 0 },
    { tag: 'mount', source: 'cgroup', target: '/sys/fs/cgroup/cpu,cpuacct', fstype: 'cgroup', flags: cgroupRo,
      data: 'cpu,cpuacct', mkdir: 'dir', propagation: 0 },
    { tag: 'mount', source: 'cgroup', target: '/sys/fs/cgroup/memory', fstype: 'cgroup', flags: cgroupRo,
      data: 'memory', mkdir: 'dir', propagation: 0 },
    { tag: 'mount', source: 'tmpfs', target: '/sys/fs/cgroup', fstype: 'tmpfs', flags: 0x20 | cgroupRo,
      data: 'mode=755', mkdir: 'none', propagation: 0 },
    { tag: 'device', path: '/dev/null', type: 'c', major: 1, minor: 3, mode: 0o666, uid: 0, gid: 0 },
    { tag: 'device', path: '/dev/zero', type: 'c', major: 1, minor: 5, mode: 0o666, uid: 0, gid: 0 },
    { tag: 'device', path: '/dev/full', type: 'c', major: 1, minor: 7, mode: 0o666, uid: 0, gid: 0 },
    { tag: 'device', path: '/dev/random', type: 'c', major: 1, minor: 8, mode: 0o666, uid: 0, gid: 0 },
    { tag: 'device', path: '/dev/urandom', type: 'c', major: 1, minor: 9, mode: 0o666, uid: 0, gid: 0 },
    { tag: 'device', path: '/dev/tty', type: 'c', major: 5, minor: 0, mode: 0o666, uid: 0, gid: 0 },
    { tag: 'symlink', target: '/proc/self/fd', linkpath: '/dev/fd' },
    { tag: 'symlink', target: '/proc/self/fd/0', linkpath: '/dev/stdin' },
    { tag: 'symlink', target: '/proc/self/fd/1', linkpath: '/dev/stdout' },
    { tag: 'symlink', target: '/proc/self/fd/2', linkpath: '/dev/stderr' },
    { tag: 'symlink', target: '/proc/kcore', linkpath: '/dev/core' },
    { tag: 'symlink', target: 'pts/ptmx', linkpath: '/dev/ptmx' },
    ...['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
      '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi', '/sys/devices/virtual/powercap']
      .map((path): PlanRecord => ({ tag: 'mask', path })),
    ...['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']
      .map((path): PlanRecord => ({ tag: 'readonly', path })),
    { tag: 'rootfs_readonly' },
    { tag: 'console_socket', path: '/run/console.sock' },
    { tag: 'rlimit', resource: 7, soft: 1024n, hard: 1024n },
    { tag: 'umask', mode: 0o022 },
    { tag: 'user', uid: 0, gid: 0 },
    { tag: 'caps', set: 'bounding', mask: caps },
    { tag: 'caps', set: 'effective', mask: caps },
    { tag: 'caps', set: 'permitted', mask: caps },
    { tag: 'caps', set: 'inheritable', mask: 0n },
    { tag: 'caps', set: 'ambient', mask: 0n },
    { tag: 'no_new_privs' },
    { tag: 'cwd', path: '/' },
    { tag: 'env', value: 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
    { tag: 'env', value: 'TERM=xterm' },
    { tag: 'args', args: ['sh'] },
    { tag: 'exec_fifo', path: '/run/berth/runc/c1/exec.fifo' },
  ];
  assert.deepEqual(plan, expected);
});

test('planCreate: a minimal config', () => {
  const plan = planCreate(cfg(), ctx({ consoleSocket: undefined, fs: fakeFs({}) }));
  assert.deepEqual(only(plan, 'ns', 'rootfs', 'cwd', 'args', 'wait', 'exec_fifo', 'caps', 'keyring', 'user'), [
    { tag: 'ns', type: 'mnt', path: '' },
    { tag: 'keyring', name: '_ses.c1' },
    { tag: 'rootfs', path: '/b/rootfs' },
    { tag: 'user', uid: 0, gid: 0 },
    { tag: 'cwd', path: '/' },
    { tag: 'args', args: ['/bin/true'] },
  ]);
  assert.equal(plan[0]?.tag, 'version');
});

interface Case {
  name: string;
  spec: Spec;
  ctx?: Partial<CreateContext>;
  tags: PlanRecord['tag'][];
  want: PlanRecord[];
}

const cases: Case[] = [
  {
    name: 'namespaces with a path are joined, user comes first and mount last',
    spec: cfg((s) => {
      s.linux = {
        namespaces: [{ type: 'mount' }, { type: 'network', path: '/run/netns/n1' }, { type: 'pid' }, { type: 'user' }],
        uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
        gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }, { containerID: 65536, hostID: 5, size: 1 }],
      };
    }),
    tags: ['ns', 'uidmap', 'gidmap', 'setgroups'],
    want: [
      { tag: 'ns', type: 'user', path: '' },
      { tag: 'ns', type: 'pid', path: '' },
      { tag: 'ns', type: 'net', path: '/run/netns/n1' },
      { tag: 'ns', type: 'mnt', path: '' },
      { tag: 'uidmap', container: 0, host: 100000, size: 65536 },
      { tag: 'gidmap', container: 0, host: 100000, size: 65536 },
      { tag: 'gidmap', container: 65536, host: 5, size: 1 },
    ],
  },
  {
    name: 'rootless: setgroups is denied before the gid map',
    spec: cfg((s) => {
      s.linux = {
        namespaces: [{ type: 'mount' }, { type: 'user' }],
        uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
        gidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
      };
    }),
    ctx: { rootless: true },
    tags: ['uidmap', 'gidmap', 'setgroups'],
    want: [
      { tag: 'uidmap', container: 0, host: 1000, size: 1 },
      { tag: 'setgroups', value: 'deny' },
      { tag: 'gidmap', container: 0, host: 1000, size: 1 },
    ],
  },
  {
    name: 'a joined user namespace writes no maps',
    spec: cfg((s) => {
      s.linux = {
        namespaces: [{ type: 'mount' }, { type: 'user', path: '/proc/1/ns/user' }],
        uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
      };
    }),
    tags: ['ns', 'uidmap', 'gidmap'],
    want: [{ tag: 'ns', type: 'user', path: '/proc/1/ns/user' }, { tag: 'ns', type: 'mnt', path: '' }],
  },
  {
    name: 'in a user namespace devices are bound from the host',
    spec: cfg((s) => {
      s.linux = {
        namespaces: [{ type: 'mount' }, { type: 'user' }],
        uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
        gidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
        devices: [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229 }],
      };
    }),
    tags: ['device', 'device_bind'],
    want: ['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty', '/dev/fuse']
      .map((path): PlanRecord => ({ tag: 'device_bind', path })),
  },
  {
    name: 'configured devices follow the defaults and replace one with the same path',
    spec: cfg((s) => {
      s.linux = {
        namespaces: [{ type: 'mount' }],
        devices: [
          { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o600, uid: 1, gid: 2 },
          { path: '/dev/null', type: 'c', major: 1, minor: 3, fileMode: 0o620 },
          { path: '/dev/sda', type: 'b', major: 8, minor: 0 },
          { path: '/dev/fifo', type: 'p' },
        ],
      };
    }),
    tags: ['device'],
    want: [
      { tag: 'device', path: '/dev/zero', type: 'c', major: 1, minor: 5, mode: 0o666, uid: 0, gid: 0 },
      { tag: 'device', path: '/dev/full', type: 'c', major: 1, minor: 7, mode: 0o666, uid: 0, gid: 0 },
      { tag: 'device', path: '/dev/random', type: 'c', major: 1, minor: 8, mode: 0o666, uid: 0, gid: 0 },
      { tag: 'device', path: '/dev/urandom', type: 'c', major: 1, minor: 9, mode: 0o666, uid: 0, gid: 0 },
      { tag: 'device', path: '/dev/tty', type: 'c', major: 5, minor: 0, mode: 0o666, uid: 0, gid: 0 },
      { tag: 'device', path: '/dev/fuse', type: 'c', major: 10, minor: 229, mode: 0o600, uid: 1, gid: 2 },
      { tag: 'device', path: '/dev/null', type: 'c', major: 1, minor: 3, mode: 0o620, uid: 0, gid: 0 },
      { tag: 'device', path: '/dev/sda', type: 'b', major: 8, minor: 0, mode: 0o666, uid: 0, gid: 0 },
      { tag: 'device', path: '/dev/fifo', type: 'p', major: 0, minor: 0, mode: 0o666, uid: 0, gid: 0 },
    ],
  },
  {
    name: 'bind mounts: file or dir target from the source, relative source from the bundle, propagation',
    spec: cfg((s) => {
      s.mounts = [
        { destination: '/etc/hostname', type: 'bind', source: '/var/lib/c1/hostname', options: ['rbind', 'ro'] },
        { destination: '/data', source: 'data', options: ['bind', 'rprivate', 'nosuid'] },
        { destination: 'rel/dir', type: 'none', source: '/srv', options: ['rbind', 'rshared'] },
      ];
    }),
    ctx: { fs: fakeFs({ '/var/lib/c1/hostname': 'file', '/b/data': 'dir', '/srv': 'dir' }) },
    tags: ['mount'],
    want: [
      { tag: 'mount', source: '/var/lib/c1/hostname', target: '/etc/hostname', fstype: 'bind', flags: 0x1000 | 0x4000 | 0x1,
        data: '', mkdir: 'file', propagation: 0 },
      { tag: 'mount', source: '/b/data', target: '/data', fstype: 'bind', flags: 0x1000 | 0x2, data: '', mkdir: 'dir',
        propagation: 0x40000 | 0x4000 },
      { tag: 'mount', source: '/srv', target: '/rel/dir', fstype: 'none', flags: 0x1000 | 0x4000, data: '', mkdir: 'dir',
        propagation: 0x100000 | 0x4000 },
    ],
  },
  {
    name: 'tmpfs size and mode go to the data string; recursive options on a plain mount are plain flags',
    spec: cfg((s) => {
      s.mounts = [{ destination: '/run', type: 'tmpfs', source: 'tmpfs',
        options: ['rw', 'rnosuid', 'nodev', 'noexec', 'size=64m', 'mode=1777', 'tmpcopyup', 'rro'] }];
    }),
    tags: ['mount'],
    want: [{ tag: 'mount', source: 'tmpfs', target: '/run', fstype: 'tmpfs', flags: 0x1 | 0x2 | 0x4 | 0x8,
      data: 'size=64m,mode=1777', mkdir: 'dir', propagation: 0 }],
  },
  {
    name: 'cgroup v1 without a cgroup namespace binds the container\'s directories, read-write with symlinks',
    spec: cfg((s) => {
      s.mounts = [{ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid'] }];
    }),
    tags: ['mount', 'symlink'],
    want: [
      { tag: 'mount', source: 'tmpfs', target: '/sys/fs/cgroup', fstype: 'tmpfs', flags: 0x2, data: 'mode=755',
        mkdir: 'dir', propagation: 0 },
      { tag: 'mount', source: '/sys/fs/cgroup/cpu,cpuacct/berth/c1', target: '/sys/fs/cgroup/cpu,cpuacct', fstype: 'bind',
        flags: 0x1000 | 0x2, data: '', mkdir: 'dir', propagation: 0 },
      { tag: 'mount', source: '/sys/fs/cgroup/memory/berth/c1', target: '/sys/fs/cgroup/memory', fstype: 'bind',
        flags: 0x1000 | 0x2, data: '', mkdir: 'dir', propagation: 0 },
      { tag: 'symlink', target: 'cpu,cpuacct', linkpath: '/sys/fs/cgroup/cpu' },
      { tag: 'symlink', target: 'cpu,cpuacct', linkpath: '/sys/fs/cgroup/cpuacct' },
      { tag: 'symlink', target: '/proc/self/fd', linkpath: '/dev/fd' },
      { tag: 'symlink', target: '/proc/self/fd/0', linkpath: '/dev/stdin' },
      { tag: 'symlink', target: '/proc/self/fd/1', linkpath: '/dev/stdout' },
      { tag: 'symlink', target: '/proc/self/fd/2', linkpath: '/dev/stderr' },
      { tag: 'symlink', target: '/proc/kcore', linkpath: '/dev/core' },
      { tag: 'symlink', target: 'pts/ptmx', linkpath: '/dev/ptmx' },
    ],
  },
  {
    name: 'cgroup v2: one cgroup2 mount',
    spec: cfg((s) => {
      s.linux = { namespaces: [{ type: 'mount' }, { type: 'cgroup' }] };
      s.mounts = [{ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid'] }];
    }),
    ctx: { cgroupMounts: { version: 'v2', hostDir: '/sys/fs/cgroup/berth/c1' } },
    tags: ['mount'],
    want: [{ tag: 'mount', source: 'cgroup', target: '/sys/fs/cgroup', fstype: 'cgroup2', flags: 0x1 | 0x2, data: '',
      mkdir: 'dir', propagation: 0 }],
  },
  {
    name: 'a bind-mounted /dev gets no devices and no /dev symlinks',
    spec: cfg((s) => { s.mounts = [{ destination: '/dev', type: 'bind', source: '/dev', options: ['rbind'] }]; }),
    ctx: { fs: fakeFs({ '/dev': 'dir' }) },
    tags: ['device', 'device_bind', 'symlink'],
    want: [],
  },
  {
    name: 'no /dev/core without /proc/kcore',
    spec: cfg(),
    ctx: { fs: { kind: () => 'missing' } },
    tags: ['symlink'],
    want: [
      { tag: 'symlink', target: '/proc/self/fd', linkpath: '/dev/fd' },
      { tag: 'symlink', target: '/proc/self/fd/0', linkpath: '/dev/stdin' },
      { tag: 'symlink', target: '/proc/self/fd/1', linkpath: '/dev/stdout' },
      { tag: 'symlink', target: '/proc/self/fd/2', linkpath: '/dev/stderr' },
      { tag: 'symlink', target: 'pts/ptmx', linkpath: '/dev/ptmx' },
    ],
  },
  {
    name: 'rootfsPropagation from the config; --no-pivot; --no-new-keyring; preserve fds; wait',
    spec: cfg((s) => { s.linux = { namespaces: [{ type: 'mount' }], rootfsPropagation: 'rprivate' }; }),
    ctx: { noPivot: true, noNewKeyring: true, preserveFds: 2, wait: true },
    tags: ['rootfs_propagation', 'no_pivot', 'keyring', 'preserve_fds', 'wait'],
    want: [
      { tag: 'rootfs_propagation', flags: 0x40000 | 0x4000 },
      { tag: 'no_pivot' },
      { tag: 'preserve_fds', n: 2 },
      { tag: 'wait' },
    ],
  },
  {
    name: 'sysctls of namespaced keys',
    spec: cfg((s) => {
      s.linux = {
        namespaces: [{ type: 'mount' }, { type: 'network' }, { type: 'ipc' }],
        sysctl: { 'net.ipv4.ip_forward': '1', 'kernel.shmmax': '100', 'fs.mqueue.msg_max': '20' },
      };
    }),
    tags: ['sysctl'],
    want: [
      { tag: 'sysctl', key: 'net.ipv4.ip_forward', value: '1' },
      { tag: 'sysctl', key: 'kernel.shmmax', value: '100' },
      { tag: 'sysctl', key: 'fs.mqueue.msg_max', value: '20' },
    ],
  },
  {
    name: 'process: user, umask, groups, rlimits with infinity, oom score, personality, LSMs',
    spec: cfg((s) => {
      s.process = {
        user: { uid: 1000, gid: 100, umask: 0o077, additionalGids: [10, 20] },
        args: ['sh', '-c', 'true'], cwd: '/home', env: ['A=1', 'B='],
        rlimits: [
          { type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 },
          { type: 'RLIMIT_CORE', soft: 18446744073709551615, hard: 18446744073709551615 },
        ],
        oomScoreAdj: -17,
        apparmorProfile: 'berth-default',
        selinuxLabel: 'system_u:system_r:container_t:s0',
      };
      s.linux = { namespaces: [{ type: 'mount' }], personality: { domain: 'LINUX32' } };
    }),
    ctx: { apparmorEnabled: true, selinuxEnabled: true },
    tags: ['rlimit', 'oom_score_adj', 'personality', 'umask', 'apparmor', 'selinux_label', 'user', 'additional_gids',
      'cwd', 'env', 'args'],
    want: [
      { tag: 'personality', domain: 8 },
      { tag: 'rlimit', resource: 7, soft: 1024n, hard: 4096n },
      { tag: 'rlimit', resource: 4, soft: 2n ** 64n - 1n, hard: 2n ** 64n - 1n },
      { tag: 'oom_score_adj', value: -17 },
      { tag: 'umask', mode: 0o077 },
      { tag: 'apparmor', profile: 'berth-default' },
      { tag: 'selinux_label', label: 'system_u:system_r:container_t:s0' },
      { tag: 'user', uid: 1000, gid: 100 },
      { tag: 'additional_gids', gids: [10, 20] },
      { tag: 'cwd', path: '/home' },
      { tag: 'env', value: 'A=1' },
      { tag: 'env', value: 'B=' },
      { tag: 'args', args: ['sh', '-c', 'true'] },
    ],
  },
  {
    name: 'SELinux label without SELinux is skipped; "unconfined" without AppArmor is fine',
    spec: cfg((s) => {
      s.process = { user: { uid: 0, gid: 0 }, args: ['x'], cwd: '/', apparmorProfile: 'unconfined', selinuxLabel: 'l' };
    }),
    tags: ['apparmor', 'selinux_label'],
    want: [],
  },
  {
    name: 'capabilities: five masks, missing sets empty',
    spec: cfg((s) => {
      s.process = { user: { uid: 0, gid: 0 }, args: ['x'], cwd: '/',
        capabilities: { bounding: ['CAP_CHOWN', 'CAP_SYS_ADMIN', 'CAP_CHECKPOINT_RESTORE'], ambient: ['CAP_CHOWN'] } };
    }),
    tags: ['caps'],
    want: [
      { tag: 'caps', set: 'bounding', mask: 1n | (1n << 21n) | (1n << 40n) },
      { tag: 'caps', set: 'effective', mask: 0n },
      { tag: 'caps', set: 'permitted', mask: 0n },
      { tag: 'caps', set: 'inheritable', mask: 0n },
      { tag: 'caps', set: 'ambient', mask: 1n },
    ],
  },
  {
    name: 'no capabilities object: the credentials keep their capabilities (as runc)',
    spec: cfg(),
    tags: ['caps'],
    want: [],
  },
  {
    name: 'terminal with a console relay and size',
    spec: cfg((s) => {
      s.process = { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/', terminal: true, consoleSize: { height: 24, width: 80 } };
    }),
    ctx: { consoleSocket: undefined, consoleRelay: true },
    tags: ['console_socket', 'console_relay', 'console_size'],
    want: [{ tag: 'console_relay' }, { tag: 'console_size', rows: 24, cols: 80 }],
  },
  {
    name: 'seccomp with no_new_privs is loaded late; without, early',
    spec: cfg((s) => {
      s.process = { user: { uid: 0, gid: 0 }, args: ['x'], cwd: '/', noNewPrivileges: true };
      s.linux = { namespaces: [{ type: 'mount' }], seccomp: { defaultAction: 'SCMP_ACT_ALLOW' } };
    }),
    tags: ['seccomp_default', 'seccomp_late', 'no_new_privs'],
    want: [{ tag: 'seccomp_default', action: 'allow', errno: 0 }, { tag: 'seccomp_late' }, { tag: 'no_new_privs' }],
  },
  {
    name: 'hooks: createRuntime/prestart make the executor stop; createContainer/startContainer are records',
    spec: cfg((s) => {
      s.annotations = { k: 'v' };
      s.hooks = {
        prestart: [{ path: '/bin/prestart' }],
        createContainer: [{ path: '/bin/cc', args: ['cc', '-x'], env: ['E=1'], timeout: 5 }],
        startContainer: [{ path: '/bin/sc' }],
        poststart: [{ path: '/bin/ps' }],
      };
    }),
    tags: ['hook_sync', 'state', 'hook'],
    want: [
      { tag: 'hook_sync', event: 'createRuntime' },
      { tag: 'state', json: '{"ociVersion":"1.2.0","id":"c1","status":"creating","bundle":"/b","annotations":{"k":"v"}}' },
      { tag: 'hook', event: 'createContainer', path: '/bin/cc', timeout: 5, args: ['cc', '-x'], env: ['E=1'] },
      { tag: 'hook', event: 'startContainer', path: '/bin/sc', timeout: 0, args: ['/bin/sc'], env: [] },
    ],
  },
  {
    name: 'hooks: the given state JSON is passed as is; hooks the executor runs make it stop for the state with the pid',
    spec: cfg((s) => { s.hooks = { startContainer: [{ path: '/bin/sc' }], poststop: [{ path: '/bin/x' }] }; }),
    ctx: { hookState: '{"id":"c1"}' },
    tags: ['hook_sync', 'state'],
    want: [{ tag: 'hook_sync', event: 'createRuntime' }, { tag: 'state', json: '{"id":"c1"}' }],
  },
  {
    name: 'SELinux mount label goes into the data of filesystems that take it',
    spec: cfg((s) => {
      s.linux = { namespaces: [{ type: 'mount' }], mountLabel: 'system_u:object_r:container_file_t:s0' };
      s.mounts = [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] },
      ];
    }),
    ctx: { selinuxEnabled: true },
    tags: ['mount'],
    want: [
      { tag: 'mount', source: 'proc', target: '/proc', fstype: 'proc', flags: 0, data: '', mkdir: 'dir', propagation: 0 },
      { tag: 'mount', source: 'tmpfs', target: '/tmp', fstype: 'tmpfs', flags: 0,
        data: 'size=1m,context="system_u:object_r:container_file_t:s0"', mkdir: 'dir', propagation: 0 },
    ],
  },
];

for (const c of cases) {
  test(`planCreate: ${c.name}`, () => {
    const plan = planCreate(c.spec, ctx({ consoleSocket: undefined, ...c.ctx }));
    assert.deepEqual(only(plan, ...c.tags), c.want);
  });
}

const errors: { name: string; spec: Spec; ctx?: Partial<CreateContext>; kind: string; message: string }[] = [
  { name: 'no process', spec: cfg((s) => { delete s.process; }), kind: 'InvalidArgument',
    message: 'process: required to create a container' },
  { name: 'empty args', spec: cfg((s) => { s.process = { user: { uid: 0, gid: 0 }, args: [], cwd: '/' }; }),
    kind: 'InvalidArgument', message: 'process.args: must not be empty' },
  { name: 'relative cwd', spec: cfg((s) => { s.process = { user: { uid: 0, gid: 0 }, args: ['x'], cwd: 'home' }; }),
    kind: 'InvalidArgument', message: 'process.cwd: "home" is not an absolute path' },
  { name: 'env without =', spec: cfg((s) => { s.process = { user: { uid: 0, gid: 0 }, args: ['x'], cwd: '/', env: ['A'] }; }),
    kind: 'InvalidArgument', message: 'process.env[0]: "A" is not KEY=VALUE' },
  { name: 'unknown capability',
    spec: cfg((s) => { s.process = { user: { uid: 0, gid: 0 }, args: ['x'], cwd: '/', capabilities: { effective: ['CAP_KILL', 'CAP_FLY'] } }; }),
    kind: 'InvalidArgument', message: 'process.capabilities.effective[1]: unknown capability "CAP_FLY"' },
  { name: 'unknown rlimit',
    spec: cfg((s) => { s.process = { user: { uid: 0, gid: 0 }, args: ['x'], cwd: '/', rlimits: [{ type: 'RLIMIT_FOO', soft: 1, hard: 1 }] }; }),
    kind: 'InvalidArgument', message: 'process.rlimits[0].type: unknown rlimit "RLIMIT_FOO"' },
  { name: 'soft above hard',
    spec: cfg((s) => { s.process = { user: { uid: 0, gid: 0 }, args: ['x'], cwd: '/', rlimits: [{ type: 'RLIMIT_NOFILE', soft: 2, hard: 1 }] }; }),
    kind: 'InvalidArgument', message: 'process.rlimits[0]: soft limit 2 is above hard limit 1' },
  { name: 'hostname without a new UTS namespace', spec: cfg((s) => { s.hostname = 'h'; }), kind: 'InvalidArgument',
    message: 'hostname: unable to set hostname without a new UTS namespace' },
  { name: 'hostname in a joined UTS namespace',
    spec: cfg((s) => { s.hostname = 'h'; s.linux = { namespaces: [{ type: 'mount' }, { type: 'uts', path: '/proc/1/ns/uts' }] }; }),
    kind: 'InvalidArgument', message: 'hostname: unable to set hostname without a new UTS namespace' },
  { name: 'no mount namespace', spec: cfg((s) => { s.linux = { namespaces: [{ type: 'pid' }] }; }), kind: 'InvalidArgument',
    message: 'linux.namespaces: a container needs a new mount namespace' },
  { name: 'new user namespace without maps',
    spec: cfg((s) => { s.linux = { namespaces: [{ type: 'mount' }, { type: 'user' }] }; }), kind: 'InvalidArgument',
    message: 'linux.uidMappings: required when a new user namespace is created' },
  { name: 'maps without a user namespace',
    spec: cfg((s) => { s.linux = { namespaces: [{ type: 'mount' }], gidMappings: [{ containerID: 0, hostID: 1, size: 1 }] }; }),
    kind: 'InvalidArgument', message: 'linux.uidMappings: user namespace mappings are given, but there is no user namespace' },
  { name: 'terminal without a console', spec: cfg((s) => { s.process = { user: { uid: 0, gid: 0 }, args: ['x'], cwd: '/', terminal: true }; }),
    kind: 'InvalidArgument', message: 'process.terminal: a terminal needs a console socket (--console-socket) or a foreground run' },
  { name: 'console socket without terminal', spec: cfg(), ctx: { consoleSocket: '/s' }, kind: 'InvalidArgument',
    message: '--console-socket: cannot use a console socket when process.terminal is false' },
  { name: 'AppArmor profile without AppArmor',
    spec: cfg((s) => { s.process = { user: { uid: 0, gid: 0 }, args: ['x'], cwd: '/', apparmorProfile: 'docker-default' }; }),
    kind: 'FailedPrecondition',
    message: 'process.apparmorProfile: profile "docker-default" is set, but AppArmor is not enabled on this host' },
  { name: 'host sysctl', spec: cfg((s) => { s.linux = { namespaces: [{ type: 'mount' }], sysctl: { 'vm.swappiness': '0' } }; }),
    kind: 'InvalidArgument', message: 'linux.sysctl["vm.swappiness"]: sysctl is not in a separate kernel namespace' },
  { name: 'net sysctl without a network namespace',
    spec: cfg((s) => { s.linux = { namespaces: [{ type: 'mount' }], sysctl: { 'net.core.somaxconn': '1' } }; }),
    kind: 'InvalidArgument', message: 'linux.sysctl["net.core.somaxconn"]: sysctl needs a network namespace' },
  { name: 'sysctl escaping /proc/sys',
    spec: cfg((s) => { s.linux = { namespaces: [{ type: 'mount' }, { type: 'network' }], sysctl: { 'net/../../x': '1' } }; }),
    kind: 'InvalidArgument', message: 'linux.sysctl["net/../../x"]: not a sysctl name' },
  { name: 'missing bind source', spec: cfg((s) => { s.mounts = [{ destination: '/x', type: 'bind', source: '/nope' }]; }),
    kind: 'NotFound', message: 'mounts[0].source: bind source /nope does not exist' },
  { name: 'bind without source', spec: cfg((s) => { s.mounts = [{ destination: '/x', options: ['bind'] }]; }),
    kind: 'InvalidArgument', message: 'mounts[0].source: required for a bind mount' },
  { name: 'rro on an rbind',
    spec: cfg((s) => { s.mounts = [{ destination: '/x', type: 'bind', source: '/srv', options: ['rbind', 'rro'] }]; }),
    ctx: { fs: fakeFs({ '/srv': 'dir' }) }, kind: 'NotImplemented',
    message: 'mounts[0]: recursive mount option "rro" on an rbind mount is not supported' },
  { name: 'cgroup mount without the host layout',
    spec: cfg((s) => { s.mounts = [{ destination: '/sys/fs/cgroup', type: 'cgroup' }]; }), ctx: { cgroupMounts: undefined },
    kind: 'FailedPrecondition', message: 'mounts[0]: a cgroup mount needs the host\'s cgroup layout, none was given' },
  { name: 'seccomp notify',
    spec: cfg((s) => { s.linux = { namespaces: [{ type: 'mount' }], seccomp: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mount'], action: 'SCMP_ACT_NOTIFY' }] } }; }),
    kind: 'NotImplemented', message: 'linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY (seccomp user notification) is not supported yet' },
  { name: 'seccomp listener',
    spec: cfg((s) => { s.linux = { namespaces: [{ type: 'mount' }], seccomp: { defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/l.sock' } }; }),
    kind: 'NotImplemented', message: 'linux.seccomp.listenerPath: seccomp user notification is not supported yet' },
  { name: 'relative hook path', spec: cfg((s) => { s.hooks = { createContainer: [{ path: 'hook' }] }; }),
    kind: 'InvalidArgument', message: 'hooks.createContainer[0].path: "hook" is not an absolute path' },
  { name: 'device outside /dev',
    spec: cfg((s) => { s.linux = { namespaces: [{ type: 'mount' }], devices: [{ path: '/etc/x', type: 'c', major: 1, minor: 3 }] }; }),
    kind: 'InvalidArgument', message: 'linux.devices[0].path: "/etc/x" is not under /dev' },
  { name: 'relative masked path',
    spec: cfg((s) => { s.linux = { namespaces: [{ type: 'mount' }], maskedPaths: ['proc/kcore'] }; }),
    kind: 'InvalidArgument', message: 'linux.maskedPaths: "proc/kcore" is not an absolute path' },
];

for (const e of errors) {
  test(`planCreate rejects: ${e.name}`, () => {
    throwsBerth(() => planCreate(e.spec, ctx({ consoleSocket: undefined, ...e.ctx })), e.kind, e.message);
  });
}

test('planExec joins every namespace of the container through /proc/<pid>/ns', () => {
  const container = parseSpec(defaultSpec());
  const proc = { ...container.process!, args: ['ls', '-l'], terminal: false };
  const plan = planExec(proc, {
    containerPid: 4242,
    containerId: 'c1',
    namespaces: ['mount', 'pid', 'network', 'ipc', 'uts', 'cgroup', 'user'],
    config: container,
    cgroupProcsFiles: ['/sys/fs/cgroup/pids/berth/c1/cgroup.procs'],
    wait: true,
    preserveFds: 1,
  });
  assert.deepEqual(only(plan, 'version', 'cgroup_join', 'ns', 'keyring', 'mount', 'rootfs', 'device', 'exec_fifo'), [
    { tag: 'version', version: 1 },
    { tag: 'cgroup_join', file: '/sys/fs/cgroup/pids/berth/c1/cgroup.procs' },
    { tag: 'ns', type: 'user', path: '/proc/4242/ns/user' },
    { tag: 'ns', type: 'pid', path: '/proc/4242/ns/pid' },
    { tag: 'ns', type: 'net', path: '/proc/4242/ns/net' },
    { tag: 'ns', type: 'ipc', path: '/proc/4242/ns/ipc' },
    { tag: 'ns', type: 'uts', path: '/proc/4242/ns/uts' },
    { tag: 'ns', type: 'cgroup', path: '/proc/4242/ns/cgroup' },
    { tag: 'ns', type: 'mnt', path: '/proc/4242/ns/mnt' },
    { tag: 'keyring', name: '_ses.c1' },
  ]);
  assert.deepEqual(plan.slice(-4), [
    { tag: 'env', value: 'TERM=xterm' },
    { tag: 'args', args: ['ls', '-l'] },
    { tag: 'preserve_fds', n: 1 },
    { tag: 'wait' },
  ]);
});

test('planExec: --cap, --user, --no-new-privs overrides and the container\'s seccomp', () => {
  const container = cfg((s) => {
    s.linux = { namespaces: [{ type: 'mount' }], seccomp: { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] } };
  });
  const proc = { user: { uid: 0, gid: 0 }, args: ['id'], cwd: '/', capabilities: { bounding: ['CAP_KILL'], inheritable: [] } };
  const plan = planExec(proc, {
    containerPid: 7, namespaces: ['mount'], config: container, extraCaps: ['CAP_NET_ADMIN'],
    user: { uid: 1000, gid: 1000, additionalGids: [5] }, noNewPrivileges: true,
  });
  assert.deepEqual(only(plan, 'caps', 'user', 'additional_gids', 'no_new_privs', 'seccomp_default', 'seccomp_rule',
    'seccomp_late', 'keyring', 'wait'), [
    { tag: 'seccomp_default', action: 'errno', errno: 1 },
    { tag: 'seccomp_rule', action: 'allow', errno: 0, syscall: 'read', args: [] },
    { tag: 'seccomp_late' },
    { tag: 'user', uid: 1000, gid: 1000 },
    { tag: 'additional_gids', gids: [5] },
    { tag: 'caps', set: 'bounding', mask: (1n << 5n) | (1n << 12n) },
    { tag: 'caps', set: 'effective', mask: 1n << 12n },
    { tag: 'caps', set: 'permitted', mask: 1n << 12n },
    { tag: 'caps', set: 'inheritable', mask: 0n },
    { tag: 'caps', set: 'ambient', mask: 1n << 12n },
    { tag: 'no_new_privs' },
  ]);
});

test('planExec rejects a bad pid and a bad process', () => {
  const proc = { user: { uid: 0, gid: 0 }, args: ['id'], cwd: '/' };
  throwsBerth(() => planExec(proc, { containerPid: 0, namespaces: [] }), 'InvalidArgument', 'container pid: 0 is not a process id');
  throwsBerth(() => planExec({ ...proc, args: [] }, { containerPid: 1, namespaces: [] }), 'InvalidArgument',
    'process.args: must not be empty');
  throwsBerth(() => planExec({ ...proc, terminal: true }, { containerPid: 1, namespaces: [] }), 'InvalidArgument',
    /a terminal needs a console socket/);
});

test('a plan survives encodePlan/decodeRecords', () => {
  const spec = parseSpec(defaultSpec());
  spec.linux!.seccomp = {
    defaultAction: 'SCMP_ACT_ERRNO',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 4294967295, op: 'SCMP_CMP_EQ' }] }],
  };
  spec.hooks = { createContainer: [{ path: '/bin/h', args: ['h', 'a b'], env: ['X=1'] }] };
  const plan = planCreate(spec, ctx({ execFifo: '/f', wait: true }));
  const decoded = decodeRecords(encodePlan(plan));
  assert.equal(decoded.length, plan.length);
  assert.deepEqual(decoded[0], ['version', '1']);
  const find = (tag: string): string[][] => decoded.filter((r) => r[0] === tag);
  assert.deepEqual(find('ns').map((r) => r[1]), ['pid', 'net', 'ipc', 'uts', 'cgroup', 'mnt']);
  assert.deepEqual(find('rlimit'), [['rlimit', '7', '1024', '1024']]);
  assert.deepEqual(find('caps')[0], ['caps', 'bounding', String((1n << 29n) | (1n << 5n) | (1n << 10n))]);
  assert.deepEqual(find('seccomp_rule'), [['seccomp_rule', 'allow', '0', 'personality', '0', 'EQ', '4294967295', '0']]);
  assert.deepEqual(find('hook'), [['hook', 'createContainer', '/bin/h', '0', '2', 'h', 'a b', 'X=1']]);
  assert.deepEqual(find('mount')[1], ['mount', 'tmpfs', '/dev', 'tmpfs', String(0x2 | 0x1000000), 'mode=755,size=65536k', 'dir', '0']);
  assert.deepEqual(decoded.slice(-2), [['exec_fifo', '/f'], ['wait']]);
  // Every record decodes to its tag plus the fields the encoder wrote.
  plan.forEach((r, i) => assert.equal(decoded[i]?.[0], r.tag));
});

test('a device filter becomes one device_filter record right after the cgroup joins', () => {
  const program = Buffer.from('b40000000100000095000000000000', 'hex');
  const full = Buffer.concat([program, Buffer.from([0])]);
  const plan = planCreate(defaultSpec(), ctx({
    cgroupProcsFiles: ['/sys/fs/cgroup/memory/c1/cgroup.procs', '/sys/fs/cgroup/unified/c1/cgroup.procs'],
    deviceFilter: { cgroupDir: '/sys/fs/cgroup/unified/c1', program: full },
  }));
  assert.deepEqual(plan.slice(1, 4).map((r) => r.tag), ['cgroup_join', 'cgroup_join', 'device_filter']);
  assert.deepEqual(plan[3], { tag: 'device_filter', dir: '/sys/fs/cgroup/unified/c1', program: 'b4000000010000009500000000000000' });
  assert.deepEqual(decodeRecords(encodePlan(plan))[3], ['device_filter', '/sys/fs/cgroup/unified/c1', 'b4000000010000009500000000000000']);
  assert.equal(planCreate(defaultSpec(), ctx()).filter((r) => r.tag === 'device_filter').length, 0);
  throwsBerth(() => planCreate(defaultSpec(), ctx({ deviceFilter: { cgroupDir: 'c1', program: full } })), 'InvalidArgument',
    /device filter: cgroup directory "c1" is not an absolute path/);
  throwsBerth(() => planCreate(defaultSpec(), ctx({ deviceFilter: { cgroupDir: '/c1', program } })), 'InvalidArgument',
    /a program of 15 bytes is not a whole number/);
});
