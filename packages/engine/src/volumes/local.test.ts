import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dirSize, needsMount, resolveInRoot, validateLocalOptions } from './_local.js';

test('resolveInRoot keeps symlinks inside the root', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'vol-root-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'real', 'dir'), { recursive: true });
  symlinkSync('/real', join(root, 'abs'));
  symlinkSync('../../../../real/dir', join(root, 'real', 'up'));
  symlinkSync('/etc', join(root, 'hostetc'));
  assert.equal(resolveInRoot(root, '/abs/dir'), join(root, 'real', 'dir'));
  assert.equal(resolveInRoot(root, '/real/up'), join(root, 'real', 'dir'), '.. stops at the root');
  assert.equal(resolveInRoot(root, '/hostetc'), undefined, 'an absolute link starts again at the root');
  assert.equal(resolveInRoot(root, '/missing'), undefined);
  symlinkSync('loop', join(root, 'loop'));
  assert.equal(resolveInRoot(root, '/loop'), undefined);
});

test('validateLocalOptions checks the local driver options as Docker does', () => {
  validateLocalOptions(null);
  validateLocalOptions({ type: 'tmpfs', device: 'tmpfs', o: 'size=1m' });
  assert.throws(() => validateLocalOptions({ color: 'red' }), /invalid option: "color"/);
  assert.throws(() => validateLocalOptions({ type: 'tmpfs' }), /missing required option: "device"/);
  assert.throws(() => validateLocalOptions({ device: '/x' }), /missing required option: "type"/);
  assert.equal(needsMount({ type: 'none', device: '/x', o: 'bind' }), true);
  assert.equal(needsMount({}), false);
});

test('dirSize counts file bytes once per inode', async (t) => {
  const d = mkdtempSync(join(tmpdir(), 'vol-size-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  writeFileSync(join(d, 'a'), Buffer.alloc(1000));
  mkdirSync(join(d, 'sub'));
  writeFileSync(join(d, 'sub', 'b'), Buffer.alloc(24));
  assert.equal(await dirSize(d), 1024);
});
