/**
 * The Diff service: layer blobs ingested with the real ctr are applied onto
 * overlayfs and native snapshots (whiteouts and opaque directories
 * included), and `ctr snapshots diff` makes layers back from snapshots,
 * which apply again to the same tree. Needs root (mounts, device whiteouts).
 */
import test from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { status } from '@grpc/grpc-js';
import { ctrOk, grpcError, useDaemon } from './_daemon.js';
import type { Msg } from './_daemon.js';

const SNAPSHOTS = 'containerd.services.snapshots.v1.Snapshots';
const DIFF = 'containerd.services.diff.v1.Diff';
const GZIP_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root';

const { dirs, client } = useDaemon();

/**
 * The garbage collector removes what nothing references once a lease goes
 * (ctr snapshots diff uses one): what these tests make is pinned with gc.root.
 */
const KEEP = { 'containerd.io/gc.root': 'diff-test' };

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function run(cmd: string, args: readonly string[], input?: Buffer): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.toString()}`);
  return r.stdout;
}

/** A gzip layer of a directory tree made with GNU tar, ingested with ctr; its descriptor and diff ID. */
function layer(t: TestContext, ns: string, files: Readonly<Record<string, string>>): { desc: Msg; diffId: string } {
  const src = mkdtempSync(join(dirs.base, 'layer-'));
  t.after(() => rmSync(src, { recursive: true, force: true }));
  for (const [name, content] of Object.entries(files)) {
    const p = join(src, name);
    if (name.endsWith('/')) {
      mkdirSync(p, { recursive: true });
      continue;
    }
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, content);
  }
  const gz = run('tar', ['-C', src, '--sort=name', '--owner=0', '--group=0', '-czf', '-', '.']);
  const digest = sha256(gz);
  // ctr content ingest takes no labels: pin the blob after (again, should a collection come in between).
  for (let attempt = 1; ; attempt += 1) {
    run('/usr/bin/ctr', ['--address', dirs.address, '--namespace', ns, 'content', 'ingest', '--expected-digest', digest, '--expected-size', String(gz.length), `ingest-${digest.slice(7, 19)}`], gz);
    try {
      ctrOk(dirs.address, ['content', 'label', digest, 'containerd.io/gc.root=diff-test'], ns);
      break;
    } catch (e) {
      if (attempt === 3) throw e;
    }
  }
  return { desc: { media_type: GZIP_LAYER, digest, size: gz.length }, diffId: sha256(gunzipSync(gz)) };
}

/** Mount at a fresh directory, run fn, always unmount. */
function withMounted<T>(mounts: readonly Msg[], fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(dirs.base, 'mnt-'));
  const done: string[] = [];
  try {
    for (const m of mounts) {
      const options = (m['options'] as string[]).join(',');
      run('mount', ['-t', String(m['type']), String(m['source']), dir, ...(options === '' ? [] : ['-o', options])]);
      done.push(dir);
    }
    return fn(dir);
  } finally {
    for (const d of done.reverse()) spawnSync('umount', [d]);
    rmdirSync(dir);
  }
}

function tree(dir: string): string[] {
  const out: string[] = [];
  const visit = (rel: string): void => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      out.push(e.isDirectory() ? `${r}/` : `${r}=${readFileSync(join(dir, r), 'utf8')}`);
      if (e.isDirectory()) visit(r);
    }
  };
  visit('');
  return out.sort();
}

async function applyLayers(snapshotter: string, ns: string, t: TestContext): Promise<void> {
  const api = client();
  const one = layer(t, ns, { 'keep': 'k', 'gone': 'g', 'opq/old': 'o', 'dir/inner': 'i' });
  const two = layer(t, ns, { '.wh.gone': '', 'opq/.wh..wh..opq': '', 'opq/new': 'n', 'dir/inner': 'changed', 'added': 'a' });

  let r = await api.unary(SNAPSHOTS, 'Prepare', { snapshotter, key: 'x1', labels: KEEP }, ns);
  let applied = await api.unary(DIFF, 'Apply', { diff: one.desc, mounts: r['mounts'] }, ns);
  assert.deepEqual(applied['applied'], {
    media_type: 'application/vnd.oci.image.layer.v1.tar', digest: one.diffId, size: (applied['applied'] as Msg)['size'], annotations: {},
  });
  await api.unary(SNAPSHOTS, 'Commit', { snapshotter, key: 'x1', name: 'chain1', labels: KEEP }, ns);

  r = await api.unary(SNAPSHOTS, 'Prepare', { snapshotter, key: 'x2', parent: 'chain1', labels: KEEP }, ns);
  applied = await api.unary(DIFF, 'Apply', { diff: two.desc, mounts: r['mounts'], sync_fs: true }, ns);
  assert.equal((applied['applied'] as Msg)['digest'], two.diffId);
  await api.unary(SNAPSHOTS, 'Commit', { snapshotter, key: 'x2', name: 'chain2', labels: KEEP }, ns);

  const expected = ['added=a', 'dir/', 'dir/inner=changed', 'keep=k', 'opq/', 'opq/new=n'];
  r = await api.unary(SNAPSHOTS, 'View', { snapshotter, key: 'look', parent: 'chain2', labels: KEEP }, ns);
  assert.deepEqual(withMounted(r['mounts'] as Msg[], tree), expected);

  // A view cannot take a layer; unknown media types and missing blobs are refused.
  let e = await grpcError(api.unary(DIFF, 'Apply', { diff: one.desc, mounts: r['mounts'] }, ns));
  assert.equal(e.code, status.INVALID_ARGUMENT, e.details);
  const fresh = await api.unary(SNAPSHOTS, 'Prepare', { snapshotter, key: 'x3', labels: KEEP }, ns);
  e = await grpcError(api.unary(DIFF, 'Apply', { diff: { ...one.desc, media_type: 'application/vnd.example.nope' }, mounts: fresh['mounts'] }, ns));
  assert.equal(e.code, status.UNIMPLEMENTED, e.details);
  e = await grpcError(api.unary(DIFF, 'Apply', { diff: { ...one.desc, digest: sha256(Buffer.from('nothing')) }, mounts: fresh['mounts'] }, ns));
  assert.equal(e.code, status.NOT_FOUND, e.details);

  // ctr snapshots diff: the layer of chain2 against its parent, printed to stdout.
  const argv = ['--address', dirs.address, '--namespace', ns, 'snapshots', '--snapshotter', snapshotter, 'diff', '--keep', '--ref', `mk-${snapshotter}`];
  const made = run('/usr/bin/ctr', [...argv, 'chain2']);
  const entries = run('tar', ['-tzf', '-'], made).toString().split('\n').filter((l) => l !== '').sort();
  // An overlay upper dir says "opq is opaque"; comparing two trees names what went instead.
  const opaque = snapshotter === 'overlayfs' ? 'opq/.wh..wh..opq' : 'opq/.wh.old';
  assert.deepEqual(entries, ['.wh.gone', 'added', 'dir/', 'dir/inner', 'opq/', opaque, 'opq/new'].sort(), entries.join(' '));
  const madeDigest = sha256(made);
  const listed = ctrOk(dirs.address, ['content', 'ls'], ns);
  const line = listed.split('\n').find((l) => l.startsWith(madeDigest));
  assert.ok(line !== undefined, `the made layer is in the content store:\n${listed}`);
  assert.match(line, new RegExp(`containerd.io/uncompressed=${sha256(gunzipSync(made))}`));

  // The made layer applied on chain1 gives chain2's tree again.
  r = await api.unary(SNAPSHOTS, 'Prepare', { snapshotter, key: 'again', parent: 'chain1', labels: KEEP }, ns);
  await api.unary(DIFF, 'Apply', { diff: { media_type: GZIP_LAYER, digest: madeDigest, size: made.length }, mounts: r['mounts'] }, ns);
  assert.deepEqual(withMounted(r['mounts'] as Msg[], tree), expected);

  // Uncompressed, and backwards (from chain2 to chain1: the trees are mounted and compared).
  const plain = run('/usr/bin/ctr', [...argv.slice(0, -2), '--ref', `mk2-${snapshotter}`, '--media-type', 'application/vnd.oci.image.layer.v1.tar', 'chain2', 'chain1']);
  const plainEntries = run('tar', ['-tf', '-'], plain).toString().split('\n').filter((l) => l !== '').sort();
  assert.deepEqual(plainEntries, ['.wh.added', 'dir/', 'dir/inner', 'gone', 'opq/', 'opq/.wh.new', 'opq/old'], plainEntries.join(' '));

  for (const k of ['again', 'x3', 'look', 'chain2', 'chain1']) await api.unary(SNAPSHOTS, 'Remove', { snapshotter, key: k }, ns);
}

test('Apply and Diff on overlayfs snapshots', { skip }, async (t) => {
  await applyLayers('overlayfs', 'diff-overlay', t);
});

test('Apply and Diff on native snapshots', { skip }, async (t) => {
  await applyLayers('native', 'diff-native', t);
});

test('Diff refuses media types it cannot make', { skip }, async () => {
  const api = client();
  const ns = 'diff-bad';
  const r = await api.unary(SNAPSHOTS, 'Prepare', { key: 'a', labels: KEEP }, ns);
  for (const [mediaType, code] of [['application/vnd.oci.image.layer.v1.tar+zstd', status.UNIMPLEMENTED], ['text/plain', status.UNIMPLEMENTED]] as const) {
    const e = await grpcError(api.unary(DIFF, 'Diff', { left: [], right: r['mounts'], media_type: mediaType }, ns));
    assert.equal(e.code, code, `${mediaType}: ${e.details}`);
  }
  const e = await grpcError(api.unary(DIFF, 'Diff', { left: [], right: [] }, ns));
  assert.equal(e.code, status.INVALID_ARGUMENT);
  await api.unary(SNAPSHOTS, 'Remove', { key: 'a' }, ns);
});
