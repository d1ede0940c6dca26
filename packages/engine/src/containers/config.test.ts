import test from 'node:test';
import assert from 'node:assert/strict';
import { BerthError, ErrorKind } from '@berth/base';
import { mergeImageConfig, parseCreateBody, parseImageConfig, parseSecurityOpts, parseSignal, validateSysctls, versionLess } from './config.js';
import type { ContainerConfig, HostConfig, ImageConfig } from './config.js';

const OPTS = { cpuCount: 4 };

function rejects(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BerthError, `not a BerthError: ${String(err)}`);
    assert.equal(err.kind, ErrorKind.InvalidArgument);
    assert.equal(err.message, message);
    return true;
  });
}

const body = (host: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ Image: 'busybox', Cmd: ['true'], ...extra, HostConfig: host });

test('parseCreateBody: wrong JSON types name the field and never crash', () => {
  const cases: Array<[unknown, string]> = [
    [null, 'config cannot be empty in order to create a container'],
    ['x', 'json: cannot unmarshal string into Go value of type container.CreateRequest'],
    [[1], 'json: cannot unmarshal array into Go value of type container.CreateRequest'],
    [{ Hostname: 5 }, 'json: cannot unmarshal number 5 into Go struct field Config.Hostname of type string'],
    [{ Tty: 'yes' }, 'json: cannot unmarshal string into Go struct field Config.Tty of type bool'],
    [{ Env: 'A=1' }, 'json: cannot unmarshal string into Go struct field Config.Env of type []string'],
    [{ Env: ['A=1', 2] }, 'json: cannot unmarshal number 2 into Go struct field Config.Env of type string'],
    [{ Cmd: 5 }, 'json: cannot unmarshal number 5 into Go struct field Config.Cmd of type strslice.StrSlice'],
    [{ Labels: ['a'] }, 'json: cannot unmarshal array into Go struct field Config.Labels of type map[string]string'],
    [{ Labels: { a: 1 } }, 'json: cannot unmarshal number 1 into Go struct field Config.Labels of type string'],
    [{ ExposedPorts: { '80/tcp': 1 } }, 'json: cannot unmarshal number 1 into Go struct field Config.ExposedPorts of type struct {}'],
    [{ Healthcheck: 'x' }, 'json: cannot unmarshal string into Go struct field Config.Healthcheck of type container.HealthConfig'],
    [{ Healthcheck: { Interval: 1.5 } }, 'json: cannot unmarshal number 1.5 into Go struct field Config.Healthcheck.Interval of type int64'],
    [{ HostConfig: 'x' }, 'json: cannot unmarshal string into Go struct field CreateRequest.HostConfig of type container.HostConfig'],
    [body({ Memory: '1g' }), 'json: cannot unmarshal string into Go struct field HostConfig.Memory of type int64'],
    [body({ Memory: 1.5 }), 'json: cannot unmarshal number 1.5 into Go struct field HostConfig.Memory of type int64'],
    [body({ BlkioWeight: -1 }), 'json: cannot unmarshal number -1 into Go struct field HostConfig.BlkioWeight of type uint16'],
    [body({ RestartPolicy: 'always' }), 'json: cannot unmarshal string into Go struct field HostConfig.RestartPolicy of type container.RestartPolicy'],
    [body({ RestartPolicy: { Name: 'on-failure', MaximumRetryCount: '3' } }), 'json: cannot unmarshal string into Go struct field HostConfig.RestartPolicy.MaximumRetryCount of type int'],
    [body({ Binds: '/a:/b' }), 'json: cannot unmarshal string into Go struct field HostConfig.Binds of type []string'],
    [body({ Mounts: [5] }), 'json: cannot unmarshal number 5 into Go struct field HostConfig.Mounts of type mount.Mount'],
    [body({ Mounts: [{ Type: 'tmpfs', Target: '/t', TmpfsOptions: { SizeBytes: 'big' } }] }), 'json: cannot unmarshal string into Go struct field HostConfig.Mounts[0].TmpfsOptions.SizeBytes of type int64'],
    [body({ Ulimits: [{ Name: 'nofile', Soft: '1' }] }), 'json: cannot unmarshal string into Go struct field HostConfig.Ulimits[0].Soft of type int64'],
    [body({ PortBindings: { '80/tcp': 'x' } }), 'json: cannot unmarshal string into Go struct field HostConfig.PortBindings of type []nat.PortBinding'],
    [body({ ConsoleSize: [1] }), 'json: cannot unmarshal array into Go struct field HostConfig.ConsoleSize of type [2]uint'],
    [body({ Tmpfs: { '/t': true } }), 'json: cannot unmarshal bool into Go struct field HostConfig.Tmpfs of type string'],
    [{ NetworkingConfig: { EndpointsConfig: { n: 'x' } } }, 'json: cannot unmarshal string into Go struct field NetworkingConfig.EndpointsConfig of type network.EndpointSettings'],
  ];
  for (const [b, msg] of cases) rejects(() => parseCreateBody(b, '1.50', OPTS), msg);
});

test('parseCreateBody: null means absent, strings are one-element command lists', () => {
  const r = parseCreateBody({ Image: 'x', Cmd: 'echo hi', Entrypoint: null, Env: null, HostConfig: null, NetworkingConfig: null, StopSignal: 9 }, '1.50', OPTS);
  assert.deepEqual(r.config, { Image: 'x', Cmd: ['echo hi'], StopSignal: '9' });
  assert.deepEqual(r.hostConfig, { NetworkMode: 'default' });
  assert.deepEqual(r.networkingConfig, {});
  assert.deepEqual(r.warnings, []);
});

test('parseCreateBody: validation errors with the Docker daemon wording', () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [body({ RestartPolicy: { Name: 'sometimes' } }), "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"],
    [body({ RestartPolicy: { Name: 'always', MaximumRetryCount: 3 } }), "invalid restart policy: maximum retry count can only be used with 'on-failure'"],
    [body({ RestartPolicy: { Name: 'no', MaximumRetryCount: -1 } }), "invalid restart policy: maximum retry count can only be used with 'on-failure' and cannot be negative"],
    [body({ RestartPolicy: { Name: 'on-failure', MaximumRetryCount: -2 } }), 'invalid restart policy: maximum retry count cannot be negative'],
    [body({ AutoRemove: true, RestartPolicy: { Name: 'always' } }), "can't create 'AutoRemove' container with restart policy"],
    [body({ Memory: 1024 }), 'Minimum memory limit allowed is 6MB'],
    [body({ Memory: 64 << 20, MemorySwap: 32 << 20 }), 'Minimum memoryswap limit should be larger than memory limit, see usage'],
    [body({ MemorySwap: 64 << 20 }), 'You should always set the Memory limit when using Memoryswap limit, see usage'],
    [body({ MemorySwappiness: 101 }), 'Invalid value: 101, valid memory swappiness range is 0-100'],
    [body({ MemoryReservation: 100 }), 'Minimum memory reservation allowed is 6MB'],
    [body({ Memory: 10 << 20, MemoryReservation: 20 << 20 }), 'Minimum memory limit can not be less than memory reservation limit, see usage'],
    [body({ NanoCpus: 1e9, CpuPeriod: 100000 }), 'Conflicting options: Nano CPUs and CPU Period cannot both be set'],
    [body({ NanoCpus: 1e9, CpuQuota: 50000 }), 'Conflicting options: Nano CPUs and CPU Quota cannot both be set'],
    [body({ NanoCpus: 5e9 }), 'Range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available'],
    [body({ CpuPeriod: 10 }), 'CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)'],
    [body({ CpuQuota: 10 }), 'CPU cfs quota can not be less than 1ms (i.e. 1000)'],
    [body({ CpusetCpus: '0-a' }), 'Invalid value 0-a for cpuset cpus'],
    [body({ BlkioWeight: 5 }), 'Range of blkio weight is from 10 to 1000'],
    [body({ IOMaximumIOps: 5 }), 'Invalid QoS settings: linux does not support configuration of maximum bandwidth or maximum IOps'],
    [body({ ShmSize: -1 }), 'SHM size can not be less than 0'],
    [body({ OomScoreAdj: 1001 }), 'Invalid value 1001, range for oom score adj is [-1000, 1000]'],
    [body({ PortBindings: { 'abc/tcp': [] } }), 'invalid port specification: "abc"'],
    [body({ PortBindings: { '80/tcp': [{ HostPort: '99999' }] } }), 'invalid port specification: "99999"'],
    [body({ PortBindings: { '80/xyz': [] } }), 'invalid proto: xyz'],
    [body({}, { ExposedPorts: { '0/tcp': {} } }), 'invalid port specification: "0"'],
    [body({ IpcMode: 'weird' }), 'invalid IPC mode: weird'],
    [body({ IpcMode: 'container:' }), 'invalid IPC mode: container:'],
    [body({ PidMode: 'x' }), 'invalid PID mode: x'],
    [body({ UTSMode: 'x' }), 'invalid UTS mode: x'],
    [body({ UsernsMode: 'x' }), 'invalid USER mode: x'],
    [body({ CgroupnsMode: 'x' }), 'invalid cgroup namespace mode: x'],
    [body({ Isolation: 'hyperv' }), 'Invalid isolation: "hyperv" - linux only supports \'default\''],
    [body({ NetworkMode: 'container:' }), 'Invalid network mode: invalid container format container:<name|id>'],
    [body({ NetworkMode: 'container:abc' }, { Hostname: 'h' }), 'conflicting options: hostname and the network mode'],
    [body({ NetworkMode: 'container:abc', Dns: ['1.1.1.1'] }), 'conflicting options: dns and the network mode'],
    [body({ NetworkMode: 'container:abc', ExtraHosts: ['a:1.2.3.4'] }), 'conflicting options: custom host-to-IP mapping and the network mode'],
    [body({ NetworkMode: 'container:abc', PublishAllPorts: true }), 'conflicting options: port publishing and the container type network mode'],
    [body({ NetworkMode: 'container:abc' }, { ExposedPorts: { '80/tcp': {} } }), 'conflicting options: port exposing and the container type network mode'],
    [body({ NetworkMode: 'container:abc', Links: ['a:b'] }), "conflicting options: container type network can't be used with links. This would result in undefined behavior"],
    [body({ NetworkMode: 'host', Links: ['a:b'] }), "conflicting options: host type networking can't be used with links. This would result in undefined behavior"],
    [body({ NetworkMode: 'host' }, { MacAddress: '02:42:ac:11:00:02' }), 'conflicting options: mac-address and the network mode'],
    [body({ UTSMode: 'host' }, { Hostname: 'h' }), 'conflicting options: hostname and the UTS mode'],
    [body({ Dns: ['dns.example'] }), 'IP address is not correctly formatted: dns.example'],
    [body({ ExtraHosts: ['nohost'] }), 'bad format for add-host: "nohost"'],
    [body({ ExtraHosts: ['h:1.2.3'] }), 'invalid IP address in add-host: "1.2.3"'],
    [body({ CapAdd: ['FLY'] }), 'unknown capability: "CAP_FLY"'],
    [body({ CapDrop: ['cap_nope'] }), 'unknown capability: "CAP_NOPE"'],
    [body({ SecurityOpt: ['bogus'] }), 'invalid --security-opt 1: "bogus"'],
    [body({ SecurityOpt: ['foo=bar'] }), 'invalid --security-opt 2: "foo=bar"'],
    [body({ SecurityOpt: ['no-new-privileges=maybe'] }), 'invalid --security-opt 2: "no-new-privileges=maybe"'],
    [body({ SecurityOpt: ['seccomp={"defaultAction":"SCMP_ACT_NOPE"}'] }), 'Decoding seccomp profile failed: invalid defaultAction "SCMP_ACT_NOPE"'],
    [body({ Sysctls: { 'kernel.panic': '1' } }), 'sysctl "kernel.panic" is not in a separate kernel namespace'],
    [body({ NetworkMode: 'host', Sysctls: { 'net.ipv4.ip_forward': '1' } }), 'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'],
    [body({ IpcMode: 'host', Sysctls: { 'kernel.shmmax': '1' } }), 'sysctl "kernel.shmmax" is not allowed in the hosts ipc namespace'],
    [body({ Ulimits: [{ Name: 'bogus', Soft: 1, Hard: 1 }] }), 'invalid ulimit type: bogus'],
    [body({ Ulimits: [{ Name: 'nofile', Soft: 10, Hard: 5 }] }), 'ulimit soft limit must be less than or equal to hard limit: 10 > 5'],
    [body({ Devices: [{ PathOnHost: '/dev/null', CgroupPermissions: 'rwx' }] }), 'invalid device mode: rwx'],
    [body({ DeviceCgroupRules: ['c 1:3 rwx'] }), "invalid device cgroup rule format: 'c 1:3 rwx'"],
    [body({ Tmpfs: { run: '' } }), 'invalid mount config for type "tmpfs": invalid mount path: \'run\' mount path must be absolute'],
    [body({ Mounts: [{ Type: 'bind', Target: '/x', Source: '/y', TmpfsOptions: {} }] }), 'TmpfsOptions must not be specified on mount type "bind"'],
    [body({ Mounts: [{ Type: 'weird', Target: '/x' }] }), 'invalid mount config for type "weird": mount type unknown'],
    [body({}, { WorkingDir: 'rel' }), "the working directory 'rel' is invalid, it needs to be an absolute path"],
    [body({}, { StopSignal: 'SIGNOPE' }), 'Invalid signal: SIGNOPE'],
    [body({}, { Healthcheck: { Interval: 10 } }), 'Interval in Healthcheck cannot be less than 1ms'],
    [body({}, { Healthcheck: { Retries: -1 } }), 'Retries in Healthcheck cannot be negative'],
    [body({}, { Env: ['=x'] }), 'invalid environment variable: =x'],
    [{ NetworkingConfig: { EndpointsConfig: { n: { IPAMConfig: { IPv4Address: '::1' } } } } }, 'invalid IPv4 address: ::1'],
  ];
  for (const [b, msg] of cases) rejects(() => parseCreateBody(b, '1.50', OPTS), msg);
});

test('parseCreateBody: Docker normalisations', () => {
  const r = parseCreateBody(body({ Memory: 64 << 20, CpuShares: -5, PidsLimit: -1, MemorySwappiness: -1, CpuPercent: 50 }), '1.50', OPTS);
  assert.equal(r.hostConfig.MemorySwap, 128 << 20, 'swap defaults to twice the memory');
  assert.equal(r.hostConfig.CpuShares, 2);
  assert.equal(r.hostConfig.PidsLimit, undefined);
  assert.equal(r.hostConfig.MemorySwappiness, undefined);
  assert.equal(r.hostConfig.CpuPercent, undefined);
  assert.ok(r.warnings.some((w) => w.includes('CPUShares')));
  const unlimited = parseCreateBody(body({ Memory: 64 << 20, MemorySwap: -1, CpuShares: 1 << 20 }), '1.50', OPTS);
  assert.equal(unlimited.hostConfig.MemorySwap, -1);
  assert.equal(unlimited.hostConfig.CpuShares, 262144);
  const oom = parseCreateBody(body({ OomKillDisable: true, NetworkMode: 'host', PortBindings: { '80/tcp': [{ HostPort: '8080' }] } }), '1.50', OPTS);
  assert.ok(oom.warnings.some((w) => w.startsWith('OOM killer is disabled')));
  assert.ok(oom.warnings.includes('Published ports are discarded when using host network mode'));
  const sig = parseCreateBody(body({}, { StopSignal: 'rtmin+3' }), '1.50', OPTS);
  assert.equal(sig.config.StopSignal, 'rtmin+3');
});

test('parseCreateBody: old API versions', () => {
  const mounts = [{ Type: 'bind', Source: '/s', Target: '/t', BindOptions: { NonRecursive: true, CreateMountpoint: true, ReadOnlyNonRecursive: true } }];
  const old = parseCreateBody(body({ AutoRemove: true, KernelMemoryTCP: 5, KernelMemory: 9, Mounts: mounts, ConsoleSize: [10, 20], Annotations: { a: 'b' } }, { Healthcheck: { StartInterval: 5_000_000 } }), '1.24', OPTS);
  assert.equal(old.hostConfig.AutoRemove, undefined);
  assert.equal(old.hostConfig.KernelMemoryTCP, undefined);
  assert.equal(old.hostConfig.KernelMemory, 9, 'KernelMemory is accepted before 1.42');
  assert.equal(old.hostConfig.IpcMode, 'shareable');
  assert.equal(old.hostConfig.CgroupnsMode, 'host');
  assert.equal(old.hostConfig.ConsoleSize, undefined);
  assert.equal(old.hostConfig.Annotations, undefined);
  assert.deepEqual(old.hostConfig.Mounts?.[0]?.BindOptions, {});
  assert.equal(old.config.Healthcheck?.StartInterval, undefined);
  assert.equal(old.defaultReadOnlyNonRecursive, true);
  const v2 = parseCreateBody(body({}), '1.40', { ...OPTS, cgroupV2: true });
  assert.equal(v2.hostConfig.CgroupnsMode, undefined);
  const cur = parseCreateBody(body({ KernelMemory: 9, ConsoleSize: [10, 20], Annotations: { a: 'b' } }), '1.50', OPTS);
  assert.equal(cur.hostConfig.KernelMemory, undefined);
  assert.deepEqual(cur.hostConfig.ConsoleSize, [10, 20]);
  assert.deepEqual(cur.hostConfig.Annotations, { a: 'b' });
  assert.equal(cur.defaultReadOnlyNonRecursive, false);
  // Mismatched options: dropped before 1.42, refused from 1.42 on.
  const mismatched = [{ Type: 'bind', Source: '/s', Target: '/t', VolumeOptions: { NoCopy: true } }];
  assert.equal(parseCreateBody(body({ Mounts: mismatched }), '1.41', OPTS).hostConfig.Mounts?.[0]?.VolumeOptions, undefined);
  rejects(() => parseCreateBody(body({ Mounts: mismatched }), '1.42', OPTS), 'VolumeOptions must not be specified on mount type "bind"');
  rejects(() => parseCreateBody(body({ Mounts: [{ Type: 'bind', Source: '/s', Target: '/t', BindOptions: { ReadOnlyForceRecursive: true } }] }), '1.43', OPTS),
    'BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer');
  rejects(() => parseCreateBody(body({ Mounts: [{ Type: 'volume', Source: 'v', Target: '/t', VolumeOptions: { Subpath: 'a' } }] }), '1.44', OPTS),
    'VolumeOptions.Subpath needs API v1.45 or newer');
  rejects(() => parseCreateBody({ NetworkingConfig: { EndpointsConfig: { a: {}, b: {} } } }, '1.43', OPTS),
    'Container cannot be created with multiple network endpoints: a, b');
  assert.equal(Object.keys(parseCreateBody({ NetworkingConfig: { EndpointsConfig: { a: {}, b: {} } } }, '1.44', OPTS).networkingConfig.EndpointsConfig ?? {}).length, 2);
});

test('parseCreateBody: the container-wide MacAddress', () => {
  const old = parseCreateBody(body({ NetworkMode: 'net1' }, { MacAddress: '02:42:ac:11:00:02' }), '1.43', OPTS);
  assert.equal(old.networkingConfig.EndpointsConfig?.['net1']?.MacAddress, '02:42:ac:11:00:02');
  assert.deepEqual(old.warnings, []);
  const cur = parseCreateBody(body({ NetworkMode: 'net1' }, { MacAddress: '02:42:ac:11:00:02' }), '1.44', OPTS);
  assert.equal(cur.networkingConfig.EndpointsConfig?.['net1']?.MacAddress, '02:42:ac:11:00:02');
  assert.equal(cur.warnings.length, 1);
  rejects(() => parseCreateBody({
    ...body({ NetworkMode: 'net1' }, { MacAddress: '02:42:ac:11:00:02' }),
    NetworkingConfig: { EndpointsConfig: { net1: { MacAddress: '02:42:ac:11:00:03' } } },
  }, '1.44', OPTS), 'the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty');
});

test('versionLess', () => {
  assert.equal(versionLess('1.24', '1.25'), true);
  assert.equal(versionLess('1.9', '1.10'), true);
  assert.equal(versionLess('1.50', '1.44'), false);
  assert.equal(versionLess('1.44', '1.44'), false);
});

test('parseSignal: names and numbers as Docker reads them', () => {
  const ok: Array<[string, number]> = [['SIGTERM', 15], ['TERM', 15], ['term', 15], ['sigkill', 9], ['9', 9], ['SIGRTMIN+3', 37], ['RTMAX', 64], ['RTMAX-1', 63], ['SIGCHLD', 17], ['SIGWINCH', 28]];
  for (const [s, n] of ok) assert.equal(parseSignal(s), n, s);
  for (const s of ['', '0', '65', 'SIGFOO', '-1', 'RTMIN+16']) rejects(() => parseSignal(s), `Invalid signal: ${s}`);
});

test('parseSecurityOpts', () => {
  assert.deepEqual(parseSecurityOpts(['no-new-privileges']).noNewPrivileges, true);
  assert.deepEqual(parseSecurityOpts(['no-new-privileges:true']).noNewPrivileges, true);
  assert.deepEqual(parseSecurityOpts(['no-new-privileges=false']).noNewPrivileges, false);
  assert.equal(parseSecurityOpts(['seccomp=unconfined']).seccomp, 'unconfined');
  assert.equal(parseSecurityOpts(['seccomp={"a":"b=c"}']).seccomp, '{"a":"b=c"}');
  assert.equal(parseSecurityOpts(['apparmor=docker-default']).apparmor, 'docker-default');
  assert.deepEqual(parseSecurityOpts(['label=disable', 'label:type:svirt_t', 'disable']).labels, ['disable', 'type:svirt_t', 'disable']);
  assert.equal(parseSecurityOpts(['writable-cgroups=true']).writableCgroups, true);
});

test('validateSysctls: namespaced ones only', () => {
  const host: HostConfig = {};
  validateSysctls({ 'net.ipv4.ip_forward': '1', 'kernel.shmmax': '1', 'fs.mqueue.msg_max': '10', 'kernel.domainname': 'x' }, host);
  rejects(() => validateSysctls({ 'kernel.hostname': 'x' }, host), 'setting the hostname through sysctl is not allowed, use the Hostname field instead');
  rejects(() => validateSysctls({ 'kernel.domainname': 'x' }, { UTSMode: 'host' }), 'sysctl "kernel.domainname" is not in a separate kernel namespace');
  rejects(() => validateSysctls({ 'vm.swappiness': '1' }, host), 'sysctl "vm.swappiness" is not in a separate kernel namespace');
});

test('parseImageConfig', () => {
  assert.deepEqual(parseImageConfig(null), {});
  assert.deepEqual(parseImageConfig({ Cmd: ['sh'], Env: ['A=1'], Hostname: 'ignored', Volumes: { '/v': {} } }), { Cmd: ['sh'], Env: ['A=1'], Volumes: { '/v': {} } });
  rejects(() => parseImageConfig({ Cmd: 1 }), 'json: cannot unmarshal number 1 into Go struct field ImageConfig.Cmd of type strslice.StrSlice');
});

test('mergeImageConfig: Docker rules', () => {
  const image: ImageConfig = {
    User: 'www', Env: ['PATH=/img', 'A=img', 'B=img'], Cmd: ['nginx', '-g'], Entrypoint: ['/entry.sh'],
    ExposedPorts: { '80/tcp': {} }, Volumes: { '/data': {} }, WorkingDir: '/srv', Labels: { a: 'img', b: 'img' },
    StopSignal: 'SIGQUIT', Healthcheck: { Test: ['CMD', 'true'], Interval: 5e9, Retries: 3 }, Shell: ['/bin/sh', '-c'],
  };
  type Case = { name: string; cfg: ContainerConfig; check: (m: ContainerConfig) => void };
  const cases: Case[] = [
    { name: 'nothing given: all from the image', cfg: {}, check: (m) => {
      assert.deepEqual(m.Entrypoint, ['/entry.sh']);
      assert.deepEqual(m.Cmd, ['nginx', '-g']);
      assert.equal(m.User, 'www');
      assert.equal(m.WorkingDir, '/srv');
      assert.equal(m.StopSignal, 'SIGQUIT');
      assert.deepEqual(m.Env, ['PATH=/img', 'A=img', 'B=img']);
      assert.deepEqual(m.Healthcheck, { Test: ['CMD', 'true'], Interval: 5e9, Retries: 3 });
    } },
    { name: 'Cmd given: image Entrypoint kept', cfg: { Cmd: ['ls'] }, check: (m) => {
      assert.deepEqual(m.Entrypoint, ['/entry.sh']);
      assert.deepEqual(m.Cmd, ['ls']);
    } },
    { name: 'Entrypoint given: image Cmd dropped', cfg: { Entrypoint: ['/bin/echo'] }, check: (m) => {
      assert.deepEqual(m.Entrypoint, ['/bin/echo']);
      assert.equal(m.Cmd, undefined);
    } },
    { name: 'Entrypoint and Cmd given', cfg: { Entrypoint: ['/bin/echo'], Cmd: ['x'] }, check: (m) => {
      assert.deepEqual([m.Entrypoint, m.Cmd], [['/bin/echo'], ['x']]);
    } },
    { name: 'Entrypoint [""] with Cmd: entrypoint reset', cfg: { Entrypoint: [''], Cmd: ['sh'] }, check: (m) => {
      assert.equal(m.Entrypoint, undefined);
      assert.deepEqual(m.Cmd, ['sh']);
    } },
    { name: 'Entrypoint [] : image Cmd kept, no entrypoint', cfg: { Entrypoint: [] }, check: (m) => {
      assert.deepEqual(m.Entrypoint, []);
      assert.deepEqual(m.Cmd, ['nginx', '-g']);
    } },
    { name: 'Env merged by key, container wins', cfg: { Env: ['A=mine', 'C=mine'] }, check: (m) => {
      assert.deepEqual(m.Env, ['A=mine', 'C=mine', 'PATH=/img', 'B=img']);
    } },
    { name: 'labels, ports and volumes unioned', cfg: { Labels: { a: 'mine' }, ExposedPorts: { '443/tcp': {} }, Volumes: { '/mine': {} } }, check: (m) => {
      assert.deepEqual(m.Labels, { a: 'mine', b: 'img' });
      assert.deepEqual(Object.keys(m.ExposedPorts ?? {}).sort(), ['443/tcp', '80/tcp']);
      assert.deepEqual(Object.keys(m.Volumes ?? {}).sort(), ['/data', '/mine']);
    } },
    { name: 'healthcheck fields inherited one by one', cfg: { Healthcheck: { Interval: 1e9 } }, check: (m) => {
      assert.deepEqual(m.Healthcheck, { Interval: 1e9, Test: ['CMD', 'true'], Retries: 3 });
    } },
    { name: 'User and WorkingDir given win', cfg: { User: '0', WorkingDir: '/' }, check: (m) => {
      assert.equal(m.User, '0');
      assert.equal(m.WorkingDir, '/');
    } },
  ];
  for (const c of cases) {
    const before = structuredClone(c.cfg);
    c.check(mergeImageConfig(c.cfg, image));
    assert.deepEqual(c.cfg, before, `${c.name}: the input is not changed`);
  }
  rejects(() => mergeImageConfig({}, {}), 'no command specified');
  rejects(() => mergeImageConfig({ Entrypoint: [''] }, { Cmd: ['sh'] }), 'no command specified');
  rejects(() => mergeImageConfig({ Entrypoint: [''] }, { Entrypoint: ['/e'] }), 'no command specified');
});
