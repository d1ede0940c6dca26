import test from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '@berth/base';
import { CAP_NAMES, capMask, capName, capNames, capNumber } from './caps.js';
import { MOUNT_OPTION_NAMES, MS, parseMountOptions, rootfsPropagationFlags } from './mountopts.js';
import { RLIM_INFINITY, rlimitNumber, rlimitValue } from './rlimits.js';

const table: [string[], number, number, string][] = [
  [[], 0, 0, ''],
  [['defaults'], 0, 0, ''],
  [['ro'], MS.RDONLY, 0, ''],
  [['ro', 'rw'], 0, 0, ''],
  [['nosuid', 'nodev', 'noexec'], MS.NOSUID | MS.NODEV | MS.NOEXEC, 0, ''],
  [['nosuid', 'suid', 'dev', 'exec'], 0, 0, ''],
  [['sync', 'dirsync', 'mand'], MS.SYNCHRONOUS | MS.DIRSYNC | MS.MANDLOCK, 0, ''],
  [['sync', 'async', 'mand', 'nomand'], 0, 0, ''],
  [['noatime', 'nodiratime'], MS.NOATIME | MS.NODIRATIME, 0, ''],
  [['noatime', 'atime', 'nodiratime', 'diratime'], 0, 0, ''],
  [['relatime', 'strictatime'], MS.RELATIME | MS.STRICTATIME, 0, ''],
  [['relatime', 'norelatime', 'strictatime', 'nostrictatime'], 0, 0, ''],
  [['bind'], MS.BIND, 0, ''],
  [['rbind'], MS.BIND | MS.REC, 0, ''],
  [['remount', 'ro'], MS.REMOUNT | MS.RDONLY, 0, ''],
  [['nosymfollow', 'lazytime', 'iversion', 'silent', 'acl'],
    MS.NOSYMFOLLOW | MS.LAZYTIME | MS.I_VERSION | MS.SILENT | MS.POSIXACL, 0, ''],
  [['private'], 0, MS.PRIVATE, ''],
  [['rprivate'], 0, MS.PRIVATE | MS.REC, ''],
  [['shared'], 0, MS.SHARED, ''],
  [['rshared'], 0, MS.SHARED | MS.REC, ''],
  [['slave'], 0, MS.SLAVE, ''],
  [['rslave'], 0, MS.SLAVE | MS.REC, ''],
  [['unbindable'], 0, MS.UNBINDABLE, ''],
  [['runbindable'], 0, MS.UNBINDABLE | MS.REC, ''],
  [['rshared', 'rslave'], 0, MS.SLAVE | MS.REC, ''],
  [['bind', 'rro', 'rnosuid', 'rnoexec', 'rnodev'], MS.BIND | MS.RDONLY | MS.NOSUID | MS.NOEXEC | MS.NODEV, 0, ''],
  [['rro', 'rrw'], 0, 0, ''],
  [['mode=755', 'size=65536k', 'nosuid'], MS.NOSUID, 0, 'mode=755,size=65536k'],
  [['newinstance', 'ptmxmode=0666', 'gid=5'], 0, 0, 'newinstance,ptmxmode=0666,gid=5'],
  [['lowerdir=/a:/b', 'upperdir=/u', 'workdir=/w'], 0, 0, 'lowerdir=/a:/b,upperdir=/u,workdir=/w'],
  [['tmpcopyup', 'size=1m'], 0, 0, 'size=1m'],
];

for (const [opts, flags, propagation, data] of table) {
  test(`parseMountOptions ${JSON.stringify(opts)}`, () => {
    assert.deepEqual(parseMountOptions(opts, 'mounts[0]'), { flags, propagation, data });
  });
}

test('parseMountOptions refuses what it cannot do', () => {
  assert.throws(() => parseMountOptions(['rbind', 'rro'], 'mounts[2]'),
    (e: unknown) => e instanceof BerthError && e.kind === 'NotImplemented'
      && e.message === 'mounts[2]: recursive mount option "rro" on an rbind mount is not supported');
  assert.throws(() => parseMountOptions(['idmap'], 'mounts[1]'),
    { message: 'mounts[1]: mount option "idmap" is not supported' });
});

test('MOUNT_OPTION_NAMES lists the flag and propagation options, sorted', () => {
  for (const o of ['ro', 'rw', 'bind', 'rbind', 'rprivate', 'rro', 'nosymfollow', 'tmpcopyup']) {
    assert.ok(MOUNT_OPTION_NAMES.includes(o), o);
  }
  assert.equal(MOUNT_OPTION_NAMES.includes('mode=755'), false);
  assert.deepEqual([...MOUNT_OPTION_NAMES].sort(), MOUNT_OPTION_NAMES);
});

test('rootfsPropagationFlags: runc\'s default is rslave', () => {
  assert.equal(rootfsPropagationFlags(undefined), MS.REC | MS.SLAVE);
  assert.equal(rootfsPropagationFlags('private'), MS.PRIVATE);
  assert.equal(rootfsPropagationFlags('rshared'), MS.REC | MS.SHARED);
});

test('capabilities: 41 names, numbers both ways, masks', () => {
  assert.equal(CAP_NAMES.length, 41);
  assert.equal(capNumber('CAP_CHOWN'), 0);
  assert.equal(capNumber('CAP_SYS_ADMIN'), 21);
  assert.equal(capNumber('CAP_AUDIT_WRITE'), 29);
  assert.equal(capNumber('CAP_BPF'), 39);
  assert.equal(capNumber('CAP_CHECKPOINT_RESTORE'), 40);
  assert.equal(capNumber('CAP_NOPE'), undefined);
  assert.equal(capName(27), 'CAP_MKNOD');
  assert.equal(capMask(['CAP_CHOWN', 'CAP_CHECKPOINT_RESTORE'], 'x'), 1n | (1n << 40n));
  assert.deepEqual(capNames(capMask(['CAP_KILL', 'CAP_CHOWN'], 'x')), ['CAP_CHOWN', 'CAP_KILL']);
  assert.throws(() => capMask(['CAP_KILL', 'kill'], 'process.capabilities.bounding'),
    { message: 'process.capabilities.bounding[1]: unknown capability "kill"' });
});

test('rlimits: numbers and values', () => {
  assert.equal(rlimitNumber('RLIMIT_CPU', 'x'), 0);
  assert.equal(rlimitNumber('RLIMIT_NOFILE', 'x'), 7);
  assert.equal(rlimitNumber('RLIMIT_RTTIME', 'x'), 15);
  assert.throws(() => rlimitNumber('RLIMIT_X', 'r'), { message: 'r: unknown rlimit "RLIMIT_X"' });
  assert.equal(rlimitValue(1024), 1024n);
  // JSON.parse('18446744073709551615') is 2^64 as a double: that is infinity.
  assert.equal(rlimitValue(JSON.parse('18446744073709551615') as number), RLIM_INFINITY);
});
