#!/usr/bin/env node
// README's first command: runs a container end to end on the built-in defaults.
// Starts berthd on its default paths (/run/berth/berth.sock, /var/lib/berth) unless one
// is already serving there, runs `berth run --rm busybox …` through the whole stack
// (berth -> berthd -> berth-containerd -> berth-shim -> executor), then stops the
// daemon it started (containers and images stay where they are).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { connect } from 'node:net';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const berthd = join(root, 'packages/engine/bin/berthd.js');
const berth = join(root, 'packages/cli/bin/berth.js');
const socket = '/run/berth/berth.sock';

function accepts(path) {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

let daemon;
if (!(existsSync(socket) && await accepts(socket))) {
  mkdirSync('/run/berth', { recursive: true });
  const log = openSync('/run/berth/berthd.log', 'a');
  daemon = spawn(process.execPath, [berthd], { stdio: ['ignore', log, log] });
  closeSync(log);
  const deadline = Date.now() + 60_000;
  while (!(existsSync(socket) && await accepts(socket))) {
    if (daemon.exitCode !== null || Date.now() > deadline) {
      console.error('berthd did not start; see /run/berth/berthd.log');
      process.exit(1);
    }
    await sleep(100);
  }
  console.log(`started berthd (pid ${daemon.pid}) on ${socket}`);
}

const cmd = process.argv.length > 2 ? process.argv.slice(2) : [
  'sh', '-c',
  'echo "hello from a Berth container"; echo "hostname: $(hostname)"; echo "pid inside: $$"; id; ' +
  'echo "root, /proc and /dev:"; awk \'$5=="/"||$5=="/proc"||$5=="/dev" {print "  " $5, $9, $6}\' /proc/self/mountinfo; ' +
  'grep -E "^(CapEff|Seccomp|NoNewPrivs):" /proc/self/status',
];
console.log(`$ berth run --rm busybox ${cmd.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
const r = spawnSync(process.execPath, [berth, '-H', `unix://${socket}`, 'run', '--rm', 'busybox', ...cmd], { stdio: 'inherit' });
const status = r.status ?? 1;
console.log(`\ncontainer exited with status ${status}`);
if (daemon !== undefined) {
  daemon.kill('SIGTERM');
  await new Promise((resolve) => daemon.once('exit', resolve));
  console.log('stopped berthd');
}
process.exit(status);
