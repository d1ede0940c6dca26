#!/usr/bin/env node
// README's first command: runs a container end to end on the built-in defaults.
// Makes a bundle from the built-in busybox root filesystem (native/out/rootfs),
// writes the default config with `berth-runc spec`, and runs it with `berth-runc run`.
import { mkdtempSync, rmSync, readFileSync, writeFileSync, cpSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const runc = join(root, 'packages/runtime/bin/berth-runc.js');
const bundle = mkdtempSync(join(tmpdir(), 'berth-demo-'));
const stateRoot = join(bundle, 'state');
const id = `demo-${process.pid}`;
let status = 1;
try {
  cpSync(join(root, 'native/out/rootfs'), join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  const spec = spawnSync(process.execPath, [runc, 'spec', '--bundle', bundle], { stdio: 'inherit' });
  if (spec.status !== 0) throw new Error('berth-runc spec failed');
  const cfgPath = join(bundle, 'config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
  cfg.process.terminal = false;
  cfg.process.args = process.argv.length > 2 ? process.argv.slice(2) : [
    'sh', '-c',
    'echo "hello from a Berth container"; echo "hostname: $(hostname)"; echo "pid inside: $$"; id; ' +
    'echo "root, /proc and /dev:"; awk \'$5=="/"||$5=="/proc"||$5=="/dev" {print "  " $5, $9, $6}\' /proc/self/mountinfo; ' +
    'grep -E "^(CapEff|Seccomp|NoNewPrivs):" /proc/self/status',
  ];
  writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
  const r = spawnSync(process.execPath, [runc, '--root', stateRoot, 'run', '--bundle', bundle, id], { stdio: 'inherit' });
  status = r.status ?? 1;
  console.log(`\ncontainer ${id} exited with status ${status}`);
} finally {
  spawnSync(process.execPath, [runc, '--root', stateRoot, 'delete', '-f', id], { stdio: 'ignore' });
  rmSync(bundle, { recursive: true, force: true });
}
process.exit(status);
