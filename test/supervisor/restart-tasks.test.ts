/**
 * Containers outlive the supervisor: 20 detached containers write numbered
 * lines to file:// logs; berth-containerd is killed with SIGKILL while they
 * run and some of them exit (with distinct codes) while it is down; after a
 * restart every container that was running still runs, every line of every
 * log is there once and in order, and each exit is reported with its real
 * code by Wait, by `ctr task ls` and as a /tasks/exit event. Root only.
 */
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Api, cleanup, ctr, ctrOk, loadProtos, rows, startDaemon, tempDirs } from './_daemon.js';
import type { DaemonProcess, Msg } from './_daemon.js';
import { copyRootfs, killLeftovers, liveEvents, removeCtrFifos, until } from './_tasks.js';

const TASKS = 'containerd.services.tasks.v1.Tasks';
const dirs = tempDirs();
const ns = `restart${process.pid}`;
let daemon: DaemonProcess | undefined;
let api: Api | undefined;

after(async () => {
  api?.close();
  try {
    await killLeftovers(dirs.state, [ns]);
    removeCtrFifos(Array.from({ length: 20 }, (_, i) => `c${String(i).padStart(2, '0')}`));
  } finally {
    await cleanup(daemon, dirs);
  }
});

interface Box {
  id: string;
  lines: number;
  /** Exits while the supervisor is down, with this code; undefined: runs on past the restart and exits 0. */
  earlyCode: number | undefined;
}

const LONG_LINES = 600;
const SHORT_LINES = 100;

/**
 * The containers share one rootfs, whose /tmp the test writes to: the early
 * ones start writing when /tmp/go appears (after the kill), the others write
 * half their lines, then wait for /tmp/finish (after the restart).
 */
function script(b: Box): string {
  if (b.earlyCode === undefined) {
    const half = b.lines / 2;
    return `i=0; while [ $i -lt ${b.lines} ]; do echo $i; i=$((i+1)); sleep 0.01; `
      + `if [ $i -eq ${half} ]; then while [ ! -e /tmp/finish ]; do sleep 0.05; done; fi; done`;
  }
  return `while [ ! -e /tmp/go ]; do sleep 0.05; done; i=0; while [ $i -lt ${b.lines} ]; do echo $i; i=$((i+1)); done; exit ${b.earlyCode}`;
}

test('tasks survive kill -9 of berth-containerd: output, running state and exit codes', async () => {
  const rootfs = copyRootfs(dirs.base);
  mkdirSync(join(rootfs, 'tmp'), { recursive: true });
  const logs = join(dirs.base, 'logs');
  const boxes: Box[] = [];
  for (let i = 0; i < 20; i++) {
    const early = i >= 15;
    boxes.push({ id: `c${String(i).padStart(2, '0')}`, lines: early ? SHORT_LINES : LONG_LINES, earlyCode: early ? 11 + (i - 15) : undefined });
  }

  daemon = await startDaemon(dirs);
  for (const b of boxes) {
    ctrOk(dirs.address, ['run', '-d', '--log-uri', `file://${join(logs, `${b.id}.log`)}`, '--rootfs', rootfs, b.id, '/bin/sh', '-c', script(b)], ns);
  }
  assert.equal(rows(ctrOk(dirs.address, ['task', 'ls'], ns)).filter((r) => r[2] === 'RUNNING').length, 20);
  await daemon.kill9();
  writeFileSync(join(rootfs, 'tmp', 'go'), '');

  // While it is down: the early ones write and exit (the shims record it), the others write on.
  const exitFile = (b: Box): string => join(dirs.state, 'shims', ns, b.id, 'exit');
  await until('the early containers to exit', () => boxes.filter((b) => b.earlyCode !== undefined).every((b) => existsSync(exitFile(b))), 20_000);
  for (const b of boxes.filter((x) => x.earlyCode === undefined)) assert.ok(!existsSync(exitFile(b)), `${b.id} still runs`);

  daemon = await startDaemon(dirs);
  api = new Api(dirs.address);
  const { stream: exits, until: exitsUntil } = await liveEvents(api, ns, [`topic=="/tasks/exit",namespace==${ns}`]);

  const ls = new Map(rows(ctrOk(dirs.address, ['task', 'ls'], ns)).map((r) => [r[0], r[2]]));
  for (const b of boxes) assert.equal(ls.get(b.id), b.earlyCode === undefined ? 'RUNNING' : 'STOPPED', b.id);

  writeFileSync(join(rootfs, 'tmp', 'finish'), '');
  const waits = await Promise.all(boxes.map((b) => api!.unary(TASKS, 'Wait', { container_id: b.id }, ns)));
  waits.forEach((w, i) => {
    const b = boxes[i]!;
    assert.equal(w['exit_status'], b.earlyCode ?? 0, `${b.id} exit status`);
    assert.ok(Number((w['exited_at'] as Msg | null)?.['seconds']) > 0, `${b.id} exit time`);
  });

  const protos = loadProtos();
  const envelopes = await exitsUntil((got) => got.length >= 20, 30_000);
  exits.cancel();
  const byId = new Map<string, number>();
  for (const env of envelopes) {
    const any = env['event'] as { type_url: string; value: Buffer };
    const e = protos.decode('containerd.events.TaskExit', any.value);
    assert.equal(e['container_id'], e['id']);
    byId.set(String(e['container_id']), Number(e['exit_status']));
  }
  for (const b of boxes) assert.equal(byId.get(b.id), b.earlyCode ?? 0, `/tasks/exit for ${b.id}`);

  for (const b of boxes) {
    const text = readFileSync(join(logs, `${b.id}.log`), 'utf8');
    const expected = Array.from({ length: b.lines }, (_, i) => `${i}\n`).join('');
    assert.ok(text === expected, `${b.id}.log has every line once, in order (${text.split('\n').length - 1} lines)`);
  }

  const ls2 = new Map(rows(ctrOk(dirs.address, ['task', 'ls'], ns)).map((r) => [r[0], r[2]]));
  for (const b of boxes) assert.equal(ls2.get(b.id), 'STOPPED');
  for (const b of boxes) {
    const rm = ctr(dirs.address, ['task', 'rm', b.id], ns);
    assert.equal(rm.code, 0, rm.stderr);
    ctrOk(dirs.address, ['containers', 'rm', b.id], ns);
  }
  assert.deepEqual(rows(ctrOk(dirs.address, ['task', 'ls'], ns)), []);
});
