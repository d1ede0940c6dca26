// Benchmark: berthd vs a real dockerd (Debian's docker.io 20.10, its own containerd 1.6 and
// containerd-shim-runc-v2 + runc), both driven by the same docker CLI on the same busybox image
// (saved from berthd, loaded into dockerd). Medians of BENCH_N runs (default 15), the two engines
// interleaved run by run; then the memory of the daemons idle and with 50 running containers, and
// of the per-container shims. Both engines run on temp dirs that are removed at the end.
// Then `docker cp` of a ~200 MB tree (2,000 files of 1 kB to 1 MB, directories, symlinks) into a
// running container and back out, medians of BENCH_CP_N or BENCH_N runs (default 5), each copy
// checked against the source's checksum list. BENCH_ENGINE_ONLY=cp runs only that case.
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fmt, stats, median } from './lib.js';
import { IMAGE, dockerAsync, dockerOk, missingEngine, procs, removeAll, scrubOnSignal, shareImage, startBerthd, startDockerd, stopAll, timed } from './_engines.js';

const N = Number(process.env.BENCH_N ?? 15);
const MANY = 50;
const CONCURRENT = 20;
const LOG_BYTES = 10 * 1024 * 1024;
const ONLY = process.env.BENCH_ENGINE_ONLY ?? '';
const CP_N = Number(process.env.BENCH_CP_N ?? process.env.BENCH_N ?? 5);
const CP_FILES = 2000;
const CP_BYTES = 200 * 1024 * 1024;

// ---- memory ----

/** RSS and PSS of a process in kB (zeros when it is gone). */
function memOf(pid) {
  try {
    const roll = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(roll)?.[1] ?? 0);
    return { rss: kb('Rss'), pss: kb('Pss') };
  } catch {
    return { rss: 0, pss: 0 };
  }
}

/** The daemon and the supervisor it started (its child), with their memory. */
function daemonMemory(eng) {
  const all = procs();
  const sup = all.find((p) => p.ppid === eng.child.pid && p.cmd.slice(0, 2).some((a) => basename(a).replace(/\.js$/, '') === eng.daemonNames[1]));
  if (sup === undefined) throw new Error(`${eng.name}: no ${eng.daemonNames[1]} child found`);
  const d = memOf(eng.child.pid);
  const s = memOf(sup.pid);
  return { daemon: d, supervisor: s, rss: d.rss + s.rss, pss: d.pss + s.pss };
}

function shimMemory(eng) {
  return procs().filter((p) => p.cmd[0]?.endsWith(eng.shim) && p.cmd.some((a) => a.includes(eng.dir))).map((p) => memOf(p.pid));
}

// ---- measuring ----

/** Runs fn(engine, i) N times per engine, the engines alternating first; returns stats per engine. */
function sample(engines, fn, n = N) {
  for (const e of engines) fn(e, -1); // warm-up
  const xs = new Map(engines.map((e) => [e.name, []]));
  for (let i = 0; i < n; i++) {
    const order = i % 2 ? [...engines].reverse() : engines;
    for (const e of order) xs.get(e.name).push(fn(e, i));
  }
  return Object.fromEntries([...xs].map(([k, v]) => [k, stats(v)]));
}

async function sampleAsync(engines, fn, n = N) {
  const xs = new Map(engines.map((e) => [e.name, []]));
  for (let i = 0; i < n; i++) {
    const order = i % 2 ? [...engines].reverse() : engines;
    for (const e of order) xs.get(e.name).push(await fn(e, i));
  }
  const out = {};
  for (const [name, v] of xs) out[name] = Object.fromEntries(Object.keys(v[0]).map((k) => [k, stats(v.map((s) => s[k]))]));
  return out;
}

async function startMany(eng, prefix, count, batch = 10) {
  for (let i = 0; i < count; i += batch) {
    const names = Array.from({ length: Math.min(batch, count - i) }, (_, j) => `${prefix}${i + j}`);
    await Promise.all(names.map((n) => dockerAsync(eng, ['run', '-d', '--name', n, IMAGE, 'sleep', '3600'])));
  }
}


// ---- docker cp of a tree ----

/**
 * A tree of CP_FILES files of 1 kB to 1 MB (log-uniform sizes scaled to about CP_BYTES in all), in
 * 8 directories of 5 subdirectories each, with 50 relative symlinks; the same for every run
 * (a fixed seed). Contents are slices of one random buffer, each file starting at its own offset.
 */
function makeCpTree(dir) {
  let seed = 0x2545f491;
  const next = () => {
    seed ^= seed << 13; seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5; seed >>>= 0;
    return seed / 2 ** 32;
  };
  const raw = Array.from({ length: CP_FILES }, () => Math.exp(Math.log(1024) + next() * Math.log(1024)));
  const scale = CP_BYTES / raw.reduce((a, b) => a + b, 0);
  const sizes = raw.map((x) => Math.max(1024, Math.min(1024 * 1024, Math.round(x * scale))));
  const pool = randomBytes(2 * 1024 * 1024);
  const dirsOf = [];
  for (let a = 0; a < 8; a++) for (let b = 0; b < 5; b++) dirsOf.push(join(`d${a}`, `s${b}`));
  for (const d of dirsOf) mkdirSync(join(dir, d), { recursive: true });
  let bytes = 0;
  const files = [];
  sizes.forEach((size, i) => {
    const rel = join(dirsOf[i % dirsOf.length], `f${i}.bin`);
    const off = Math.floor(next() * (pool.length - size));
    writeFileSync(join(dir, rel), pool.subarray(off, off + size));
    files.push(rel);
    bytes += size;
  });
  for (let i = 0; i < 50; i++) symlinkSync(join('..', '..', files[i * 37]), join(dir, dirsOf[i % dirsOf.length], `l${i}`));
  return { bytes, files: files.length };
}

/** The tree's checksum list: one line per entry (type, mode, size, sha256 or link target), sorted. */
function checksumList(root) {
  const lines = [];
  const walk = (rel) => {
    const p = rel === '' ? root : join(root, rel);
    const st = lstatSync(p);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) lines.push(`${rel} link ${readlinkSync(p)}`);
    else if (st.isFile()) lines.push(`${rel} file ${mode} ${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
    else if (st.isDirectory()) {
      if (rel !== '') lines.push(`${rel} dir ${mode}`);
      for (const n of readdirSync(p)) walk(rel === '' ? n : join(rel, n));
    } else lines.push(`${rel} other`);
  };
  walk('');
  return lines.sort();
}

/** docker cp of the tree in and back out, timed apart; every copy checked against the source. */
async function cpCase(engines, work) {
  const src = join(work, 'tree');
  mkdirSync(src);
  const made = makeCpTree(src);
  const want = checksumList(src);
  const mbs = made.bytes / (1024 * 1024);
  for (const e of engines) dockerOk(e, ['run', '-d', '--name', 'bench-cp', IMAGE, 'sleep', '3600']);
  const once = (e, i) => {
    const inside = `/cp${i < 0 ? 'w' : i}`;
    const back = join(work, `back-${e.name}`);
    rmSync(back, { recursive: true, force: true });
    const inMs = timed(e, ['cp', src, `bench-cp:${inside}`]).ms;
    const outMs = timed(e, ['cp', `bench-cp:${inside}`, back]).ms;
    const got = checksumList(back);
    if (got.length !== want.length || got.some((l, k) => l !== want[k])) {
      const k = got.findIndex((l, j) => l !== want[j]);
      throw new Error(`${e.name}: docker cp changed the tree (${got.length} entries, wanted ${want.length}; first difference: ${got[k] ?? '(none)'} vs ${want[k] ?? '(none)'})`);
    }
    rmSync(back, { recursive: true, force: true });
    dockerOk(e, ['exec', 'bench-cp', 'rm', '-rf', inside]);
    return { inMs, outMs };
  };
  for (const e of engines) once(e, -1); // warm-up
  const s = await sampleAsync(engines, once, CP_N);
  for (const e of engines) dockerOk(e, ['rm', '-f', 'bench-cp']);
  rmSync(src, { recursive: true, force: true });
  return { s, mbs, files: made.files, entries: want.length };
}

export async function run() {
  const missing = missingEngine();
  if (missing !== undefined) { console.log(`\n## engine: skipped (${missing} is not installed)`); return; }

  // Short dirs: shim socket paths under the exec roots must stay within 107 bytes.
  const dirs = [mkdtempSync('/tmp/be-'), mkdtempSync('/tmp/bd-')];
  const engines = [];
  const unguard = scrubOnSignal(dirs);
  const result = { n: N, times: {}, memory: {} };
  try {
    const t0 = Date.now();
    const berth = await startBerthd(dirs[0]);
    engines.push(berth);
    const dockerd = await startDockerd(dirs[1]);
    engines.push(dockerd);
    const d = engines[1];

    // The same image in both: saved from berthd (its built-in busybox), loaded into dockerd.
    const id = shareImage(engines, join(dirs[0], 'busybox.tar'));
    console.log(`\n## engine: berthd vs dockerd ${dockerOk(d, ['version', '--format', '{{.Server.Version}}']).trim()}, docker CLI ${dockerOk(d, ['version', '--format', '{{.Client.Version}}']).trim()}`);
    console.log(`image ${IMAGE} ${id.slice(0, 19)} in both; medians of ${N} runs, the engines alternating (set up in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);

    // What a container gets by default in each (a fact to read the run times with).
    const hostNet = readlinkSync('/proc/self/ns/net');
    const nets = engines.map((e) => {
      const [ns, ...ifs] = dockerOk(e, ['run', '--rm', IMAGE, 'sh', '-c', 'readlink /proc/self/ns/net; ls /sys/class/net']).trim().split('\n');
      return `${e.name}: ${ns === hostNet ? 'the host network namespace' : `its own network namespace (${ifs.join(', ')})`}`;
    });
    console.log(`containers' network: ${nets.join('; ')}`);

    if (ONLY === '') {
      const rows = [];
      const add = (name, s) => { rows.push({ name, ...s }); result.times[name] = s; };

      add('docker version (CLI baseline)', sample(engines, (e) => timed(e, ['version']).ms));
      add('docker run --rm busybox true', sample(engines, (e) => timed(e, ['run', '--rm', IMAGE, 'true']).ms));
      add('docker run -d + docker rm -f', sample(engines, (e) => {
        const r = timed(e, ['run', '-d', IMAGE, 'sleep', '3600'], { keep: true });
        return r.ms + timed(e, ['rm', '-f', r.out.trim()]).ms;
      }));
      for (const e of engines) dockerOk(e, ['run', '-d', '--name', 'bench-exec', IMAGE, 'sleep', '3600']);
      add('docker exec <running> true', sample(engines, (e) => timed(e, ['exec', 'bench-exec', 'true']).ms));
      for (const e of engines) dockerOk(e, ['rm', '-f', 'bench-exec']);

      // 10 MB of log lines, written once, read N times.
      const line = '0123456789'.repeat(7);
      for (const e of engines) {
        dockerOk(e, ['run', '-d', '--name', 'bench-logs', IMAGE, 'sh', '-c', `yes ${line} | head -c ${LOG_BYTES}`]);
        dockerOk(e, ['wait', 'bench-logs']);
        const got = dockerOk(e, ['logs', 'bench-logs']).length;
        if (got !== LOG_BYTES) throw new Error(`${e.name}: docker logs gave ${got} bytes, wanted ${LOG_BYTES}`);
      }
      add('docker logs (10 MB)', sample(engines, (e) => timed(e, ['logs', 'bench-logs']).ms));
      for (const e of engines) dockerOk(e, ['rm', '-f', 'bench-logs']);

      // 20 concurrent runs, then their removal.
      const conc = await sampleAsync(engines, async (e) => {
        const t = process.hrtime.bigint();
        const out = await Promise.all(Array.from({ length: CONCURRENT }, () => dockerAsync(e, ['run', '-d', IMAGE, 'sleep', '3600'])));
        const runMs = Number(process.hrtime.bigint() - t) / 1e6;
        const rmMs = timed(e, ['rm', '-f', ...out.map((s) => s.trim())]).ms;
        return { runMs, rmMs, total: runMs + rmMs };
      });
      const pick = (k) => Object.fromEntries(engines.map((e) => [e.name, conc[e.name][k]]));
      add(`${CONCURRENT} concurrent docker run -d (wall)`, pick('runMs'));
      add(`docker rm -f of those ${CONCURRENT}`, pick('rmMs'));

      // Memory idle (nothing running, after the work above), then with 50 running containers.
      await sleep(2000);
      const idle = Object.fromEntries(engines.map((e) => [e.name, daemonMemory(e)]));
      for (const e of engines) await startMany(e, 'bench-p-', MANY);
      for (const e of engines) {
        const running = dockerOk(e, ['ps', '-q']).split('\n').filter((s) => s !== '').length;
        if (running !== MANY) throw new Error(`${e.name}: ${running} running containers, wanted ${MANY}`);
      }
      add(`docker ps (${MANY} containers)`, sample(engines, (e) => timed(e, ['ps']).ms));
      add(`docker inspect <one> (${MANY} containers)`, sample(engines, (e) => timed(e, ['inspect', 'bench-p-25']).ms));
      await sleep(2000);
      const busy = Object.fromEntries(engines.map((e) => [e.name, daemonMemory(e)]));
      const shims = Object.fromEntries(engines.map((e) => [e.name, shimMemory(e)]));
      for (const e of engines) {
        if (shims[e.name].length !== MANY) throw new Error(`${e.name}: ${shims[e.name].length} shims found, wanted ${MANY}`);
        removeAll(e);
      }

      // ---- report ----
      const base = result.times['docker version (CLI baseline)'];
      console.log('\n| case | berthd median ms | dockerd median ms | ratio berthd/dockerd | ratio less the CLI baseline | berthd min / p90 | dockerd min / p90 |');
      console.log('|---|---:|---:|---:|---:|---:|---:|');
      for (const r of rows) {
        const bm = r.berthd.median;
        const dm = r.dockerd.median;
        // Less the CLI baseline only where both engines spend clearly more than `docker version` does.
        const bn = bm - base.berthd.median;
        const dn = dm - base.dockerd.median;
        const net = r === rows[0] || bn < 20 || dn < 20 ? '-' : fmt(bn / dn, 2);
        console.log(`| ${r.name} | ${fmt(bm)} | ${fmt(dm)} | ${fmt(bm / dm, 2)} | ${net} | ${fmt(r.berthd.min)} / ${fmt(r.berthd.p90)} | ${fmt(r.dockerd.min)} / ${fmt(r.dockerd.p90)} |`);
      }

      const mb = (kb) => fmt(kb / 1024);
      const memRows = [];
      const mrow = (name, bv, dv, unit = 'MB', conv = mb) => memRows.push({ name, berthd: bv, dockerd: dv, unit, conv });
      const sumOf = (xs, k) => xs.reduce((s, m) => s + m[k], 0);
      const medOf = (xs, k) => median(xs.map((m) => m[k]));
      mrow('daemons RSS idle (berthd + berth-containerd | dockerd + containerd)', idle.berthd.rss, idle.dockerd.rss);
      mrow('  of which the engine (berthd | dockerd)', idle.berthd.daemon.rss, idle.dockerd.daemon.rss);
      mrow('  of which the supervisor (berth-containerd | containerd)', idle.berthd.supervisor.rss, idle.dockerd.supervisor.rss);
      mrow('daemons PSS idle', idle.berthd.pss, idle.dockerd.pss);
      mrow(`daemons RSS with ${MANY} running`, busy.berthd.rss, busy.dockerd.rss);
      mrow('  of which the engine', busy.berthd.daemon.rss, busy.dockerd.daemon.rss);
      mrow('  of which the supervisor', busy.berthd.supervisor.rss, busy.dockerd.supervisor.rss);
      mrow(`daemons RSS growth per container`, (busy.berthd.rss - idle.berthd.rss) / MANY, (busy.dockerd.rss - idle.dockerd.rss) / MANY, 'kB', (x) => fmt(x, 0));
      mrow('shim RSS per container, median (berth-shim | containerd-shim-runc-v2)', medOf(shims.berthd, 'rss'), medOf(shims.dockerd, 'rss'), 'kB', (x) => fmt(x, 0));
      mrow('shim PSS per container, median', medOf(shims.berthd, 'pss'), medOf(shims.dockerd, 'pss'), 'kB', (x) => fmt(x, 0));
      mrow(`all ${MANY} shims, RSS`, sumOf(shims.berthd, 'rss'), sumOf(shims.dockerd, 'rss'));
      mrow(`all ${MANY} shims, PSS`, sumOf(shims.berthd, 'pss'), sumOf(shims.dockerd, 'pss'));
      mrow('per-container overhead (daemons growth + shim RSS)', (busy.berthd.rss - idle.berthd.rss) / MANY + medOf(shims.berthd, 'rss'),
        (busy.dockerd.rss - idle.dockerd.rss) / MANY + medOf(shims.dockerd, 'rss'), 'kB', (x) => fmt(x, 0));
      console.log('\n| memory | unit | berthd side | dockerd side | ratio berthd/dockerd |');
      console.log('|---|---|---:|---:|---:|');
      for (const r of memRows) {
        const ratio = r.dockerd > 0 ? fmt(r.berthd / r.dockerd, 2) : '-';
        console.log(`| ${r.name} | ${r.unit} | ${r.conv(r.berthd)} | ${r.conv(r.dockerd)} | ${ratio} |`);
        result.memory[r.name.trim()] = { unit: 'kB', berthd: Math.round(r.berthd), dockerd: Math.round(r.dockerd) };
      }
    }

    // docker cp of a ~200 MB tree, in and out.
    if (ONLY === '' || ONLY === 'cp') {
      const t1 = Date.now();
      const cp = await cpCase(engines, dirs[0]);
      result.cp = { mb: cp.mbs, files: cp.files, entries: cp.entries, n: CP_N };
      console.log(`\ndocker cp of a ${fmt(cp.mbs)} MB tree (${cp.files} files, ${cp.entries} entries with the directories and symlinks) to and from a running container;`);
      console.log(`medians of ${CP_N} runs after a warm-up, every copy checked against the source's checksum list (${((Date.now() - t1) / 1000).toFixed(1)} s in all)`);
      console.log('\n| case | berthd median ms | dockerd median ms | berthd MB/s | dockerd MB/s | ratio berthd/dockerd (time) | berthd min / p90 | dockerd min / p90 |');
      console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
      for (const [k, label] of [['inMs', 'docker cp <tree> ctr:/dir (in)'], ['outMs', 'docker cp ctr:/dir <host dir> (out)']]) {
        const b = cp.s.berthd[k];
        const d = cp.s.dockerd[k];
        result.times[label] = { berthd: b, dockerd: d };
        result.cp[k === 'inMs' ? 'in' : 'out'] = { berthdMBs: cp.mbs / (b.median / 1000), dockerdMBs: cp.mbs / (d.median / 1000), ratio: b.median / d.median };
        console.log(`| ${label} | ${fmt(b.median)} | ${fmt(d.median)} | ${fmt(cp.mbs / (b.median / 1000))} | ${fmt(cp.mbs / (d.median / 1000))} | ${fmt(b.median / d.median, 2)} | ${fmt(b.min)} / ${fmt(b.p90)} | ${fmt(d.min)} / ${fmt(d.p90)} |`);
      }
    }
    console.log('\nTimes are wall times of the docker CLI process (its start included); "less the CLI baseline" subtracts');
    console.log('`docker version` from both sides (shown only where both exceed it by 20 ms). RSS/PSS from /proc/<pid>/smaps_rollup.');
    console.log('The machine is shared: compare ratios, not absolute times. BENCH_JSON=<file> writes the figures as JSON.');
    if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, `${JSON.stringify(result, null, 2)}\n`);
    return result;
  } finally {
    await stopAll(engines, dirs, unguard);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
