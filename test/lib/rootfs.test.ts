// The built-in test root filesystem (scripts/make-rootfs.sh via make -C native).
import test from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BUILTIN_ROOTFS, requireRootfs } from './bundle.js';

const r = (p: string): string => join(BUILTIN_ROOTFS, p);

test('the built-in rootfs has the busybox layout, users and the probe', () => {
  requireRootfs();
  assert.equal(readlinkSync(r('bin/sh')), 'busybox');
  assert.ok(lstatSync(r('bin/ls')).isSymbolicLink());
  assert.equal(statSync(r('probe')).mode & 0o777, 0o755);
  const passwd = readFileSync(r('etc/passwd'), 'utf8');
  assert.match(passwd, /^root:x:0:0:/m);
  assert.match(passwd, /^user:x:1000:1000:/m);
  assert.match(passwd, /^nobody:x:65534:65534:/m);
  assert.match(readFileSync(r('etc/group'), 'utf8'), /^user:x:1000:/m);
  assert.equal(readFileSync(r('etc/resolv.conf'), 'utf8'), '');
  assert.equal(statSync(r('tmp')).mode & 0o7777, 0o1777);
  assert.equal(statSync(r('home/user')).uid, 1000);
  for (const d of ['proc', 'sys', 'dev', 'root']) assert.ok(statSync(r(d)).isDirectory(), d);
});
