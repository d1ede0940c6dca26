// skopeo (Debian) as the independent peer: what skopeo pushes we pull with
// the same digests, and what we push skopeo reads back identically.
// Needs /usr/bin/docker-registry and /usr/bin/skopeo.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { RegistryClient, pull, push } from '@berth/images';
import { MemoryStore, buildImage, buildIndex, run, sha256, startRegistry, tempDir, writeOciLayout } from './_registry.js';
import type { Registry } from './_registry.js';

let registry: Registry;
let client: RegistryClient;
const tmp = tempDir('berth-skopeo-');

before(async () => {
  registry = await startRegistry();
  client = new RegistryClient();
});

after(async () => {
  client?.close();
  await registry?.stop();
  tmp.remove();
});

const image = buildImage([
  [{ path: 'etc', dir: true }, { path: 'etc/os-release', content: 'ID=berth\n' }],
  [{ path: 'opt', dir: true }, { path: 'opt/blob', content: randomBytes(300_000) }],
  [{ path: 'opt/more', content: 'more\n' }],
]);

test('skopeo copies an OCI layout into the registry; we pull identical digests', async () => {
  const layout = join(tmp.path, 'layout');
  writeOciLayout(layout, image.blobs, image.manifest, 'v1');
  run('skopeo', ['copy', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${registry.domain}/skopeo/img:v1`]);
  const store = new MemoryStore();
  const got = await pull(client, `${registry.domain}/skopeo/img:v1`, { store });
  assert.equal(got.target.digest, image.manifest.digest);
  assert.equal(got.manifests.config.descriptor.digest, image.config.digest);
  for (const [d, b] of image.blobs) assert.ok(store.blobs.get(d)?.equals(b), d);
});

test('we push an image; skopeo inspects and copies it with identical digests', async () => {
  await push(client, `${registry.domain}/berth/img:v1`, { store: new MemoryStore(image.blobs), descriptor: image.manifest });
  const raw = run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.domain}/berth/img:v1`]);
  assert.equal(sha256(Buffer.from(raw)), image.manifest.digest);
  const info = JSON.parse(run('skopeo', ['inspect', '--tls-verify=false', `docker://${registry.domain}/berth/img:v1`])) as {
    Digest: string;
    Layers: string[];
    Labels: Record<string, string>;
  };
  assert.equal(info.Digest, image.manifest.digest);
  assert.deepEqual(info.Layers, image.layers.map((l) => l.digest));
  assert.equal(info.Labels['berth.test'], 'x');
  // skopeo verifies every blob's digest as it copies.
  const dir = join(tmp.path, 'copied');
  run('skopeo', ['copy', '--src-tls-verify=false', `docker://${registry.domain}/berth/img:v1`, `dir:${dir}`]);
  for (const l of image.layers) {
    assert.ok(readFileSync(join(dir, l.digest.slice('sha256:'.length))).equals(image.blobs.get(l.digest) as Buffer));
  }
  assert.ok(readdirSync(dir).includes('manifest.json'));
});

test('we push a two-platform index; skopeo reads it and picks each platform', async () => {
  const arm = buildImage([[{ path: 'arch', content: 'arm64' }]], { architecture: 'arm64', label: 'arm64' });
  const { index, blobs } = buildIndex([
    { image, os: 'linux', architecture: 'amd64' },
    { image: arm, os: 'linux', architecture: 'arm64' },
  ]);
  await push(client, `${registry.domain}/berth/multi:v1`, { store: new MemoryStore(blobs), descriptor: index });
  const raw = run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.domain}/berth/multi:v1`]);
  assert.equal(sha256(Buffer.from(raw)), index.digest);
  const armInfo = JSON.parse(
    run('skopeo', ['inspect', '--override-arch', 'arm64', '--tls-verify=false', `docker://${registry.domain}/berth/multi:v1`]),
  ) as { Labels: Record<string, string>; Architecture: string };
  assert.equal(armInfo.Labels['berth.test'], 'arm64');
  assert.equal(armInfo.Architecture, 'arm64');
  // And skopeo's copy of our index back through us: the same bytes.
  run('skopeo', ['copy', '--all', '--preserve-digests', '--src-tls-verify=false', '--dest-tls-verify=false',
    `docker://${registry.domain}/berth/multi:v1`, `docker://${registry.domain}/skopeo/multi:v1`]);
  const got = await pull(client, `${registry.domain}/skopeo/multi:v1`, { store: new MemoryStore(), platform: 'linux/arm64' });
  assert.equal(got.target.digest, index.digest);
  assert.equal(got.manifests.manifest.descriptor.digest, arm.manifest.digest);
});

test('skopeo converts to Docker schema 2; we pull the Docker media types', async () => {
  const layout = join(tmp.path, 'layout-v2s2');
  writeOciLayout(layout, image.blobs, image.manifest, 'v1');
  run('skopeo', ['copy', '--format', 'v2s2', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${registry.domain}/skopeo/docker:v1`]);
  const raw = Buffer.from(run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.domain}/skopeo/docker:v1`]));
  const store = new MemoryStore();
  const got = await pull(client, `${registry.domain}/skopeo/docker:v1`, { store });
  assert.equal(got.target.digest, sha256(raw));
  assert.equal(got.target.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  assert.equal(got.manifests.config.descriptor.mediaType, 'application/vnd.docker.container.image.v1+json');
  assert.ok(got.layers.every((l) => l.mediaType === 'application/vnd.docker.image.rootfs.diff.tar.gzip'));
  assert.ok(store.blobs.get(got.target.digest)?.equals(raw));
});
