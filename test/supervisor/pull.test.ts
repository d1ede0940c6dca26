/**
 * Server-side pull (pullImage) in a berth-containerd started in this process,
 * from Debian's docker-registry through a proxy that counts blob requests
 * and can corrupt one: content, snapshots keyed by chain ID, labels as
 * containerd's pull leaves them, the image record, then `ctr run` of the
 * pulled image. A second pull downloads nothing; a corrupted bottom layer
 * and a hostile layer commit nothing. A layer held half-way by a proxy is
 * already being extracted (single pass) and is committed only once whole;
 * gzip, zstd and plain layers extract in the worker. Root only.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { ErrorKind, Logger, isKind } from '@berth/base';
import { Daemon, pluginType, pullDepsOf, pullImage } from '@berth/supervisor';
import type { PullDeps, PullImageProgress } from '@berth/supervisor';
import { CTR } from './_daemon.js';
import { TEST_ROOTFS } from './_tasks.js';
import { chainIdsOf, rawTar, sha256, skopeoPush, startProxy, startRegistry, teardownSupervisor, writeLayout } from './_registry.js';
import type { CorruptingProxy, LayoutImage, Registry } from './_registry.js';

const run = promisify(execFile);
const NS = `pull${process.pid}`;
const base = mkdtempSync(join(tmpdir(), 'berth-pull-'));
const paths = { root: join(base, 'root'), state: join(base, 'state'), address: join(base, 'state', 'containerd.sock') };
let registry: Registry | undefined;
let proxy: CorruptingProxy | undefined;
let daemon: Daemon | undefined;

before(async () => {
  registry = await startRegistry();
  proxy = await startProxy(registry.domain);
  daemon = await Daemon.start({ ...paths, log: new Logger({ level: 'warn', file: join(base, 'daemon.log') }) });
});

after(async () => {
  try {
    await teardownSupervisor({ daemon, state: paths.state, base, namespaces: [NS], fifos: ['pulled1', 'pulled2'] });
  } finally {
    await proxy?.stop();
    await registry?.stop();
  }
});

function deps(): PullDeps {
  if (daemon === undefined) throw new Error('the daemon did not start');
  return pullDepsOf(daemon.plugins);
}

function px(): CorruptingProxy {
  if (proxy === undefined) throw new Error('the proxy did not start');
  return proxy;
}

/** ctr against the in-process daemon (asynchronous: the daemon answers on this event loop). */
async function ctrAsync(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(CTR, ['--address', paths.address, '--namespace', NS, ...args], { timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : 128, stdout: err.stdout ?? '', stderr: err.stderr ?? String(e) };
  }
}

/** The test rootfs as a tar, then two small layers on top (the second replaces a file of the first). */
function threeLayers(tag: string): Buffer[] {
  const r = spawnSync('tar', ['-C', TEST_ROOTFS, '--numeric-owner', '-cf', '-', '.'], { maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`tar of ${TEST_ROOTFS}: ${r.stderr.toString()}`);
  return [
    r.stdout,
    rawTar([{ name: 'etc/berth/', type: 'dir' }, { name: 'etc/berth/one', type: 'file', content: `one ${tag}\n` }, { name: 'etc/berth/which', type: 'file', content: 'layer 1\n' }]),
    rawTar([{ name: 'etc/berth/two', type: 'file', content: `two ${tag}\n` }, { name: 'etc/berth/which', type: 'file', content: 'layer 2\n' }]),
  ];
}

function publish(name: string, layers: readonly Buffer[]): LayoutImage {
  const dir = join(base, `layout-${name.replace(/[^a-z0-9]/g, '-')}`);
  const img = writeLayout(dir, 'latest', layers);
  if (registry === undefined) throw new Error('the registry did not start');
  skopeoPush(dir, 'latest', `${registry.domain}/${name}:latest`);
  return img;
}

async function committedNames(d: PullDeps): Promise<string[]> {
  const sn = d.snapshotters.get('overlayfs');
  if (sn === undefined) throw new Error('no overlayfs snapshotter');
  const out: string[] = [];
  await sn.walk((i) => { if (i.name.startsWith(`${NS}/`)) out.push(`${i.kind} ${i.name.slice(NS.length + 1)}`); });
  return out;
}

test('pullImage: layers in parallel, unpacked in order by chain ID, labelled, recorded; ctr runs it; a second pull fetches nothing', async () => {
  const img = publish('pull/app', threeLayers('a'));
  const chain = chainIdsOf(img.diffIds);
  const ref = `${px().domain}/pull/app:latest`;
  const events: PullImageProgress[] = [];
  const d = deps();
  const res = await pullImage(d, NS, ref, { onProgress: (ev) => events.push(ev) });
  assert.equal(res.name, ref);
  assert.equal(res.target.digest, img.manifest);
  assert.equal(res.chainId, chain[2]);

  // Progress: every layer downloaded and extracted (as it downloads: done only once stored), bottom first.
  for (const l of img.layers) {
    const mine = events.filter((e) => e.digest === l && e.kind === 'layer').map((e) => e.status);
    assert.ok(mine.includes('done'), `${l}: ${mine.join(',')}`);
    assert.ok(mine.indexOf('extracting') >= 0 && mine.indexOf('extracted') > mine.indexOf('extracting'), `${l}: ${mine.join(',')}`);
    assert.ok(mine.indexOf('extracted') > mine.indexOf('done'), `${l}: committed before its blob was stored: ${mine.join(',')}`);
  }
  const extracted = events.filter((e) => e.status === 'extracted').map((e) => e.digest);
  assert.deepEqual(extracted, img.layers);

  // Snapshots named by chain ID, each on the one below.
  const sn = d.snapshotters.get('overlayfs');
  assert.ok(sn !== undefined);
  for (const [i, c] of chain.entries()) {
    const info = await sn.stat(`${NS}/${c}`);
    assert.equal(info.kind, 'committed');
    assert.equal(info.parent, i === 0 ? '' : `${NS}/${chain[i - 1] ?? ''}`);
  }
  assert.deepEqual((await committedNames(d)).filter((n) => !n.startsWith('committed')), [], 'no active snapshot is left');

  // Labels as containerd's pull sets them, and the record.
  const store = d.content.namespace(NS);
  const source = `containerd.io/distribution.source.${px().domain}`;
  const config = await store.info(img.config);
  assert.equal(config.labels['containerd.io/gc.ref.snapshot.overlayfs'], chain[2]);
  assert.equal(config.labels[source], 'pull/app');
  const manifest = await store.info(img.manifest);
  assert.equal(manifest.labels['containerd.io/gc.ref.content.config'], img.config);
  assert.equal(manifest.labels['containerd.io/gc.ref.content.l.2'], img.layers[2]);
  for (const l of img.layers) assert.equal((await store.info(l)).labels[source], 'pull/app');
  const rec = d.images.get(NS, ref);
  assert.equal(rec.target.digest, img.manifest);
  assert.equal(rec.target.mediaType, 'application/vnd.oci.image.manifest.v1+json');

  // ctr runs what was pulled: the top layer's files win.
  const out = await ctrAsync(['run', '--rm', ref, 'pulled1', '/bin/sh', '-c', 'cat /etc/berth/one /etc/berth/two /etc/berth/which; /bin/busybox true && echo ok']);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stdout, 'one a\ntwo a\nlayer 2\nok\n');
  assert.ok((await ctrAsync(['images', 'ls'])).stdout.includes(ref));

  // Again: nothing downloaded, nothing extracted, the record kept.
  // (The registry client reads the small config blob again to resolve the image; no layer is fetched.)
  const layerGets = (): number => px().blobGets.filter((g) => img.layers.includes(g)).length;
  const gets = layerGets();
  assert.equal(gets, 3);
  const again: PullImageProgress[] = [];
  const res2 = await pullImage(d, NS, ref, { onProgress: (ev) => again.push(ev) });
  assert.equal(res2.target.digest, img.manifest);
  assert.equal(layerGets(), gets, 'no layer fetched the second time');
  assert.deepEqual(again.filter((e) => e.kind === 'layer' && e.status === 'exists').map((e) => e.digest).sort(), [...img.layers].sort());
  assert.deepEqual(again.filter((e) => e.status === 'unpacked').map((e) => e.digest), img.layers);
  assert.ok(!again.some((e) => e.status === 'downloading' || e.status === 'extracting'));

  // The pull's lease is gone, and a garbage collection keeps everything the image references.
  if (daemon === undefined) throw new Error('no daemon');
  const [gc] = daemon.plugins.getAll(pluginType<{ collectNow(): Promise<unknown> }>('io.containerd.gc.v1')).values();
  if (gc !== undefined) {
    assert.ok(d.gc !== undefined, 'the pull used the collector');
    assert.deepEqual((await ctrAsync(['leases', 'ls'])).stdout.trim().split('\n').slice(1), []);
    await gc.collectNow();
    for (const c of chain) assert.equal((await sn.stat(`${NS}/${c}`)).kind, 'committed');
    for (const digest of [img.manifest, img.config, ...img.layers]) await store.info(digest);
  }
});

test('pullImage: a corrupted bottom layer fails the pull and commits nothing', async () => {
  // A bottom layer of its own, so that nothing below it can be committed already.
  const img = publish('pull/corrupt', [rawTar([{ name: 'bottom', type: 'file', content: `${Date.now()}\n` }]), ...threeLayers('c')]);
  const chain = chainIdsOf(img.diffIds);
  const ref = `${px().domain}/pull/corrupt:latest`;
  const d = deps();
  const [bottom] = img.layers;
  px().corrupt = bottom;
  try {
    await assert.rejects(pullImage(d, NS, ref), /digest mismatch/);
  } finally {
    px().corrupt = undefined;
  }
  const names = await committedNames(d);
  for (const c of chain) assert.ok(!names.some((n) => n.endsWith(` ${c}`) || n.endsWith(c)), `${c} is not a snapshot: ${names.join('; ')}`);
  assert.ok(!names.some((n) => n.startsWith('active')), names.join('; '));
  assert.equal(d.content.find(NS, bottom ?? ''), undefined, 'the corrupted blob is not stored');
  assert.throws(() => d.images.get(NS, ref), (e: unknown) => isKind(e, ErrorKind.NotFound));
  // Without the corruption the same pull goes through.
  const ok = await pullImage(d, NS, ref);
  assert.equal(ok.chainId, chain[3]);
});

test('pullImage: a hostile layer fails its unpack, writes nothing outside, commits nothing, records no image', async () => {
  const outside = join(base, 'outside');
  mkdirSync(outside);
  const img = publish('pull/hostile', [rawTar([
    { name: 'ok.txt', type: 'file', content: 'fine\n' },
    { name: 'esc', type: 'symlink', linkname: outside },
    { name: 'esc/through-abs', type: 'file', content: 'escaped\n' },
    { name: 'up', type: 'symlink', linkname: '../../../../../../../../../../..' },
    { name: `up${outside}/through-rel`, type: 'file', content: 'escaped\n' },
    { name: `../../../../../../../../../../..${outside}/dotdot`, type: 'file', content: 'escaped\n' },
  ])]);
  const ref = `${px().domain}/pull/hostile:latest`;
  const d = deps();
  await assert.rejects(pullImage(d, NS, ref), /apply layer/);
  assert.deepEqual(readdirSync(outside), []);
  const names = await committedNames(d);
  const [chain] = chainIdsOf(img.diffIds);
  assert.ok(!names.some((n) => n.includes(chain ?? '-')), names.join('; '));
  assert.ok(!names.some((n) => n.startsWith('active')), names.join('; '));
  assert.throws(() => d.images.get(NS, ref), (e: unknown) => isKind(e, ErrorKind.NotFound));
});

/** A proxy to the registry that holds one blob's GET after `after` bytes until release(). */
async function startHoldingProxy(target: string): Promise<{ domain: string; hold(digest: string, after: number): void; held: Promise<void>; release(): void; stop(): Promise<void> }> {
  const port = Number(target.slice(target.lastIndexOf(':') + 1));
  let rule: { digest: string; after: number } | undefined;
  let released = false;
  const waiters: Array<() => void> = [];
  let onHeld!: () => void;
  const held = new Promise<void>((resolve) => {
    onHeld = resolve;
  });
  const server = http.createServer((req, res) => {
    const digest = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(req.url ?? '')?.[1];
    const up = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers, agent: false }, (ures) => {
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      let sent = 0;
      const limit = req.method === 'GET' && rule !== undefined && digest === rule.digest ? rule.after : Infinity;
      ures.on('data', (chunk: Buffer) => {
        if (released || sent + chunk.length <= limit) {
          sent += chunk.length;
          res.write(chunk);
          return;
        }
        const first = chunk.subarray(0, Math.max(0, limit - sent));
        sent += first.length;
        res.write(first);
        ures.pause();
        onHeld();
        waiters.push(() => {
          res.write(chunk.subarray(first.length));
          ures.resume();
        });
      });
      ures.on('end', () => res.end());
      ures.on('error', () => res.socket?.destroy());
    });
    up.on('error', () => res.socket?.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    domain: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    hold: (d, after) => {
      rule = { digest: d, after };
    },
    held,
    release: () => {
      released = true;
      for (const w of waiters.splice(0)) w();
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** p, or a failure naming `what` after ms. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

/** Files under `dir` (relative paths), recursively. */
function filesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).sort();
}

test('pullImage, single pass: a layer is extracted while it downloads; its snapshot is committed only once its blob is stored', async (t) => {
  // 64 files of 64 KiB of random hex: the first half of the gzip stream holds whole files.
  const entries = Array.from({ length: 64 }, (_, i) => ({ name: `big/f${String(i).padStart(2, '0')}`, type: 'file' as const, content: randomBytes(32 << 10).toString('hex') }));
  const img = publish('pull/stream', [rawTar([{ name: 'big/', type: 'dir' }, ...entries])]);
  const [layer] = img.layers;
  const [chain] = chainIdsOf(img.diffIds);
  if (layer === undefined || chain === undefined || registry === undefined) throw new Error('no layer');
  const gate = await startHoldingProxy(registry.domain);
  t.after(() => gate.stop());
  const layerSize = statSync(join(base, 'layout-pull-stream', 'blobs', 'sha256', layer.slice(7))).size;
  gate.hold(layer, layerSize >> 1);
  const d = deps();
  const ref = `${gate.domain}/pull/stream:latest`;
  const pulling = pullImage(d, NS, ref);
  pulling.catch(() => undefined);
  try {
    await within(gate.held, 20_000, 'the held download');
    // Half the blob has been sent: files of the layer appear in its active snapshot, nothing is committed or stored.
    const sn = d.snapshotters.get('overlayfs');
    assert.ok(sn !== undefined);
    let upper: string | undefined;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const active: string[] = [];
      await sn.walk((i) => { if (i.kind === 'active' && i.name.startsWith(`${NS}/`) && i.name.endsWith(chain)) active.push(i.name); });
      if (active[0] !== undefined) {
        const m = (await sn.mounts(active[0]))[0];
        upper = m?.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length) ?? m?.source;
        if (upper !== undefined && filesUnder(upper).some((f) => f.startsWith('big/f'))) break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(upper !== undefined, 'an active snapshot for the layer while it downloads');
    const early = filesUnder(upper).filter((f) => f.startsWith('big/f'));
    assert.ok(early.length > 0 && early.length < 64, `part of the layer extracted while held: ${early.length} files`);
    assert.equal(d.content.find(NS, layer), undefined, 'the blob is not stored before it is whole');
    assert.ok(!(await committedNames(d)).some((n) => n.startsWith('committed') && n.endsWith(chain)), 'nothing committed before the blob is whole');
  } finally {
    gate.release();
  }
  const res = await pulling;
  assert.equal(res.chainId, chain);
  const sn = d.snapshotters.get('overlayfs');
  assert.ok(sn !== undefined);
  const view = `${NS}/check-stream`;
  const m = (await sn.view(view, `${NS}/${chain}`))[0];
  try {
    const lower = m?.options.find((o) => o.startsWith('lowerdir='))?.slice('lowerdir='.length).split(':')[0] ?? m?.source ?? '';
    assert.equal(readFileSync(join(lower, 'big', 'f07'), 'utf8'), entries[7]?.content);
  } finally {
    await sn.remove(view);
  }
  await d.content.namespace(NS).info(layer);
});

/** An OCI layout of layers each compressed as given (gzip, zstd or none). */
function mixedLayout(dir: string, layers: ReadonlyArray<{ tar: Buffer; compression: 'gzip' | 'zstd' | 'none' }>): LayoutImage {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (b: Buffer): string => {
    const dg = sha256(b);
    writeFileSync(join(blobs, dg.slice(7)), b);
    return dg;
  };
  const descs = layers.map(({ tar, compression }) => {
    let blob = tar;
    if (compression === 'gzip') blob = gzipSync(tar);
    if (compression === 'zstd') {
      const r = spawnSync('zstd', ['-q', '-c'], { input: tar, maxBuffer: 256 << 20 });
      if (r.status !== 0) throw new Error(`zstd: ${r.stderr.toString()}`);
      blob = r.stdout;
    }
    const suffix = compression === 'none' ? '' : `+${compression}`;
    return { mediaType: `application/vnd.oci.image.layer.v1.tar${suffix}`, digest: put(blob), size: blob.length };
  });
  const diffIds = layers.map((l) => sha256(l.tar));
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const config = Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: diffIds } }));
  const configDesc = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: put(config), size: config.length };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDesc, layers: descs }));
  const manifestDesc = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: put(manifest), size: manifest.length };
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifestDesc, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }));
  return { layout: dir, manifest: manifestDesc.digest, config: configDesc.digest, layers: descs.map((x) => x.digest), diffIds };
}

test('pullImage: gzip, zstd and plain layers in one image are decompressed and extracted in the worker; ctr runs it', async () => {
  const [rootfs, ...rest] = threeLayers('z');
  if (rootfs === undefined) throw new Error('no rootfs');
  const dir = join(base, 'layout-mixed');
  const img = mixedLayout(dir, [
    { tar: rootfs, compression: 'zstd' },
    { tar: rest[0] ?? Buffer.alloc(0), compression: 'none' },
    { tar: rest[1] ?? Buffer.alloc(0), compression: 'gzip' },
  ]);
  if (registry === undefined) throw new Error('the registry did not start');
  skopeoPush(dir, 'latest', `${registry.domain}/pull/mixed:latest`);
  const ref = `${px().domain}/pull/mixed:latest`;
  const res = await pullImage(deps(), NS, ref);
  assert.equal(res.chainId, chainIdsOf(img.diffIds)[2]);
  const out = await ctrAsync(['run', '--rm', ref, 'pulled2', '/bin/sh', '-c', 'cat /etc/berth/one /etc/berth/two /etc/berth/which']);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stdout, 'one z\ntwo z\nlayer 2\n');
});
