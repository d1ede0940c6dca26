// Root-only: runs berth-executor on hand-written plans against a throwaway busybox rootfs.
// Build first: make -C native && npx tsc -b; run: node --test packages/runtime/dist/executor/executor.test.js
import test from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import {
  mkdtempSync, mkdirSync, copyFileSync, symlinkSync, rmSync, readFileSync, writeFileSync, existsSync,
  openSync, closeSync, readSync, chownSync, readlinkSync, constants as fsc,
} from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Plan, PlanRecord } from '../plan/types.js';
import { startExecutor, executorPath, ExecutorError } from './index.js';
import type { ExecutorOptions } from './index.js';

const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, BIND: 4096, REC: 16384, PRIVATE: 1 << 18, SLAVE: 1 << 19,
};
const APPLETS = ['sh', 'cat', 'echo', 'ls', 'id', 'hostname', 'sleep', 'mount', 'touch', 'mkdir', 'chown',
  'stty', 'tty', 'pwd', 'readlink', 'grep', 'kill', 'true'];
const isRoot = process.getuid?.() === 0;
const haveExecutor = existsSync(executorPath());
const skip = !isRoot ? 'needs root' : !haveExecutor ? 'needs native/out/berth-executor (make -C native)' : false;

interface Box { dir: string; rootfs: string }

/** A temp dir with rootfs/ holding busybox and its applets; removed after the test. */
function makeBox(t: TestContext): Box {
  const dir = mkdtempSync(join(tmpdir(), 'berth-exec-'));
  spawnSync('chmod', ['0755', dir]); // reachable from a user namespace
  const rootfs = join(dir, 'rootfs');
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin/busybox'));
  spawnSync('chmod', ['0755', join(rootfs, 'bin/busybox')]);
  spawnSync('chmod', ['1777', join(rootfs, 'tmp')]);
  for (const a of APPLETS) symlinkSync('busybox', join(rootfs, 'bin', a));
  t.after(() => {
    // Mounts live in the containers' mount namespaces; lazily detach anything that leaked here.
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n').reverse()) {
      const mp = line.split(' ')[4];
      if (mp !== undefined && mp.startsWith(dir)) spawnSync('umount', ['-l', mp]);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return box(dir, rootfs);
}
function box(dir: string, rootfs: string): Box { return { dir, rootfs }; }

/** Namespaces, rootfs, /proc, a tmpfs /dev with null and a devpts, PATH. */
function basePlan(b: Box): PlanRecord[] {
  return [
    { tag: 'version', version: 1 },
    { tag: 'ns', type: 'pid', path: '' },
    { tag: 'ns', type: 'mnt', path: '' },
    { tag: 'ns', type: 'uts', path: '' },
    { tag: 'ns', type: 'ipc', path: '' },
    { tag: 'ns', type: 'net', path: '' },
    { tag: 'rootfs', path: b.rootfs },
    { tag: 'rootfs_propagation', flags: MS.REC | MS.PRIVATE },
    mount('proc', '/proc', 'proc', MS.NOSUID | MS.NODEV | MS.NOEXEC),
    mount('tmpfs', '/dev', 'tmpfs', MS.NOSUID, 'mode=755'),
    { tag: 'device', path: '/dev/null', type: 'c', major: 1, minor: 3, mode: 0o666, uid: 0, gid: 0 },
    mount('devpts', '/dev/pts', 'devpts', MS.NOSUID | MS.NOEXEC, 'newinstance,ptmxmode=0666,mode=0620'),
    { tag: 'symlink', target: 'pts/ptmx', linkpath: '/dev/ptmx' },
    { tag: 'env', value: 'PATH=/bin' },
  ];
}

function mount(source: string, target: string, fstype: string, flags: number, data = '',
  mkdir: 'dir' | 'file' | 'none' = 'dir'): PlanRecord {
  return { tag: 'mount', source, target, fstype, flags, data, mkdir, propagation: 0 };
}

interface Ran { code: number; out: string; err: string; pid: number }

/** Runs a plan in wait mode with stdout and stderr in files. */
async function run(t: TestContext, b: Box, plan: Plan, opts: ExecutorOptions = {}): Promise<Ran> {
  const outPath = join(b.dir, `out-${Math.random().toString(36).slice(2)}`);
  const errPath = `${outPath}.err`;
  const out = openSync(outPath, 'w');
  const err = openSync(errPath, 'w');
  try {
    const h = await startExecutor([...plan, { tag: 'wait' }], { stdio: ['ignore', out, err], ...opts });
    t.after(() => killQuietly(h.pid));
    const code = await h.exited;
    return { code, out: readFileSync(outPath, 'utf8'), err: readFileSync(errPath, 'utf8'), pid: h.pid };
  } finally {
    closeSync(out);
    closeSync(err);
  }
}

function killQuietly(pid: number): void {
  if (pid > 0) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
}

async function until(what: string, f: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function rejectsWith(p: Promise<unknown>, stage: string, errno: number, text: string | RegExp): Promise<ExecutorError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ExecutorError, `expected an ExecutorError, got ${String(e)}`);
    assert.equal(e.stage, stage, e.message);
    assert.equal(e.errno, errno, e.message);
    if (typeof text === 'string') assert.ok(e.message.includes(text), e.message);
    else assert.match(e.message, text);
    return e;
  }
  throw new Error('expected the executor to fail');
}

const sh = (script: string): PlanRecord => ({ tag: 'args', args: ['sh', '-c', script] });

test('new pid, mnt, uts, ipc and net namespaces: pid 1, hostname set', { skip }, async (t) => {
  const b = makeBox(t);
  const r = await run(t, b, [...basePlan(b), { tag: 'hostname', name: 'boxy' },
    sh('echo pid=$$; hostname; for n in net ipc mnt; do readlink /proc/self/ns/$n; done')]);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split('\n');
  assert.equal(lines[0], 'pid=1');
  assert.equal(lines[1], 'boxy');
  for (const [i, ns] of ['net', 'ipc', 'mnt'].entries()) {
    assert.notEqual(lines[2 + i], readlinkSync(`/proc/self/ns/${ns}`), `${ns} namespace is new`);
  }
});

test('mounts: tmpfs with data, read-only bind really read-only, sysfs', { skip }, async (t) => {
  const b = makeBox(t);
  const src = join(b.dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'hello'), 'from the host\n');
  const r = await run(t, b, [...basePlan(b),
    mount('tmpfs', '/data', 'tmpfs', MS.NOSUID, 'size=1m,mode=700'),
    mount(src, '/ro', 'bind', MS.BIND | MS.RDONLY),
    mount(src, '/rw', 'bind', MS.BIND),
    mount('sysfs', '/sys', 'sysfs', MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC),
    sh('grep -E " /(data|ro|rw|sys) " /proc/mounts; cat /ro/hello; touch /ro/x && echo ro-writable; ' +
      'touch /rw/y && echo rw-ok; touch /data/z && echo data-ok')]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^tmpfs \/data tmpfs rw,nosuid,.*size=1024k,mode=700/m);
  assert.match(r.out, / \/ro \S+ ro[, ]/);
  assert.match(r.out, / \/rw \S+ rw[, ]/);
  assert.match(r.out, /^sysfs \/sys sysfs ro,/m);
  assert.ok(r.out.includes('from the host'));
  assert.ok(!r.out.includes('ro-writable'), 'a read-only bind is read-only');
  assert.match(r.err, /Read-only file system/);
  assert.ok(r.out.includes('rw-ok') && r.out.includes('data-ok'));
  assert.ok(existsSync(join(src, 'y')), 'the rw bind writes through to the host');
  assert.ok(!existsSync(join(src, 'x')));
});

test('devices are created with their type, numbers, mode and owner', { skip }, async (t) => {
  const b = makeBox(t);
  const r = await run(t, b, [...basePlan(b),
    { tag: 'device', path: '/dev/zero', type: 'c', major: 1, minor: 5, mode: 0o640, uid: 12, gid: 34 },
    { tag: 'device', path: '/dev/sub/fifo', type: 'p', major: 0, minor: 0, mode: 0o600, uid: 0, gid: 0 },
    sh('ls -ln /dev/null /dev/zero /dev/sub/fifo; echo x > /dev/null && echo null-ok')]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^crw-rw-rw- +1 0 +0 +1, +3 .* \/dev\/null$/m);
  assert.match(r.out, /^crw-r----- +1 12 +34 +1, +5 .* \/dev\/zero$/m);
  assert.match(r.out, /^prw------- .* \/dev\/sub\/fifo$/m);
  assert.ok(r.out.includes('null-ok'));
});

test('masked and read-only paths, read-only rootfs', { skip }, async (t) => {
  const b = makeBox(t);
  writeFileSync(join(b.rootfs, 'etc/secret'), 'top secret\n');
  mkdirSync(join(b.rootfs, 'secrets'));
  writeFileSync(join(b.rootfs, 'secrets/key'), 'k\n');
  const r = await run(t, b, [...basePlan(b),
    mount('tmpfs', '/tmp', 'tmpfs', MS.NOSUID),
    { tag: 'mask', path: '/etc/secret' },
    { tag: 'mask', path: '/secrets' },
    { tag: 'mask', path: '/does/not/exist' },
    { tag: 'readonly', path: '/proc/sys' },
    { tag: 'readonly', path: '/nothing/here' },
    { tag: 'rootfs_readonly' },
    sh('echo "[$(cat /etc/secret)]"; ls /secrets | wc -l; ls -A /secrets; ' +
      'echo h > /proc/sys/kernel/hostname || echo sys-ro; touch /newfile || echo root-ro; ' +
      'touch /tmp/ok && echo tmp-rw')]);
  assert.equal(r.code, 0, r.err);
  assert.ok(r.out.startsWith('[]\n'), r.out);
  assert.ok(!r.out.includes('key'), 'a masked directory is empty');
  assert.ok(r.out.includes('sys-ro'), 'readonly /proc/sys');
  assert.ok(r.out.includes('root-ro'), 'rootfs readonly');
  assert.ok(r.out.includes('tmp-rw'), 'a tmpfs on a read-only rootfs stays writable');
  assert.ok(!existsSync(join(b.rootfs, 'newfile')));
  assert.equal(readFileSync(join(b.rootfs, 'etc/secret'), 'utf8'), 'top secret\n');
});

test('exec fifo: the process waits until the fifo is opened for reading', { skip }, async (t) => {
  const b = makeBox(t);
  const fifo = join(b.dir, 'exec.fifo');
  spawnSync('mkfifo', [fifo]);
  const outPath = join(b.dir, 'out');
  const out = openSync(outPath, 'w');
  t.after(() => closeSync(out));
  const h = await startExecutor([...basePlan(b), { tag: 'exec_fifo', path: fifo },
    sh('echo started')], { stdio: ['ignore', out, out] });
  t.after(() => killQuietly(h.pid));
  assert.equal(await h.exited, 0, 'the executor exits 0 once the process is ready');
  assert.ok(h.pid > 0);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(readFileSync(outPath, 'utf8'), '', 'nothing runs before start');
  assert.ok(existsSync(`/proc/${h.pid}`), 'the process is alive, blocked on the fifo');
  // Until execve it runs from the sealed memfd copy, never from the binary on disk (CVE-2019-5736).
  assert.match(readlinkSync(`/proc/${h.pid}/exe`), /^\/memfd:berth-executor/);
  const rd = openSync(fifo, fsc.O_RDONLY | fsc.O_NONBLOCK);
  t.after(() => closeSync(rd));
  const one = Buffer.alloc(4);
  await until('the byte on the fifo', () => {
    try { return readSync(rd, one, 0, 4, null) === 1; } catch { return false; }
  });
  assert.equal(one.toString('utf8', 0, 1), '0');
  await until('the process output', () => readFileSync(outPath, 'utf8') === 'started\n');
});

test('a missing binary fails at lookup, before ready', { skip }, async (t) => {
  const b = makeBox(t);
  const e = await rejectsWith(startExecutor([...basePlan(b), { tag: 'args', args: ['foo'] }], { stdio: ['ignore', 'ignore', 'ignore'] }),
    'lookup', 2, 'exec: "foo": executable file not found in $PATH');
  assert.equal(e.kind, 'FailedPrecondition');
});

test('a malformed plan is an InvalidArgument naming the record', { skip }, async () => {
  const e = await rejectsWith(startExecutor([{ tag: 'version', version: 1 }, { tag: 'ns', type: 'pid', path: 'relative' },
    { tag: 'args', args: ['true'] }], { stdio: ['ignore', 'ignore', 'ignore'] }), 'plan', 22, 'record 2 (ns)');
  assert.equal(e.kind, 'InvalidArgument');
});

test('a mount target that is a symlink out of the rootfs lands inside it', { skip }, async (t) => {
  const b = makeBox(t);
  const name = `berth-escape-${process.pid}-${Date.now()}`;
  const hostTarget = join('/tmp', name);
  assert.ok(!existsSync(hostTarget));
  t.after(() => rmSync(hostTarget, { recursive: true, force: true }));
  mkdirSync(join(b.rootfs, 'mnt'));
  symlinkSync(`/../../tmp/${name}`, join(b.rootfs, 'mnt/link'));           // dangling: created inside
  symlinkSync('../../../../../../etc', join(b.rootfs, 'mnt/etclink'));       // relative climb: clamped to /etc
  const src = join(b.dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'marker'), 'inside\n');
  const r = await run(t, b, [...basePlan(b),
    mount(src, '/mnt/link', 'bind', MS.BIND),
    mount('tmpfs', '/mnt/etclink', 'tmpfs', 0),
    sh(`cat /tmp/${name}/marker; grep -E " /(tmp/${name}|etc) " /proc/mounts | cut -d" " -f2`)]);
  assert.equal(r.code, 0, r.err);
  assert.ok(r.out.includes('inside\n'), 'the bind landed on /tmp/<name> inside the rootfs');
  assert.match(r.out, new RegExp(`^/tmp/${name}$`, 'm'));
  assert.match(r.out, /^\/etc$/m);
  assert.ok(existsSync(join(b.rootfs, 'tmp', name)), 'the target was created inside the rootfs');
  assert.ok(!existsSync(hostTarget), 'nothing was created on the host');
});

test('proc is refused on a symlink target', { skip }, async (t) => {
  const b = makeBox(t);
  mkdirSync(join(b.rootfs, 'realproc'));
  symlinkSync('/realproc', join(b.rootfs, 'proc2'));
  await rejectsWith(startExecutor([...basePlan(b), mount('proc', '/proc2', 'proc', 0, '', 'none'), { tag: 'args', args: ['true'] }],
    { stdio: ['ignore', 'ignore', 'ignore'] }), 'mounts', 20, `mount target ${b.rootfs}/proc2 must be a real directory (it is a symlink)`);
});

test('cwd: entered when inside the root, refused when it resolves outside (leaked fd)', { skip }, async (t) => {
  const b = makeBox(t);
  mkdirSync(join(b.rootfs, 'work'));
  const ok = await run(t, b, [...basePlan(b), { tag: 'cwd', path: '/work' }, sh('pwd')]);
  assert.equal(ok.out, '/work\n');
  // A host directory passed as fd 3: /proc/self/fd/3 leads outside the rootfs.
  const hostDir = openSync(b.dir, 'r');
  t.after(() => closeSync(hostDir));
  await rejectsWith(startExecutor([...basePlan(b), { tag: 'preserve_fds', n: 1 }, { tag: 'cwd', path: '/proc/self/fd/3' }, sh('pwd')],
    { stdio: ['ignore', 'ignore', 'ignore'], preserveFds: 1, extraFds: [hostDir] }), 'cwd', 2, 'outside the container root');
});

test('no fd leaks into the process; preserve_fds passes fds 3..', { skip }, async (t) => {
  const b = makeBox(t);
  const r = await run(t, b, [...basePlan(b), sh('ls /proc/self/fd | sort -n | tr "\\n" " "')]);
  assert.equal(r.out, '0 1 2 3 ', 'only stdio and ls\'s own directory fd');
  const passedPath = join(b.dir, 'passed');
  const passed = openSync(passedPath, 'w');
  t.after(() => closeSync(passed));
  const r2 = await run(t, b, [...basePlan(b), { tag: 'preserve_fds', n: 1 },
    sh('echo via-fd-3 >&3; ls /proc/self/fd | sort -n | tr "\\n" " "')], { preserveFds: 1, extraFds: [passed] });
  assert.equal(r2.code, 0, r2.err);
  assert.equal(r2.out, '0 1 2 3 4 ');
  assert.equal(readFileSync(passedPath, 'utf8'), 'via-fd-3\n');
});

test('a non-root user with no capabilities cannot chown', { skip }, async (t) => {
  const b = makeBox(t);
  writeFileSync(join(b.rootfs, 'tmp/f'), '');
  chownSync(join(b.rootfs, 'tmp/f'), 1000, 1000);
  const caps: PlanRecord[] = (['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const)
    .map((set) => ({ tag: 'caps', set, mask: 0n }));
  const r = await run(t, b, [...basePlan(b), { tag: 'user', uid: 1000, gid: 1000 },
    { tag: 'additional_gids', gids: [5, 6] }, ...caps,
    sh('id; grep -E "^Cap(Eff|Prm|Bnd)" /proc/self/status; chown 0 /tmp/f && echo chowned')]);
  assert.match(r.out, /^uid=1000 gid=1000 groups=5,6$/m);
  assert.match(r.out, /CapEff:\s+0000000000000000/);
  assert.match(r.out, /CapBnd:\s+0000000000000000/);
  assert.ok(!r.out.includes('chowned'));
  assert.match(r.err, /Operation not permitted/);
  // Root keeps CAP_CHOWN when the plan keeps it.
  const chown = 1n << 0n;
  const r2 = await run(t, b, [...basePlan(b), { tag: 'user', uid: 0, gid: 0 },
    ...(['bounding', 'effective', 'permitted'] as const).map((set): PlanRecord => ({ tag: 'caps', set, mask: chown })),
    sh('chown 0 /tmp/f && echo chowned; grep CapEff /proc/self/status')]);
  assert.ok(r2.out.includes('chowned'), r2.err);
  assert.match(r2.out, /CapEff:\s+0000000000000001/);
});

for (const late of [false, true]) {
  test(`seccomp: an EPERM rule for mkdir (${late ? 'late, with no_new_privs' : 'early'})`, { skip }, async (t) => {
    const b = makeBox(t);
    const rules: PlanRecord[] = ['mkdir', 'mkdirat', 'no_such_syscall'].map((syscall) => (
      { tag: 'seccomp_rule', action: 'errno', errno: 1, syscall, args: [] }));
    const r = await run(t, b, [...basePlan(b),
      { tag: 'seccomp_default', action: 'allow', errno: 0 },
      { tag: 'seccomp_arch', name: 'x86_64' },
      ...rules,
      // a rule with an argument condition loads too (it matches nothing the script does)
      { tag: 'seccomp_rule', action: 'errno', errno: 22, syscall: 'personality',
        args: [{ index: 0, op: 'EQ', value: 0x12345n, valueTwo: 0n }] },
      ...(late ? [{ tag: 'no_new_privs' } as const, { tag: 'seccomp_late' } as const] : []),
      sh('mkdir /tmp/d || echo mkdir-failed; touch /tmp/f && echo touch-ok; grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status')]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /can't create directory '\/tmp\/d': Operation not permitted/);
    assert.ok(r.out.includes('mkdir-failed') && r.out.includes('touch-ok'), r.out);
    assert.match(r.out, /Seccomp:\s+2/);
    assert.match(r.out, new RegExp(`NoNewPrivs:\\s+${late ? 1 : 0}`));
  });
}

test('rlimits apply (ulimit -n)', { skip }, async (t) => {
  const b = makeBox(t);
  const r = await run(t, b, [...basePlan(b), { tag: 'rlimit', resource: 7, soft: 123n, hard: 456n },
    sh('ulimit -n; ulimit -Hn')]);
  assert.equal(r.out, '123\n456\n');
});

test('user namespace with maps: root inside, maps as planned', { skip }, async (t) => {
  const b = makeBox(t);
  const r = await run(t, b, [
    { tag: 'version', version: 1 },
    { tag: 'ns', type: 'user', path: '' },
    { tag: 'uidmap', container: 0, host: 100000, size: 65536 },
    { tag: 'setgroups', value: 'deny' },
    { tag: 'gidmap', container: 0, host: 200000, size: 65536 },
    { tag: 'ns', type: 'pid', path: '' },
    { tag: 'ns', type: 'mnt', path: '' },
    { tag: 'rootfs', path: b.rootfs },
    mount('proc', '/proc', 'proc', MS.NOSUID | MS.NODEV | MS.NOEXEC),
    { tag: 'env', value: 'PATH=/bin' },
    sh('id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; grep CapEff /proc/self/status')]);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
  assert.deepEqual(lines.slice(0, 5), ['0', '0', '0 100000 65536', '0 200000 65536', 'deny']);
  assert.match(r.out, /CapEff:\s+000001ff/);
});

test('wait mode exits with the process status, 128+signal when killed', { skip }, async (t) => {
  const b = makeBox(t);
  const r = await run(t, b, [...basePlan(b), sh('exit 3')]);
  assert.equal(r.code, 3);
  const h = await startExecutor([...basePlan(b), { tag: 'args', args: ['sleep', '100'] }, { tag: 'wait' }],
    { stdio: ['ignore', 'ignore', 'ignore'] });
  t.after(() => killQuietly(h.pid));
  // Killed once it runs sleep: a kill during the executor's own set-up is a set-up failure (exit 1).
  await until('sleep running', () => {
    try {
      return readFileSync(`/proc/${h.pid}/cmdline`, 'utf8').startsWith('sleep');
    } catch {
      return false;
    }
  });
  process.kill(h.pid, 'SIGKILL');
  assert.equal(await h.exited, 128 + 9);
});

test('wait mode forwards signals to the process', { skip }, async (t) => {
  const b = makeBox(t);
  const outPath = join(b.dir, 'out');
  const out = openSync(outPath, 'w');
  t.after(() => closeSync(out));
  const h = await startExecutor([...basePlan(b),
    sh('trap "echo got-term; exit 7" TERM; echo armed; while true; do sleep 0.05; done'), { tag: 'wait' }],
  { stdio: ['ignore', out, out] });
  t.after(() => killQuietly(h.pid));
  await until('the trap', () => readFileSync(outPath, 'utf8').includes('armed'));
  h.executor.kill('SIGTERM');
  assert.equal(await h.exited, 7);
  assert.ok(readFileSync(outPath, 'utf8').includes('got-term'));
});

test('exec into a running container joins its namespaces by path', { skip }, async (t) => {
  const b = makeBox(t);
  writeFileSync(join(b.rootfs, 'marker'), 'in the container\n');
  const first = await startExecutor([...basePlan(b), { tag: 'hostname', name: 'joined' },
    { tag: 'args', args: ['sleep', '100'] }], { stdio: ['ignore', 'ignore', 'ignore'] });
  t.after(() => killQuietly(first.pid));
  const pid = first.pid;
  const plan: Plan = [{ tag: 'version', version: 1 },
    ...(['ipc', 'uts', 'net', 'pid', 'mnt'] as const).map((type): PlanRecord => ({ tag: 'ns', type, path: `/proc/${pid}/ns/${type}` })),
    { tag: 'env', value: 'PATH=/bin' }, { tag: 'cwd', path: '/' },
    sh('hostname; cat /marker; echo pid=$$; ls /proc | grep -c "^[0-9]"')];
  const r = await run(t, b, plan);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split('\n');
  assert.equal(lines[0], 'joined');
  assert.equal(lines[1], 'in the container');
  assert.notEqual(lines[2], 'pid=1');
  assert.ok(Number(lines[3]) <= 4, `only the container's processes are visible: ${r.out}`);
});

test('console socket: the pty master is sent with its name, the slave is the controlling tty', { skip }, async (t) => {
  const b = makeBox(t);
  const helper = join(b.dir, 'recvtty');
  const src = fileURLToPath(new URL('../../../../native/executor/test/recvtty.c', import.meta.url));
  const cc = spawnSync('gcc', ['-O1', '-o', helper, src], { encoding: 'utf8' });
  assert.equal(cc.status, 0, cc.stderr);
  const sock = join(b.dir, 'console.sock');
  const server = spawn(helper, [sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => { if (server.exitCode === null) server.kill('SIGKILL'); });
  let got = '';
  server.stdout.setEncoding('utf8');
  server.stdout.on('data', (d: string) => { got += d; });
  const serverDone = new Promise<void>((r) => server.once('close', () => r()));
  await until('the console socket', () => got.includes('listening'));
  const h = await startExecutor([...basePlan(b), { tag: 'console_socket', path: sock },
    { tag: 'console_size', rows: 30, cols: 100 },
    sh('tty; stty size; [ -t 0 ] && echo stdin-is-tty'), { tag: 'wait' }],
  { stdio: ['ignore', 'ignore', 'ignore'] });
  t.after(() => killQuietly(h.pid));
  assert.equal(await h.exited, 0);
  await serverDone;
  assert.match(got, /^name=\/dev\/pts\/0$/m);
  assert.match(got, /^\/dev\/pts\/0\r?$/m);
  assert.match(got, /^30 100\r?$/m);
  assert.match(got, /stdin-is-tty/);
});

test('console relay: the executor relays its stdio to the pty', { skip }, async (t) => {
  const b = makeBox(t);
  const r = await run(t, b, [...basePlan(b), { tag: 'console_relay' }, { tag: 'console_size', rows: 11, cols: 22 },
    sh('tty; stty size; echo relayed')]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /\/dev\/pts\/0\r\n11 22\r\nrelayed\r\n/);
});

test('hooks: createRuntime answered, createContainer and startContainer run with the state', { skip }, async (t) => {
  const b = makeBox(t);
  const state = JSON.stringify({ ociVersion: '1.2.0', id: 'c1', status: 'creating', pid: 0, bundle: b.dir });
  const created = join(b.dir, 'created.json');
  const events: string[] = [];
  const r = await run(t, b, [...basePlan(b),
    { tag: 'hook_sync', event: 'createRuntime' },
    { tag: 'state', json: state },
    // createContainer: before pivot, host paths resolve
    { tag: 'hook', event: 'createContainer', path: '/bin/sh', timeout: 5,
      args: ['sh', '-c', `cat > ${created}; echo "$HOOKVAR" >> ${created}`], env: ['HOOKVAR=hv'] },
    // startContainer: after pivot, in the container's filesystem
    { tag: 'hook', event: 'startContainer', path: '/bin/sh', timeout: 0,
      args: ['sh', '-c', 'cat > /tmp/started.json'], env: [] },
    sh('echo main')], {
    onHook: async (event) => { events.push(event); },
  });
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(events, ['createRuntime']);
  assert.equal(readFileSync(created, 'utf8'), `${state}hv\n`);
  assert.equal(readFileSync(join(b.rootfs, 'tmp/started.json'), 'utf8'), state);
  assert.equal(r.out, 'main\n');
});

test('hooks: a failing hook, a hook timeout and a refused createRuntime fail the create', { skip }, async (t) => {
  const b = makeBox(t);
  const hook = (args: string[], timeout = 5): PlanRecord[] => [
    { tag: 'state', json: '{}' },
    { tag: 'hook', event: 'createContainer', path: '/bin/sh', timeout, args: ['sh', '-c', ...args], env: [] },
  ];
  const io: ExecutorOptions = { stdio: ['ignore', 'ignore', 'ignore'] };
  await rejectsWith(startExecutor([...basePlan(b), ...hook(['echo boom >&2; exit 7']), sh('true')], io),
    'hook', 0, 'hook createContainer /bin/sh: exited with status 7: boom');
  const started = Date.now();
  await rejectsWith(startExecutor([...basePlan(b), ...hook(['sleep 10'], 1), sh('true')], io),
    'hook', 110, 'hook createContainer /bin/sh: timed out after 1s');
  assert.ok(Date.now() - started < 5000);
  await rejectsWith(startExecutor([...basePlan(b), { tag: 'hook_sync', event: 'createRuntime' }, sh('true')],
    { ...io, onHook: async () => { throw new Error('prestart hook failed'); } }),
  'hook', 0, 'hook createRuntime: prestart hook failed');
});

test('the container process dies when the executor dies before ready', { skip }, async (t) => {
  const b = makeBox(t);
  let childPid = 0;
  let hookSeen!: () => void;
  const atHook = new Promise<void>((r) => { hookSeen = r; });
  const p = startExecutor([...basePlan(b), { tag: 'hook_sync', event: 'createRuntime' }, sh('true')], {
    stdio: ['ignore', 'ignore', 'ignore'],
    onMessage: (m) => { if (m.type === 'pid') childPid = m.pid; },
    onHook: () => { hookSeen(); return new Promise<void>(() => undefined); }, // never answered
  });
  p.catch(() => undefined);
  await atHook;
  t.after(() => killQuietly(childPid));
  assert.ok(childPid > 0 && existsSync(`/proc/${childPid}`));
  // The executor is the ChildProcess behind the promise; find it through the child's parent.
  const ppid = Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${childPid}/status`, 'utf8'))?.[1]);
  process.kill(ppid, 'SIGKILL');
  await until('the container process to die', () => {
    try { return /^State:\s+Z/m.test(readFileSync(`/proc/${childPid}/status`, 'utf8')); } catch { return true; }
  });
  await assert.rejects(p, /before the container process was ready/);
});
