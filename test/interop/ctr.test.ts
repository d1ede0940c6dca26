/**
 * containerd's runc shim drives the OCI runtime under test through
 * `ctr run --runc-binary <path>`: run, exit codes, errors read back from the
 * runtime's JSON log, a detached task with exec, ps, pause/resume, kill and delete,
 * container metadata, and a tty. Every suite starts its own containerd with root,
 * state and sockets in a temp dir and kills it and its shims afterwards.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  cgroupExists, findProcesses, mountsUnder, hostProblem, inPty, interposeArgvLog, killPids, makeRootfs, makeTempDir,
  removeCgroupTree, rmdirIfEmpty, run, runtimesUnderTest, show, unmountUnder, waitFor,
} from './_harness.js';
import type { Result, Rootfs, Runtime } from './_harness.js';

const HOST_PROBLEM = hostProblem([['containerd', '--version'], ['ctr', '--version'], ['containerd-shim-runc-v2', '-v']]);
const HAVE_SCRIPT = hostProblem([['script', '--version']]) === undefined;

const NAMESPACE = 'berthtest';
/** containerd 1.6 puts shim sockets here whatever its config says. */
const SHIM_SOCKET_DIRS = ['/run/containerd/s', '/run/containerd'];

/** One containerd of our own, and ctr pointed at it. */
class Containerd {
  readonly socket: string;
  readonly runcRoot: string;
  readonly fifoDir: string;
  private child: ChildProcess | undefined;

  constructor(readonly dir: string, readonly runtime: string) {
    this.socket = join(dir, 'containerd.sock');
    this.runcRoot = join(dir, 'runc');
    this.fifoDir = join(dir, 'fifo');
    for (const d of ['root', 'state', 'tmp', 'fifo', 'runc']) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, 'config.toml'), [
      'version = 2',
      `root = ${JSON.stringify(join(dir, 'root'))}`,
      `state = ${JSON.stringify(join(dir, 'state'))}`,
      `temp = ${JSON.stringify(join(dir, 'tmp'))}`,
      `disabled_plugins = ${JSON.stringify([
        'io.containerd.grpc.v1.cri',
        'io.containerd.internal.v1.opt',
        'io.containerd.internal.v1.tracing',
        'io.containerd.tracing.processor.v1.otlp',
        'io.containerd.snapshotter.v1.aufs',
        'io.containerd.snapshotter.v1.btrfs',
        'io.containerd.snapshotter.v1.devmapper',
        'io.containerd.snapshotter.v1.zfs',
      ])}`,
      '',
      '[grpc]',
      `  address = ${JSON.stringify(this.socket)}`,
      '',
      '[ttrpc]',
      `  address = ${JSON.stringify(`${this.socket}.ttrpc`)}`,
      '',
      '[debug]',
      '  address = ""',
      '',
      '[metrics]',
      '  address = ""',
      '',
    ].join('\n'));
  }

  /** Starts containerd and waits until it answers on its socket. */
  async start(): Promise<void> {
    const logFd = openSync(join(this.dir, 'containerd.log'), 'a');
    try {
      // The shim inherits containerd's environment: with TMPDIR here, its
      // temporary process specs and console sockets stay in our dir too.
      this.child = spawn('containerd', ['--config', join(this.dir, 'config.toml')], {
        stdio: ['ignore', logFd, logFd],
        env: { ...process.env, TMPDIR: join(this.dir, 'tmp') },
      });
    } finally {
      closeSync(logFd);
    }
    const child = this.child;
    let exited = false;
    child.once('exit', () => { exited = true; });
    const up = await waitFor(async () => {
      if (exited) return true;
      if (!existsSync(this.socket)) return false;
      return (await run(['ctr', '--address', this.socket, 'version'], { timeoutMs: 5_000 })).code === 0;
    }, 20_000);
    if (exited || !up) {
      const log = readFileSync(join(this.dir, 'containerd.log'), 'utf8').split('\n').slice(-20).join('\n');
      throw new Error(`containerd ${exited ? 'exited' : 'did not answer on its socket within 20 s'}; the end of its log:\n${log}`);
    }
  }

  cli(args: readonly string[], timeoutMs = 30_000): Promise<Result> {
    return run(['ctr', '--address', this.socket, '-n', NAMESPACE, ...args], { timeoutMs });
  }

  /** The `ctr run` command line for a container of the rootfs, before the command. */
  runArgv(flags: readonly string[], rootfs: string, id: string, command: readonly string[]): string[] {
    return [
      'ctr', '--address', this.socket, '-n', NAMESPACE,
      'run', '--runc-binary', this.runtime, '--runc-root', this.runcRoot, '--fifo-dir', this.fifoDir,
      ...flags, '--rootfs', rootfs, id, ...command,
    ];
  }

  run(flags: readonly string[], rootfs: string, id: string, command: readonly string[]): Promise<Result> {
    return run(this.runArgv(flags, rootfs, id, command));
  }

  /** task ls as {id: [pid, status]}. */
  async tasks(): Promise<Map<string, [string, string]>> {
    const r = await this.cli(['task', 'ls']);
    assert.equal(r.code, 0, show(r));
    const out = new Map<string, [string, string]>();
    for (const line of r.stdout.split('\n').slice(1)) {
      const [id, pid, status] = line.trim().split(/\s+/);
      if (id && pid && status) out.set(id, [pid, status]);
    }
    return out;
  }

  async taskStatus(id: string): Promise<string | undefined> {
    return (await this.tasks()).get(id)?.[1];
  }

  /**
   * Removes every container through ctr, stops containerd, kills its shims, and
   * deletes whatever the runtime still holds. Returns what could not be undone.
   */
  async stop(runtimePath: string): Promise<string[]> {
    const problems: string[] = [];
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      const ls = await this.cli(['containers', 'ls', '-q'], 10_000);
      for (const id of ls.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '')) {
        await this.cli(['task', 'kill', '-s', 'SIGKILL', id], 10_000);
        await waitFor(async () => (await this.taskStatus(id).catch(() => undefined)) !== 'RUNNING', 5_000);
        await this.cli(['task', 'delete', '--force', id], 10_000);
        await this.cli(['containers', 'rm', id], 10_000);
      }
      const child = this.child;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
      // containerd writes /tmp/containerd.<pid>.stacks.log when it is told to dump its stacks.
      if (child.pid !== undefined) rmSync(`/tmp/containerd.${child.pid}.stacks.log`, { force: true });
    }
    const shims = findProcesses((a) => (a[0] ?? '').endsWith('containerd-shim-runc-v2') && a.includes(this.socket));
    if (shims.length > 0) {
      killPids(shims);
      await sleep(200);
    }
    if (existsSync(this.runcRoot)) {
      for (const id of readdirSync(this.runcRoot)) {
        const r = await run([runtimePath, '--root', this.runcRoot, 'delete', '--force', id], { timeoutMs: 15_000 });
        if (r.code !== 0) problems.push(`runtime state of ${id} left: ${show(r)}`);
      }
    }
    const mounts = await unmountUnder(this.dir);
    if (mounts.length > 0) problems.push(`mounts left: ${mounts.join(', ')}`);
    return problems;
  }
}

function suite(rt: Runtime): void {
  const skip = HOST_PROBLEM ?? rt.skip;
  describe(`ctr run --runc-binary ${rt.label}`, { skip: skip ?? false, timeout: 150_000 }, () => {
    let dir = '';
    let containerd: Containerd | undefined;
    let rootfs: Rootfs;
    /** The started containerd, for the cases. */
    let ctr: Containerd;
    let cgroupWasThere = true;
    let createdShimDirs: string[] = [];

    before(async () => {
      cgroupWasThere = cgroupExists(`/${NAMESPACE}`);
      createdShimDirs = SHIM_SOCKET_DIRS.filter((d) => !existsSync(d));
      dir = makeTempDir('ctr');
      const c = new Containerd(dir, interposeArgvLog(rt, dir));
      containerd = c;
      rootfs = await makeRootfs(join(dir, 'rootfs'));
      await c.start();
      ctr = c;
    });

    after(async () => {
      if (dir === '') return;
      const problems = containerd ? await containerd.stop(rt.path) : [];
      if (!cgroupWasThere) {
        const left = await removeCgroupTree(`/${NAMESPACE}`);
        if (left.length > 0) problems.push(`cgroups left: ${left.join(', ')}`);
      }
      rmdirIfEmpty(createdShimDirs);
      // Never delete through a mount that would not go away.
      if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
      assert.deepEqual(problems, [], `clean-up of ${dir}`);
    });

    it('run --rm --rootfs prints the output', async () => {
      const r = await ctr.run(['--rm'], rootfs.path, 'echo1', ['/bin/echo', 'hi']);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, 'hi\n', show(r));
    });

    it('passes the exit code through', async () => {
      const r = await ctr.run(['--rm'], rootfs.path, 'exit3', ['/bin/sh', '-c', 'exit 3']);
      assert.equal(r.code, 3, show(r));
    });

    it('a runtime error reaches ctr (the shim reads it from --log log.json)', async () => {
      const r = await ctr.run(['--rm'], rootfs.path, 'missing', ['/nonexistent']);
      assert.notEqual(r.code, 0, show(r));
      assert.match(r.stderr, /OCI runtime create failed: .*nonexistent/, show(r));
      const ls = await ctr.cli(['containers', 'ls', '-q']);
      if (ls.stdout.includes('missing')) await ctr.cli(['containers', 'rm', 'missing']);
    });

    it('sets env and cwd; --read-only makes / read-only', async () => {
      const r = await ctr.run(['--rm', '--env', 'FOO=bar baz', '--cwd', '/tmp', '--read-only'], rootfs.path, 'envcwd', [
        '/bin/sh', '-c', 'echo "$FOO|$(pwd)|$(id -u)"; touch /x 2>&1; echo "rc=$?"',
      ]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /^bar baz\|\/tmp\|0\n/, show(r));
      assert.match(r.stdout, /Read-only file system/, show(r));
      assert.match(r.stdout, /rc=1\n/, show(r));
    });

    it('run -d, task ls/exec/ps/pause/resume/kill/delete, containers ls/info/rm', async () => {
      const id = 'detached';
      const started = await ctr.run(['-d'], rootfs.path, id, ['/bin/sleep', '1000']);
      assert.equal(started.code, 0, show(started));
      const task = (await ctr.tasks()).get(id);
      assert.ok(task, `task ${id} missing from task ls`);
      const [pid, status] = task;
      assert.equal(status, 'RUNNING');
      assert.match(pid, /^\d+$/);
      assert.equal(readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), 'sleep', `the task's pid ${pid} is the container's sleep`);

      const x = await ctr.cli(['task', 'exec', '--fifo-dir', ctr.fifoDir, '--exec-id', 'e1', id, '/bin/echo', 'x']);
      assert.equal(x.code, 0, show(x));
      assert.equal(x.stdout, 'x\n', show(x));
      const five = await ctr.cli(['task', 'exec', '--fifo-dir', ctr.fifoDir, '--exec-id', 'e2', id, '/bin/sh', '-c', 'exit 5']);
      assert.equal(five.code, 5, show(five));

      const user = await ctr.cli(['task', 'exec', '--fifo-dir', ctr.fifoDir, '--exec-id', 'e3', '--user', '1000', '--cwd', '/tmp', id, '/bin/sh', '-c', 'echo "$(id -u) $(pwd)"']);
      assert.equal(user.code, 0, show(user));
      assert.equal(user.stdout, '1000 /tmp\n', show(user));

      const ps = await ctr.cli(['task', 'ps', id]);
      assert.equal(ps.code, 0, show(ps));
      assert.ok(ps.stdout.split('\n').some((l) => l.trim().split(/\s+/)[0] === pid), show(ps));

      const pause = await ctr.cli(['task', 'pause', id]);
      assert.equal(pause.code, 0, show(pause));
      assert.equal(await ctr.taskStatus(id), 'PAUSED');
      const resume = await ctr.cli(['task', 'resume', id]);
      assert.equal(resume.code, 0, show(resume));
      assert.equal(await ctr.taskStatus(id), 'RUNNING');

      const kill = await ctr.cli(['task', 'kill', '-s', 'SIGKILL', id]);
      assert.equal(kill.code, 0, show(kill));
      assert.ok(await waitFor(async () => (await ctr.taskStatus(id)) === 'STOPPED', 10_000), 'task did not reach STOPPED within 10 s');
      const del = await ctr.cli(['task', 'delete', id]);
      assert.equal(del.code, 0, show(del));
      assert.equal((await ctr.tasks()).has(id), false, 'task still listed after task delete');
      assert.equal(existsSync(`/proc/${pid}`), false, `pid ${pid} still exists`);

      const ls = await ctr.cli(['containers', 'ls', '-q']);
      assert.ok(ls.stdout.split('\n').includes(id), show(ls));
      const info = await ctr.cli(['containers', 'info', id]);
      assert.equal(info.code, 0, show(info));
      const parsed = JSON.parse(info.stdout) as { ID?: unknown; Runtime?: { Name?: unknown } };
      assert.equal(parsed.ID, id);
      assert.equal(parsed.Runtime?.Name, 'io.containerd.runc.v2');
      const rm = await ctr.cli(['containers', 'rm', id]);
      assert.equal(rm.code, 0, show(rm));
      const remaining = await ctr.cli(['containers', 'ls', '-q']);
      assert.ok(!remaining.stdout.split('\n').includes(id), show(remaining));
    });

    it('-t gives the process a terminal and passes its exit code', { skip: HAVE_SCRIPT ? false : 'util-linux script is not installed' }, async () => {
      const tty = await run(inPty(ctr.runArgv(['--rm', '-t'], rootfs.path, 'tty1', ['/bin/tty'])));
      assert.equal(tty.code, 0, show(tty));
      assert.match(tty.stdout, /\/dev\/pts\/\d+/, show(tty));
      const code = await run(inPty(ctr.runArgv(['--rm', '-t'], rootfs.path, 'tty2', ['/bin/sh', '-c', 'exit 7'])));
      assert.equal(code.code, 7, show(code));
    });
  });
}

for (const rt of runtimesUnderTest()) suite(rt);
