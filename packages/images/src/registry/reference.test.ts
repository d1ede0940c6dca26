import test from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '@berth/base';
import {
  familiarName,
  familiarString,
  formatReference,
  parseDockerReference,
  parseReference,
  withTag,
} from './reference.js';

const D = `sha256:${'a'.repeat(64)}`;

test('normalises names as docker does', () => {
  const cases: Array<[string, string]> = [
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['user/app:tag', 'docker.io/user/app:tag'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/library/busybox', 'docker.io/library/busybox:latest'],
    ['localhost/x', 'localhost/x:latest'],
    ['localhost:5000/x', 'localhost:5000/x:latest'],
    ['127.0.0.1:5000/a/b@' + D, '127.0.0.1:5000/a/b@' + D],
    ['quay.io/a/b/c:v1@' + D, 'quay.io/a/b/c:v1@' + D],
    ['[::1]:5000/x:y', '[::1]:5000/x:y'],
    ['a.b-c__d/e--f:T_1.x', 'a.b-c__d/e--f:T_1.x'],
    ['Example.COM/x', 'Example.COM/x:latest'],
  ];
  for (const [input, want] of cases) assert.equal(formatReference(parseDockerReference(input)), want, input);
});

test('splits domain and path', () => {
  const r = parseReference('127.0.0.1:5000/a/b:t@' + D);
  assert.deepEqual(r, { domain: '127.0.0.1:5000', path: 'a/b', tag: 't', digest: D });
  // A first component without '.', ':' or localhost is a path, not a domain.
  assert.deepEqual(parseReference('foo/bar'), { domain: 'docker.io', path: 'foo/bar' });
  assert.equal(parseReference('busybox@' + D).tag, undefined);
  assert.equal(parseDockerReference('busybox@' + D).tag, undefined);
});

test('gives the familiar name back', () => {
  assert.equal(familiarName(parseReference('docker.io/library/busybox')), 'busybox');
  assert.equal(familiarName(parseReference('docker.io/library/a/b')), 'library/a/b');
  assert.equal(familiarName(parseReference('docker.io/user/app')), 'user/app');
  assert.equal(familiarName(parseReference('localhost:5000/x')), 'localhost:5000/x');
  assert.equal(familiarString(parseDockerReference('busybox')), 'busybox:latest');
  assert.equal(familiarString(parseReference('busybox@' + D)), 'busybox@' + D);
  assert.equal(formatReference(withTag(parseReference('x:1@' + D), 'v2')), 'docker.io/library/x:v2');
});

function rejects(input: string, message: string): void {
  assert.throws(() => parseReference(input), (err: unknown) => {
    assert.ok(err instanceof BerthError, input);
    assert.equal(err.kind, 'InvalidArgument');
    assert.equal(err.message, message, input);
    return true;
  });
}

test('rejects bad references with docker\'s messages', () => {
  rejects('Busybox', 'invalid reference format: repository name (library/Busybox) must be lowercase');
  rejects('user/App:tag', 'invalid reference format: repository name (user/App) must be lowercase');
  rejects('localhost:5000/App', 'invalid reference format: repository name (App) must be lowercase');
  rejects('', 'invalid reference format');
  rejects('busybox:', 'invalid reference format');
  rejects('busybox::tag', 'invalid reference format');
  rejects('-busybox', 'invalid reference format');
  rejects('a//b', 'invalid reference format');
  rejects('busybox:' + 'x'.repeat(129), 'invalid reference format');
  rejects('a'.repeat(64), `invalid repository name (${'a'.repeat(64)}), cannot specify 64-byte hexadecimal strings`);
  rejects('x@sha256:abc', 'invalid reference format');
  rejects(`x@sha256:${'a'.repeat(31)}`, 'invalid reference format');
  rejects(`x@sha256:${'a'.repeat(63)}`, 'invalid checksum digest length');
  rejects(`x@sha256:${'A'.repeat(64)}`, 'invalid checksum digest format');
  rejects(`x@md5:${'a'.repeat(32)}`, 'unsupported digest algorithm');
  rejects(`x/${'a'.repeat(250)}`, 'repository name must not be more than 255 characters');
});
