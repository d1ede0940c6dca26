import test from 'node:test';
import assert from 'node:assert/strict';
import { BerthError, ErrorKind } from '@berth/base';
import { emptyStats } from '@berth/cgroups';
import { assertTask, canDo } from './state.js';
import { encodeV1Metrics } from './metrics.js';
import { parseShimTime } from './shim.js';

test('the task transition table', () => {
  assert.ok(canDo('start', 'CREATED'));
  assert.ok(!canDo('start', 'RUNNING'));
  assert.ok(canDo('pause', 'RUNNING') && !canDo('pause', 'PAUSED'));
  assert.ok(canDo('resume', 'PAUSED') && !canDo('resume', 'RUNNING'));
  assert.ok(canDo('delete', 'STOPPED') && canDo('delete', 'CREATED') && !canDo('delete', 'RUNNING'));
  assert.ok(canDo('exec', 'RUNNING') && !canDo('exec', 'PAUSED'));
});

test('illegal transitions are FailedPrecondition with a sentence', () => {
  const cases: [Parameters<typeof assertTask>, string][] = [
    [['start', 'RUNNING'], 'cannot start a task in running state'],
    [['pause', 'STOPPED'], 'cannot pause a task in stopped state'],
    [['resume', 'RUNNING'], 'cannot resume a task in running state'],
    [['exec', 'PAUSED'], 'cannot exec in a task in paused state'],
    [['delete', 'RUNNING'], 'cannot delete a task in running state; kill it first'],
    [['delete', 'RUNNING', 'process'], 'cannot delete a process in running state; kill it first'],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => assertTask(...args), (e: unknown) => e instanceof BerthError && e.kind === ErrorKind.FailedPrecondition && e.message === message);
  }
});

test('shim exit times become protobuf timestamps with nanoseconds', () => {
  assert.deepEqual(parseShimTime('2026-11-22T22:33:44.123456789Z'), { seconds: Date.UTC(2026, 10, 22, 22, 33, 44) / 1000, nanos: 123456789 });
  assert.deepEqual(parseShimTime('2026-11-22T22:33:44.5Z'), { seconds: Date.UTC(2026, 10, 22, 22, 33, 44) / 1000, nanos: 500000000 });
  assert.equal(parseShimTime('yesterday'), undefined);
  assert.equal(parseShimTime(7), undefined);
});

test('v1 metrics: fields by number, unlimited kept exact', () => {
  const s = emptyStats();
  s.pids.current = 3;
  s.memory.usage = { limit: 2 ** 64, usage: 300, max: 0, failcnt: 0 };
  s.cpu.usage.total = 1000;
  s.cpu.usage.percpu = [600, 400];
  const bytes = encodeV1Metrics(s);
  // pids (2) { current (1) = 3 }
  assert.equal(bytes.subarray(0, 4).toString('hex'), '12020803');
  // the memory usage entry's limit is the kernel's 9223372036854771712 (0x7ffffffffffff000)
  assert.ok(bytes.includes(Buffer.from('0880e0ffffffffffff7f', 'hex')));
  // cpu usage total 1000, per_cpu packed [600, 400]
  assert.ok(bytes.includes(Buffer.from('08e8072204d8049003', 'hex')));
});
