import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { detect, layoutFromMountinfo } from './detect.js';
import { ownProcsFile, warmCgroupMigration } from './warm.js';

const V1 = [
  '30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '31 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids',
  '32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '33 25 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n');
const V2 = '40 25 0:30 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw';

test('ownProcsFile: v1 takes the pids hierarchy', () => {
  const file = ownProcsFile(layoutFromMountinfo(V1), '5:pids:/system.slice/x.service\n4:memory:/m\n0::/u\n');
  assert.equal(file, '/sys/fs/cgroup/pids/system.slice/x.service/cgroup.procs');
});

test('ownProcsFile: v1 without pids takes another real controller', () => {
  const mi = V1.split('\n').filter((l) => !l.includes('pids')).join('\n');
  assert.equal(ownProcsFile(layoutFromMountinfo(mi), '4:memory:/m\n'), '/sys/fs/cgroup/memory/m/cgroup.procs');
});

test('ownProcsFile: v2 takes the unified entry; unknown cgroup is undefined', () => {
  assert.equal(ownProcsFile(layoutFromMountinfo(V2), '0::/user.slice/s.scope\n'), '/sys/fs/cgroup/user.slice/s.scope/cgroup.procs');
  assert.equal(ownProcsFile(layoutFromMountinfo(V2), '4:memory:/m\n'), undefined);
});

test('warmCgroupMigration: moves this process into its own cgroup, and nowhere else', {
  skip: process.getuid?.() !== 0 ? 'needs root' : (await detect()).version !== 'v1' ? 'a v2 cgroup may refuse processes' : false,
}, async () => {
  const before = readFileSync('/proc/self/cgroup', 'utf8');
  const [a, b] = [warmCgroupMigration(), warmCgroupMigration()];
  assert.equal(a, b, 'concurrent calls share one write');
  assert.equal(await a, true);
  assert.equal(readFileSync('/proc/self/cgroup', 'utf8'), before);
});
