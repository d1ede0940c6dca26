// Benchmark (issue 4): pulling a ~200 MB image of 5 layers from a docker-registry on 127.0.0.1.
// berth-containerd through ctr (client-side pull over our gRPC services) and through the
// server-side pullImage, skopeo copy to a directory (download + hash + write, no unpack),
// a real containerd 1.6 through ctr, and dockerd (Debian's docker.io) when installed.
// Every run starts from empty storage; medians of BENCH_PULL_N runs (default 3).
// Then where berth's time goes: the download phase and the extraction phase from pullImage's
// progress events, and the hash and inflate rates of the same blobs measured alone.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync, gunzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { median, which } from './lib.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.env.BENCH_PULL_N ?? 3);
const LAYERS = 5;
const LAYER_MB = Number(process.env.BENCH_PULL_LAYER_MB ?? 40);
const DAEMON_BIN = join(repo, 'packages/supervisor/bin/berth-containerd.js');
const CTR = '/usr/bin/ctr';

const sha256 = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function runOk(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 600_000, maxBuffer: 64 << 20, ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${String(r.stderr).slice(0, 600)}`);
  return r.stdout;
}

/** Run a command asynchronously (the in-process daemon must keep answering); rejects on failure. */
function runAsync(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c) => { err += c; });
    child.on('error', reject);
    child.on('exit', (code, sig) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? sig}: ${err.slice(0, 600)}`))));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function socketUp(path) {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

async function waitFor(what, pred, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A child process we started, stopped by its PID (SIGTERM, then SIGKILL). */
function startChild(cmd, args, logPath) {
  const fd = openSync(logPath, 'a');
  let child;
  try {
    child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    child,
    alive: () => child.exitCode === null && child.signalCode === null,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      process.kill(child.pid, 'SIGTERM');
      const done = await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)]);
      if (!done) {
        process.kill(child.pid, 'SIGKILL');
        await exited;
      }
    },
  };
}

/** Unmount whatever is still mounted at or below dir (deepest first). */
function unmountUnder(dir) {
  const points = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((l) => l.split(' ')[4]).filter((p) => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const p of points) spawnSync('umount', ['-l', p]);
}

// ---- the image ----

function octal(n, width) {
  return `${n.toString(8).padStart(width - 1, '0')}\0`;
}

function tarHeader(name, size, type) {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(type === '5' ? 0o755 : 0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(Math.floor(Date.now() / 1000), 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(type, 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** One layer: files of random bytes (60%) and of repetitive text (40%), in 1-4 MB files. */
function makeLayer(i) {
  const parts = [tarHeader(`data${i}/`, 0, '5')];
  let left = LAYER_MB << 20;
  let n = 0;
  while (left > 0) {
    const size = Math.min(left, (1 + (n % 4)) << 20);
    const line = `layer ${i} file ${n} `;
    const body = n % 5 < 3 ? randomBytes(size) : Buffer.from(line.repeat(Math.ceil(size / line.length))).subarray(0, size);
    parts.push(tarHeader(`data${i}/f${n}`, size, '0'), body, Buffer.alloc((512 - (size % 512)) % 512));
    left -= size;
    n++;
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** An OCI layout with the image; returns its sizes and blobs. */
function makeImage(dir) {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (b) => {
    const d = sha256(b);
    writeFileSync(join(blobs, d.slice(7)), b);
    return d;
  };
  const layers = [];
  const diffIds = [];
  let raw = 0;
  for (let i = 0; i < LAYERS; i++) {
    const tar = makeLayer(i);
    raw += tar.length;
    diffIds.push(sha256(tar));
    const gz = gzipSync(tar, { level: 6 });
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: put(gz), size: gz.length });
  }
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const config = Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: diffIds } }));
  const configDesc = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: put(config), size: config.length };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDesc, layers }));
  const manifestDesc = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: put(manifest), size: manifest.length };
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifestDesc, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }));
  return { layers, raw, compressed: layers.reduce((s, l) => s + l.size, 0), blobDir: blobs };
}

// ---- the registry ----

async function startRegistry(dir) {
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.yml'), [
    'version: 0.1', 'log:', '  level: error', 'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'data')}`,
    '  maintenance:', '    uploadpurging:', '      enabled: false',
    'http:', `  addr: 127.0.0.1:${port}`, `  secret: ${randomBytes(16).toString('hex')}`, '',
  ].join('\n'));
  const proc = startChild('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], join(dir, 'registry.log'));
  await waitFor('docker-registry', () => new Promise((resolve) => {
    if (!proc.alive()) throw new Error(`docker-registry exited: ${readFileSync(join(dir, 'registry.log'), 'utf8')}`);
    const req = http.get({ host: '127.0.0.1', port, path: '/v2/', agent: false }, (res) => { res.resume(); resolve(true); });
    req.on('error', () => resolve(false));
  }));
  return { domain: `127.0.0.1:${port}`, stop: proc.stop };
}

// ---- the contenders ----

async function berthDaemon(base) {
  const d = { root: join(base, 'root'), state: join(base, 'state'), address: join(base, 'state', 'c.sock') };
  mkdirSync(d.state, { recursive: true });
  const proc = startChild(process.execPath, [DAEMON_BIN, '--address', d.address, '--root', d.root, '--state', d.state], join(base, 'daemon.log'));
  await waitFor('berth-containerd', async () => {
    if (!proc.alive()) throw new Error(`berth-containerd exited: ${readFileSync(join(base, 'daemon.log'), 'utf8').slice(-2000)}`);
    return existsSync(d.address) && socketUp(d.address);
  });
  return { address: d.address, stop: proc.stop };
}

async function realContainerd(base) {
  const address = join(base, 'containerd.sock');
  for (const x of ['root', 'state', 'tmp']) mkdirSync(join(base, x));
  writeFileSync(join(base, 'config.toml'), [
    'version = 2',
    `root = ${JSON.stringify(join(base, 'root'))}`,
    `state = ${JSON.stringify(join(base, 'state'))}`,
    `temp = ${JSON.stringify(join(base, 'tmp'))}`,
    `disabled_plugins = ${JSON.stringify(['io.containerd.grpc.v1.cri', 'io.containerd.internal.v1.opt', 'io.containerd.internal.v1.tracing',
      'io.containerd.tracing.processor.v1.otlp', 'io.containerd.snapshotter.v1.aufs', 'io.containerd.snapshotter.v1.btrfs',
      'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.zfs'])}`,
    '[grpc]', `  address = ${JSON.stringify(address)}`,
    '[ttrpc]', `  address = ${JSON.stringify(`${address}.ttrpc`)}`,
    '[debug]', '  address = ""', '[metrics]', '  address = ""', '',
  ].join('\n'));
  const proc = startChild('containerd', ['--config', join(base, 'config.toml')], join(base, 'containerd.log'));
  await waitFor('containerd', async () => {
    if (!proc.alive()) throw new Error(`containerd exited: ${readFileSync(join(base, 'containerd.log'), 'utf8').slice(-2000)}`);
    return socketUp(address);
  });
  return { address, stop: proc.stop };
}

async function dockerd(base, registry) {
  const sock = join(base, 'docker.sock');
  const proc = startChild('dockerd', [
    '--data-root', join(base, 'data'), '--exec-root', join(base, 'exec'), '--pidfile', join(base, 'dockerd.pid'),
    '-H', `unix://${sock}`, '--insecure-registry', registry, '--bridge=none', '--iptables=false', '--ip6tables=false',
    '--ip-masq=false', '--storage-driver=overlay2',
  ], join(base, 'dockerd.log'));
  await waitFor('dockerd', async () => {
    if (!proc.alive()) throw new Error(`dockerd exited: ${readFileSync(join(base, 'dockerd.log'), 'utf8').slice(-2000)}`);
    return existsSync(sock) && spawnSync('docker', ['-H', `unix://${sock}`, 'version'], { stdio: 'ignore' }).status === 0;
  }, 60_000);
  return { sock, stop: proc.stop };
}

/** Time one pull N times, each on fresh storage made by setup(base) and removed after. */
async function measure(name, setup, pull) {
  const samples = [];
  for (let i = 0; i < N; i++) {
    const base = mkdtempSync(join(tmpdir(), 'berth-bench-pull-'));
    let ctx;
    try {
      ctx = await setup(base);
      const t0 = performance.now();
      await pull(ctx, base);
      samples.push(performance.now() - t0);
    } finally {
      try {
        await ctx?.stop?.();
      } finally {
        unmountUnder(base);
        rmSync(base, { recursive: true, force: true });
      }
    }
  }
  return { name, ms: median(samples), samples };
}

export async function run() {
  console.log('\n## pull: a 5-layer image from a docker-registry on 127.0.0.1');
  for (const bin of ['docker-registry', 'skopeo', 'ctr']) {
    if (which(bin) === undefined) {
      console.log(`(skipped: ${bin} is not installed)`);
      return;
    }
  }
  const work = mkdtempSync(join(tmpdir(), 'berth-bench-pull-image-'));
  let registry;
  try {
    const t0 = performance.now();
    const image = makeImage(join(work, 'oci'));
    registry = await startRegistry(join(work, 'registry'));
    const ref = `${registry.domain}/bench/big:latest`;
    runOk('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${join(work, 'oci')}:latest`, `docker://${ref}`]);
    const mb = image.compressed / 1e6;
    console.log(`image: ${LAYERS} layers, ${(image.raw / 1e6).toFixed(0)} MB of tar, ${mb.toFixed(0)} MB gzipped (built and pushed in ${((performance.now() - t0) / 1000).toFixed(1)} s); median of ${N}`);

    const results = [];
    const ns = 'bench';
    results.push(await measure('berth-containerd: ctr pull', (b) => berthDaemon(b),
      (d) => runAsync(CTR, ['--address', d.address, '--namespace', ns, 'images', 'pull', '--plain-http', ref])));

    const { Daemon, pullDepsOf, pullImage } = await import(join(repo, 'packages/supervisor/dist/index.js'));
    const { Logger } = await import(join(repo, 'packages/base/dist/index.js'));
    let events = [];
    results.push(await measure('berth-containerd: pullImage', async (b) => {
      const daemon = await Daemon.start({ root: join(b, 'root'), state: join(b, 'state'), address: join(b, 'state', 'c.sock'), log: new Logger({ level: 'error', file: join(b, 'log') }) });
      return { daemon, stop: () => daemon.stop() };
    }, async (ctx) => {
      events = [];
      await pullImage(pullDepsOf(ctx.daemon.plugins), ns, ref, { onProgress: (ev) => events.push(ev) });
    }));
    const breakdown = events;

    results.push(await measure('skopeo copy to dir (no unpack)', async () => ({}),
      (_c, b) => runAsync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `dir:${join(b, 'out')}`])));

    if (which('containerd') !== undefined) {
      results.push(await measure('containerd 1.6: ctr pull', (b) => realContainerd(b),
        (d) => runAsync(CTR, ['--address', d.address, '--namespace', ns, 'images', 'pull', '--plain-http', ref])));
    } else {
      console.log('(containerd is not installed: no comparison with it)');
    }
    if (which('dockerd') !== undefined && which('docker') !== undefined) {
      results.push(await measure('dockerd: docker pull', (b) => dockerd(b, registry.domain),
        (d) => runAsync('docker', ['-H', `unix://${d.sock}`, 'pull', '-q', ref])));
    } else {
      console.log('(dockerd is not installed: no comparison with it)');
    }

    const base = results.find((r) => r.name === 'containerd 1.6: ctr pull') ?? results[0];
    console.log(`| case | median s | runs s | MB/s (gzipped) | ratio vs ${base.name} |`);
    console.log('|---|---:|---|---:|---:|');
    for (const r of results) {
      console.log(`| ${r.name} | ${(r.ms / 1000).toFixed(2)} | ${r.samples.map((s) => (s / 1000).toFixed(2)).join(' ')} | ${(mb / (r.ms / 1000)).toFixed(0)} | ${(r.ms / base.ms).toFixed(2)} |`);
    }

    // Where berth's time goes (the last pullImage run).
    const first = breakdown[0]?.at ?? 0;
    const last = breakdown[breakdown.length - 1]?.at ?? 0;
    const layerDone = breakdown.filter((e) => e.kind === 'layer' && e.status === 'done').map((e) => e.at);
    const downloadStart = breakdown.find((e) => e.kind === 'layer' && e.status === 'downloading')?.at ?? first;
    const downloadEnd = Math.max(...layerDone);
    let extractMs = 0;
    const started = new Map();
    for (const e of breakdown) {
      if (e.status === 'extracting') started.set(e.digest, e.at);
      if (e.status === 'extracted') extractMs += e.at - (started.get(e.digest) ?? e.at);
    }
    const firstExtract = breakdown.find((e) => e.status === 'extracting')?.at ?? downloadEnd;
    let hashBlobMs = 0;
    let hashTarMs = 0;
    let inflateMs = 0;
    for (const l of image.layers) {
      const blob = readFileSync(join(image.blobDir, l.digest.slice(7)));
      let t = performance.now();
      createHash('sha256').update(blob).digest();
      hashBlobMs += performance.now() - t;
      t = performance.now();
      const tar = gunzipSync(blob);
      inflateMs += performance.now() - t;
      t = performance.now();
      createHash('sha256').update(tar).digest();
      hashTarMs += performance.now() - t;
    }
    console.log('\nwhere berth\'s pullImage spends its time (last run):');
    console.log(`- resolve + manifests + config: ${(downloadStart - first).toFixed(0)} ms`);
    console.log(`- layer downloads (parallel, streamed through sha256 into the content store): ${(downloadEnd - downloadStart).toFixed(0)} ms, ${(mb / ((downloadEnd - downloadStart) / 1000)).toFixed(0)} MB/s`);
    console.log(`- extraction (in layer order, overlapping the downloads from ${(firstExtract - downloadStart).toFixed(0)} ms): ${extractMs.toFixed(0)} ms summed over layers, ${(last - downloadEnd).toFixed(0)} ms after the last download`);
    console.log(`- measured alone on the same blobs: sha256 of the gzipped blobs ${hashBlobMs.toFixed(0)} ms (part of the download phase); inflate (zlib) ${inflateMs.toFixed(0)} ms and sha256 of the tar for the diffID ${hashTarMs.toFixed(0)} ms (part of extraction); the rest of extraction (tar parsing, file writes, fsync) ~${Math.max(0, extractMs - inflateMs - hashTarMs).toFixed(0)} ms`);
  } finally {
    await registry?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
