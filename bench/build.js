// Benchmark: `docker build` of the same multi-step Dockerfile (9 steps: FROM, ENV, WORKDIR, 2 COPY
// of a ~6 MB context, 3 RUN, CMD), berthd vs a real dockerd's classic builder (Debian's docker.io
// 20.10), both driven by the same docker CLI with DOCKER_BUILDKIT=0 on the same busybox image
// (saved from berthd, loaded into dockerd). Cold builds (--no-cache, the image removed after each)
// and fully cached builds (every step "Using cache"), medians of BENCH_N runs (default 5), the two
// engines interleaved run by run. Both engines run on temp dirs that are removed at the end.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { stats } from './lib.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const BERTHD = join(repo, 'packages/engine/bin/berthd.js');
const DOCKER = '/usr/local/bin/docker';
const DOCKERD = '/usr/sbin/dockerd';
const N = Number(process.env.BENCH_N ?? 5);
const IMAGE = 'busybox:latest';

const DOCKERFILE = `FROM busybox
ENV APP=/app MODE=bench
WORKDIR /app
COPY assets/ /app/assets/
RUN for i in 1 2 3 4; do cat /app/assets/*.bin > /tmp/all$i; done && rm /tmp/all* && echo "$MODE" > /app/mode
COPY src/ /app/src/
RUN find /app/src -type f | wc -l > /app/count && mkdir -p /app/out && cp -r /app/src /app/out/
RUN md5sum /app/assets/*.bin /app/src/m0/f0.txt > /app/sums
CMD ["cat", "/app/sums", "/app/count", "/app/mode"]
`;
const STEPS = DOCKERFILE.trim().split('\n').length;

/** The context: 6 binary files of 1 MB and 400 small text files in 8 directories. */
function makeContext(dir) {
  mkdirSync(join(dir, 'assets'), { recursive: true });
  writeFileSync(join(dir, 'Dockerfile'), DOCKERFILE);
  let bytes = 0;
  for (let i = 0; i < 6; i++) {
    const b = randomBytes(1024 * 1024);
    writeFileSync(join(dir, 'assets', `a${i}.bin`), b);
    bytes += b.length;
  }
  for (let i = 0; i < 400; i++) {
    const d = join(dir, 'src', `m${i % 8}`);
    mkdirSync(d, { recursive: true });
    const text = `file ${i}\n${'x'.repeat(200 + (i * 37) % 2000)}\n`;
    writeFileSync(join(d, `f${i}.txt`), text);
    bytes += text.length;
  }
  return bytes;
}

// ---- processes ----

function pidsOf(dir) {
  const out = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir)) out.push(Number(p));
    } catch { /* gone */ }
  }
  return out;
}

function mountsUnder(dir) {
  const out = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (point === undefined) continue;
    const p = point.replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)));
    if (p === dir || p.startsWith(`${dir}/`)) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Last resort: the instance's processes killed by PID, its mounts undone, its dir removed. */
function scrub(dir) {
  for (const pid of pidsOf(dir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  spawnSync('sleep', ['0.2']);
  for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m]);
  rmSync(dir, { recursive: true, force: true });
  for (const r of readdirSync('/sys/fs/cgroup')) {
    for (const name of ['berth', 'docker']) {
      try { rmdirSync(join('/sys/fs/cgroup', r, name)); } catch { /* absent or in use */ }
    }
  }
}

// ---- the docker CLI ----

function cli(eng, args, opts = {}) {
  const r = spawnSync(DOCKER, ['-H', `unix://${eng.socket}`, ...args], {
    env: { ...process.env, DOCKER_CONFIG: join(eng.dir, '.docker'), DOCKER_BUILDKIT: '0' },
    maxBuffer: 512 << 20, timeout: 600_000, ...opts,
  });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${eng.name}: docker ${args.join(' ')} exited ${r.status ?? r.signal}: ${String(r.stderr).slice(0, 800)}${String(r.stdout).slice(-800)}`);
  return r.stdout;
}

/** One timed build; returns its wall time and how many steps were taken from the cache. */
function timedBuild(eng, ctx, tag, extra = []) {
  const t0 = process.hrtime.bigint();
  const out = cli(eng, ['build', ...extra, '-t', tag, ctx], { encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const cached = out.split('\n').filter((l) => l === ' ---> Using cache').length;
  const steps = out.split('\n').filter((l) => /^Step \d+\/\d+ : /.test(l)).length;
  if (steps !== STEPS) throw new Error(`${eng.name}: ${steps} steps, wanted ${STEPS}:\n${out}`);
  return { ms, cached };
}

// ---- the engines ----

function spawnLogged(cmd, args, logFile) {
  const fd = openSync(logFile, 'a');
  try {
    return spawn(cmd, args, { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
}

async function waitUp(eng, logFile) {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (eng.child.exitCode !== null || eng.child.signalCode !== null) break;
    if (existsSync(eng.socket)) {
      const r = spawnSync(DOCKER, ['-H', `unix://${eng.socket}`, 'image', 'inspect', IMAGE], { stdio: 'ignore', timeout: 10_000, env: { ...process.env, DOCKER_CONFIG: join(eng.dir, '.docker') } });
      // dockerd answers without the image (it is loaded later); berthd has its own.
      if (r.status === 0 || eng.name === 'dockerd') {
        const v = spawnSync(DOCKER, ['-H', `unix://${eng.socket}`, 'version'], { stdio: 'ignore', timeout: 10_000, env: { ...process.env, DOCKER_CONFIG: join(eng.dir, '.docker') } });
        if (v.status === 0) return;
      }
    }
    await sleep(100);
  }
  throw new Error(`${eng.name} did not come up: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
}

async function startBerthd(dir) {
  const eng = { name: 'berthd', dir, socket: join(dir, 'berth.sock') };
  eng.child = spawnLogged(process.execPath, [BERTHD, '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'x'),
    '--pidfile', join(dir, 'berthd.pid'), '-H', `unix://${eng.socket}`], join(dir, 'berthd.log'));
  await waitUp(eng, join(dir, 'berthd.log'));
  return eng;
}

async function startDockerd(dir) {
  const eng = { name: 'dockerd', dir, socket: join(dir, 'docker.sock') };
  writeFileSync(join(dir, 'daemon.json'), '{}\n');
  for (const d of ['data', 'exec']) mkdirSync(join(dir, d));
  eng.child = spawnLogged(DOCKERD, ['--config-file', join(dir, 'daemon.json'), '--data-root', join(dir, 'data'),
    '--exec-root', join(dir, 'exec'), '--pidfile', join(dir, 'docker.pid'), '-H', `unix://${eng.socket}`,
    '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-masq=false'], join(dir, 'dockerd.log'));
  await waitUp(eng, join(dir, 'dockerd.log'));
  return eng;
}

async function stopEngine(eng) {
  try {
    if (eng.child.exitCode === null && eng.child.signalCode === null) {
      try {
        const ids = cli(eng, ['ps', '-aq'], { encoding: 'utf8' }).split('\n').filter((s) => s !== '');
        if (ids.length > 0) cli(eng, ['rm', '-f', ...ids]);
      } catch (err) { console.error(`${eng.name}: removing containers: ${err.message}`); }
      const exited = new Promise((r) => eng.child.once('exit', r));
      process.kill(eng.child.pid, 'SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]))) {
        process.kill(eng.child.pid, 'SIGKILL');
        await exited;
      }
    }
  } finally {
    for (let round = 0; round < 10 && pidsOf(eng.dir).length > 0; round++) await sleep(200);
    scrub(eng.dir);
  }
}

// ---- measuring ----

const fmt = (x, d = 1) => x.toFixed(d);

export async function run() {
  if (!existsSync(join(repo, 'packages/engine/dist/cmd/main.js'))) throw new Error('build first (npm run build)');
  for (const bin of [DOCKER, DOCKERD]) if (!existsSync(bin)) { console.log(`\n## build: skipped (${bin} is not installed)`); return; }

  // Short dirs: shim socket paths under the exec roots must stay within 107 bytes.
  const dirs = [mkdtempSync('/tmp/be-'), mkdtempSync('/tmp/bd-')];
  const engines = [];
  const onSignal = (sig) => { for (const d of dirs) scrub(d); process.exit(sig === 'SIGINT' ? 130 : 143); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    engines.push(await startBerthd(dirs[0]));
    engines.push(await startDockerd(dirs[1]));
    const [berthd, dockerd] = engines;
    cli(dockerd, ['load'], { input: cli(berthd, ['save', IMAGE]) });

    const ctx = join(dirs[0], 'ctx');
    const bytes = makeContext(ctx);
    const t0 = Date.now();

    // Cold: nothing cached (--no-cache), the image removed after each build.
    const cold = new Map(engines.map((e) => [e.name, []]));
    for (let i = -1; i < N; i++) {
      const order = i % 2 ? [...engines].reverse() : engines;
      for (const e of order) {
        const r = timedBuild(e, ctx, 'bench-build:cold', ['--no-cache']);
        if (r.cached !== 0) throw new Error(`${e.name}: a --no-cache build used the cache for ${r.cached} steps`);
        cli(e, ['rmi', 'bench-build:cold']);
        if (i >= 0) cold.get(e.name).push(r.ms);
      }
    }

    // Fully cached: one build fills the cache, then every step comes from it.
    for (const e of engines) timedBuild(e, ctx, 'bench-build:cached');
    const cached = new Map(engines.map((e) => [e.name, []]));
    for (let i = 0; i < N; i++) {
      const order = i % 2 ? [...engines].reverse() : engines;
      for (const e of order) {
        const r = timedBuild(e, ctx, 'bench-build:cached');
        if (r.cached !== STEPS - 1) throw new Error(`${e.name}: a repeated build took ${r.cached} of ${STEPS - 1} steps from the cache`);
        cached.get(e.name).push(r.ms);
      }
    }

    // The two images do the same.
    const outs = engines.map((e) => cli(e, ['run', '--rm', '--network', 'none', 'bench-build:cached'], { encoding: 'utf8' }));
    if (outs[0] !== outs[1]) throw new Error(`the images differ in what they print:\nberthd:\n${outs[0]}\ndockerd:\n${outs[1]}`);

    const result = { n: N, steps: STEPS, contextBytes: bytes, times: {} };
    console.log(`\n## build: docker build (classic builder, DOCKER_BUILDKIT=0) of a ${STEPS}-step Dockerfile, ${fmt(bytes / (1024 * 1024))} MB context`);
    console.log(`berthd vs dockerd 20.10 through the same docker CLI; medians of ${N} runs after a warm-up, engines interleaved (${((Date.now() - t0) / 1000).toFixed(1)} s in all)`);
    console.log('\n| case | berthd median ms | dockerd median ms | ratio berthd/dockerd | berthd min / p90 | dockerd min / p90 |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const [label, xs] of [['cold build (--no-cache)', cold], ['fully cached build', cached]]) {
      const b = stats(xs.get('berthd'));
      const d = stats(xs.get('dockerd'));
      result.times[label] = { berthd: b, dockerd: d, ratio: b.median / d.median };
      console.log(`| ${label} | ${fmt(b.median)} | ${fmt(d.median)} | ${fmt(b.median / d.median, 2)} | ${fmt(b.min)} / ${fmt(b.p90)} | ${fmt(d.min)} / ${fmt(d.p90)} |`);
    }
    console.log('\nWall times of the docker CLI process (context upload included). The machine is shared: compare ratios.');
    console.log('BENCH_JSON=<file> writes the figures as JSON.');
    if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, `${JSON.stringify(result, null, 2)}\n`);
    return result;
  } finally {
    for (const e of engines.reverse()) {
      try { await stopEngine(e); } catch (err) { console.error(`${e.name}: stopping: ${err.message}`); }
    }
    for (const d of dirs) if (existsSync(d)) scrub(d);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
