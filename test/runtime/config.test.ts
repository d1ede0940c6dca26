// Conformance: config.json applied as the container sees it, checked with the probe.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DEFAULT_CAPS,
  RuntimeKit,
  defaultSeccomp,
  describeResult,
  eachRuntime,
  hasOption,
  jsonLines,
  mountAt,
  probe,
  waitFor,
} from '../lib/index.js';
import type { OciConfig, ProbeFacts, ProbeFork, ProbeRead, ProbeResult } from '../lib/index.js';

const sorted = (xs: readonly string[] | undefined): string[] => [...(xs ?? [])].sort();

function setCaps(c: OciConfig, caps: string[]): void {
  c.process.capabilities = { bounding: [...caps], effective: [...caps], permitted: [...caps] };
}

/** Runs several probe invocations in one container (through sh) and returns each JSON line. */
async function probeScript(k: RuntimeKit, script: string, mutate?: (c: OciConfig, rootfs: string) => void): Promise<unknown[]> {
  const b = await k.bundle({
    mutate: (c, bundle) => {
      c.process.args = ['/bin/sh', '-c', script];
      mutate?.(c, bundle.rootfs);
    },
  });
  const r = await k.run(b);
  assert.equal(r.code, 0, describeResult(r));
  return jsonLines(r.stdout);
}

eachRuntime('namespaces', (rt) => {
  it('the process is pid 1 of a new pid namespace, with the configured hostname', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const f = await k.probe(['pid', 'ppid', 'hostname', 'ns'], {
      mutate: (c) => { c.hostname = 'conformance'; },
    });
    assert.equal(f.pid, 1);
    assert.equal(f.ppid, 0);
    assert.equal(f.hostname, 'conformance');
    for (const ns of ['pid', 'net', 'ipc', 'uts', 'mnt', 'cgroup']) {
      assert.notEqual(f.ns?.[ns], readlinkSync(`/proc/self/ns/${ns}`), `a new ${ns} namespace`);
    }
    assert.equal(f.ns?.['user'], readlinkSync('/proc/self/ns/user'), 'no user namespace unless asked');
  });

  it('domainname is set in the UTS namespace', async (t) => {
    if (rt.name === 'runc') {
      t.skip('runc 1.1.5 (Debian 12) ignores the domainname field');
      return;
    }
    const k = RuntimeKit.open(t, rt);
    const f = await k.probe(['domainname'], { mutate: (c) => { c.domainname = 'example.test'; } });
    assert.equal(f.domainname, 'example.test');
  });

  it('a new network namespace has only lo', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const r = await k.probe<ProbeRead>(['read', '/proc/net/dev']);
    assert.ok(r.ok, JSON.stringify(r));
    const ifaces = (r.content ?? '').split('\n').slice(2).map((l) => l.split(':')[0]?.trim()).filter(Boolean);
    assert.deepEqual(ifaces, ['lo']);
  });

  it('without a network namespace entry, the host network namespace is shared', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const f = await k.probe(['ns'], {
      mutate: (c) => { c.linux.namespaces = c.linux.namespaces.filter((n) => n.type !== 'network'); },
    });
    assert.equal(f.ns?.['net'], readlinkSync('/proc/self/ns/net'));
  });
});

eachRuntime('mounts', (rt) => {
  it('proc, /dev tmpfs, devpts, mqueue, read-only sysfs, a read-only bind and a sized tmpfs', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const host = k.cleanup.tempDir('berth-bind-');
    writeFileSync(join(host, 'marker'), 'from the host\n');
    const out = await probeScript(k, '/probe mounts; /probe write /data/new; /probe read /data/marker; /probe write /scratch/x', (c) => {
      c.mounts.push(
        { destination: '/data', type: 'bind', source: host, options: ['rbind', 'ro'] },
        { destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['size=1m', 'mode=1777'] },
      );
    });
    const f = out[0] as ProbeFacts;
    const [writeData, readData, writeScratch] = out.slice(1) as [ProbeResult, ProbeRead, ProbeResult];
    assert.equal(mountAt(f, '/proc')?.fstype, 'proc');
    assert.equal(mountAt(f, '/dev')?.fstype, 'tmpfs');
    assert.equal(mountAt(f, '/dev/pts')?.fstype, 'devpts');
    assert.equal(mountAt(f, '/dev/shm')?.fstype, 'tmpfs');
    assert.equal(mountAt(f, '/dev/mqueue')?.fstype, 'mqueue');
    const sys = mountAt(f, '/sys');
    assert.equal(sys?.fstype, 'sysfs');
    assert.ok(sys && hasOption(sys.options, 'ro'), `sysfs is read-only: ${sys?.options}`);
    const data = mountAt(f, '/data');
    assert.ok(data && hasOption(data.options, 'ro'), `the bind mount is read-only: ${JSON.stringify(data)}`);
    assert.equal(writeData.ok, false);
    assert.equal(writeData.error, 'EROFS');
    assert.equal(readData.content, 'from the host\n');
    assert.ok(!existsSync(join(host, 'new')), 'nothing was written to the host dir');
    const scratch = mountAt(f, '/scratch');
    assert.equal(scratch?.fstype, 'tmpfs');
    assert.ok(scratch && hasOption(scratch.superOptions, 'size=1024k'), `tmpfs size: ${scratch?.superOptions}`);
    assert.ok(writeScratch.ok, JSON.stringify(writeScratch));
  });

  it('a read-write bind mount writes through to the host', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const host = k.cleanup.tempDir('berth-bind-');
    const [w] = (await probeScript(k, '/probe write /rw/out', (c) => {
      c.mounts.push({ destination: '/rw', type: 'bind', source: host, options: ['rbind', 'rw'] });
    })) as [ProbeResult];
    assert.ok(w.ok, JSON.stringify(w));
    assert.equal(readFileSync(join(host, 'out'), 'utf8'), 'probe\n');
  });

  it('root.readonly makes / read-only while /dev stays writable', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const [root, tmp, shm] = (await probeScript(k, '/probe write /newfile; /probe write /tmp/x; /probe write /dev/shm/x', (c) => {
      c.root.readonly = true;
    })) as [ProbeResult, ProbeResult, ProbeResult];
    assert.equal(root.error, 'EROFS');
    assert.equal(tmp.error, 'EROFS');
    assert.ok(shm.ok, JSON.stringify(shm));
  });

  it('maskedPaths hide files and dirs; readonlyPaths are read-only', async (t) => {
    const k = RuntimeKit.open(t, rt);
    // Masked files that this kernel has (it may lack /proc/kcore): each must read empty.
    const masked = ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/sched_debug'].filter((p) => existsSync(p));
    assert.ok(masked.length > 0, 'the host has at least one of the masked /proc files');
    const script = [
      '/probe write /proc/sys/kernel/domainname',
      '/probe mounts',
      ...masked.map((p) => `/probe read ${p}`),
    ].join('; ');
    const out = await probeScript(k, script);
    const [sys] = out as [ProbeResult];
    const f = out[1] as ProbeFacts;
    for (const [i, p] of masked.entries()) {
      const r = out[2 + i] as ProbeRead;
      assert.ok(r.ok && r.size === 0, `${p} reads empty: ${JSON.stringify(r)}`);
    }
    assert.equal(sys.error, 'EROFS');
    const firmware = mountAt(f, '/sys/firmware');
    assert.ok(firmware && hasOption(firmware.options, 'ro'), `/sys/firmware masked: ${JSON.stringify(firmware)}`);
    const procSys = mountAt(f, '/proc/sys');
    assert.ok(procSys && hasOption(procSys.options, 'ro'), `/proc/sys read-only: ${JSON.stringify(procSys)}`);
  });
});

eachRuntime('devices', (rt) => {
  it('the default devices exist and work; host disks are absent', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({
      mutate: (c) => {
        c.process.args = ['/bin/sh', '-c', [
          '/probe write /dev/null',
          'for d in null zero full random urandom tty; do test -c /dev/$d && echo "char $d $(stat -c %t:%T /dev/$d)"; done',
          'head -c 4 /dev/zero | od -An -tx1',
          '/probe read /dev/sda',
          'test -e /dev/vda || echo "no vda"',
          'test -L /dev/ptmx && echo "ptmx link"',
        ].join('; ')];
      },
    });
    const r = await k.run(b);
    assert.equal(r.code, 0, describeResult(r));
    const lines = r.stdout.split('\n');
    const [write, sda] = jsonLines(r.stdout) as [ProbeResult, ProbeRead];
    assert.ok(write.ok, `/dev/null is writable: ${JSON.stringify(write)}`);
    for (const [d, num] of [['null', '1:3'], ['zero', '1:5'], ['full', '1:7'], ['random', '1:8'], ['urandom', '1:9'], ['tty', '5:0']]) {
      assert.ok(lines.includes(`char ${d} ${num}`), `/dev/${d} is char ${num}:\n${r.stdout}`);
    }
    assert.ok(lines.some((l) => l.trim() === '00 00 00 00'), '/dev/zero reads zeros');
    assert.equal(sda.error, 'ENOENT');
    assert.ok(lines.includes('no vda'));
    assert.ok(lines.includes('ptmx link'), '/dev/ptmx links to pts/ptmx');
  });

  it('mknod is denied without CAP_MKNOD', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const r = await k.probe<ProbeResult>(['try', 'mknod']);
    assert.equal(r.error, 'EPERM');
  });
});

eachRuntime('process', (rt) => {
  it('the default capabilities are exactly AUDIT_WRITE, KILL, NET_BIND_SERVICE', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const f = await k.probe(['caps']);
    const expected = sorted(DEFAULT_CAPS);
    assert.deepEqual(sorted(f.caps?.effective.names), expected);
    assert.deepEqual(sorted(f.caps?.permitted.names), expected);
    assert.deepEqual(sorted(f.caps?.bounding.names), expected);
    assert.deepEqual(f.caps?.inheritable.names, []);
    assert.deepEqual(f.caps?.ambient.names, []);
  });

  it('an added capability is granted and usable (CAP_NET_RAW, CAP_CHOWN)', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const script = '/probe caps; /probe try socket-raw; /probe try chown';
    const withCaps = await probeScript(k, script, (c) => setCaps(c, [...DEFAULT_CAPS, 'CAP_NET_RAW', 'CAP_CHOWN']));
    const without = await probeScript(k, script);
    const f = withCaps[0] as ProbeFacts;
    assert.ok(f.caps?.effective.names.includes('CAP_NET_RAW'));
    assert.ok(f.caps?.bounding.names.includes('CAP_CHOWN'));
    assert.equal((withCaps[1] as ProbeResult).ok, true, 'raw socket with CAP_NET_RAW');
    assert.equal((withCaps[2] as ProbeResult).ok, true, 'chown with CAP_CHOWN');
    assert.equal((without[1] as ProbeResult).error, 'EPERM', 'no raw socket by default');
    assert.equal((without[2] as ProbeResult).error, 'EPERM', 'no chown by default');
  });

  it('user: uid, gid, additionalGids and umask', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const [f, w] = (await probeScript(k, '/probe ids umask; /probe write /root/x', (c) => {
      c.process.user = { uid: 1000, gid: 1000, additionalGids: [10, 1234], umask: 0o077 };
    })) as [ProbeFacts, ProbeResult];
    assert.equal(f.ids?.uid, 1000);
    assert.equal(f.ids?.euid, 1000);
    assert.equal(f.ids?.gid, 1000);
    assert.equal(f.ids?.egid, 1000);
    assert.deepEqual([...(f.ids?.groups ?? [])].sort((a, b) => a - b), [10, 1234]);
    assert.equal(f.umask, 0o077);
    assert.equal(w.error, 'EACCES', 'uid 1000 cannot write to /root');
  });

  it('a non-root user has no capabilities left', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const f = await k.probe(['caps'], { mutate: (c) => { c.process.user = { uid: 1000, gid: 1000 }; } });
    assert.deepEqual(f.caps?.effective.names, []);
    assert.deepEqual(f.caps?.permitted.names, []);
    assert.deepEqual(sorted(f.caps?.bounding.names), sorted(DEFAULT_CAPS));
  });

  it('rlimits are set as configured', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const f = await k.probe(['rlimits'], {
      mutate: (c) => {
        c.process.rlimits = [
          { type: 'RLIMIT_NOFILE', soft: 512, hard: 2048 },
          { type: 'RLIMIT_CORE', soft: 0, hard: 0 },
          { type: 'RLIMIT_NPROC', soft: 300, hard: 400 },
        ];
      },
    });
    assert.deepEqual(f.rlimits?.['RLIMIT_NOFILE'], { soft: 512, hard: 2048 });
    assert.deepEqual(f.rlimits?.['RLIMIT_CORE'], { soft: 0, hard: 0 });
    assert.deepEqual(f.rlimits?.['RLIMIT_NPROC'], { soft: 300, hard: 400 });
  });

  it('noNewPrivileges is set when asked and only then', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const on = await k.probe(['nnp'], { mutate: (c) => { c.process.noNewPrivileges = true; } });
    const off = await k.probe(['nnp'], { mutate: (c) => { c.process.noNewPrivileges = false; } });
    assert.equal(on.nnp, true);
    assert.equal(off.nnp, false);
  });

  it('cwd and env are as configured', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const f = await k.probe(['cwd', 'env'], {
      mutate: (c) => {
        c.process.cwd = '/etc';
        c.process.env = ['PATH=/bin', 'FOO=bar baz', 'EMPTY=', 'EQ=a=b'];
      },
    });
    assert.equal(f.cwd, '/etc');
    for (const e of ['PATH=/bin', 'FOO=bar baz', 'EMPTY=', 'EQ=a=b']) assert.ok(f.env?.includes(e), `${e} in ${JSON.stringify(f.env)}`);
  });

  it('oomScoreAdj is applied', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const f = await k.probe(['oom_score_adj'], { mutate: (c) => { c.process.oomScoreAdj = 500; } });
    assert.equal(f.oom_score_adj, 500);
  });

  it('no file descriptors leak into the container beyond stdio', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const f = await k.probe(['fds']);
    assert.deepEqual(f.fds?.map((d) => d.fd), [0, 1, 2], JSON.stringify(f.fds));
  });
});

eachRuntime('seccomp', (rt) => {
  it('a profile that makes mkdir fail with EPERM', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const [f, mkdir, write] = (await probeScript(k, '/probe seccomp; /probe try mkdir; /probe write /tmp/ok', (c) => {
      c.linux.seccomp = {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
      };
    })) as [ProbeFacts, ProbeResult, ProbeResult];
    assert.equal(f.seccomp?.mode, 2, 'filter mode');
    assert.equal(mkdir.error, 'EPERM');
    assert.ok(write.ok, 'other syscalls still work');
  });

  it("Docker's default profile blocks unshare and keyctl, and allows the rest", async (t) => {
    const k = RuntimeKit.open(t, rt);
    const script = '/probe seccomp; /probe try unshare; /probe try keyctl; /probe try mkdir; /probe write /tmp/x; /probe try reboot';
    const confined = await probeScript(k, script, (c) => {
      c.linux.seccomp = defaultSeccomp(c.process.capabilities?.bounding ?? []);
    });
    const free = await probeScript(k, script);
    const [f, unshare, keyctl, mkdir, write, reboot] = confined as [ProbeFacts, ProbeResult, ProbeResult, ProbeResult, ProbeResult, ProbeResult];
    assert.equal(f.seccomp?.mode, 2);
    assert.equal(unshare.error, 'EPERM', 'unshare(CLONE_NEWUSER) is blocked');
    assert.equal(keyctl.error, 'EPERM', 'keyctl is blocked');
    assert.equal(reboot.error, 'EPERM', 'reboot is blocked');
    assert.ok(mkdir.ok, 'mkdir works');
    assert.ok(write.ok, 'open/write work');
    // Without the profile the same calls get past the filter: the denial above is seccomp's.
    assert.equal((free[0] as ProbeFacts).seccomp?.mode, 0);
    assert.notEqual((free[1] as ProbeResult).error, 'EPERM', `unshare without seccomp: ${JSON.stringify(free[1])}`);
    assert.notEqual((free[2] as ProbeResult).error, 'EPERM', `keyctl without seccomp: ${JSON.stringify(free[2])}`);
  });
});

eachRuntime('linux', (rt) => {
  it('sysctl net.ipv4.ip_forward is set inside the network namespace only', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const hostBefore = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8');
    const want = hostBefore.trim() === '1' ? '0' : '1';
    const f = await k.probe(['sysctl', 'net.ipv4.ip_forward'], {
      mutate: (c) => { c.linux.sysctl = { 'net.ipv4.ip_forward': want }; },
    });
    assert.equal(f.sysctl?.value, want);
    assert.equal(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8'), hostBefore, 'host value unchanged');
  });

  it('resources: memory limit and pids limit in the cgroup at cgroupsPath', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const cgName = `berth-test-${k.newId('cg')}`;
    k.cleanup.cgroup(cgName);
    const b = await k.bundle({
      mutate: (c) => {
        c.process.args = ['/probe', 'sleep', '60'];
        c.linux.cgroupsPath = `/${cgName}`;
        c.linux.resources = { ...c.linux.resources, memory: { limit: 64 * 1024 * 1024 }, pids: { limit: 16 } };
      },
    });
    const c = await k.startContainer(b);
    const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
    const memFile = v2 ? `/sys/fs/cgroup/${cgName}/memory.max` : `/sys/fs/cgroup/memory/${cgName}/memory.limit_in_bytes`;
    const pidsFile = v2 ? `/sys/fs/cgroup/${cgName}/pids.max` : `/sys/fs/cgroup/pids/${cgName}/pids.max`;
    assert.equal(readFileSync(memFile, 'utf8').trim(), String(64 * 1024 * 1024));
    assert.equal(readFileSync(pidsFile, 'utf8').trim(), '16');
    const own = readFileSync(`/proc/${c.pid}/cgroup`, 'utf8');
    assert.ok(own.split('\n').some((l) => l.endsWith(`:/${cgName}`)), `the container process is in ${cgName}: ${own}`);

    const r = await k.exec(c.id, ['/probe', 'fork', '40']);
    assert.equal(r.code, 0, describeResult(r));
    const fork = probe<ProbeFork>(r.stdout);
    assert.ok(fork.forked < 16, `forks stop at the pids limit: ${JSON.stringify(fork)}`);
    assert.equal(fork.error, 'EAGAIN');

    await k.ok(['delete', '-f', c.id]);
    await waitFor('the cgroup to be removed', () => (existsSync(memFile) ? undefined : true), 10_000);
  });

  it('hooks run in order, each given the state on stdin', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({
      mutate: (c, bundle) => {
        const dir = join(bundle.rootfs, 'hooks');
        mkdirSync(dir);
        // Host-side hooks write to the host path; startContainer runs in the container
        // after pivot_root and writes to /hooks, the same directory.
        const host = (name: string): { path: string; args: string[] } => ({
          path: '/bin/sh',
          args: ['sh', '-c', `cat > ${dir}/${name}.json; echo ${name} >> ${dir}/order`],
        });
        c.process.args = ['/probe', 'exit', '0'];
        c.hooks = {
          prestart: [host('prestart')],
          createRuntime: [host('createRuntime')],
          createContainer: [host('createContainer')],
          startContainer: [{ path: '/bin/sh', args: ['sh', '-c', 'cat > /hooks/startContainer.json; echo startContainer >> /hooks/order'] }],
          poststart: [host('poststart')],
          poststop: [host('poststop')],
        };
      },
    });
    const c = await k.create(b);
    assert.equal(c.code, 0, describeResult(c));
    await k.ok(['start', c.id]);
    await k.waitStatus(c.id, 'stopped');
    await k.ok(['delete', c.id]);
    const dir = join(b.rootfs, 'hooks');
    const found = readFileSync(join(dir, 'order'), 'utf8').split('\n').filter(Boolean);
    // The spec orders startContainer (step 7) before poststart (step 9), but runc runs
    // poststart as soon as start has released the container, racing with startContainer;
    // so only those two may come in either order.
    const expected = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'];
    assert.equal(found.length, 6, `each hook ran once: ${JSON.stringify(found)}`);
    const [s0, s1, s2, s3, s4, s5] = found;
    assert.deepEqual([s0, s1, s2, [s3, s4].sort(), s5], [...expected.slice(0, 3), [expected[3], expected[4]].sort(), expected[5]],
      `hooks ran once each, in order: ${JSON.stringify(found)}`);
    for (const name of found) {
      const state = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')) as { id?: string; bundle?: string; pid?: number; status?: string };
      assert.equal(state.id, c.id, `${name} state id`);
      // Hooks in the runtime namespace get the bundle path and the host pid (crun gives
      // startContainer "/" as bundle, and createContainer pid 0).
      if (['prestart', 'createRuntime', 'poststart', 'poststop'].includes(name)) {
        assert.equal(state.bundle, b.dir, `${name} state bundle`);
      }
      if (['prestart', 'createRuntime', 'poststart'].includes(name)) {
        assert.ok((state.pid ?? 0) > 0, `${name} state has a pid: ${JSON.stringify(state)}`);
      }
    }
  });

  it('a failing prestart hook fails create and leaves no container', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({
      mutate: (c) => { c.hooks = { prestart: [{ path: '/bin/false', args: ['false'] }] }; },
    });
    const c = await k.create(b);
    assert.notEqual(c.code, 0, describeResult(c));
    const list = await k.ok(['list', '-q']);
    assert.ok(!list.stdout.includes(c.id), `no container left: ${list.stdout}`);
  });
});
