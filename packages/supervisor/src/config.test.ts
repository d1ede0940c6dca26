import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_ADDRESS, DEFAULT_ROOT, parseArgs } from './config.js';

test('flags in containerd forms', () => {
  assert.deepEqual(parseArgs(['-v']), { kind: 'version' });
  const c = parseArgs(['--address=unix:///tmp/x.sock', '--root', '/r', '-state', '/s', '--log-level', 'trace']);
  assert.equal(c.kind, 'run');
  if (c.kind !== 'run') return;
  assert.equal(c.config.address, '/tmp/x.sock');
  assert.equal(c.config.root, '/r');
  assert.equal(c.config.state, '/s');
  assert.equal(c.config.logLevel, 'debug');
  assert.throws(() => parseArgs(['--bogus']), /unknown argument/);
  assert.throws(() => parseArgs(['--root']), /needs a value/);
});

test('config file subset; flags win; unknown settings listed', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'config.toml');
  writeFileSync(file, `version = 2
root = "/var/lib/x" # comment
state = '/run/x'
oom_score = -999

[grpc]
  address = "/run/x/x.sock"

[debug]
  level = "warn"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.gcr.io/pause:3.6"
`);
  const c = parseArgs(['--config', file, '--state', '/run/y']);
  assert.equal(c.kind, 'run');
  if (c.kind !== 'run') return;
  assert.equal(c.config.root, '/var/lib/x');
  assert.equal(c.config.state, '/run/y');
  assert.equal(c.config.address, '/run/x/x.sock');
  assert.equal(c.config.logLevel, 'warn');
  assert.deepEqual(c.config.ignored, ['oom_score', 'plugins."io.containerd.grpc.v1.cri".sandbox_image']);
  const d = parseArgs([]);
  assert.ok(d.kind === 'run' && d.config.address === DEFAULT_ADDRESS && d.config.root === DEFAULT_ROOT);
});
