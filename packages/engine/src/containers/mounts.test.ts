import test from 'node:test';
import assert from 'node:assert/strict';
import { BerthError, ErrorKind } from '@berth/base';
import { mergeTmpfsOptions, parseApiMount, parseBind, parseMounts, parseTmpfsEntry, parseTmpfsSize } from './mounts.js';
import type { MountRequest } from './mounts.js';
import type { Mount } from './config.js';

const EXISTING = new Set(['/srv', '/srv/data', '/etc/hosts']);
const opts = { exists: (p: string): boolean => EXISTING.has(p) };

function rejects(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BerthError, String(err));
    assert.equal(err.kind, ErrorKind.InvalidArgument);
    assert.equal(err.message, message);
    return true;
  });
}

test('parseBind: forms and options', () => {
  const cases: Array<[string, Partial<MountRequest>]> = [
    ['/srv:/data', { type: 'bind', source: '/srv', destination: '/data', readOnly: false, options: ['rbind'], propagation: 'rprivate', mode: '' }],
    ['/srv:/data:ro', { type: 'bind', readOnly: true, mode: 'ro' }],
    ['/srv/:/data/:rw,z', { source: '/srv', destination: '/data', readOnly: false }],
    ['/srv:/data:ro,rshared', { readOnly: true, propagation: 'rshared' }],
    ['/srv:/data:slave,Z,cached', { propagation: 'slave' }],
    ['/missing:/data', { type: 'bind', source: '/missing', createSource: true }],
    ['vol1:/data', { type: 'volume', source: 'vol1', volumeName: 'vol1', propagation: '' }],
    ['vol1:/data:ro,nocopy', { type: 'volume', readOnly: true, noCopy: true }],
    ['/data', { type: 'volume', source: '', anonymous: true, destination: '/data' }],
  ];
  for (const [raw, want] of cases) {
    const got = parseBind(raw, '', opts);
    for (const [k, v] of Object.entries(want)) assert.deepEqual(got[k as keyof MountRequest], v, `${raw}: ${k}`);
    if (!('createSource' in want)) assert.equal(got.createSource, undefined, raw);
  }
  assert.equal(parseBind('vol:/d', 'local-persist').volumeDriver, 'local-persist');
});

test('parseBind: errors in Docker wording', () => {
  const cases: Array<[string, string]> = [
    [':/data', "invalid volume specification: ':/data'"],
    ['/a:/b:ro:x', "invalid volume specification: '/a:/b:ro:x'"],
    ['/data:rw', "invalid volume specification: '/data:rw'"],
    ['/srv:/data:rw,ro', 'invalid mode: rw,ro'],
    ['/srv:/data:bogus', 'invalid mode: bogus'],
    ['/srv:/data:shared,slave', 'invalid mode: shared,slave'],
    ['/srv:data', `invalid volume specification: '/srv:data': invalid mount config for type "bind": invalid mount path: 'data' mount path must be absolute`],
    ['/srv:/', `invalid volume specification: '/srv:/': invalid mount config for type "bind": invalid specification: destination can't be '/'`],
    ['/srv:/d:nocopy', `invalid volume specification: '/srv:/d:nocopy': invalid mount config for type "bind": field VolumeOptions must not be specified`],
    ['vol:/d:rshared', `invalid volume specification: 'vol:/d:rshared': invalid mount config for type "volume": field BindOptions must not be specified`],
    ['a$b:/d', `invalid volume specification: 'a$b:/d': "a$b" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`],
    ['/d:ro', "invalid volume specification: '/d:ro'"],
  ];
  for (const [raw, msg] of cases) rejects(() => parseBind(raw, '', opts), msg);
});

test('parseApiMount: bind, volume, tmpfs', () => {
  const cases: Array<[Mount, Partial<MountRequest>]> = [
    [{ Type: 'bind', Source: '/srv', Target: '/d' }, { type: 'bind', source: '/srv', destination: '/d', options: ['rbind'], propagation: 'rprivate', readOnly: false }],
    [{ Type: 'bind', Source: '/srv', Target: '/d', ReadOnly: true, BindOptions: { Propagation: 'rslave', NonRecursive: true } }, { options: ['bind'], propagation: 'rslave', readOnly: true }],
    [{ Type: 'bind', Source: '/nope', Target: '/d', BindOptions: { CreateMountpoint: true } }, { createSource: true }],
    [{ Type: 'volume', Source: 'v1', Target: '/d', VolumeOptions: { NoCopy: true, Subpath: 'a/b', DriverConfig: { Name: 'local', Options: { type: 'tmpfs' } }, Labels: { l: '1' } } },
      { type: 'volume', volumeName: 'v1', noCopy: true, subpath: 'a/b', volumeDriver: 'local', volumeDriverOptions: { type: 'tmpfs' }, volumeLabels: { l: '1' } }],
    [{ Type: 'volume', Target: '/d' }, { type: 'volume', anonymous: true, source: '' }],
    [{ Type: 'tmpfs', Target: '/t' }, { type: 'tmpfs', options: ['noexec', 'nosuid', 'nodev'], propagation: 'rprivate', readOnly: false }],
    [{ Type: 'tmpfs', Target: '/t', ReadOnly: true, TmpfsOptions: { SizeBytes: 64 * 1024 * 1024, Mode: 0o1777, Options: [['exec'], ['uid', '1000']] } },
      { readOnly: true, options: ['nosuid', 'nodev', 'mode=1777', 'size=64m', 'exec', 'uid=1000'], tmpfsSize: 64 * 1024 * 1024, tmpfsMode: 0o1777 }],
    [{ Type: 'tmpfs', Target: '/t', TmpfsOptions: { SizeBytes: 1000 } }, { tmpfsSize: 1000, options: ['noexec', 'nosuid', 'nodev', 'size=1000'] }],
  ];
  for (const [m, want] of cases) {
    const got = parseApiMount(m, opts);
    for (const [k, v] of Object.entries(want)) assert.deepEqual(got[k as keyof MountRequest], v, `${JSON.stringify(m)}: ${k}`);
  }
});

test('parseApiMount: errors in Docker wording', () => {
  const cases: Array<[Mount, string]> = [
    [{ Type: 'bind', Source: '/x', Target: '/d' }, 'invalid mount config for type "bind": bind source path does not exist: /x'],
    [{ Type: 'bind', Target: '/d' }, 'invalid mount config for type "bind": field Source must not be empty'],
    [{ Type: 'bind', Source: 'rel', Target: '/d' }, "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"],
    [{ Type: 'bind', Source: '/srv' }, 'invalid mount config for type "bind": field Target must not be empty'],
    [{ Type: 'bind', Source: '/srv', Target: '/d', VolumeOptions: {} }, 'invalid mount config for type "bind": field VolumeOptions must not be specified'],
    [{ Type: 'volume', Target: '/d', ReadOnly: true }, 'invalid mount config for type "volume": must not set ReadOnly mode when using anonymous volumes'],
    [{ Type: 'volume', Source: 'v1', Target: '/d', BindOptions: {} }, 'invalid mount config for type "volume": field BindOptions must not be specified'],
    [{ Type: 'volume', Source: 'v1', Target: '/d', VolumeOptions: { Subpath: '../x' } }, 'invalid mount config for type "volume": subpath must be a relative path within the volume'],
    [{ Type: 'volume', Source: 'v', Target: '/d' }, 'invalid mount config for type "volume": "v" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'],
    [{ Type: 'volume', Source: 'v1', Target: '/d', VolumeOptions: { Subpath: '/abs' } }, 'invalid mount config for type "volume": subpath must be a relative path within the volume'],
    [{ Type: 'tmpfs', Source: 'x', Target: '/t' }, 'invalid mount config for type "tmpfs": field Source must not be specified'],
    [{ Type: 'tmpfs', Target: '/t', TmpfsOptions: { Options: [['bogus']] } }, 'invalid mount config for type "tmpfs": unsupported tmpfs option: "bogus"'],
    [{ Type: 'image', Source: 'busybox', Target: '/i' }, 'invalid mount config for type "image": image mounts are not supported by this engine'],
    [{ Target: '/t' }, 'invalid mount config for type "": mount type unknown'],
  ];
  for (const [m, msg] of cases) rejects(() => parseApiMount(m, opts), msg);
});

test('tmpfs options: Docker defaults, later ones win', () => {
  assert.deepEqual(mergeTmpfsOptions(['noexec', 'nosuid', 'exec', 'size=1m', 'size=2m', 'defaults']), ['nosuid', 'exec', 'size=2m']);
  assert.deepEqual(mergeTmpfsOptions(['rprivate', 'rshared']), ['rshared']);
  rejects(() => mergeTmpfsOptions(['foo=bar']), 'Invalid tmpfs option "foo=bar"');
  const t = parseTmpfsEntry('/run/', 'rw,exec,size=65536k,mode=700');
  assert.deepEqual(t, {
    type: 'tmpfs', source: '', destination: '/run', readOnly: false, options: ['nosuid', 'nodev', 'exec', 'size=65536k', 'mode=700'],
    propagation: 'rprivate', mode: 'rw,exec,size=65536k,mode=700', tmpfsSize: 65536 * 1024, tmpfsMode: 0o700,
  });
  assert.equal(parseTmpfsEntry('/r', 'ro').readOnly, true);
  assert.equal(parseTmpfsSize('1g'), 1024 ** 3);
  assert.equal(parseTmpfsSize('50%'), undefined);
});

test('parseMounts: order, duplicates, image volumes', () => {
  const all = parseMounts(
    { Volumes: { '/data': {}, '/cache': {}, '/run/x': {} } },
    { Binds: ['/srv:/data'], Mounts: [{ Type: 'tmpfs', Target: '/scratch' }], Tmpfs: { '/run/x': '' } },
    opts,
  );
  assert.deepEqual(all.map((m) => [m.type, m.destination]), [['bind', '/data'], ['tmpfs', '/scratch'], ['tmpfs', '/run/x'], ['volume', '/cache']]);
  assert.equal(all[3]?.anonymous, true);
  rejects(() => parseMounts({}, { Binds: ['/srv:/d', 'vol:/d/'] }, opts), 'Duplicate mount point: /d');
  rejects(() => parseMounts({}, { Binds: ['/srv:/d'], Mounts: [{ Type: 'volume', Target: '/d' }] }, opts), 'Duplicate mount point: /d');
  rejects(() => parseMounts({}, { Binds: ['/srv:/d'], Tmpfs: { '/d': '' } }, opts), 'Duplicate mount point: /d');
  rejects(() => parseMounts({}, { Mounts: [{ Type: 'tmpfs', Target: '/d' }, { Type: 'tmpfs', Target: '/d' }] }, opts), 'Duplicate mount point: /d');
});
