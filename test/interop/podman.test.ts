/**
 * podman drives the OCI runtime under test through `--runtime <path>`: run, exit
 * codes, detached lifecycle, exec, pause, stop, tty, env/workdir/user, read-only,
 * and an imported image. Every suite has its own storage, run and tmp dirs, its own
 * cgroup parent, and removes all of it afterwards.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  findProcesses, hardLimit, hostProblem, inPty, interposeArgvLog, killPids, makeRootfs, makeTempDir,
  mountsUnder, removeCgroupTree, removeIfCreated, rmdirIfEmpty, run, runtimesUnderTest, show, unmountUnder,
} from './_harness.js';
import type { Result, Rootfs, Runtime } from './_harness.js';

const HOST_PROBLEM = hostProblem([['podman', '--version'], ['conmon', '--version']]);
const HAVE_SCRIPT = hostProblem([['script', '--version']]) === undefined;

/** Paths podman 4.3 writes outside its configured directories whatever the flags. */
const SYSTEM_PATHS = ['/run/containers', '/var/lib/containers', '/dev/shm/libpod_lock'];
/** podman runs the runtime without --root: berth-runc keeps its state in its default root. */
const RUNTIME_ROOTS = ['/run/berth/runc', '/run/berth'];

const IMAGE = 'localhost/berth-interop:latest';

/** One isolated podman installation driving one runtime. */
class Podman {
  readonly storage: string;
  readonly runroot: string;
  readonly cgroupParent: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(readonly dir: string, readonly runtime: string) {
    this.storage = join(dir, 'storage');
    this.runroot = join(dir, 'run');
    this.cgroupParent = `/${basename(dir)}`;
    for (const d of ['tmp', 'imgtmp', 'volumes', 'net']) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, 'containers.conf'), this.containersConf());
    writeFileSync(join(dir, 'storage.conf'), [
      '[storage]',
      'driver = "overlay"',
      `graphroot = ${JSON.stringify(this.storage)}`,
      `runroot = ${JSON.stringify(this.runroot)}`,
      '',
    ].join('\n'));
    this.env = {
      ...process.env,
      CONTAINERS_CONF: join(dir, 'containers.conf'),
      CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
      TMPDIR: join(dir, 'imgtmp'),
    };
  }

  private containersConf(): string {
    // Without CAP_SYS_RESOURCE (as on this machine) podman's default rlimits
    // (nofile 1048576, nproc = pid_max) exceed the hard limits and every runtime
    // fails with EPERM in setrlimit; so ask for the limits we actually have.
    const ulimits: string[] = [];
    const nofile = hardLimit('Max open files');
    if (nofile !== undefined) ulimits.push(`nofile=${nofile}:${nofile}`);
    const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim());
    const nprocHard = hardLimit('Max processes');
    const nproc = Math.min(nprocHard ?? pidMax, pidMax);
    ulimits.push(`nproc=${nproc}:${nproc}`);
    const d = (name: string): string => JSON.stringify(join(this.dir, name));
    return [
      '[containers]',
      `default_ulimits = ${JSON.stringify(ulimits)}`,
      '',
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = ${d('events.log')}`,
      'lock_type = "file"',
      `tmp_dir = ${d('tmp')}`,
      `volume_path = ${d('volumes')}`,
      `static_dir = ${JSON.stringify(join(this.storage, 'libpod'))}`,
      `image_copy_tmp_dir = ${d('imgtmp')}`,
      // podman gives `--log <file> --log-format json` to the runtimes named here and
      // reads their errors from that file, as it does for runc.
      `runtime_supports_json = ${JSON.stringify(['crun', 'runc', basename(this.runtime)])}`,
      '',
      '[network]',
      `network_config_dir = ${d('net')}`,
      '',
    ].join('\n');
  }

  argv(args: readonly string[]): string[] {
    return [
      'podman',
      '--root', this.storage,
      '--runroot', this.runroot,
      '--tmpdir', join(this.dir, 'tmp'),
      '--volumepath', join(this.dir, 'volumes'),
      '--network-config-dir', join(this.dir, 'net'),
      '--cgroup-manager', 'cgroupfs',
      '--events-backend', 'file',
      '--runtime', this.runtime,
      ...args,
    ];
  }

  exec(args: readonly string[], timeoutMs = 30_000): Promise<Result> {
    return run(this.argv(args), { env: this.env, timeoutMs });
  }

  /** `podman run` with this suite's cgroup parent and no network. */
  run(args: readonly string[], timeoutMs = 30_000): Promise<Result> {
    return this.exec(['run', '--cgroup-parent', this.cgroupParent, '--network', 'none', ...args], timeoutMs);
  }

  runInPty(args: readonly string[]): Promise<Result> {
    const argv = this.argv(['run', '--cgroup-parent', this.cgroupParent, '--network', 'none', ...args]);
    return run(inPty(argv), { env: this.env });
  }

  async status(name: string): Promise<string> {
    const r = await this.exec(['inspect', '--format', '{{.State.Status}}', name]);
    assert.equal(r.code, 0, show(r));
    return r.stdout.trim();
  }

  /** Removes every container and image, then whatever podman could not. */
  async cleanUp(runtimePath: string): Promise<string[]> {
    const problems: string[] = [];
    const rm = await this.exec(['rm', '--all', '--force', '--time', '0'], 60_000);
    if (rm.code !== 0) problems.push(`podman rm -af failed: ${show(rm)}`);
    await this.exec(['rmi', '--all', '--force'], 60_000);
    // Whatever podman lost track of: conmons of this installation, the runtime's
    // state for its containers, the processes left in its cgroups.
    killPids(findProcesses((a) => basename(a[0] ?? '') === 'conmon' && a.some((s) => s.startsWith(this.dir))));
    const containersDir = join(this.storage, 'overlay-containers');
    if (existsSync(containersDir)) {
      for (const id of readdirSync(containersDir)) {
        await run([runtimePath, 'delete', '--force', id], { timeoutMs: 15_000 });
      }
    }
    const cgroups = await removeCgroupTree(this.cgroupParent);
    if (cgroups.length > 0) problems.push(`cgroups left: ${cgroups.join(', ')}`);
    const mounts = await unmountUnder(this.dir);
    if (mounts.length > 0) problems.push(`mounts left: ${mounts.join(', ')}`);
    return problems;
  }
}

function lines(s: string): string[] {
  return s.split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

function suite(rt: Runtime): void {
  const skip = HOST_PROBLEM ?? rt.skip;
  describe(`podman --runtime ${rt.label}`, { skip: skip ?? false, timeout: 150_000 }, () => {
    let dir = '';
    let podman: Podman;
    let rootfs: Rootfs;
    let createdSystemPaths: string[] = [];
    let createdRuntimeRoots: string[] = [];

    before(async () => {
      createdSystemPaths = SYSTEM_PATHS.filter((p) => !existsSync(p));
      createdRuntimeRoots = RUNTIME_ROOTS.filter((p) => !existsSync(p));
      dir = makeTempDir('podman');
      podman = new Podman(dir, interposeArgvLog(rt, dir));
      rootfs = await makeRootfs(join(dir, 'rootfs'));
    });

    after(async () => {
      if (dir === '') return;
      const problems = await podman.cleanUp(rt.path);
      removeIfCreated(createdSystemPaths);
      rmdirIfEmpty(createdRuntimeRoots); // only when empty: never a state someone else keeps there
      // Never delete through a mount that would not go away.
      if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
      assert.deepEqual(problems, [], `clean-up of ${dir}`);
    });

    it('run --rm --rootfs prints the output and exits 0', async () => {
      const r = await podman.run(['--rm', '--rootfs', rootfs.path, '/bin/echo', 'hello']);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, 'hello\n', show(r));
    });

    it('passes the exit code through', async () => {
      const r = await podman.run(['--rm', '--rootfs', rootfs.path, '/bin/sh', '-c', 'exit 3']);
      assert.equal(r.code, 3, show(r));
    });

    it('reports a missing executable as exit 127 (podman reads the runtime\'s error text)', async () => {
      const r = await podman.run(['--rm', '--rootfs', rootfs.path, '/nonexistent']);
      assert.equal(r.code, 127, show(r));
      assert.match(r.stderr, /nonexistent/, show(r));
    });

    it('sets env, workdir and user', async () => {
      const r = await podman.run([
        '--rm', '-e', 'FOO=bar baz', '-w', '/tmp', '-u', '1000', '--rootfs', rootfs.path,
        '/bin/sh', '-c', 'echo "$FOO|$(pwd)|$(id -u)|$(id -g)"',
      ]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, 'bar baz|/tmp|1000|1000\n', show(r));
    });

    it('--read-only makes / read-only and keeps /tmp writable', async () => {
      const r = await podman.run([
        '--rm', '--read-only', '--rootfs', rootfs.path,
        '/bin/sh', '-c', 'touch /x 2>&1; echo "rc=$?"; touch /tmp/y && echo tmp-ok',
      ]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /Read-only file system/, show(r));
      assert.match(r.stdout, /rc=1\n/, show(r));
      assert.match(r.stdout, /tmp-ok\n/, show(r));
    });

    it('-t gives the process a terminal; without -t there is none', { skip: HAVE_SCRIPT ? false : 'util-linux script is not installed' }, async () => {
      const tty = await podman.runInPty(['--rm', '-t', '--rootfs', rootfs.path, '/bin/tty']);
      assert.equal(tty.code, 0, show(tty));
      assert.match(tty.stdout, /\/dev\/pts\/\d+/, show(tty));
      const code = await podman.runInPty(['--rm', '-t', '--rootfs', rootfs.path, '/bin/sh', '-c', 'exit 7']);
      assert.equal(code.code, 7, show(code));
      const none = await podman.run(['--rm', '--rootfs', rootfs.path, '/bin/tty']);
      assert.equal(none.code, 1, show(none));
      assert.match(none.stdout, /not a tty/, show(none));
    });

    it('run -d, ps, exec, pause, unpause, stop, rm', async () => {
      const started = await podman.run(['-d', '--name', 'c1', '--rootfs', rootfs.path, '/bin/sleep', '1000']);
      assert.equal(started.code, 0, show(started));
      const id = started.stdout.trim();
      assert.match(id, /^[0-9a-f]{64}$/, show(started));

      const ps = await podman.exec(['ps', '--no-trunc', '--format', '{{.ID}} {{.Names}} {{.Status}}']);
      assert.equal(ps.code, 0, show(ps));
      assert.ok(lines(ps.stdout).some((l) => l.startsWith(`${id} c1 Up`)), show(ps));
      assert.equal(await podman.status('c1'), 'running');

      const x = await podman.exec(['exec', 'c1', '/bin/echo', 'x']);
      assert.equal(x.code, 0, show(x));
      assert.equal(x.stdout, 'x\n', show(x));
      const four = await podman.exec(['exec', 'c1', '/bin/sh', '-c', 'exit 4']);
      assert.equal(four.code, 4, show(four));
      const who = await podman.exec(['exec', '-u', '1000', '-w', '/tmp', '-e', 'E=1', 'c1', '/bin/sh', '-c', 'echo "$E $(pwd) $(id -u)"']);
      assert.equal(who.code, 0, show(who));
      assert.equal(who.stdout, '1 /tmp 1000\n', show(who));

      const pause = await podman.exec(['pause', 'c1']);
      assert.equal(pause.code, 0, show(pause));
      assert.equal(await podman.status('c1'), 'paused');
      const unpause = await podman.exec(['unpause', 'c1']);
      assert.equal(unpause.code, 0, show(unpause));
      assert.equal(await podman.status('c1'), 'running');

      // sleep as PID 1 ignores SIGTERM: podman sends it, waits 1 s, then SIGKILL.
      const stop = await podman.exec(['stop', '-t', '1', 'c1']);
      assert.equal(stop.code, 0, show(stop));
      assert.equal(await podman.status('c1'), 'exited');
      const exitCode = await podman.exec(['inspect', '--format', '{{.State.ExitCode}}', 'c1']);
      assert.equal(exitCode.stdout.trim(), '137', show(exitCode));

      const rm = await podman.exec(['rm', 'c1']);
      assert.equal(rm.code, 0, show(rm));
      const all = await podman.exec(['ps', '-a', '--format', '{{.Names}}']);
      assert.equal(all.code, 0, show(all));
      assert.ok(!lines(all.stdout).includes('c1'), show(all));
    });

    it('runs an image made by podman import', async () => {
      const tar = join(dir, 'rootfs.tar');
      const made = await run(['tar', '-C', rootfs.path, '-cf', tar, '.']);
      assert.equal(made.code, 0, show(made));
      const imported = await podman.exec(['import', '-q', tar, IMAGE], 60_000);
      assert.equal(imported.code, 0, show(imported));
      const r = await podman.run(['--rm', IMAGE, '/bin/sh', '-c', 'echo from-image; id -u']);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, 'from-image\n0\n', show(r));
    });
  });
}

for (const rt of runtimesUnderTest()) suite(rt);
