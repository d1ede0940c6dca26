/**
 * berthd comes and goes; containers stay. Stopping or killing the engine (and
 * its supervisor) leaves containers running; a new engine on the same
 * directories serves the same state, collects the exits that happened while
 * it was away (--rm honoured, restart policies applied) and keeps the logs.
 * Also health checks, which run while the engine is up.
 */
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanupEngine, docker, dockerOk, engineDirs, startEngine } from './_engine.js';
import type { EngineProcess } from './_engine.js';

const dirs = engineDirs();
let engine: EngineProcess | undefined;
after(async () => {
  await cleanupEngine(engine, dirs);
});

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (pred()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const inspect = (ref: string): { State: { Running: boolean; Pid: number; Status: string; ExitCode: number; Health?: { Status: string } }; RestartCount: number } =>
  JSON.parse(dockerOk(dirs.socket, ['inspect', '--format', '{{json .}}', ref])) as never;

test('containers outlive the engine; a new engine picks them up', async () => {
  engine = await startEngine(dirs);
  const s = dirs.socket;
  dockerOk(s, ['run', '-d', '--name', 'keep', 'busybox', 'sh', '-c', 'i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done']);
  dockerOk(s, ['run', '-d', '--rm', '--name', 'gone', 'busybox', 'sleep', '2']);
  dockerOk(s, ['run', '-d', '--restart', 'always', '--name', 'always1', 'busybox', 'sleep', '1000']);
  const keepPid = inspect('keep').State.Pid;
  const alwaysPid = inspect('always1').State.Pid;
  assert.ok(existsSync(`/proc/${keepPid}`));

  await engine.stop();
  assert.ok(existsSync(`/proc/${keepPid}`), 'the container runs on while the engine is down');
  process.kill(alwaysPid, 'SIGKILL');
  await sleep(3000); // `gone` exits meanwhile

  engine = await startEngine(dirs);
  const keep = inspect('keep');
  assert.equal(keep.State.Running, true);
  assert.equal(keep.State.Pid, keepPid, 'same process');
  assert.equal(docker(s, ['inspect', 'gone']).code, 1, '--rm container removed after exiting while the engine was away');
  await until(() => inspect('always1').State.Running && inspect('always1').State.Pid !== alwaysPid, 15_000, 'always1 restarted');
  const logs = dockerOk(s, ['logs', 'keep']).split('\n').filter((l) => l !== '');
  const nums = logs.map((l) => Number(l.split(' ')[1]));
  assert.ok(nums.length >= 15, `logged across the downtime: ${nums.length} lines`);
  nums.forEach((n, i) => assert.equal(n, i, 'no line lost or repeated'));

  // SIGKILL of the engine: the same.
  await engine.kill9();
  assert.ok(existsSync(`/proc/${keepPid}`));
  engine = await startEngine(dirs);
  assert.equal(inspect('keep').State.Pid, keepPid);
  dockerOk(s, ['stop', '-t', '1', 'keep']);
  assert.equal(inspect('keep').State.Running, false);
  assert.ok(!existsSync(`/proc/${keepPid}`));
  dockerOk(s, ['rm', '-f', 'keep', 'always1']);
});

test('health checks run and report', async () => {
  engine ??= await startEngine(dirs);
  const s = dirs.socket;
  dockerOk(s, ['run', '-d', '--name', 'hc', '--health-cmd', 'test -f /tmp/ok', '--health-interval', '300ms', '--health-retries', '2',
    'busybox', 'sleep', '1000']);
  assert.equal(inspect('hc').State.Health?.Status, 'starting');
  await until(() => inspect('hc').State.Health?.Status === 'unhealthy', 15_000, 'unhealthy');
  assert.match(dockerOk(s, ['ps', '--format', '{{.Status}}', '-f', 'name=hc']), /\(unhealthy\)/);
  dockerOk(s, ['exec', 'hc', 'touch', '/tmp/ok']);
  await until(() => inspect('hc').State.Health?.Status === 'healthy', 15_000, 'healthy');
  assert.equal(dockerOk(s, ['ps', '-q', '-f', 'health=healthy']).trim().length, 12);
  dockerOk(s, ['rm', '-f', 'hc']);
});
