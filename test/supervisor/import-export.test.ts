/**
 * Image import and export in a berth-containerd started in this process:
 * `docker import` of the test rootfs (importRootfs), export in the OCI and
 * docker formats read back by ctr (import, run) and skopeo (inspect, copy
 * with identical digests), ctr's own export imported by importImages, a
 * legacy `docker save` archive made by hand, and hostile archives that fail
 * with nothing left behind. Root only.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { ErrorKind, Logger, isKind } from '@berth/base';
import { Daemon, exportImages, importImages, importRootfs, pluginType, pullDepsOf } from '@berth/supervisor';
import type { PullDeps } from '@berth/supervisor';
import { CTR } from './_daemon.js';
import { SKOPEO, chainIdsOf, rawTar, runOk, sha256, teardownSupervisor } from './_registry.js';
import { TEST_ROOTFS } from './_tasks.js';

const run = promisify(execFile);
const P = `iox${process.pid}`;
const NS = `${P}a`;
const base = mkdtempSync(join(tmpdir(), 'berth-io-'));
const paths = { root: join(base, 'root'), state: join(base, 'state'), address: join(base, 'state', 'containerd.sock') };
const namespaces = new Set<string>([NS]);
const containers: string[] = [];
let daemon: Daemon | undefined;
const IMAGE = 'docker.io/library/berth-io:v1';

before(async () => {
  daemon = await Daemon.start({ ...paths, log: new Logger({ level: 'warn', file: join(base, 'daemon.log') }) });
});

after(async () => {
  await teardownSupervisor({ daemon, state: paths.state, base, namespaces: [...namespaces], fifos: containers });
});

function deps(): PullDeps {
  if (daemon === undefined) throw new Error('the daemon did not start');
  return pullDepsOf(daemon.plugins);
}

function ns(suffix: string): string {
  const n = `${P}${suffix}`;
  namespaces.add(n);
  return n;
}

/** ctr against the in-process daemon (asynchronous: the daemon answers on this event loop). */
async function ctr(namespace: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(CTR, ['--address', paths.address, '--namespace', namespace, ...args], { timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : 128, stdout: err.stdout ?? '', stderr: err.stderr ?? String(e) };
  }
}

/** ctr run --rm of an image: what the command printed. */
async function ctrRun(namespace: string, image: string, script: string): Promise<string> {
  const id = `c${containers.length}-${process.pid}`;
  containers.push(id);
  const out = await ctr(namespace, ['run', '--rm', image, id, '/bin/sh', '-c', script]);
  assert.equal(out.code, 0, `ctr run ${image}: ${out.stderr}`);
  return out.stdout;
}

/** The test rootfs as a tar, streamed from tar(1) into importRootfs. */
async function importTestRootfs(d: PullDeps, namespace: string, ref: string): Promise<Awaited<ReturnType<typeof importRootfs>>> {
  const tar = spawn('tar', ['-C', TEST_ROOTFS, '--numeric-owner', '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((res) => tar.once('exit', (code) => res(code)));
  try {
    return await importRootfs(d, namespace, tar.stdout, {
      ref, config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin', 'BERTH_IO=yes'], WorkingDir: '/etc' }, message: 'test rootfs',
    });
  } finally {
    assert.equal(await exited, 0, 'tar of the test rootfs');
  }
}

/** A small blob of a namespace, as text. */
async function blob(d: PullDeps, namespace: string, digest: string): Promise<string> {
  const r = await d.content.namespace(namespace).reader(digest);
  try {
    return (await r.readAt(0, r.size)).toString('utf8');
  } finally {
    await r.close();
  }
}

async function exportTo(d: PullDeps, namespace: string, names: readonly string[], format: 'docker' | 'oci', file: string): Promise<string> {
  const r = await exportImages(d, namespace, names, createWriteStream(file), { format });
  assert.equal(sha256(readFileSync(file)), r.digest);
  return r.digest;
}

function members(file: string): string[] {
  return runOk('tar', ['-tf', file]).trim().split('\n');
}

async function snapshotsOf(d: PullDeps, namespace: string): Promise<string[]> {
  const sn = d.snapshotters.get('overlayfs');
  if (sn === undefined) throw new Error('no overlayfs snapshotter');
  const out: string[] = [];
  await sn.walk((i) => { if (i.name.startsWith(`${namespace}/`)) out.push(`${i.kind} ${i.name.slice(namespace.length + 1)}`); });
  return out;
}

/** Nothing of a failed import stays: no image, no snapshot, and after a collection no blob. */
async function assertNothingLeft(d: PullDeps, namespace: string): Promise<void> {
  assert.deepEqual(d.images.list(namespace).map((i) => i.name), []);
  assert.deepEqual(await snapshotsOf(d, namespace), []);
  if (daemon === undefined) throw new Error('no daemon');
  const [gc] = daemon.plugins.getAll(pluginType<{ collectNow(): Promise<unknown> }>('io.containerd.gc.v1')).values();
  assert.ok(gc !== undefined, 'the daemon runs a collector');
  assert.deepEqual((await ctr(namespace, ['leases', 'ls'])).stdout.trim().split('\n').slice(1), [], 'no lease is left');
  await gc.collectNow();
  assert.deepEqual(d.content.all(namespace).map((c) => c.digest), []);
}

let exported: { docker: string; oci: string; manifest: string; config: string; layer: string } | undefined;

test('importRootfs: a rootfs tar becomes a one-layer image, unpacked, that ctr runs', async () => {
  const d = deps();
  const img = await importTestRootfs(d, NS, 'berth-io:v1');
  assert.equal(img.name, IMAGE);
  const store = d.content.namespace(NS);
  const manifest = JSON.parse(await blob(d, NS, img.target.digest)) as {
    config: { digest: string }; layers: Array<{ digest: string; mediaType: string }>;
  };
  const [layer] = manifest.layers;
  assert.ok(layer !== undefined && manifest.layers.length === 1);
  assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar');
  const config = JSON.parse(await blob(d, NS, manifest.config.digest)) as { rootfs: { diff_ids: string[] }; config: { Env: string[]; WorkingDir: string }; history: Array<{ comment: string }> };
  // Stored as it came: the layer is the uncompressed tar, so its digest is the diff ID and the chain ID.
  assert.deepEqual(config.rootfs.diff_ids, [layer.digest]);
  assert.equal(img.chainId, layer.digest);
  assert.equal(config.config.WorkingDir, '/etc');
  assert.equal(config.history[0]?.comment, 'test rootfs');
  assert.equal((await store.info(manifest.config.digest)).labels['containerd.io/gc.ref.snapshot.overlayfs'], layer.digest);
  assert.equal((await store.info(img.target.digest)).labels['containerd.io/gc.ref.content.l.0'], layer.digest);
  assert.equal(await ctrRun(NS, IMAGE, 'echo $BERTH_IO; pwd; /bin/busybox true && echo ok'), 'yes\n/etc\nok\n');
  exported = { docker: '', oci: '', manifest: img.target.digest, config: manifest.config.digest, layer: layer.digest };
});

test('importRootfs: a gzip rootfs tar is stored compressed; its diff ID is the uncompressed digest', async () => {
  const d = deps();
  const n = ns('gz');
  const tar = rawTar([{ name: 'hello', type: 'file', content: 'hi\n' }]);
  const gz = gzipSync(tar);
  const img = await importRootfs(d, n, Readable.from([gz]), { ref: 'example.com/gz:1' });
  assert.equal(img.name, 'example.com/gz:1');
  assert.equal(img.chainId, sha256(tar));
  assert.ok(d.content.find(n, sha256(gz)) !== undefined, 'the compressed blob is stored');
});

test('exportImages: OCI and docker tars, deterministic, with the layout and docker files', async () => {
  assert.ok(exported !== undefined, 'the rootfs import ran');
  const d = deps();
  const oci = join(base, 'export-oci.tar');
  const docker = join(base, 'export-docker.tar');
  const ociDigest = await exportTo(d, NS, [IMAGE], 'oci', oci);
  await exportTo(d, NS, [IMAGE], 'docker', docker);
  assert.equal(await exportTo(d, NS, [IMAGE], 'oci', join(base, 'again.tar')), ociDigest, 'the same images give the same tar');
  rmSync(join(base, 'again.tar'));
  const blobs = [exported.config, exported.layer, exported.manifest].sort().map((x) => `blobs/sha256/${x.slice(7)}`);
  assert.deepEqual(members(oci), ['blobs/', 'blobs/sha256/', ...blobs, 'index.json', 'oci-layout']);
  assert.deepEqual(members(docker), ['blobs/', 'blobs/sha256/', ...blobs, 'index.json', 'manifest.json', 'oci-layout', 'repositories']);
  const files = join(base, 'docker-files');
  mkdirSync(files);
  runOk('tar', ['-C', files, '-xf', docker]);
  const index = JSON.parse(readFileSync(join(files, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
  assert.equal(index.manifests[0]?.digest, exported.manifest);
  assert.deepEqual(index.manifests[0]?.annotations, { 'io.containerd.image.name': IMAGE, 'org.opencontainers.image.ref.name': 'v1' });
  assert.deepEqual(JSON.parse(readFileSync(join(files, 'manifest.json'), 'utf8')), [{
    Config: `blobs/sha256/${exported.config.slice(7)}`, RepoTags: ['berth-io:v1'], Layers: [`blobs/sha256/${exported.layer.slice(7)}`],
  }]);
  assert.deepEqual(JSON.parse(readFileSync(join(files, 'repositories'), 'utf8')), { 'berth-io': { v1: exported.layer.slice(7) } });
  exported.oci = oci;
  exported.docker = docker;
});

test('exportImages: a slow consumer gets the same tar, with no more than a few chunks waiting', async () => {
  assert.ok(exported !== undefined && exported.oci !== '', 'the export ran');
  const chunks: Buffer[] = [];
  let maxBuffered = 0;
  const slow = new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      maxBuffered = Math.max(maxBuffered, this.writableLength);
      setTimeout(cb, 1);
    },
  });
  const r = await exportImages(deps(), NS, [IMAGE], slow, { format: 'oci' });
  assert.equal(sha256(Buffer.concat(chunks)), sha256(readFileSync(exported.oci)));
  assert.equal(r.digest, sha256(readFileSync(exported.oci)));
  assert.ok(maxBuffered <= 2 << 20, `at most one read chunk waits (${maxBuffered} bytes buffered)`);
});

test('ctr images import reads both exports; ctr runs what it imported', async () => {
  assert.ok(exported !== undefined && exported.oci !== '', 'the export ran');
  for (const [format, file] of [['oci', exported.oci], ['docker', exported.docker]] as const) {
    const n = ns(`ctr${format}`);
    const r = await ctr(n, ['images', 'import', file]);
    assert.equal(r.code, 0, `${format}: ${r.stderr}`);
    const ls = await ctr(n, ['images', 'ls', '-q']);
    assert.ok(ls.stdout.split('\n').includes(IMAGE), `${format}: ${ls.stdout}`);
    assert.equal(deps().images.get(n, IMAGE).target.digest, exported.manifest);
    assert.equal(await ctrRun(n, IMAGE, 'echo $BERTH_IO'), 'yes\n');
  }
});

test('skopeo reads the OCI export: inspect and copy give the same digests', () => {
  assert.ok(exported !== undefined && exported.oci !== '', 'the export ran');
  const info = JSON.parse(runOk(SKOPEO, ['inspect', `oci-archive:${exported.oci}`])) as { Digest: string; Layers: string[] };
  assert.equal(info.Digest, exported.manifest);
  assert.deepEqual(info.Layers, [exported.layer]);
  const dir = join(base, 'skopeo-dir');
  runOk(SKOPEO, ['copy', `oci-archive:${exported.oci}`, `dir:${dir}`]);
  assert.equal(sha256(readFileSync(join(dir, 'manifest.json'))), exported.manifest);
  for (const b of [exported.config, exported.layer]) assert.equal(sha256(readFileSync(join(dir, b.slice(7)))), b);
});

test('importImages reads ctr images export (OCI layout plus manifest.json) and the image runs', async () => {
  assert.ok(exported !== undefined, 'the rootfs import ran');
  const file = join(base, 'ctr-export.tar');
  const r = await ctr(NS, ['images', 'export', file, IMAGE]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(members(file).includes('manifest.json') && members(file).includes('index.json'), 'ctr writes the combined form');
  const n = ns('fromctr');
  const d = deps();
  const imgs = await importImages(d, n, createReadStream(file));
  assert.deepEqual(imgs.map((i) => [i.name, i.target.digest, i.chainId]), [[IMAGE, exported.manifest, exported.layer]]);
  assert.equal(await ctrRun(n, IMAGE, 'echo $BERTH_IO; cat /etc/hostname >/dev/null; echo ok'), 'yes\nok\n');
  // Our own OCI export, named by a base name instead of the full-name annotation, imports too.
  const plain = join(base, 'plain-oci.tar');
  const dir = join(base, 'plain-oci');
  mkdirSync(dir);
  runOk('tar', ['-C', dir, '-xf', exported.oci]);
  const idx = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ annotations: Record<string, string> }> };
  for (const m of idx.manifests) delete m.annotations['io.containerd.image.name'];
  writeFileSync(join(dir, 'index.json'), JSON.stringify(idx));
  runOk('tar', ['-C', dir, '-cf', plain, '.']);
  const n2 = ns('plain');
  const named = await importImages(d, n2, createReadStream(plain), { baseName: 'example.com/plain' });
  assert.deepEqual(named.map((i) => i.name), ['example.com/plain:v1']);
});

/** A legacy `docker save` directory: <id>/layer.tar (+ json, VERSION), <config hex>.json, manifest.json, repositories. */
function legacyArchive(dir: string, layers: readonly Buffer[], opts: { diffIds?: string[]; layerPaths?: string[] } = {}): { file: string; diffIds: string[] } {
  mkdirSync(dir, { recursive: true });
  const diffIds = opts.diffIds ?? layers.map(sha256);
  const ids: string[] = [];
  for (const [i, l] of layers.entries()) {
    const id = createHash('sha256').update(`layer ${i} ${sha256(l)}`).digest('hex');
    ids.push(id);
    mkdirSync(join(dir, id));
    writeFileSync(join(dir, id, 'VERSION'), '1.0');
    writeFileSync(join(dir, id, 'json'), JSON.stringify({ id }));
    const same = layers.findIndex((x) => x.equals(l));
    // A layer that repeats an earlier one is a symlink to it, as docker writes it.
    if (same < i) symlinkSync(`../${ids[same] ?? ''}/layer.tar`, join(dir, id, 'layer.tar'));
    else writeFileSync(join(dir, id, 'layer.tar'), l);
  }
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const config = Buffer.from(JSON.stringify({
    architecture: arch, os: 'linux', config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: diffIds },
  }));
  const hex = sha256(config).slice(7);
  writeFileSync(join(dir, `${hex}.json`), config);
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify([{
    Config: `${hex}.json`, RepoTags: ['legacy:v1'], Layers: opts.layerPaths ?? ids.map((id) => `${id}/layer.tar`),
  }]));
  writeFileSync(join(dir, 'repositories'), JSON.stringify({ legacy: { v1: ids[ids.length - 1] } }));
  const file = `${dir}.tar`;
  runOk('tar', ['-C', dir, '-cf', file, '.']);
  return { file, diffIds };
}

function rootfsTar(): Buffer {
  const r = spawnSync('tar', ['-C', TEST_ROOTFS, '--numeric-owner', '-cf', '-', '.'], { maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`tar of ${TEST_ROOTFS}: ${r.stderr.toString()}`);
  return r.stdout;
}

test('importImages: a legacy docker save archive made by hand imports, unpacks by chain ID and runs', async () => {
  const top = rawTar([{ name: 'etc/berth/', type: 'dir' }, { name: 'etc/berth/legacy', type: 'file', content: 'legacy layer\n' }]);
  const { file, diffIds } = legacyArchive(join(base, 'legacy'), [rootfsTar(), top, top]);
  const n = ns('legacy');
  const d = deps();
  const [img, ...more] = await importImages(d, n, createReadStream(file));
  assert.equal(more.length, 0);
  assert.ok(img !== undefined);
  assert.equal(img.name, 'docker.io/library/legacy:v1');
  assert.equal(img.target.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  assert.equal(img.chainId, chainIdsOf(diffIds)[2]);
  const m = JSON.parse(await blob(d, n, img.target.digest)) as { layers: Array<{ mediaType: string; digest: string }> };
  assert.deepEqual(m.layers.map((l) => l.mediaType), Array(3).fill('application/vnd.docker.image.rootfs.diff.tar'));
  assert.deepEqual(m.layers.map((l) => l.digest), diffIds);
  assert.equal(await ctrRun(n, 'docker.io/library/legacy:v1', 'cat /etc/berth/legacy'), 'legacy layer\n');
});

test('importImages: hostile archives fail clearly and leave no image, snapshot, lease or blob', async () => {
  assert.ok(exported !== undefined && exported.oci !== '', 'the export ran');
  const d = deps();
  const okLayer = rawTar([{ name: 'x', type: 'file', content: `x ${Date.now()}\n` }]);
  const cases: Array<{ name: string; archive: () => Buffer; error: RegExp }> = [
    {
      name: 'a member path with ..',
      archive: () => rawTar([
        { name: `blobs/sha256/${sha256(okLayer).slice(7)}`, type: 'file', content: okLayer.toString('latin1') },
        { name: '../../escape', type: 'file', content: 'x' },
      ]),
      error: /"\.\." is not allowed/,
    },
    {
      name: 'an index pointing at a missing manifest',
      archive: () => rawTar([
        { name: 'oci-layout', type: 'file', content: '{"imageLayoutVersion":"1.0.0"}' },
        { name: `blobs/sha256/${sha256(okLayer).slice(7)}`, type: 'file', content: okLayer.toString('latin1') },
        { name: 'index.json', type: 'file', content: JSON.stringify({ schemaVersion: 2, manifests: [{
          mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'ab'.repeat(32)}`, size: 100,
          annotations: { 'io.containerd.image.name': 'example.com/missing:1' },
        }] }) },
      ]),
      error: /manifest sha256:abab.* is not in the archive/,
    },
    {
      name: 'a blob that is not what its name says',
      archive: () => rawTar([{ name: `blobs/sha256/${'cd'.repeat(32)}`, type: 'file', content: 'not that blob' }]),
      error: /unexpected commit digest/,
    },
    {
      name: 'a truncated tar',
      archive: () => readFileSync(exported?.oci ?? '').subarray(0, 700_000),
      error: /truncated/,
    },
    {
      name: 'a legacy manifest naming a layer the archive does not hold',
      archive: () => readFileSync(legacyArchive(join(base, 'hostile-missing'), [okLayer], { layerPaths: ['nothere/layer.tar'] }).file),
      error: /does not hold/,
    },
    {
      name: 'a legacy layer that is not the one its config names',
      archive: () => readFileSync(legacyArchive(join(base, 'hostile-wrong'), [okLayer], { diffIds: [`sha256:${'ef'.repeat(32)}`] }).file),
      error: /diff ID/,
    },
  ];
  for (const [i, c] of cases.entries()) {
    const n = ns(`h${i}`);
    await assert.rejects(importImages(d, n, Readable.from([c.archive()])), (e: unknown) => {
      assert.ok(isKind(e, ErrorKind.InvalidArgument) || isKind(e, ErrorKind.FailedPrecondition), `${c.name}: ${String(e)}`);
      assert.match(String(e), c.error, c.name);
      return true;
    });
    await assertNothingLeft(d, n);
  }
});
