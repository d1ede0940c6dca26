import test from 'node:test';
import assert from 'node:assert/strict';
import { isKind } from '@berth/base';
import { blkioWeightToIoWeight, checkPageSize, cpuSharesToWeight, memorySwapToV2 } from './convert.js';
import { DEFAULT_DEVICE_RULES, deviceRulesBeyondDefault, formatDeviceRule } from './devices.js';
import { eventsStatsJSON, emptyStats, parseBlkioV1, parseIoStatV2, parseRangeList, UNLIMITED } from './stats.js';

test('cpu shares to weight: the ends, the default and a few points between', () => {
  const table: Array<[number, number]> = [
    [0, 0], [1, 1], [2, 1], [3, 2], [512, 59], [1024, 100], [2000, 170], [4096, 303], [262144, 10000], [300000, 10000],
  ];
  for (const [shares, weight] of table) assert.equal(cpuSharesToWeight(shares), weight, `shares ${shares}`);
});

test('blkio weight to io.weight', () => {
  assert.equal(blkioWeightToIoWeight(0), 0);
  assert.equal(blkioWeightToIoWeight(10), 1);
  assert.equal(blkioWeightToIoWeight(500), 4950);
  assert.equal(blkioWeightToIoWeight(1000), 10000);
});

test('swap: OCI memory+swap to memory.swap.max', () => {
  assert.equal(memorySwapToV2(undefined, undefined), undefined);
  assert.equal(memorySwapToV2(1024, 512), 512);
  assert.equal(memorySwapToV2(512, 512), 0);
  assert.equal(memorySwapToV2(-1, 512), -1);
  assert.equal(memorySwapToV2(undefined, -1), -1);
  assert.equal(memorySwapToV2(0, 512), undefined);
  assert.throws(() => memorySwapToV2(256, 512), (e) => isKind(e, 'InvalidArgument'));
  assert.throws(() => memorySwapToV2(256, undefined), (e) => isKind(e, 'InvalidArgument'));
});

test('hugepage sizes are checked before they become file names', () => {
  assert.equal(checkPageSize('2MB'), '2MB');
  assert.throws(() => checkPageSize('../x'), (e) => isKind(e, 'InvalidArgument'));
  assert.throws(() => checkPageSize('2mb'), (e) => isKind(e, 'InvalidArgument'));
});

test('device rules: v1 format and what is beyond the default set', () => {
  assert.equal(formatDeviceRule({ allow: false, access: 'rwm' }), 'a');
  assert.equal(formatDeviceRule({ allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }), 'c 1:3 rwm');
  assert.equal(formatDeviceRule({ allow: true, type: 'c', major: 136, access: 'rw' }), 'c 136:* rw');
  assert.equal(formatDeviceRule({ allow: true, type: 'b' }), 'b *:* rwm');
  const docker = [{ allow: false, access: 'rwm' }, ...DEFAULT_DEVICE_RULES];
  assert.deepEqual(deviceRulesBeyondDefault(docker), []);
  assert.deepEqual(deviceRulesBeyondDefault([{ allow: true, type: 'c', major: 1, minor: 3, access: 'r' }]), []);
  const extra = { allow: true, type: 'c' as const, major: 10, minor: 229, access: 'rw' };
  assert.deepEqual(deviceRulesBeyondDefault([...docker, extra]), [extra]);
  const deny = { allow: false, type: 'c' as const, major: 1, minor: 3, access: 'w' };
  assert.deepEqual(deviceRulesBeyondDefault([deny]), [deny]);
});

test('stat file parsers', () => {
  assert.deepEqual(parseRangeList('0-3,7\n'), [0, 1, 2, 3, 7]);
  assert.deepEqual(parseRangeList(''), []);
  assert.deepEqual(parseBlkioV1('8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n'), [
    { major: 8, minor: 0, op: 'Read', value: 4096 },
    { major: 8, minor: 0, op: 'Write', value: 512 },
    { major: 8, minor: 0, op: 'Total', value: 4608 },
  ]);
  assert.deepEqual(parseIoStatV2('8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n'), {
    ioServiceBytesRecursive: [
      { major: 8, minor: 0, op: 'Read', value: 10 },
      { major: 8, minor: 0, op: 'Write', value: 20 },
    ],
    ioServicedRecursive: [
      { major: 8, minor: 0, op: 'Read', value: 1 },
      { major: 8, minor: 0, op: 'Write', value: 2 },
    ],
  });
});

test('events JSON prints unlimited values exactly as runc does', () => {
  const s = emptyStats();
  s.memory.usage.limit = UNLIMITED;
  s.memory.swap.limit = 9223372036854771712;
  s.pids.current = 3;
  const text = eventsStatsJSON('c1', s);
  assert.match(text, /^\{"type":"stats","id":"c1","data":\{"cpu":/);
  assert.match(text, /"usage":\{"limit":18446744073709551615,/);
  assert.match(text, /"swap":\{"limit":9223372036854771712,/);
  assert.match(text, /"pids":\{"current":3,"limit":0\}/);
});
