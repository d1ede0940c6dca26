// A tree with every kind of file, exported and read back with GNU tar.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync, chownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync,
  symlinkSync, utimesSync, writeFileSync,
} from 'node:fs';
import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { exportRootfs } from './export.js';
import { sys } from '@berth/images';

const isRoot = process.getuid?.() === 0;

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-export-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) assert.fail(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A v2 security.capability value granting CAP_NET_BIND_SERVICE (bit 10), permitted and effective. */
const CAP_NET_BIND = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

const big = randomBytes(3 * 1024 * 1024 + 17);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function makeTree(root: string): void {
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'etc', 'hostname'), 'box\n');
  mkdirSync(join(root, 'private'));
  chmodSync(join(root, 'private'), 0o750);
  chownSync(join(root, 'private'), 1234, 5678);
  writeFileSync(join(root, 'private', 'big'), big);
  writeFileSync(join(root, 'suid'), '#!/bin/sh\n');
  chmodSync(join(root, 'suid'), 0o4755);
  symlinkSync('/no/such/target', join(root, 'dangling'));
  symlinkSync('etc/hostname', join(root, 'rel'));
  linkSync(join(root, 'etc', 'hostname'), join(root, 'hard'));
  run('mknod', [join(root, 'null'), 'c', '1', '3']);
  run('mknod', [join(root, 'fifo'), 'p']);
  writeFileSync(Buffer.from(join(root, 'caf\xe9'), 'latin1'), 'x'); // a name that is not UTF-8
  writeFileSync(join(root, 'capped'), 'bin');
  sys().lsetxattr(join(root, 'capped'), 'security.capability', CAP_NET_BIND, 0);
  mkdirSync(join(root, 'empty'));
  utimesSync(join(root, 'empty'), new Date('2021-02-03T04:05:06Z'), new Date('2021-02-03T04:05:06Z'));
}

async function exportTo(src: string, file: string): Promise<void> {
  await pipeline(exportRootfs(src), createWriteStream(file));
}

test('exportRootfs: kinds, owners, modes, links and devices, read back by tar', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'rootfs');
  mkdirSync(src);
  makeTree(src);
  const tarFile = join(dir, 'out.tar');
  await exportTo(src, tarFile);

  const listing = run('tar', ['--numeric-owner', '--quoting-style=escape', '-tvf', tarFile]).trim().split('\n');
  const byName = new Map<string, string[]>();
  for (const line of listing) {
    const f = line.split(/\s+/);
    byName.set(f.slice(5).join(' '), f);
  }
  const names = [...byName.keys()];
  assert.equal(names.some((n) => n.startsWith('./') || n.startsWith('/')), false, 'names are relative, without ./');
  assert.deepEqual(byName.get('private/')?.slice(0, 2), ['drwxr-x---', '1234/5678']);
  assert.deepEqual(byName.get('suid')?.slice(0, 1), ['-rwsr-xr-x']);
  assert.deepEqual(byName.get('dangling -> /no/such/target')?.slice(0, 1), ['lrwxrwxrwx']);
  assert.ok(byName.has('rel -> etc/hostname'));
  assert.ok(byName.has('hard link to etc/hostname'), 'the second name of a file is a hard link to the first');
  assert.deepEqual(byName.get('null')?.slice(0, 3), ['crw-r--r--', '0/0', '1,3']);
  assert.equal(byName.get('fifo')?.[0]?.[0], 'p');
  assert.ok(byName.has('caf\\351'), 'a name that is not UTF-8 keeps its bytes');
  assert.deepEqual(byName.get('empty/')?.slice(3, 5), ['2021-02-03', '04:05']);
  assert.equal(byName.get('private/big')?.[2], String(big.length));

  // extracted again: contents and the capability attribute
  const back = join(dir, 'back');
  mkdirSync(back);
  run('tar', ['--xattrs', '--xattrs-include=security.capability', '-xpf', tarFile, '-C', back]);
  assert.equal(sha(readFileSync(join(back, 'private', 'big'))), sha(big));
  assert.equal(readFileSync(join(back, 'etc', 'hostname'), 'utf8'), 'box\n');
  assert.equal(readlinkSync(join(back, 'dangling')), '/no/such/target');
  assert.equal(lstatSync(join(back, 'hard')).ino, lstatSync(join(back, 'etc', 'hostname')).ino);
  assert.deepEqual(sys().lgetxattr(join(back, 'capped'), 'security.capability'), CAP_NET_BIND);
  assert.equal(lstatSync(join(back, 'private')).uid, 1234);
  assert.deepEqual(readdirSync(back).sort(), readdirSync(src).sort());
});

test('exportRootfs: a slow consumer, and a consumer that goes away', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'rootfs');
  mkdirSync(src);
  for (let i = 0; i < 8; i++) writeFileSync(join(src, `f${i}`), big);
  const fdsBefore = readdirSync('/proc/self/fd').length;

  // slow: everything arrives, in order, and the stream never runs far ahead of the reader
  const stream = exportRootfs(src);
  let total = 0;
  let maxBuffered = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    total += chunk.length;
    maxBuffered = Math.max(maxBuffered, stream.readableLength);
    await sleep(1);
  }
  assert.equal(total % 512, 0);
  assert.ok(total > 8 * big.length);
  assert.ok(maxBuffered <= 2 * 1024 * 1024, `buffered ${maxBuffered} bytes ahead of a slow reader`);

  // gone: destroying the stream ends the walk and closes what it opened
  const s2 = exportRootfs(src);
  await new Promise<void>((resolve) => s2.once('readable', () => resolve()));
  s2.read();
  s2.destroy();
  await sleep(200);
  assert.equal(readdirSync('/proc/self/fd').length, fdsBefore);
});

test('exportRootfs: a missing directory is an error on the stream', async (t) => {
  const dir = tempDir(t);
  await assert.rejects(exportTo(join(dir, 'none'), join(dir, 'out.tar')), /export: open .*none: ENOENT/);
});
