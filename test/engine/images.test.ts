/**
 * The engine's images against a real berth-containerd (temp dirs), served
 * by the engine's API server on a temp UNIX socket and driven by the real
 * docker CLI (images, inspect, history, tag, rmi, import, push and pull with
 * a loopback docker-registry, save/load) and by raw HTTP for error answers.
 * Root only (the supervisor unpacks layers into overlayfs snapshots).
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@berth/base';
import { ContainerdClient } from '@berth/supervisor';
import { startRegistry, tarOf } from '../registry/_registry.js';
import type { Registry } from '../registry/_registry.js';
// The engine's modules by path (its package exports only its index): types
// from the compiled declarations, values loaded from the same files.
import type * as HttpMod from '../../packages/engine/dist/server/http.js';
import type * as RouterMod from '../../packages/engine/dist/server/router.js';
import type * as EventsMod from '../../packages/engine/dist/events.js';
import type * as ServiceMod from '../../packages/engine/dist/images/service.js';
import type * as BuiltinMod from '../../packages/engine/dist/images/builtin.js';
import type * as RoutesMod from '../../packages/engine/dist/routes/images.js';
import type { Engine } from '../../packages/engine/dist/engine.js';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const ENGINE_DIST = join(REPO_ROOT, 'packages', 'engine', 'dist');
const { ApiServer } = await import(join(ENGINE_DIST, 'server', 'http.js')) as typeof HttpMod;
const { Router } = await import(join(ENGINE_DIST, 'server', 'router.js')) as typeof RouterMod;
const { EventBus } = await import(join(ENGINE_DIST, 'events.js')) as typeof EventsMod;
const { ImageService } = await import(join(ENGINE_DIST, 'images', 'service.js')) as typeof ServiceMod;
const { ensureBuiltinImage, deterministicLayer, defaultRootfsDir, BUILTIN_IMAGE } = await import(join(ENGINE_DIST, 'images', 'builtin.js')) as typeof BuiltinMod;
const { imageRoutes } = await import(join(ENGINE_DIST, 'routes', 'images.js')) as typeof RoutesMod;
const CONTAINERD_BIN = join(REPO_ROOT, 'packages', 'supervisor', 'bin', 'berth-containerd.js');
const DOCKER = '/usr/local/bin/docker';

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const base = mkdtempSync(join(tmpdir(), 'berth-images-'));
const sock = join(base, 'api.sock');
const dockerConfig = join(base, 'docker-config');
let supervisor: ChildProcess | undefined;
let supervisorExited: Promise<void> = Promise.resolve();
let client: ContainerdClient | undefined;
let server: HttpMod.ApiServer | undefined;
let registry: Registry | undefined;
let images!: ServiceMod.ImageService;
const events = new EventBus();
/** The containers using an image, as the test says (for rmi's conflicts). */
const inUse = new Map<string, { containerId: string; running: boolean }>();

function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

before(async () => {
  const address = join(base, 'state', 'containerd.sock');
  const logFd = openSync(join(base, 'containerd.log'), 'a');
  try {
    supervisor = spawn(process.execPath, [CONTAINERD_BIN, '--address', address, '--root', join(base, 'root'), '--state', join(base, 'state'), '--log-level', 'info'], {
      stdio: ['ignore', logFd, logFd],
    });
  } finally {
    closeSync(logFd);
  }
  const child = supervisor;
  supervisorExited = new Promise((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 15_000;
  while (!(existsSync(address) && await accepts(address))) {
    if (child.exitCode !== null) throw new Error(`berth-containerd exited: ${readFileSync(join(base, 'containerd.log'), 'utf8')}`);
    if (Date.now() > deadline) throw new Error('berth-containerd did not start');
    await sleep(50);
  }
  client = new ContainerdClient(address, { namespace: 'berth' });
  const log = new Logger({ level: 'warn', file: join(base, 'engine.log') });
  images = new ImageService(client, events, log, { insecureRegistries: ['10.99.0.0/16'] });
  const engine: Engine = {
    client, log, events, images,
    paths: { dataRoot: join(base, 'data'), execRoot: join(base, 'exec'), shims: join(base, 'shims') },
    imageInUse: (id) => inUse.get(id),
  };
  const router = new Router();
  router.get('/_ping', (ctx) => ctx.send(200, 'OK'));
  router.head('/_ping', (ctx) => ctx.send(200, 'OK'));
  imageRoutes(router, engine, images);
  server = new ApiServer(router, log);
  await server.listen([{ address: `unix://${sock}` }], undefined);
  registry = await startRegistry();
});

after(async () => {
  try {
    await server?.close();
    client?.close();
    await registry?.stop();
    if (supervisor?.pid !== undefined && supervisor.exitCode === null && supervisor.signalCode === null) {
      process.kill(supervisor.pid, 'SIGTERM');
      const done = await Promise.race([supervisorExited.then(() => true), sleep(10_000).then(() => false)]);
      if (!done) {
        process.kill(supervisor.pid, 'SIGKILL');
        await supervisorExited;
      }
    }
  } finally {
    // Overlay snapshots are directories, not mounts, until a container mounts them.
    rmSync(base, { recursive: true, force: true });
  }
});

interface Run { code: number; stdout: string; stderr: string }

/** The docker CLI, run asynchronously: the API server answering it lives in this process. */
function dockerRaw(args: readonly string[], input?: Buffer): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(DOCKER, ['-H', `unix://${sock}`, ...args], {
      env: { ...process.env, DOCKER_CONFIG: dockerConfig, DOCKER_HOST: '' }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.end(input);
  });
}

async function docker(args: readonly string[], input?: Buffer): Promise<Run> {
  const r = await dockerRaw(args, input);
  return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
}

async function dockerOk(args: readonly string[], input?: Buffer): Promise<string> {
  const r = await docker(args, input);
  assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function http(method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: sock, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const inspect = async (ref: string): Promise<Record<string, unknown>> => {
  const arr = JSON.parse(await dockerOk(['image', 'inspect', ref])) as Record<string, unknown>[];
  assert.equal(arr.length, 1);
  return arr[0] ?? {};
};

let busyboxId = '';

test('the built-in busybox image is made from the rootfs, deterministically', async () => {
  const layer1 = await deterministicLayer(defaultRootfsDir());
  const layer2 = await deterministicLayer(defaultRootfsDir());
  assert.equal(sha256(layer1), sha256(layer2), 'the layer tar is the same bytes every time');
  const img = await ensureBuiltinImage(images);
  busyboxId = img.id;
  assert.equal(img.name, undefined);
  assert.deepEqual(img.config.Cmd, ['sh']);
  assert.equal(img.chainId, sha256(layer1), 'one layer: the chain ID is the diff ID');
  // Present now: the second call finds it, same ID.
  const again = await ensureBuiltinImage(images);
  assert.equal(again.id, img.id);
  const resolved = await images.resolve('busybox');
  assert.equal(resolved.id, img.id);
  assert.equal(resolved.name, BUILTIN_IMAGE);
  assert.equal(resolved.os, 'linux');
  // By short ID and by full ID.
  assert.equal((await images.resolve(img.id.slice(7, 19))).id, img.id);
  assert.equal((await images.resolve(img.id)).id, img.id);

  const info = await inspect('busybox');
  assert.equal(info['Id'], img.id);
  assert.deepEqual(info['RepoTags'], ['busybox:latest']);
  assert.deepEqual((info['RootFS'] as Record<string, unknown>)['Layers'], [sha256(layer1)]);
  assert.equal((info['RootFS'] as Record<string, unknown>)['Type'], 'layers');
  assert.equal(info['Created'], '2000-01-01T00:00:00Z');
  assert.equal(info['Os'], 'linux');
  assert.deepEqual((info['Config'] as Record<string, unknown>)['Cmd'], ['sh']);
  assert.equal((info['GraphDriver'] as Record<string, unknown>)['Name'], 'overlay2');
  assert.ok(typeof info['Size'] === 'number' && info['Size'] >= readFileSync(join(defaultRootfsDir(), 'bin', 'busybox')).length);
});

test('docker images lists the image with Docker\'s summary fields', async () => {
  const out = await dockerOk(['images', '--format', '{{.Repository}} {{.Tag}} {{.ID}}']);
  assert.match(out, new RegExp(`^busybox latest ${busyboxId.slice(7, 19)}$`, 'm'));
  const res = await http('GET', '/v1.50/images/json');
  assert.equal(res.status, 200);
  const list = JSON.parse(res.body) as Record<string, unknown>[];
  const bb = list.find((i) => i['Id'] === busyboxId);
  assert.ok(bb !== undefined);
  assert.equal(bb['ParentId'], '');
  assert.equal(bb['SharedSize'], -1);
  assert.equal(bb['Containers'], -1);
  assert.equal(bb['Created'], 946684800);
  assert.deepEqual(bb['Labels'], {});
  assert.equal(bb['VirtualSize'], undefined);
  const old = JSON.parse((await http('GET', '/v1.41/images/json')).body) as Record<string, unknown>[];
  assert.equal(old.find((i) => i['Id'] === busyboxId)?.['VirtualSize'], bb['Size']);
});

test('docker history shows the config history', async () => {
  const out = await dockerOk(['history', '--no-trunc', '--format', '{{.ID}}|{{.CreatedBy}}|{{.Comment}}', 'busybox']);
  const rows = out.trim().split('\n');
  assert.equal(rows.length, 1);
  assert.equal(rows[0], `${busyboxId}|/bin/sh -c #(nop) ADD busybox-static rootfs in / |built-in image`);
});

test('tag, then rmi by name untags; the image stays while named', async () => {
  await dockerOk(['tag', 'busybox', 'example.com/team/app:v1']);
  await dockerOk(['tag', busyboxId.slice(7, 19), 'app']);
  assert.equal((await inspect('example.com/team/app:v1'))['Id'], busyboxId);
  assert.deepEqual((await inspect('app:latest'))['RepoTags'], ['app:latest', 'busybox:latest', 'example.com/team/app:v1']);
  assert.notEqual(((await inspect('app'))['Metadata'] as Record<string, unknown>)['LastTagTime'], '0001-01-01T00:00:00Z');
  assert.match(events.since(0).filter((e) => e.Action === 'tag').map((e) => e.Actor.Attributes['name']).join(','), /example\.com\/team\/app:v1/);

  // By ID with names in several repositories: refused without force.
  const r = await docker(['rmi', busyboxId.slice(7, 19)]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`conflict: unable to delete ${busyboxId.slice(7, 19)} \\(must be forced\\) - image is referenced in multiple repositories`));

  assert.equal((await dockerOk(['rmi', 'example.com/team/app:v1'])).trim(), 'Untagged: example.com/team/app:v1');
  assert.equal((await dockerOk(['rmi', 'app'])).trim(), 'Untagged: app:latest');
  assert.equal((await inspect('busybox'))['Id'], busyboxId);
  assert.equal((await docker(['image', 'inspect', 'app'])).code, 1);
});

test('rmi of an image a container uses: 409 with Docker\'s messages', async () => {
  await dockerOk(['tag', 'busybox', 'inuse:1']);
  const id = busyboxId;
  inUse.set(id, { containerId: 'abcdef0123456789abcdef', running: false });
  try {
    // Two names: untagging one is fine even while used.
    assert.equal((await dockerOk(['rmi', 'inuse:1'])).trim(), 'Untagged: inuse:1');
    const r = await http('DELETE', '/images/busybox');
    assert.equal(r.status, 409);
    assert.equal(JSON.parse(r.body).message,
      `conflict: unable to remove repository reference "busybox" (must force) - container abcdef012345 is using its referenced image ${id.slice(7, 19)}`);
    const byId = await http('DELETE', `/images/${id.slice(7, 19)}`);
    assert.equal(byId.status, 409);
    assert.equal(JSON.parse(byId.body).message, `conflict: unable to delete ${id.slice(7, 19)} (must be forced) - image is being used by stopped container abcdef012345`);
    inUse.set(id, { containerId: 'abcdef0123456789abcdef', running: true });
    const forced = await http('DELETE', `/images/${id.slice(7, 19)}?force=1`);
    assert.equal(forced.status, 409);
    assert.equal(JSON.parse(forced.body).message, `conflict: unable to delete ${id.slice(7, 19)} (must be forced) - image is being used by running container abcdef012345`);
  } finally {
    inUse.delete(id);
  }
  assert.equal((await inspect('busybox'))['Id'], busyboxId);
});

test('unknown images and malformed filters get Docker\'s errors', async () => {
  const r = await http('GET', '/v1.50/images/nosuch/json');
  assert.equal(r.status, 404);
  assert.deepEqual(JSON.parse(r.body), { message: 'No such image: nosuch:latest' });
  const d = await http('DELETE', '/images/nosuch:2');
  assert.equal(d.status, 404);
  assert.equal(JSON.parse(d.body).message, 'No such image: nosuch:2');
  const h = await http('GET', '/images/127.0.0.1:5000/a/b:c/history');
  assert.equal(h.status, 404);
  assert.equal(JSON.parse(h.body).message, 'No such image: 127.0.0.1:5000/a/b:c');
  const bad = await http('GET', `/images/json?filters=${encodeURIComponent('{"dangling":')}`);
  assert.equal(bad.status, 400);
  const unknown = await http('GET', `/images/json?filters=${encodeURIComponent('{"color":["red"]}')}`);
  assert.equal(unknown.status, 400);
  assert.equal(JSON.parse(unknown.body).message, "invalid filter 'color'");
  const dangling = await http('GET', `/images/json?filters=${encodeURIComponent('{"dangling":["maybe"]}')}`);
  assert.equal(dangling.status, 400);
  const search = await http('GET', '/images/search?term=busybox');
  assert.equal(search.status, 503);
  assert.match(JSON.parse(search.body).message, /no registry index is reachable/);
  const tag = await http('POST', '/images/busybox/tag?repo=Bad_Name');
  assert.equal(tag.status, 400);
});

let importedId = '';

test('docker import makes a one-layer image from a rootfs tar, with --change and -m', async () => {
  const tar = tarOf([{ path: 'etc', dir: true }, { path: 'etc/hello', content: 'hello from import\n' }]);
  const out = await dockerOk(['import', '--change', 'CMD ["/bin/hello"]', '--change', 'ENV A=1 B=two', '--change', 'LABEL team=images', '-m', 'first import', '-', 'imported:1'], tar);
  importedId = out.trim();
  assert.match(importedId, /^sha256:[0-9a-f]{64}$/);
  const info = await inspect('imported:1');
  assert.equal(info['Id'], importedId);
  assert.deepEqual((info['RootFS'] as Record<string, unknown>)['Layers'], [sha256(tar)]);
  assert.equal(info['Comment'], 'first import');
  const cfg = info['Config'] as Record<string, unknown>;
  assert.deepEqual(cfg['Cmd'], ['/bin/hello']);
  assert.deepEqual(cfg['Env'], ['A=1', 'B=two']);
  assert.deepEqual(cfg['Labels'], { team: 'images' });
  // Filters over the list: label, reference, dangling.
  const byLabel = (await dockerOk(['images', '--filter', 'label=team=images', '--format', '{{.ID}}'])).trim();
  assert.equal(byLabel, importedId.slice(7, 19));
  const byRef = (await dockerOk(['images', '--filter', 'reference=imp*', '--format', '{{.Repository}}:{{.Tag}}'])).trim();
  assert.equal(byRef, 'imported:1');
  // Gzip-compressed input is a layer of the same uncompressed bytes.
  const gz = spawnSync('gzip', ['-c'], { input: tar });
  const out2 = await dockerOk(['import', '-', 'imported:gz'], gz.stdout);
  assert.deepEqual(((await inspect(out2.trim()))['RootFS'] as Record<string, unknown>)['Layers'], [sha256(tar)]);
  assert.ok(events.since(0).some((e) => e.Type === 'image' && e.Action === 'import' && e.Actor.ID === importedId));
});

test('an image without names is dangling and goes with prune', async () => {
  const tar = tarOf([{ path: 'only', content: `dangling ${Date.now()}\n` }]);
  const id = (await dockerOk(['import', '-'], tar)).trim();
  const dangling = (await dockerOk(['images', '--filter', 'dangling=true', '--format', '{{.ID}} {{.Repository}} {{.Tag}}'])).trim();
  assert.equal(dangling, `${id.slice(7, 19)} <none> <none>`);
  const r = await http('POST', '/images/prune');
  assert.equal(r.status, 200);
  const report = JSON.parse(r.body) as { ImagesDeleted: Record<string, string>[]; SpaceReclaimed: number };
  assert.deepEqual(report.ImagesDeleted, [{ Deleted: id }]);
  assert.ok(report.SpaceReclaimed > 0);
  assert.equal((await docker(['image', 'inspect', id])).code, 1);
  // Named images stay.
  assert.equal((await inspect('busybox'))['Id'], busyboxId);
  assert.equal((await inspect('imported:1'))['Id'], importedId);
});

test('push to and pull from a loopback registry with Docker\'s progress', async () => {
  const reg = registry;
  assert.ok(reg !== undefined);
  const ref = `${reg.domain}/busybox:latest`;
  await dockerOk(['tag', 'busybox', ref]);
  const pushed = await dockerOk(['push', ref]);
  assert.match(pushed, new RegExp(`The push refers to repository \\[${reg.domain.replace(/\./g, '\\.')}/busybox\\]`));
  const m = /latest: digest: (sha256:[0-9a-f]{64}) size: (\d+)/.exec(pushed);
  assert.ok(m !== null, pushed);
  // The registry serves that manifest, of that size.
  const manifest = await new Promise<Buffer>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: reg.port, path: '/v2/busybox/manifests/latest', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } }, (res) => {
      const c: Buffer[] = [];
      res.on('data', (d: Buffer) => c.push(d));
      res.on('end', () => resolve(Buffer.concat(c)));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(sha256(manifest), m[1]);
  assert.equal(manifest.length, Number(m[2]));
  // Pushing again: the layer is there.
  assert.match((await dockerOk(['push', ref])), /Layer already exists/);

  // Pull it back under a new local state: untag, pull.
  await dockerOk(['rmi', ref]);
  const raw = await http('POST', `/images/create?fromImage=${encodeURIComponent(`${reg.domain}/busybox`)}&tag=latest`);
  assert.equal(raw.status, 200);
  const lines = raw.body.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(lines[0], { status: 'Pulling from busybox', id: 'latest' });
  const statuses = lines.map((l) => l['status']);
  assert.ok(statuses.includes(`Digest: ${m[1]}`), raw.body);
  assert.equal(statuses[statuses.length - 1], `Status: Downloaded newer image for ${reg.domain}/busybox:latest`);
  assert.equal((await inspect(ref))['Id'], busyboxId);
  assert.ok(((await inspect(ref))['RepoDigests'] as string[]).includes(`${reg.domain}/busybox@${m[1]}`));

  // The CLI's pull of the same: up to date.
  const again = await dockerOk(['pull', ref]);
  assert.match(again, new RegExp(`Status: Image is up to date for ${reg.domain.replace(/\./g, '\\.')}/busybox:latest`));

  // A pull of an imported image the local store does not have yet: layers downloaded and extracted.
  const imp = `${reg.domain}/imported:1`;
  await dockerOk(['tag', 'imported:1', imp]);
  await dockerOk(['push', imp]);
  await dockerOk(['rmi', imp]);
  await dockerOk(['rmi', 'imported:1']);
  await dockerOk(['rmi', 'imported:gz']);
  assert.equal((await docker(['image', 'inspect', importedId])).code, 1, 'the imported image is gone');
  const pulled = await http('POST', `/images/create?fromImage=${encodeURIComponent(`${reg.domain}/imported`)}&tag=1`);
  const pl = pulled.body.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const layerLines = pl.filter((l) => typeof l['id'] === 'string' && l['id'] !== '1').map((l) => l['status']);
  for (const s of ['Pulling fs layer', 'Download complete', 'Pull complete']) assert.ok(layerLines.includes(s), `${s} in ${pulled.body}`);
  assert.equal(pl[pl.length - 1]?.['status'], `Status: Downloaded newer image for ${imp}`);
  assert.equal((await inspect(imp))['Id'], importedId);
  const unpacked = await images.resolve(imp);
  await images.ensureUnpacked(unpacked);

  // Unknown repository: an error answer before any stream.
  const missing = await http('POST', `/images/create?fromImage=${encodeURIComponent(`${reg.domain}/nothere`)}&tag=latest`);
  assert.equal(missing.status, 404, missing.body);
  assert.match(JSON.parse(missing.body).message, /manifest for .*nothere:latest not found: manifest unknown/);
  const cli = await docker(['pull', `${reg.domain}/nothere`]);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /manifest unknown/);
  assert.ok(events.since(0).some((e) => e.Action === 'pull' && e.Actor.ID === `${reg.domain}/busybox:latest`));
  assert.ok(events.since(0).some((e) => e.Action === 'push'));
});

test('save and load round-trip an image through a tar', async () => {
  await dockerOk(['tag', 'busybox', 'saved:1']);
  const file = join(base, 'saved.tar');
  await dockerOk(['save', '-o', file, 'saved:1']);
  const tar = readFileSync(file);
  assert.ok(tar.length > 512);
  // A docker-save archive: manifest.json names the tag.
  const listing = spawnSync('tar', ['-xOf', file, 'manifest.json'], { encoding: 'utf8' });
  assert.equal(listing.status, 0, listing.stderr);
  const mf = JSON.parse(listing.stdout) as Array<{ RepoTags: string[]; Config: string }>;
  assert.deepEqual(mf[0]?.RepoTags, ['saved:1']);
  await dockerOk(['rmi', 'saved:1']);
  assert.equal((await docker(['image', 'inspect', 'saved:1'])).code, 1);
  const loaded = await dockerOk(['load', '-i', file]);
  assert.match(loaded, /Loaded image: saved:1/);
  assert.equal((await inspect('saved:1'))['Id'], busyboxId);
  // From stdin too, and an image given by two names at once.
  const both = await dockerRaw(['save', 'saved:1', 'busybox']);
  assert.equal(both.code, 0, both.stderr);
  const again = await dockerOk(['load'], both.stdout);
  assert.match(again, /Loaded image: busybox:latest/);
  assert.match(again, /Loaded image: saved:1/);
});

test('POST /auth checks credentials against the registry', async () => {
  const reg = await startRegistry({ kind: 'htpasswd', users: { alice: 's3cret' } });
  try {
    const ok = await http('POST', '/auth', JSON.stringify({ username: 'alice', password: 's3cret', serveraddress: reg.domain }), { 'content-type': 'application/json' });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(JSON.parse(ok.body).Status, 'Login Succeeded');
    const bad = await http('POST', '/auth', JSON.stringify({ username: 'alice', password: 'wrong', serveraddress: reg.domain }), { 'content-type': 'application/json' });
    assert.equal(bad.status, 401);
    assert.match(JSON.parse(bad.body).message, new RegExp(`login attempt to http://${reg.domain.replace(/\./g, '\\.')}/v2/ failed with status: 401 Unauthorized`));
    const cli = await docker(['login', '-u', 'alice', '--password-stdin', reg.domain], Buffer.from('s3cret\n'));
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /Login Succeeded/);
    // With the credentials the CLI stored, a push to the authenticated registry works.
    await dockerOk(['tag', 'busybox', `${reg.domain}/private:1`]);
    assert.match((await dockerOk(['push', `${reg.domain}/private:1`])), /1: digest: sha256:[0-9a-f]{64}/);
    await dockerOk(['logout', reg.domain]);
    const denied = await docker(['push', `${reg.domain}/private:1`]);
    assert.notEqual(denied.code, 0);
  } finally {
    await reg.stop();
  }
});

test('rmi by ID deletes the image and its content', async () => {
  const tar = tarOf([{ path: 'gone', content: `bye ${Date.now()}\n` }]);
  const id = (await dockerOk(['import', '-', 'gone:1'], tar)).trim();
  await dockerOk(['tag', 'gone:1', 'gone:2']);
  const out = (await dockerOk(['rmi', id.slice(7, 19)])).trim().split('\n');
  assert.deepEqual(out, ['Untagged: gone:1', 'Untagged: gone:2', `Deleted: ${id}`]);
  assert.equal((await docker(['image', 'inspect', id])).code, 1);
  const ev = events.since(0).filter((e) => e.Type === 'image' && e.Actor.ID === id).map((e) => e.Action);
  assert.deepEqual(ev.slice(-3), ['untag', 'untag', 'delete']);
});
