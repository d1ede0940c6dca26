import test from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '@berth/base';
import { parseProcess, parseSpec, parseState } from './parse.js';

function minimal(): Record<string, unknown> {
  return {
    ociVersion: '1.2.0',
    process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' },
    root: { path: 'rootfs' },
  };
}

/** Deep-set a value at a dotted path with [i] indices, creating objects on the way. */
function withValue(path: string, value: unknown): Record<string, unknown> {
  const cfg = minimal();
  const keys = path.split('.').flatMap((k) => k.split(/\[(\d+)\]/).filter((x) => x !== ''));
  let o: Record<string, unknown> = cfg;
  keys.slice(0, -1).forEach((k, i) => {
    const next = keys[i + 1] ?? '';
    if (o[k] === undefined) o[k] = /^\d+$/.test(next) ? [] : {};
    o = o[k] as Record<string, unknown>;
  });
  const last = keys[keys.length - 1] ?? '';
  if (value === undefined) delete o[last];
  else o[last] = value;
  return cfg;
}

test('parseSpec accepts a minimal config', () => {
  const s = parseSpec(minimal());
  assert.equal(s.ociVersion, '1.2.0');
  assert.deepEqual(s.process?.args, ['sh']);
  assert.equal(s.root?.path, 'rootfs');
});

test('parseSpec accepts a full config and keeps its values', () => {
  const cfg = {
    ociVersion: '1.3.0',
    hostname: 'h',
    domainname: 'd',
    annotations: { a: 'b' },
    process: {
      terminal: true,
      consoleSize: { height: 24, width: 80 },
      user: { uid: 1, gid: 2, umask: 18, additionalGids: [3, 4] },
      args: ['sh'],
      env: ['PATH=/bin'],
      cwd: '/',
      capabilities: { bounding: ['CAP_KILL'], effective: [], inheritable: [], permitted: [], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
      apparmorProfile: 'p',
      oomScoreAdj: -500,
      selinuxLabel: 'l',
      ioPriority: { class: 'IOPRIO_CLASS_BE', priority: 4 },
      scheduler: { policy: 'SCHED_OTHER', nice: 5 },
    },
    root: { path: '/r', readonly: true },
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid'] }],
    hooks: { prestart: [{ path: '/bin/true', args: ['true'], env: ['A=1'], timeout: 5 }], poststop: [] },
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'network', path: '/run/netns/x' }, { type: 'time' }],
      uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
      gidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
      devices: [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 438, uid: 0, gid: 0 },
        { path: '/dev/pipe', type: 'p' }],
      sysctl: { 'net.ipv4.ip_forward': '1' },
      cgroupsPath: '/berth/x',
      resources: {
        devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' }],
        memory: { limit: 1 << 30, reservation: 1 << 29, swap: -1, kernel: 0, swappiness: 60, disableOOMKiller: false },
        cpu: { shares: 1024, quota: 50000, period: 100000, realtimeRuntime: 0, realtimePeriod: 0,
          cpus: '0-1', mems: '0', idle: 0 },
        pids: { limit: 100 },
        blockIO: { weight: 500, leafWeight: 300, weightDevice: [{ major: 8, minor: 0, weight: 100 }],
          throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1000 }] },
        hugepageLimits: [{ pageSize: '2MB', limit: 0 }],
        network: { classID: 1, priorities: [{ name: 'eth0', priority: 1 }] },
        rdma: { mlx5_1: { hcaHandles: 3 } },
        unified: { 'memory.high': '1G' },
      },
      rootfsPropagation: 'slave',
      seccomp: {
        defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 1, architectures: ['SCMP_ARCH_X86_64'],
        flags: ['SECCOMP_FILTER_FLAG_LOG'],
        syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }] }],
      },
      maskedPaths: ['/proc/kcore'],
      readonlyPaths: ['/proc/sys'],
      mountLabel: 'm',
      intelRdt: { closID: 'c', l3CacheSchema: 'L3:0=f' },
      personality: { domain: 'LINUX32' },
      timeOffsets: { monotonic: { secs: 1, nanosecs: 2 } },
    },
    windows: { ignored: true },
  };
  const s = parseSpec(cfg);
  const { windows: _w, ...expected } = cfg;
  assert.deepEqual(s, expected);
});

test('parseSpec drops unknown properties and treats null as absent', () => {
  const cfg = minimal();
  cfg['somethingNew'] = 1;
  cfg['hostname'] = null;
  const s = parseSpec(cfg);
  assert.equal('somethingNew' in s, false);
  assert.equal('hostname' in s, false);
});

test('parseSpec defaults a missing process.user to root, as runc does', () => {
  const s = parseSpec(withValue('process.user', undefined));
  assert.deepEqual(s.process?.user, { uid: 0, gid: 0 });
});

const bad: [string, unknown, string][] = [
  ['', 'not an object', 'config: expected an object, got a string ("not an object")'],
  ['ociVersion', undefined, 'ociVersion: required'],
  ['ociVersion', 1, 'ociVersion: expected a string, got a number'],
  ['process.cwd', undefined, 'process.cwd: required'],
  ['process.args', 'sh', 'process.args: expected an array, got a string ("sh")'],
  ['process.args[0]', 1, 'process.args[0]: expected a string, got a number'],
  ['process.user.uid', -1, 'process.user.uid: -1 is out of range [0, 4294967295]'],
  ['process.user.gid', 1.5, 'process.user.gid: expected an integer, got a number'],
  ['process.terminal', 'yes', 'process.terminal: expected a boolean, got a string ("yes")'],
  ['process.rlimits', [{ type: 'NOFILE', soft: 1, hard: 1 }],
    'process.rlimits[0].type: "NOFILE" is not an RLIMIT_ name'],
  ['process.rlimits', [{ type: 'RLIMIT_NOFILE', soft: 1 }], 'process.rlimits[0].hard: required'],
  ['process.oomScoreAdj', 2000, 'process.oomScoreAdj: 2000 is out of range [-1000, 1000]'],
  ['process.consoleSize', { height: 1 }, 'process.consoleSize.width: required'],
  ['process.ioPriority', { class: 'X' }, 'process.ioPriority.class: unknown I/O priority class "X"'],
  ['root.path', undefined, 'root.path: required'],
  ['mounts', [{ type: 'tmpfs' }], 'mounts[0].destination: required'],
  ['mounts', [{ destination: '/a', options: 'ro' }], 'mounts[0].options: expected an array, got a string ("ro")'],
  ['hooks.prestart', [{ args: [] }], 'hooks.prestart[0].path: required'],
  ['hooks.poststop', [{ path: '/x', timeout: 0 }], 'hooks.poststop[0].timeout: 0 is out of range [1, 2147483647]'],
  ['annotations', { a: 1 }, 'annotations["a"]: expected a string, got a number'],
  ['linux.namespaces', [{ type: 'pid' }, { type: 'uts' }, { type: 'foo' }],
    'linux.namespaces[2].type: unknown namespace type "foo"'],
  ['linux.namespaces', [{ type: 'pid' }, { type: 'pid', path: '/x' }],
    'linux.namespaces[1].type: namespace type "pid" listed twice'],
  ['linux.namespaces', [{ path: '/x' }], 'linux.namespaces[0].type: required'],
  ['linux.uidMappings', [{ containerID: 0, hostID: 0 }], 'linux.uidMappings[0].size: required'],
  ['linux.devices', [{ path: '/dev/x', type: 'c' }], 'linux.devices[0]: device /dev/x of type c needs major and minor'],
  ['linux.devices', [{ path: '/dev/x', type: 'z', major: 1, minor: 1 }],
    'linux.devices[0].type: unknown device type "z"'],
  ['linux.rootfsPropagation', 'bogus', 'linux.rootfsPropagation: unknown rootfs propagation "bogus"'],
  ['linux.sysctl', { a: 1 }, 'linux.sysctl["a"]: expected a string, got a number'],
  ['linux.seccomp', { syscalls: [] }, 'linux.seccomp.defaultAction: required'],
  ['linux.seccomp', { defaultAction: 'SCMP_ACT_NOPE' }, 'linux.seccomp.defaultAction: unknown seccomp action "SCMP_ACT_NOPE"'],
  ['linux.seccomp', { defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_Z80'] },
    'linux.seccomp.architectures[0]: unknown seccomp architecture "SCMP_ARCH_Z80"'],
  ['linux.seccomp', { defaultAction: 'SCMP_ACT_ALLOW', flags: ['X'] }, 'linux.seccomp.flags[0]: unknown seccomp flag "X"'],
  ['linux.seccomp', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: [], action: 'SCMP_ACT_ERRNO' }] },
    'linux.seccomp.syscalls[0].names: must name at least one syscall'],
  ['linux.seccomp', { defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['x'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'EQ' }] }] },
    'linux.seccomp.syscalls[0].args[0].op: unknown seccomp operator "EQ"'],
  ['linux.seccomp', { defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['x'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }] }] },
    'linux.seccomp.syscalls[0].args[0].index: 6 is out of range [0, 5]'],
  ['linux.resources.memory.limit', '1g', 'linux.resources.memory.limit: expected an integer, got a string ("1g")'],
  ['linux.resources.pids', {}, 'linux.resources.pids.limit: required'],
  ['linux.resources.devices', [{ access: 'rwm' }], 'linux.resources.devices[0].allow: required'],
  ['linux.resources.devices', [{ allow: true, access: 'rx' }],
    'linux.resources.devices[0].access: "rx" is not an access string of r, w and m'],
  ['linux.resources.blockIO.weight', 70000, 'linux.resources.blockIO.weight: 70000 is out of range [0, 65535]'],
  ['linux.resources.hugepageLimits', [{ pageSize: '2M', limit: 1 }],
    'linux.resources.hugepageLimits[0].pageSize: "2M" is not a page size like 2MB'],
  ['linux.personality', { domain: 'BSD' }, 'linux.personality.domain: unknown personality domain "BSD"'],
];

for (const [path, value, message] of bad) {
  test(`parseSpec rejects ${path || 'the document'} = ${JSON.stringify(value) ?? 'absent'}`, () => {
    const cfg = path === '' ? value : withValue(path, value);
    assert.throws(() => parseSpec(cfg), (e: unknown) => {
      assert.ok(e instanceof BerthError);
      assert.equal(e.kind, 'InvalidArgument');
      assert.equal(e.message, message);
      return true;
    });
  });
}

test('parseProcess validates a process spec with its own prefix', () => {
  const p = parseProcess({ args: ['ls'], cwd: '/', env: [] });
  assert.deepEqual(p, { args: ['ls'], cwd: '/', env: [], user: { uid: 0, gid: 0 } });
  assert.throws(() => parseProcess({ args: ['ls'] }), { message: 'process.cwd: required' });
  assert.throws(() => parseProcess({ cwd: 1 }, 'p'), { message: 'p.cwd: expected a string, got a number' });
});

test('parseState validates the OCI state', () => {
  const s = { ociVersion: '1.2.0', id: 'c1', status: 'created', pid: 42, bundle: '/b', annotations: {} };
  assert.deepEqual(parseState(s), s);
  assert.throws(() => parseState({ ...s, status: 'paused' }), { message: 'status: unknown container status "paused"' });
  assert.throws(() => parseState({ ...s, id: undefined }), { message: 'id: required' });
});
