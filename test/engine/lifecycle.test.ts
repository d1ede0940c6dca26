/**
 * berthd driven by the real docker CLI: the container lifecycle end to end
 * on the built-in busybox image.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { api, docker, dockerOk, useEngine } from './_engine.js';

const { dirs } = useEngine();
const sock = (): string => dirs.socket;

async function until(pred: () => boolean | Promise<boolean>, ms = 15_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('ping, version and info answer as dockerd', async () => {
  const ping = await api(sock(), 'GET', '/_ping');
  assert.equal(ping.status, 200);
  assert.equal(ping.body, 'OK');
  assert.equal(ping.headers['api-version'], '1.50');
  const head = await api(sock(), 'HEAD', '/_ping');
  assert.equal(head.status, 200);
  const v = JSON.parse(dockerOk(sock(), ['version', '--format', '{{json .Server}}'])) as { ApiVersion: string; Os: string };
  assert.equal(v.ApiVersion, '1.50');
  assert.equal(v.Os, 'linux');
  const old = await api(sock(), 'GET', '/v1.12/version');
  assert.equal(old.status, 400);
  assert.match(old.body, /too old/);
  const vers = await api(sock(), 'GET', '/v1.24/version');
  assert.equal(vers.status, 200);
  const info = JSON.parse(dockerOk(sock(), ['info', '--format', '{{json .}}'])) as { NCPU: number; MemTotal: number; Images: number };
  assert.ok(info.NCPU >= 1);
  assert.ok(info.MemTotal > 0);
  assert.ok(info.Images >= 1, 'the built-in busybox image is there');
});

test('docker run prints the output and exits with the container status', () => {
  const r = docker(sock(), ['run', '--rm', 'busybox', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stdout, 'out\n');
  assert.equal(r.stderr, 'err\n');
});

test('run -d, ps, inspect, logs, stop, rm', async () => {
  const id = dockerOk(sock(), ['run', '-d', '--name', 'web1', '-e', 'GREETING=hi', 'busybox', 'sh', '-c', 'echo "$GREETING"; trap "echo bye; exit 0" TERM; while true; do sleep 0.1; done']).trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  const ps = dockerOk(sock(), ['ps', '--format', '{{.ID}} {{.Names}} {{.Status}}']);
  assert.match(ps, new RegExp(`^${id.slice(0, 12)} web1 Up `, 'm'));
  const state = JSON.parse(dockerOk(sock(), ['inspect', '--format', '{{json .State}}', 'web1'])) as { Running: boolean; Pid: number };
  assert.equal(state.Running, true);
  assert.ok(existsSync(`/proc/${state.Pid}`), 'the container process exists on the host');
  await until(() => dockerOk(sock(), ['logs', 'web1']) === 'hi\n', 10_000, 'logs');
  dockerOk(sock(), ['stop', 'web1']);
  const after = JSON.parse(dockerOk(sock(), ['inspect', '--format', '{{json .State}}', 'web1'])) as { Running: boolean; ExitCode: number; Status: string };
  assert.equal(after.Running, false);
  assert.equal(after.Status, 'exited');
  assert.equal(after.ExitCode, 0, 'the TERM trap ran');
  assert.equal(dockerOk(sock(), ['logs', 'web1']), 'hi\nbye\n');
  assert.match(dockerOk(sock(), ['ps', '-a', '--format', '{{.Names}} {{.Status}}']), /^web1 Exited \(0\) /m);
  dockerOk(sock(), ['rm', 'web1']);
  const gone = docker(sock(), ['inspect', 'web1']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /No such (container|object): web1/);
});

test('stop escalates to SIGKILL after the timeout', () => {
  dockerOk(sock(), ['run', '-d', '--name', 'stubborn', 'busybox', 'sh', '-c', 'trap "" TERM; while true; do sleep 0.1; done']);
  const t0 = Date.now();
  dockerOk(sock(), ['stop', '-t', '1', 'stubborn']);
  const took = Date.now() - t0;
  assert.ok(took >= 900, `stop returned after ${took} ms`);
  assert.equal(dockerOk(sock(), ['inspect', '--format', '{{.State.ExitCode}}', 'stubborn']).trim(), '137');
  dockerOk(sock(), ['rm', 'stubborn']);
});

test('exec runs in the container, with its exit code and env', () => {
  dockerOk(sock(), ['run', '-d', '--name', 'ex1', '-e', 'A=1', 'busybox', 'sleep', '60']);
  try {
    assert.equal(dockerOk(sock(), ['exec', 'ex1', 'sh', '-c', 'echo $A $B', ]).trim(), '1');
    assert.equal(dockerOk(sock(), ['exec', '-e', 'B=2', 'ex1', 'sh', '-c', 'echo $A $B']).trim(), '1 2');
    const r = docker(sock(), ['exec', 'ex1', 'sh', '-c', 'exit 7']);
    assert.equal(r.code, 7);
    assert.equal(dockerOk(sock(), ['exec', '-i', 'ex1', 'cat'], { input: 'through stdin\n' }), 'through stdin\n');
    assert.equal(dockerOk(sock(), ['exec', '-w', '/tmp', 'ex1', 'pwd']).trim(), '/tmp');
    assert.equal(dockerOk(sock(), ['exec', '-u', '1000:1000', 'ex1', 'id', '-u']).trim(), '1000');
    const missing = docker(sock(), ['exec', 'ex1', '/no/such/binary']);
    assert.notEqual(missing.code, 0);
  } finally {
    docker(sock(), ['rm', '-f', 'ex1']);
  }
});

test('run -i pipes stdin; wait returns the exit code', () => {
  assert.equal(dockerOk(sock(), ['run', '--rm', '-i', 'busybox', 'tr', 'a-z', 'A-Z'], { input: 'shout\n' }), 'SHOUT\n');
  const id = dockerOk(sock(), ['create', 'busybox', 'sh', '-c', 'exit 42']).trim();
  dockerOk(sock(), ['start', id]);
  assert.equal(dockerOk(sock(), ['wait', id]).trim(), '42');
  dockerOk(sock(), ['rm', id]);
});

test('start -a attaches to a created container', () => {
  dockerOk(sock(), ['create', '--name', 'att', 'busybox', 'echo', 'attached']);
  assert.equal(dockerOk(sock(), ['start', '-a', 'att']), 'attached\n');
  assert.equal(dockerOk(sock(), ['start', '-a', 'att']), 'attached\n');
  dockerOk(sock(), ['rm', 'att']);
});

test('names: conflicts and bad names get Docker errors', () => {
  dockerOk(sock(), ['create', '--name', 'dup', 'busybox', 'true']);
  const r = docker(sock(), ['create', '--name', 'dup', 'busybox', 'true']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /Conflict\. The container name "\/dup" is already in use/);
  const bad = docker(sock(), ['run', '--name', 'a!b', 'busybox', 'true']);
  assert.equal(bad.code, 125);
  assert.match(bad.stderr, /Invalid container name/);
  dockerOk(sock(), ['rename', 'dup', 'dup2']);
  assert.equal(dockerOk(sock(), ['inspect', '--format', '{{.Name}}', 'dup2']).trim(), '/dup2');
  dockerOk(sock(), ['rm', 'dup2']);
});

test('unknown image and unknown command fail as docker does', () => {
  const r = docker(sock(), ['run', '--rm', '--pull', 'never', 'no-such-image:1']);
  assert.equal(r.code, 125);
  assert.match(r.stderr, /No such image: no-such-image:1/);
  const cmd = docker(sock(), ['run', '--rm', 'busybox', '/no/such/cmd']);
  assert.ok(cmd.code === 127 || cmd.code === 126, `exit ${cmd.code}: ${cmd.stderr}`);
});

test('rm of a running container needs force; rm -f kills it', () => {
  dockerOk(sock(), ['run', '-d', '--name', 'busy', 'busybox', 'sleep', '60']);
  const r = docker(sock(), ['rm', 'busy']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /container is running: stop the container before removing or force remove/);
  dockerOk(sock(), ['rm', '-f', 'busy']);
  assert.equal(docker(sock(), ['inspect', 'busy']).code, 1);
});

test('restart policy on-failure restarts up to the limit', async () => {
  dockerOk(sock(), ['run', '-d', '--name', 'flaky', '--restart', 'on-failure:2', 'busybox', 'sh', '-c', 'exit 1']);
  await until(() => {
    const s = JSON.parse(dockerOk(sock(), ['inspect', '--format', '{{json .}}', 'flaky'])) as { RestartCount: number; State: { Status: string } };
    return s.RestartCount === 2 && s.State.Status === 'exited';
  }, 20_000, 'two restarts');
  await sleep(1000);
  assert.equal(dockerOk(sock(), ['inspect', '--format', '{{.RestartCount}}', 'flaky']).trim(), '2');
  dockerOk(sock(), ['rm', 'flaky']);
});

test('pause and unpause freeze the container', () => {
  dockerOk(sock(), ['run', '-d', '--name', 'frozen', 'busybox', 'sleep', '60']);
  try {
    dockerOk(sock(), ['pause', 'frozen']);
    assert.equal(dockerOk(sock(), ['inspect', '--format', '{{.State.Status}}', 'frozen']).trim(), 'paused');
    const pid = Number(dockerOk(sock(), ['inspect', '--format', '{{.State.Pid}}', 'frozen']).trim());
    assert.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /State:\s+[DS]/);
    dockerOk(sock(), ['unpause', 'frozen']);
    assert.equal(dockerOk(sock(), ['inspect', '--format', '{{.State.Status}}', 'frozen']).trim(), 'running');
  } finally {
    docker(sock(), ['rm', '-f', 'frozen']);
  }
});

test('malformed bodies get 400 naming the problem, and create nothing', async () => {
  const before = dockerOk(sock(), ['ps', '-aq']);
  const bad = await api(sock(), 'POST', '/v1.50/containers/create', '{"Image": "busybox", "Cmd": ');
  assert.equal(bad.status, 400);
  assert.match(JSON.parse(bad.body).message as string, /invalid JSON/i);
  const typed = await api(sock(), 'POST', '/v1.50/containers/create', { Image: 'busybox', Cmd: 'echo', HostConfig: { Memory: 'lots' } });
  assert.equal(typed.status, 400);
  assert.match(JSON.parse(typed.body).message as string, /Memory/);
  assert.equal(dockerOk(sock(), ['ps', '-aq']), before);
  const nf = await api(sock(), 'GET', '/v1.50/containers/nope/json');
  assert.equal(nf.status, 404);
  assert.deepEqual(JSON.parse(nf.body), { message: 'No such container: nope' });
});
