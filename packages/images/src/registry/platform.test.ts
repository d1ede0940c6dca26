import test from 'node:test';
import assert from 'node:assert/strict';
import type { ImageDescriptor, ImagePlatform } from './media.js';
import { formatPlatform, hostPlatform, parsePlatformSpec, platformMatches, selectPlatform } from './platform.js';

const entry = (n: number, platform?: ImagePlatform): ImageDescriptor => ({
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: `sha256:${String(n).repeat(64).slice(0, 64)}`,
  size: n,
  ...(platform !== undefined ? { platform } : {}),
});

test('parses and formats platforms, with aliases', () => {
  assert.deepEqual(parsePlatformSpec('linux/amd64'), { os: 'linux', architecture: 'amd64' });
  assert.deepEqual(parsePlatformSpec('linux/x86_64'), { os: 'linux', architecture: 'amd64' });
  assert.deepEqual(parsePlatformSpec('linux/aarch64'), { os: 'linux', architecture: 'arm64' });
  assert.deepEqual(parsePlatformSpec('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' });
  assert.deepEqual(parsePlatformSpec('linux/arm'), { os: 'linux', architecture: 'arm', variant: 'v7' });
  assert.deepEqual(parsePlatformSpec('linux/armhf'), { os: 'linux', architecture: 'arm', variant: 'v7' });
  assert.equal(formatPlatform(parsePlatformSpec('linux/arm/v6')), 'linux/arm/v6');
  assert.throws(() => parsePlatformSpec('linux//x'), /invalid platform/);
  assert.equal(hostPlatform().os, 'linux');
});

test('selects the best platform of an index', () => {
  const idx = [
    entry(1, { os: 'linux', architecture: 'arm', variant: 'v6' }),
    entry(2, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
    entry(3, { os: 'linux', architecture: 'amd64' }),
    entry(4, { os: 'linux', architecture: 'arm', variant: 'v7' }),
    entry(5, { os: 'unknown', architecture: 'unknown' }),
    entry(6),
  ];
  assert.equal(selectPlatform(idx, { os: 'linux', architecture: 'amd64' })?.size, 3);
  assert.equal(selectPlatform(idx, { os: 'linux', architecture: 'arm64' })?.size, 2);
  assert.equal(selectPlatform(idx, { os: 'linux', architecture: 'arm', variant: 'v7' })?.size, 4);
  assert.equal(selectPlatform(idx, { os: 'linux', architecture: 'arm', variant: 'v6' })?.size, 1);
  assert.equal(selectPlatform(idx, { os: 'linux', architecture: 'arm', variant: 'v5' }), undefined);
  assert.equal(selectPlatform(idx, { os: 'windows', architecture: 'amd64' }), undefined);
  // arm64 falls back to 32-bit arm, best variant first; amd64 to 386.
  assert.equal(selectPlatform(idx.filter((e) => e.size !== 2), { os: 'linux', architecture: 'arm64' })?.size, 4);
  assert.ok(platformMatches({ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: '386' }));
  assert.ok(!platformMatches({ os: 'linux', architecture: '386' }, { os: 'linux', architecture: 'amd64' }));
});
