import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorKind, isKind } from '@berth/base';
import { layoutFromMountinfo } from '@berth/cgroups';
import { containerPids, parsePsOutput, top, validatePsArgs } from './top.js';

const EF = [
  'UID          PID    PPID  C STIME TTY          TIME CMD',
  'root           1       0  0 00:01 ?        00:00:01 /sbin/init splash',
  'root          42       1  0 00:02 ?        00:00:00 sh -c sleep  100',
  'daemon        43      42  0 00:02 pts/0    00:00:00 sleep 100',
  '',
].join('\n');

test('parsePsOutput: titles, the rows of the given pids, the command with its spaces', () => {
  assert.deepEqual(parsePsOutput(EF, [42, 43, 7]), {
    Titles: ['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD'],
    Processes: [
      ['root', '42', '1', '0', '00:02', '?', '00:00:00', 'sh -c sleep 100'],
      ['daemon', '43', '42', '0', '00:02', 'pts/0', '00:00:00', 'sleep 100'],
    ],
  });
  assert.deepEqual(parsePsOutput(EF, []).Processes, []);
  assert.throws(
    () => parsePsOutput('COMMAND\nsleep\n', [1]),
    (e: unknown) => isKind(e, ErrorKind.Internal) && (e as Error).message === "Couldn't find PID field in ps output",
  );
  assert.throws(() => parsePsOutput('PID CMD\nabc x\n', [1]), /Unexpected pid 'abc'/);
});

test('validatePsArgs: only pid= may rename the PID column', () => {
  validatePsArgs('-ef');
  validatePsArgs('-o pid=PID,comm');
  assert.throws(() => validatePsArgs('-o user=PID'), (e: unknown) =>
    isKind(e, ErrorKind.InvalidArgument) && (e as Error).message === 'specifying "user=PID" is not allowed');
});

function sleeper(t: TestContext, args: string[]): number {
  const child = spawn('sleep', args, { stdio: 'ignore' });
  const pid = child.pid;
  assert.ok(pid !== undefined);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(pid, 'SIGKILL');
      await exited;
    }
  });
  return pid;
}

test('top: the host ps, rows of the given processes only', async (t) => {
  const a = sleeper(t, ['1000']);
  const b = sleeper(t, ['1001']);
  const ef = await top([a, b], '');
  assert.deepEqual(ef.Titles, ['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD']);
  assert.deepEqual(ef.Processes.map((p) => [p[1], p[2], p[7]]), [
    [String(a), String(process.pid), 'sleep 1000'],
    [String(b), String(process.pid), 'sleep 1001'],
  ]);
  const aux = await top([b], 'aux');
  assert.equal(aux.Titles[1], 'PID');
  assert.equal(aux.Titles.at(-1), 'COMMAND');
  assert.deepEqual(aux.Processes.map((p) => [p[1], p.at(-1)]), [[String(b), 'sleep 1001']]);
  // f (forest) cannot go with -q: the full list is filtered instead
  const forest = await top([a], 'axf');
  assert.deepEqual(forest.Processes.map((p) => p[forest.Titles.indexOf('PID')]), [String(a)]);
  const custom = await top([a], '-o pid,comm');
  assert.deepEqual(custom, { Titles: ['PID', 'COMMAND'], Processes: [[String(a), 'sleep']] });
  // processes that are gone: titles, no rows
  assert.deepEqual((await top([2 ** 22 + 1], '-ef')).Processes, []);
});

test("top: docker's errors", async () => {
  await assert.rejects(top([process.pid], '-o comm'), (e: unknown) =>
    isKind(e, ErrorKind.Internal) && (e as Error).message === "Couldn't find PID field in ps output");
  await assert.rejects(top([process.pid], '--no-such-option'), (e: unknown) =>
    isKind(e, ErrorKind.Internal) && /^ps: exit status 1: .+/.test((e as Error).message));
});

test('containerPids: cgroup.procs of the cgroup and of those below it (cgroup v2, fake tree)', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'berth-topfake-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const layout = layoutFromMountinfo('35 24 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n', { fsRoot: root });
  const dir = join(root, 'sys/fs/cgroup/berth/c1');
  mkdirSync(join(dir, 'sub'), { recursive: true });
  writeFileSync(join(dir, 'cgroup.procs'), '30\n10\n');
  writeFileSync(join(dir, 'sub', 'cgroup.procs'), '20\n');
  assert.deepEqual(await containerPids('/berth/c1', { layout }), [10, 20, 30]);
  assert.deepEqual(await containerPids('/berth/gone', { layout }), []);
  assert.deepEqual(await containerPids('', { layout, containerId: 'gone' }), []);
});
