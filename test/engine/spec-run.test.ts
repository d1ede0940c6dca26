/**
 * The engine's Docker-to-OCI translation, run for real: a create body goes
 * through parseCreateBody, mergeImageConfig, parseMounts, resolveUser and
 * buildSpec; the spec runs under berth-runc on a bundle of the built-in
 * busybox rootfs, and /probe reports what the container got.
 */
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RUNTIMES, REPO_ROOT, RuntimeKit, hasOption, jsonLines, mountAt, probe } from '../lib/index.js';
import type { ProbeFacts, ProbeResult } from '../lib/index.js';

// The engine's modules by path (test/dist/engine/ -> packages/engine/dist/containers/).
type ConfigModule = typeof import('../../packages/engine/src/containers/config.js');
type MountsModule = typeof import('../../packages/engine/src/containers/mounts.js');
type SpecModule = typeof import('../../packages/engine/src/containers/spec.js');
type EtcModule = typeof import('../../packages/engine/src/containers/etcfiles.js');
type CapsModule = typeof import('../../packages/engine/src/containers/caps.js');
const dist = (f: string): string => new URL(`../../../packages/engine/dist/containers/${f}`, import.meta.url).href;
const config = (await import(dist('config.js'))) as ConfigModule;
const mounts = (await import(dist('mounts.js'))) as MountsModule;
const spec = (await import(dist('spec.js'))) as SpecModule;
const etc = (await import(dist('etcfiles.js'))) as EtcModule;
const caps = (await import(dist('caps.js'))) as CapsModule;

const BERTH_RUNC = RUNTIMES.find((r) => r.name === 'berth-runc');
const INIT = join(REPO_ROOT, 'native', 'out', 'berth-init');
/** The busybox image's config, as an image would give it. */
const IMAGE = { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  id: string;
}

/** Runs a create body's container to completion under berth-runc. */
async function runBody(t: TestContext, body: Record<string, unknown>): Promise<Run> {
  if (!BERTH_RUNC) throw new Error('berth-runc is not among the test runtimes');
  const k = RuntimeKit.open(t, BERTH_RUNC);
  const b = await k.bundle();
  const req = config.parseCreateBody({ Image: 'busybox', ...body }, '1.50');
  const cfg = config.mergeImageConfig(req.config, IMAGE);
  const host = req.hostConfig;
  const resolved = mounts.parseMounts(cfg, host).map((m) => {
    if (m.type !== 'volume') return { ...m, hostPath: m.type === 'bind' ? m.source : '' };
    const dir = join(b.dir, 'volumes', m.volumeName !== undefined && m.volumeName !== '' ? m.volumeName : `anon-${m.destination.replace(/\//g, '_')}`);
    mkdirSync(dir, { recursive: true });
    return { ...m, hostPath: dir };
  });
  const id = k.newId('spec');
  const hostname = (cfg.Hostname ?? '') !== '' ? (cfg.Hostname ?? '') : id.slice(0, 12);
  const files = { hostnamePath: join(b.dir, 'hostname'), hostsPath: join(b.dir, 'hosts'), resolvConfPath: join(b.dir, 'resolv.conf') };
  writeFileSync(files.hostnamePath, etc.buildHostnameFile(hostname));
  writeFileSync(files.hostsPath, etc.buildHostsFile({ hostname, addresses: [], extraHosts: host.ExtraHosts ?? [] }));
  writeFileSync(files.resolvConfPath, etc.buildResolvConf('nameserver 127.0.0.53\n', { hostNetwork: false, dnsSearch: host.DnsSearch ?? [] }));
  const cgroupsPath = `/${id}`;
  k.cleanup.cgroup(cgroupsPath);
  const s = spec.buildSpec(cfg, host, {
    id,
    ...files,
    network: { kind: 'new' },
    mounts: resolved,
    cgroupsPath,
    initPath: INIT,
    user: spec.resolveUser(b.rootfs, cfg.User ?? '', host.GroupAdd ?? []),
  });
  writeFileSync(b.configPath, `${JSON.stringify(s, null, 2)}\n`);
  const r = await k.run(b, { id });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, id };
}

async function facts(t: TestContext, body: Record<string, unknown>): Promise<ProbeFacts & { id: string }> {
  const r = await runBody(t, body);
  assert.equal(r.code, 0, `run failed: ${r.stderr}`);
  return { ...probe(r.stdout), id: r.id };
}

/** Several probe runs in one container: `sh -c "/probe a; /probe b"`. */
async function probes(t: TestContext, body: Record<string, unknown>, runs: string[][]): Promise<unknown[]> {
  const r = await runBody(t, { ...body, Entrypoint: ['/bin/sh', '-c'], Cmd: [runs.map((a) => `/probe ${a.join(' ')}`).join('; ')] });
  assert.equal(r.code, 0, `run failed: ${r.stderr}\n${r.stdout}`);
  return jsonLines(r.stdout);
}

describe('engine spec builder under berth-runc', { skip: BERTH_RUNC?.missing ?? (BERTH_RUNC ? false : 'berth-runc not selected'), concurrency: 4 }, () => {
  it('defaults: Docker capability set, seccomp filter, no-new-privileges off, hostname and /etc files', async (t) => {
    const f = await facts(t, { Cmd: ['/probe', 'all'] });
    assert.deepEqual([...(f.caps?.bounding.names ?? [])].sort(), [...caps.DEFAULT_CAPABILITIES].sort());
    assert.deepEqual([...(f.caps?.effective.names ?? [])].sort(), [...caps.DEFAULT_CAPABILITIES].sort());
    assert.deepEqual(f.caps?.inheritable.names, []);
    assert.equal(f.seccomp?.mode, 2, 'a seccomp filter is installed');
    assert.equal(f.nnp, false);
    assert.equal(f.hostname, f.id.slice(0, 12));
    assert.ok(f.env?.includes(`HOSTNAME=${f.id.slice(0, 12)}`), JSON.stringify(f.env));
    assert.deepEqual(f.ids, { uid: 0, gid: 0, euid: 0, egid: 0, groups: [10] }, 'root gets its supplementary groups from /etc/group');
    for (const file of ['/etc/hosts', '/etc/hostname', '/etc/resolv.conf']) assert.ok(mountAt(f, file), `${file} is bind-mounted`);
    const shm = mountAt(f, '/dev/shm');
    assert.equal(shm?.fstype, 'tmpfs');
    assert.ok(hasOption(shm?.superOptions ?? '', 'size=65536k'), shm?.superOptions);
    assert.ok(hasOption(mountAt(f, '/sys')?.options ?? '', 'ro'));
  });

  it('CapDrop ALL with CapAdd keeps only the added capability', async (t) => {
    const f = await facts(t, { Cmd: ['/probe', 'caps'], HostConfig: { CapDrop: ['ALL'], CapAdd: ['net_bind_service'] } });
    assert.deepEqual(f.caps?.bounding.names, ['CAP_NET_BIND_SERVICE']);
    assert.deepEqual(f.caps?.permitted.names, ['CAP_NET_BIND_SERVICE']);
  });

  it('ReadonlyRootfs: the root and the /etc files are read-only, a tmpfs and a volume stay writable', async (t) => {
    const [rootWrite, tmpWrite, volWrite, m] = await probes(t, {
      Volumes: { '/vol': {} },
      HostConfig: { ReadonlyRootfs: true, Tmpfs: { '/scratch': 'size=1m,mode=1770' } },
    }, [['write', '/newfile'], ['write', '/scratch/f'], ['write', '/vol/f'], ['mounts']]);
    assert.deepEqual(rootWrite, { write: '/newfile', ok: false, errno: 30, error: 'EROFS' });
    assert.equal((tmpWrite as ProbeResult).ok, true, JSON.stringify(tmpWrite));
    assert.equal((volWrite as ProbeResult).ok, true, JSON.stringify(volWrite));
    const f = m as ProbeFacts;
    assert.ok(hasOption(mountAt(f, '/')?.options ?? '', 'ro'), 'the root is read-only');
    assert.ok(hasOption(mountAt(f, '/etc/hosts')?.options ?? '', 'ro'), '/etc/hosts is read-only');
    const tmp = mountAt(f, '/scratch');
    assert.equal(tmp?.fstype, 'tmpfs');
    assert.ok(hasOption(tmp?.superOptions ?? '', 'size=1024k'), tmp?.superOptions);
    assert.ok(hasOption(tmp?.superOptions ?? '', 'mode=1770'), tmp?.superOptions);
    assert.ok(hasOption(tmp?.options ?? '', 'noexec') && hasOption(tmp?.options ?? '', 'nosuid'), tmp?.options);
  });

  it('User and GroupAdd resolve from the image\'s /etc/passwd and /etc/group', async (t) => {
    const f = await facts(t, { User: 'user', Cmd: ['/probe', 'ids', 'caps'], HostConfig: { GroupAdd: ['wheel', '4242'] } });
    assert.deepEqual(f.ids, { uid: 1000, gid: 1000, euid: 1000, egid: 1000, groups: [10, 4242] });
    assert.deepEqual(f.caps?.effective.names, [], 'a non-root user has no effective capabilities');
    const g = await facts(t, { User: 'daemon:wheel', Cmd: ['/probe', 'ids'] });
    assert.deepEqual(g.ids, { uid: 1, gid: 10, euid: 1, egid: 10, groups: [] });
  });

  it('Ulimits become the process\'s rlimits', async (t) => {
    const f = await facts(t, {
      Cmd: ['/probe', 'rlimits'],
      HostConfig: { Ulimits: [{ Name: 'nofile', Soft: 512, Hard: 1024 }, { Name: 'nproc', Soft: 300, Hard: 400 }, { Name: 'core', Soft: -1, Hard: -1 }] },
    });
    assert.deepEqual(f.rlimits?.['RLIMIT_NOFILE'], { soft: 512, hard: 1024 });
    assert.deepEqual(f.rlimits?.['RLIMIT_NPROC'], { soft: 300, hard: 400 });
    assert.deepEqual(f.rlimits?.['RLIMIT_CORE'], { soft: 'unlimited', hard: 'unlimited' });
  });

  it('Init runs berth-init as pid 1, the command as its child, and passes the exit status on', async (t) => {
    assert.ok(existsSync(INIT), `${INIT} is missing: run make -C native`);
    const f = await facts(t, { Cmd: ['/probe', 'pid', 'ppid'], HostConfig: { Init: true } });
    assert.equal(f.ppid, 1, 'the command is the init\'s child');
    assert.notEqual(f.pid, 1);
    const r = await runBody(t, { Cmd: ['/probe', 'exit', '7'], HostConfig: { Init: true } });
    assert.equal(r.code, 7, r.stderr);
    const killed = await runBody(t, { Entrypoint: ['/bin/sh', '-c', 'kill -TERM $$'], HostConfig: { Init: true } });
    assert.equal(killed.code, 128 + 15, 'a command killed by a signal: 128+signal');
  });

  it('the default seccomp profile blocks unshare and mount but allows normal work', async (t) => {
    const [unshare, mount, mkdir, chown, sock] = await probes(t, {}, [['try', 'unshare', 'user'], ['try', 'mount'], ['try', 'mkdir'], ['try', 'chown'], ['try', 'socket-raw']]);
    assert.deepEqual(unshare, { try: 'unshare', ok: false, errno: 1, error: 'EPERM' });
    assert.deepEqual(mount, { try: 'mount', ok: false, errno: 1, error: 'EPERM' });
    assert.equal((mkdir as ProbeResult).ok, true, JSON.stringify(mkdir));
    assert.equal((chown as ProbeResult).ok, true, JSON.stringify(chown));
    assert.equal((sock as ProbeResult).ok, true, `NET_RAW is in the default set: ${JSON.stringify(sock)}`);
  });

  it('CAP_SYS_ADMIN opens the profile\'s conditional rules; seccomp=unconfined removes the filter', async (t) => {
    const [mount] = await probes(t, { HostConfig: { CapAdd: ['SYS_ADMIN'] } }, [['try', 'mount']]);
    assert.equal((mount as ProbeResult).ok, true, `mount with CAP_SYS_ADMIN: ${JSON.stringify(mount)}`);
    const f = await facts(t, { Cmd: ['/probe', 'seccomp', 'nnp'], HostConfig: { SecurityOpt: ['seccomp=unconfined', 'no-new-privileges'] } });
    assert.equal(f.seccomp?.mode, 0);
    assert.equal(f.nnp, true);
    const custom = JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }] });
    const [mk] = await probes(t, { HostConfig: { SecurityOpt: [`seccomp=${custom}`] } }, [['try', 'mkdir']]);
    assert.deepEqual(mk, { try: 'mkdir', ok: false, errno: 13, error: 'EACCES' });
  });
});
