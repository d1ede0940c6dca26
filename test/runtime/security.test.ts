// Conformance: regressions for runtime escapes that hit runc and others. Each test is
// named after the CVE it guards and asserts on what the container could reach.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DEFAULT_CAPS,
  REPO_ROOT,
  RuntimeKit,
  describeResult,
  eachRuntime,
  jsonLines,
  probe,
  waitFor,
} from '../lib/index.js';
import type { ProbeExeWatch, ProbeFacts, ProbeRead, RuntimeDescriptor } from '../lib/index.js';

/** The host files that make up the runtime: a container must never get to write them. */
function runtimeBinaries(rt: RuntimeDescriptor): string[] {
  const files = rt.name === 'berth-runc'
    ? [process.execPath, join(REPO_ROOT, 'native', 'out', 'berth-executor'), rt.binary]
    : [rt.binary];
  return files.filter((f) => existsSync(f));
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** A cwd outside the container's root shows up as "(unreachable)/..." in getcwd. */
function cwdInside(f: ProbeFacts): boolean {
  return typeof f.cwd === 'string' && f.cwd.startsWith('/') && !f.cwd.includes('(unreachable)');
}

eachRuntime('security', (rt) => {
  it('CVE-2024-21626: a cwd through a leaked fd (/proc/self/fd/N) never lands outside the root', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const fds = [3, 4, 5, 6, 7, 8, 9, 10];
    await Promise.all(fds.map(async (fd) => {
      const b = await k.bundle({
        mutate: (c) => {
          c.process.args = ['/probe', 'cwd', 'fds'];
          c.process.cwd = `/proc/self/fd/${fd}`;
        },
      });
      const r = await k.run(b);
      if (r.code !== 0) return; // refusing is fine
      const f = probe(r.stdout);
      assert.ok(cwdInside(f), `cwd /proc/self/fd/${fd} got the process to ${String(f.cwd)}`);
      assert.deepEqual(f.fds?.map((d) => d.fd), [0, 1, 2], `fds leaked with cwd /proc/self/fd/${fd}: ${JSON.stringify(f.fds)}`);
    }));
  });

  it('CVE-2024-21626: exec --cwd /proc/self/fd/N never lands outside the root, and leaks no fd', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({ mutate: (c) => { c.process.args = ['/probe', 'sleep', '60']; } });
    const c = await k.startContainer(b);
    for (const fd of [3, 4, 5, 6, 7, 8, 9, 10]) {
      const r = await k.exec(c.id, ['/probe', 'cwd', 'fds'], { cwd: `/proc/self/fd/${fd}` });
      if (r.code !== 0) continue;
      const f = probe(r.stdout);
      assert.ok(cwdInside(f), `exec --cwd /proc/self/fd/${fd} got the process to ${String(f.cwd)}`);
      assert.deepEqual(f.fds?.map((d) => d.fd), [0, 1, 2], `fds leaked into exec: ${JSON.stringify(f.fds)}`);
    }
    const plain = await k.exec(c.id, ['/probe', 'fds']);
    assert.equal(plain.code, 0, describeResult(plain));
    assert.deepEqual(probe(plain.stdout).fds?.map((d) => d.fd), [0, 1, 2], `fds leaked into exec: ${plain.stdout}`);
  });

  it('CVE-2019-5736: the container cannot open the runtime binary for writing during exec', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const protectedFiles = runtimeBinaries(rt);
    const before = new Map(protectedFiles.map((f) => [f, sha256(f)]));
    const inodes = new Set(protectedFiles.map((f) => {
      const st = statSync(f);
      return `${st.dev}:${st.ino}`;
    }));
    const b = await k.bundle({
      mutate: (c, bundle) => {
        // The attacker is as strong as it gets without escaping: root with CAP_SYS_PTRACE,
        // so it can open /proc/<pid>/exe of whatever the runtime runs in the container.
        const caps = [...DEFAULT_CAPS, 'CAP_SYS_PTRACE'];
        c.process.capabilities = { bounding: caps, effective: [...caps], permitted: [...caps] };
        c.process.args = ['/probe', 'exe-watch', '60', '/tmp/stop-watching'];
        // Executing /evil makes the kernel run /proc/self/exe of whoever execs it: the runtime.
        writeFileSync(join(bundle.rootfs, 'evil'), '#!/proc/self/exe\n');
        chmodSync(join(bundle.rootfs, 'evil'), 0o755);
      },
    });
    const c = await k.startContainer(b);
    await waitFor('the watcher', () => (readFileSync(c.stdoutFile, 'utf8').includes('ready') ? true : undefined));
    for (let i = 0; i < 5; i++) {
      await k.exec(c.id, ['/evil']); // fails one way or another; the watcher is the judge
      const ok = await k.exec(c.id, ['/probe', 'exit', '0']);
      assert.equal(ok.code, 0, describeResult(ok));
    }
    // A control: a process of the container's own is seen, so the watcher does watch.
    const control = await k.exec(c.id, ['/bin/sleep', '0.5']);
    assert.equal(control.code, 0, describeResult(control));
    writeFileSync(join(b.rootfs, 'tmp', 'stop-watching'), '');
    await k.waitStatus(c.id, 'stopped', 15_000);
    const w = probe<ProbeExeWatch>(readFileSync(c.stdoutFile, 'utf8'));
    assert.ok(w.seen.some((s) => s.exe === '/bin/busybox'), `the watcher saw the control process: ${JSON.stringify(w.seen)}`);
    for (const hit of w.writable) {
      assert.ok(!inodes.has(`${hit.dev}:${hit.ino}`), `the container opened a runtime binary for writing: ${JSON.stringify(hit)}`);
    }
    for (const [f, sum] of before) assert.equal(sha256(f), sum, `${f} is unchanged`);
  });

  it('CVE-2021-30465: a bind mount onto a symlink pointing outside the root stays inside', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const src = k.cleanup.tempDir('berth-src-');
    writeFileSync(join(src, 'marker'), 'bound\n');
    const b = await k.bundle({
      mutate: (c, bundle) => {
        // ../outside from the root's top is <bundle>/outside on the host, /outside inside.
        symlinkSync('../outside', join(bundle.rootfs, 'link'));
        mkdirSync(join(bundle.rootfs, 'outside'));
        c.process.args = ['/bin/sh', '-c', '/probe read /outside/marker; /probe read /link/marker'];
        c.mounts.push({ destination: '/link', type: 'bind', source: src, options: ['rbind', 'ro'] });
      },
    });
    const r = await k.run(b);
    assert.ok(!existsSync(join(b.dir, 'outside')), 'nothing was created outside the root');
    assert.equal(r.code, 0, describeResult(r));
    const [inside, via] = jsonLines(r.stdout) as [ProbeRead, ProbeRead];
    assert.equal(inside.content, 'bound\n', 'the mount landed on /outside inside the root');
    assert.equal(via.content, 'bound\n');
    assert.equal(readFileSync(join(src, 'marker'), 'utf8'), 'bound\n');
  });

  it('CVE-2021-30465: a mount onto a dangling symlink out of the root fails or stays inside', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const src = k.cleanup.tempDir('berth-src-');
    writeFileSync(join(src, 'marker'), 'bound\n');
    const escape = k.cleanup.tempDir('berth-escape-');
    rmSync(escape, { recursive: true });
    const b = await k.bundle({
      mutate: (c, bundle) => {
        symlinkSync(`/../../../../../../..${escape}`, join(bundle.rootfs, 'abs'));
        symlinkSync('../escaped', join(bundle.rootfs, 'rel'));
        c.process.args = ['/bin/sh', '-c', `/probe read /rel/marker; /probe read ${escape}/marker`];
        c.mounts.push(
          { destination: '/rel', type: 'bind', source: src, options: ['rbind', 'ro'] },
          { destination: '/abs', type: 'tmpfs', source: 'tmpfs', options: ['size=64k'] },
        );
      },
    });
    const r = await k.run(b);
    assert.ok(!existsSync(join(b.dir, 'escaped')), `no ${join(b.dir, 'escaped')} on the host`);
    assert.ok(!existsSync(escape), `no ${escape} on the host`);
    if (r.code === 0) {
      const [rel] = jsonLines(r.stdout) as [ProbeRead];
      assert.equal(rel.content, 'bound\n', 'the mount is visible inside the container');
      assert.ok(existsSync(join(b.rootfs, 'escaped')), 'the mount point was made inside the root');
    }
  });

  it('/proc mounted onto a symlink is refused', async (t) => {
    const k = RuntimeKit.open(t, rt);
    const b = await k.bundle({
      mutate: (c, bundle) => {
        rmSync(join(bundle.rootfs, 'proc'), { recursive: true });
        symlinkSync('../procout', join(bundle.rootfs, 'proc'));
        c.process.args = ['/probe', 'exit', '0'];
      },
    });
    const r = await k.run(b);
    assert.notEqual(r.code, 0, `run must refuse: ${describeResult(r)}`);
    assert.ok(!existsSync(join(b.dir, 'procout')), 'nothing was created outside the root');
  });
});
