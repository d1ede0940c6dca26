// The container views against real processes: top and stats of a container
// run by berth-runc (busybox rootfs of native/out/rootfs, its own cgroup),
// and logs followed while another process appends to the log and rotates it.
// Root only. Every container, process, cgroup and temp dir is removed in t.after.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type * as Views from '../../packages/engine/src/views/index.js';

// test/dist/engine/views.test.js -> the repository root
const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const views = (await import(pathToFileURL(join(REPO_ROOT, 'packages/engine/dist/views/index.js')).href)) as typeof Views;

const RUNC = join(REPO_ROOT, 'packages/runtime/bin/berth-runc.js');
const ROOTFS = join(REPO_ROOT, 'native/out/rootfs');
const isRoot = process.getuid?.() === 0;
const containerSkip = !isRoot
  ? 'needs root'
  : !existsSync(ROOTFS)
    ? `no ${ROOTFS} (make -C native)`
    : !existsSync(join(REPO_ROOT, 'packages/runtime/dist/cli'))
      ? 'berth-runc is not built'
      : false;

function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Container {
  id: string;
  cgroupsPath: string;
  pid: number;
}

/**
 * A container running `script` under sh, with its own cgroup (cgroupsPath
 * /berth-views-…) and a 64 MiB memory limit. Killed and deleted after the test.
 */
function runContainer(t: TestContext, script: string): Container {
  const dir = mkdtempSync(join(tmpdir(), 'berth-views-ctr-'));
  let id = '';
  const root = join(dir, 'state');
  // the container first (its state is in dir), then what it leaves
  t.after(async () => {
    if (id !== '') {
      spawnSync(process.execPath, [RUNC, '--root', root, 'kill', id, 'KILL'], { stdio: 'ignore' });
      const r = spawnSync(process.execPath, [RUNC, '--root', root, 'delete', '--force', id], { stdio: 'ignore' });
      if (r.status !== 0) assert.fail(`berth-runc delete --force ${id}: exit ${r.status}`);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const bundle = join(dir, 'bundle');
  mkdirSync(root);
  mkdirSync(bundle);
  cpSync(ROOTFS, join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  // The container inherits the runtime's stdio: nothing is piped (a pipe would
  // stay open as long as the container); failures are in the runtime's log.
  const logFile = join(dir, 'runtime.log');
  const runc = (args: string[]): void => {
    const r = spawnSync(process.execPath, [RUNC, '--root', root, '--log', logFile, ...args], { cwd: bundle, stdio: 'ignore' });
    if (r.status !== 0) {
      const logText = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      assert.fail(`berth-runc ${args.join(' ')}: exit ${r.status}: ${logText}`);
    }
  };
  runc(['spec']);
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
    process: { terminal: boolean; args: string[] };
    linux: { cgroupsPath?: string; resources?: unknown };
  };
  id = `views-${process.pid}-${randomBytes(3).toString('hex')}`;
  const cgroupsPath = `/berth-views-${id}`;
  config.process.terminal = false;
  config.process.args = ['sh', '-c', script];
  config.linux.cgroupsPath = cgroupsPath;
  config.linux.resources = { memory: { limit: 64 * 1024 * 1024 } };
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  const pidFile = join(dir, 'pid');
  runc(['create', '--bundle', bundle, '--pid-file', pidFile, id]);
  runc(['start', id]);
  return { id, cgroupsPath, pid: Number(readFileSync(pidFile, 'utf8').trim()) };
}

async function eventually<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}: last ${JSON.stringify(v)}`);
    await sleep(50);
  }
}

test('top and containerPids of a berth-runc container', { skip: containerSkip }, async (t) => {
  const c = runContainer(t, 'sleep 1000 & sleep 1001 & exec sleep 1002');
  t.after(async () => {
    // the cgroup went with the container
    assert.deepEqual(await views.containerPids(c.cgroupsPath), []);
  });
  const pids = await eventually('three processes', () => views.containerPids(c.cgroupsPath), (p) => p.length === 3);
  assert.ok(pids.includes(c.pid), 'the init process is one of them');
  const ef = await views.top(pids, '-ef');
  assert.deepEqual(ef.Titles, ['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD']);
  assert.deepEqual(ef.Processes.map((p) => p[7]).sort(), ['sleep 1000', 'sleep 1001', 'sleep 1002']);
  // host pids, as docker top shows them
  assert.deepEqual(ef.Processes.map((p) => Number(p[1])).sort((a, b) => a - b), pids);
  const init = ef.Processes.find((p) => p[7] === 'sleep 1002');
  assert.equal(init?.[1], String(c.pid));
  const custom = await views.top(pids, '-o pid,user,args');
  assert.deepEqual(custom.Titles, ['PID', 'USER', 'COMMAND']);
  assert.equal(custom.Processes.length, 3);
});

test('stats of a berth-runc container that keeps a CPU busy', { skip: containerSkip }, async (t) => {
  const c = runContainer(t, 'sleep 1000 & while :; do :; done');
  await eventually('two processes', () => views.containerPids(c.cgroupsPath), (p) => p.length === 2);
  const samples: Views.Stats[] = [];
  const ac = new AbortController();
  for await (const s of views.streamStats({ cgroupsPath: c.cgroupsPath, pid: c.pid, name: `/${c.id}`, id: c.id }, {
    stream: true, oneShot: false, signal: ac.signal, intervalMs: 300,
  })) {
    samples.push(s);
    if (samples.length === 3) ac.abort();
  }
  const [first, , last] = samples;
  assert.ok(first !== undefined && last !== undefined);
  assert.equal(first.preread, views.ZERO_TIME);
  assert.equal(last.name, `/${c.id}`);
  assert.deepEqual(last.precpu_stats, samples[1]?.cpu_stats);
  const cpuDelta = last.cpu_stats.cpu_usage.total_usage - last.precpu_stats.cpu_usage.total_usage;
  const systemDelta = (last.cpu_stats.system_cpu_usage ?? 0) - (last.precpu_stats.system_cpu_usage ?? 0);
  const cpus = last.cpu_stats.online_cpus ?? 1;
  // docker's CPU %: a busy loop uses about one CPU of `cpus`
  const percent = (cpuDelta / systemDelta) * cpus * 100;
  assert.ok(percent > 50 && percent < 150, `CPU ${percent.toFixed(1)}% for a busy loop`);
  assert.equal(last.memory_stats.limit, 64 * 1024 * 1024);
  assert.ok((last.memory_stats.usage ?? 0) > 0);
  assert.equal(last.pids_stats.current, 2);
  // a network namespace of its own with only lo: no networks
  assert.equal(last.networks, undefined);
});

test('logs follow a log that another process appends to and rotates', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const dir = tempDir(t, 'berth-views-logs-');
  const log = join(dir, 'c-json.log');
  const lines = 60;
  // json-file lines as the shim writes them, a rotation (max 3 files) every 10 lines
  const script = `
    i=1
    while [ $i -le ${lines} ]; do
      s=stdout; [ $((i % 4)) -eq 0 ] && s=stderr
      printf '{"log":"line %d\\\\n","stream":"%s","time":"%s"}\\n' $i $s "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" >> "$1"
      if [ $((i % 10)) -eq 0 ]; then
        [ -e "$1.1" ] && mv "$1.1" "$1.2"
        mv "$1" "$1.1"
        : > "$1"
      fi
      i=$((i + 1))
      sleep 0.01
    done`;
  writeFileSync(log, '');
  const child = spawn('sh', ['-c', script, 'writer', log], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let running = true;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    running = false;
    resolve(code);
  }));
  t.after(async () => {
    if (running && child.pid !== undefined) {
      process.kill(child.pid, 'SIGKILL');
      await exited;
    }
  });
  const chunks: Buffer[] = [];
  await views.streamLogs({
    path: log, maxFiles: 3, stdout: true, stderr: true, timestamps: true, follow: true, tty: false,
    isRunning: () => running,
    signal: AbortSignal.timeout(30_000),
    write: async (c) => {
      chunks.push(c);
    },
  });
  assert.equal(await exited, 0, stderr);
  const all = Buffer.concat(chunks);
  const got: Array<{ stream: number; text: string }> = [];
  for (let off = 0; off < all.length;) {
    const len = all.readUInt32BE(off + 4);
    got.push({ stream: all[off] as number, text: all.subarray(off + 8, off + 8 + len).toString() });
    off += 8 + len;
  }
  assert.equal(got.length, lines, 'every line once, across rotations');
  got.forEach((g, i) => {
    const n = i + 1;
    assert.equal(g.stream, n % 4 === 0 ? 2 : 1);
    assert.match(g.text, new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{9}Z line ${n}\\n$`));
  });
});
