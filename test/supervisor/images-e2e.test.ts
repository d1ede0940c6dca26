/**
 * The image round trip through the real ctr (Debian containerd 1.6, which
 * pulls client-side through our Content, Images, Leases, Snapshots and Diff
 * services) against berth-containerd and Debian's docker-registry: skopeo
 * puts an image in; ctr pulls, lists, runs, tags, pushes, exports, removes,
 * imports and runs it again; skopeo reads both names back with the same
 * digest. And a hostile layer pulled the same way fails its unpack, writes
 * nothing outside its snapshot and commits no snapshot. Root only.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, ctr, ctrOk, rows, startDaemon, tempDirs } from './_daemon.js';
import type { DaemonProcess } from './_daemon.js';
import { TEST_ROOTFS, killLeftovers, removeCtrFifos, until } from './_tasks.js';
import {
  chainIdsOf, rawTar, rootfsLayout, skopeoPush, skopeoRaw, startRegistry, unmountUnder, writeLayout,
} from './_registry.js';
import type { Registry } from './_registry.js';

const dirs = tempDirs();
const NS = `e2e${process.pid}`;
const HOSTILE_NS = `e2ehostile${process.pid}`;
let daemon: DaemonProcess | undefined;
let registry: Registry | undefined;

before(async () => {
  registry = await startRegistry();
  daemon = await startDaemon(dirs);
});

after(async () => {
  try {
    await killLeftovers(dirs.state, [NS, HOSTILE_NS]);
    removeCtrFifos(['e2e-run1', 'e2e-detached', 'e2e-run2']);
  } finally {
    try {
      if (daemon?.running === true) await daemon.stop();
      unmountUnder(dirs.base);
    } finally {
      await cleanup(daemon, dirs);
      await registry?.stop();
    }
  }
});

function reg(): Registry {
  if (registry === undefined) throw new Error('the registry did not start');
  return registry;
}

/** ctr with a longer timeout than the shared helper's for the transfers. */
function ctrIn(ns: string, args: readonly string[]): ReturnType<typeof ctr> {
  return ctr(dirs.address, args, ns);
}

test('skopeo → registry → ctr pull, ls, run, tag, push, export, rm, import, run → skopeo: same digests', async () => {
  const a = dirs.address;
  const src = `${reg().domain}/e2e/busybox:latest`;
  const copy = `${reg().domain}/e2e/copy:v2`;
  const work = join(dirs.base, 'work');
  mkdirSync(work);
  skopeoPush(rootfsLayout(work, TEST_ROOTFS), 'latest', src);
  const pushed = skopeoRaw(src);

  // Pull and list.
  const pull = ctrIn(NS, ['images', 'pull', '--plain-http', src]);
  assert.equal(pull.code, 0, pull.stderr + pull.stdout);
  const listed = rows(ctrOk(a, ['images', 'ls'], NS));
  const row = listed.find((r) => r[0] === src);
  assert.ok(row !== undefined, JSON.stringify(listed));
  assert.equal(row[2], pushed.digest);
  assert.equal(row[1], 'application/vnd.oci.image.manifest.v1+json');
  assert.ok(rows(ctrOk(a, ['snapshots', 'ls'], NS)).some((r) => r[r.length - 1] === 'Committed'), 'the layer is unpacked');

  // Run it, attached and removed afterwards.
  const run = ctrIn(NS, ['run', '--rm', src, 'e2e-run1', '/bin/sh', '-c', 'echo pulled-ok; id -u; test -x /bin/busybox && echo has-busybox']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'pulled-ok\n0\nhas-busybox\n');
  assert.equal(rows(ctrOk(a, ['containers', 'ls'], NS)).length, 0);

  // Detached, then killed and removed with its snapshot.
  ctrOk(a, ['run', '-d', src, 'e2e-detached', '/bin/sleep', '300'], NS);
  const taskRow = (): string[] | undefined => rows(ctrOk(a, ['task', 'ls'], NS)).find((r) => r[0] === 'e2e-detached');
  assert.equal(taskRow()?.[2], 'RUNNING');
  ctrOk(a, ['task', 'kill', '-s', 'SIGKILL', 'e2e-detached'], NS);
  await until('e2e-detached stopped', () => taskRow()?.[2] === 'STOPPED');
  ctrOk(a, ['task', 'rm', 'e2e-detached'], NS);
  ctrOk(a, ['containers', 'rm', 'e2e-detached'], NS);
  assert.ok(!rows(ctrOk(a, ['snapshots', 'ls'], NS)).some((r) => r[0] === 'e2e-detached'), 'the container snapshot is gone');

  // Tag and push under another name.
  ctrOk(a, ['images', 'tag', src, copy], NS);
  const push = ctrIn(NS, ['images', 'push', '--plain-http', copy]);
  assert.equal(push.code, 0, push.stderr + push.stdout);
  const back = skopeoRaw(copy);
  assert.equal(back.digest, pushed.digest);
  assert.equal(back.raw, pushed.raw);
  assert.equal(skopeoRaw(src).digest, pushed.digest);

  // Export, remove, import, run again.
  const tar = join(work, 'export.tar');
  ctrOk(a, ['images', 'export', tar, copy], NS);
  assert.ok(statSync(tar).size > 100_000, 'the export holds the layer');
  ctrOk(a, ['images', 'rm', src, copy], NS);
  assert.deepEqual(rows(ctrOk(a, ['images', 'ls'], NS)), []);
  const imp = ctrIn(NS, ['images', 'import', tar]);
  assert.equal(imp.code, 0, imp.stderr + imp.stdout);
  const after = rows(ctrOk(a, ['images', 'ls'], NS));
  assert.deepEqual(after.map((r) => [r[0], r[2]]), [[copy, pushed.digest]]);
  const again = ctrIn(NS, ['run', '--rm', copy, 'e2e-run2', '/bin/sh', '-c', 'echo imported-ok']);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, 'imported-ok\n');
});

test('a hostile layer pulled by ctr fails its unpack, writes nothing outside and commits no snapshot', () => {
  const a = dirs.address;
  const outside = join(dirs.base, 'outside');
  mkdirSync(outside);
  const layer = rawTar([
    { name: 'ok.txt', type: 'file', content: 'fine\n' },
    { name: 'esc', type: 'symlink', linkname: outside },
    { name: 'esc/through-abs', type: 'file', content: 'escaped\n' },
    { name: 'up', type: 'symlink', linkname: '../../../../../../../../../../..' },
    { name: `up${outside}/through-rel`, type: 'file', content: 'escaped\n' },
    { name: `../../../../../../../../../../..${outside}/dotdot`, type: 'file', content: 'escaped\n' },
  ]);
  const img = writeLayout(join(dirs.base, 'hostile-oci'), 'evil', [layer]);
  const ref = `${reg().domain}/e2e/hostile:evil`;
  skopeoPush(img.layout, 'evil', ref);

  const r = ctrIn(HOSTILE_NS, ['images', 'pull', '--plain-http', ref]);
  assert.notEqual(r.code, 0, `the pull must fail: ${r.stdout}`);
  assert.match(r.stderr, /unpack|apply/i);
  assert.deepEqual(readdirSync(outside), [], 'nothing was written outside the snapshot');
  const snaps = rows(ctrOk(a, ['snapshots', 'ls'], HOSTILE_NS));
  const [chain] = chainIdsOf(img.diffIds);
  assert.ok(!snaps.some((s) => s[0] === chain), `no snapshot named ${chain ?? ''}: ${JSON.stringify(snaps)}`);
  assert.deepEqual(snaps.filter((s) => s[s.length - 1] === 'Committed'), []);
  assert.deepEqual(snaps.filter((s) => s[s.length - 1] === 'Active'), [], 'the extraction snapshot was removed');
});
