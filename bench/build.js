// Benchmark: `docker build` of the same multi-step Dockerfile (9 steps: FROM, ENV, WORKDIR, 2 COPY
// of a ~6 MB context, 3 RUN, CMD), berthd vs a real dockerd's classic builder (Debian's docker.io
// 20.10), both driven by the same docker CLI with DOCKER_BUILDKIT=0 on the same busybox image
// (saved from berthd, loaded into dockerd). Cold builds (--no-cache, the image removed after each)
// and fully cached builds (every step "Using cache"), medians of BENCH_N runs (default 5), the two
// engines interleaved run by run. Both engines run on temp dirs that are removed at the end.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fmt, stats } from './lib.js';
import { IMAGE, dockerEnv, dockerRun, missingEngine, scrubOnSignal, shareImage, startBerthd, startDockerd, stopAll } from './_engines.js';

const N = Number(process.env.BENCH_N ?? 5);

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

// ---- the docker CLI ----

/** docker with the classic builder (DOCKER_BUILDKIT=0); its stdout (a Buffer unless opts.encoding). */
function cli(eng, args, opts = {}) {
  const r = dockerRun(eng, args, { env: dockerEnv(eng, { DOCKER_BUILDKIT: '0' }), encoding: 'buffer', maxBuffer: 512 << 20, timeout: 600_000, ...opts });
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

// ---- measuring ----

export async function run() {
  const missing = missingEngine();
  if (missing !== undefined) { console.log(`\n## build: skipped (${missing} is not installed)`); return; }

  // Short dirs: shim socket paths under the exec roots must stay within 107 bytes.
  const dirs = [mkdtempSync('/tmp/be-'), mkdtempSync('/tmp/bd-')];
  const engines = [];
  const unguard = scrubOnSignal(dirs);
  try {
    // berthd up once its built-in busybox is there; the same image then loaded into dockerd.
    engines.push(await startBerthd(dirs[0], { image: IMAGE }));
    engines.push(await startDockerd(dirs[1]));
    shareImage(engines, join(dirs[0], 'busybox.tar'));

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
    await stopAll(engines, dirs, unguard);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
