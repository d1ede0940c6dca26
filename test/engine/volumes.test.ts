/**
 * Volumes end to end with the real docker CLI (and berth's) against berthd:
 * named volumes shared by containers, copy-up from the image, nocopy,
 * anonymous volumes and `rm -v`/`--rm`, --volumes-from, the local driver's
 * tmpfs and bind options (mounted while used, unmounted after), in-use
 * conflicts, prune, and volumes with their data across a berthd restart.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BERTH_BIN, api, cleanupEngine, docker, dockerOk, engineDirs, startEngine } from './_engine.js';
import type { EngineProcess } from './_engine.js';

const dirs = engineDirs();
let engine: EngineProcess | undefined;
before(async () => {
  engine = await startEngine(dirs);
});
after(async () => {
  await cleanupEngine(engine, dirs);
});
const s = (): string => dirs.socket;
const volumesRoot = (): string => join(dirs.dataRoot, 'volumes');

function mountedAt(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === path);
}

function mountsUnder(path: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p === path || p.startsWith(`${path}/`));
}

interface VolumeInfo {
  Name: string;
  Driver: string;
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string> | null;
  Options: Record<string, string> | null;
  Scope: string;
  UsageData?: unknown;
}

function inspectVolume(name: string): VolumeInfo {
  const list = JSON.parse(dockerOk(s(), ['volume', 'inspect', name])) as VolumeInfo[];
  assert.equal(list.length, 1);
  return list[0] as VolumeInfo;
}

function volumeExists(name: string): boolean {
  return docker(s(), ['volume', 'inspect', name]).code === 0;
}

function mountsOf(ref: string): { Type: string; Name?: string; Source: string; Destination: string; RW: boolean }[] {
  return JSON.parse(dockerOk(s(), ['inspect', '--format', '{{json .Mounts}}', ref])) as never;
}

function berth(args: readonly string[], input = ''): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BERTH_BIN, '-H', `unix://${s()}`, ...args], { encoding: 'utf8', input, timeout: 60_000 });
  return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
}

test('the API: create, inspect, list with filters, remove, errors', async () => {
  const created = await api(s(), 'POST', '/volumes/create', { Name: 'apivol', Labels: { tier: 'db' }, DriverOpts: {} });
  assert.equal(created.status, 201, created.body);
  const v = JSON.parse(created.body) as VolumeInfo;
  assert.equal(v.Name, 'apivol');
  assert.equal(v.Driver, 'local');
  assert.equal(v.Scope, 'local');
  assert.deepEqual(v.Labels, { tier: 'db' });
  assert.equal(v.Mountpoint, join(volumesRoot(), 'apivol', '_data'));
  assert.match(v.CreatedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(v.UsageData, undefined);
  assert.ok(lstatSync(v.Mountpoint).isDirectory());
  // The same name again: the existing volume.
  const again = await api(s(), 'POST', '/volumes/create', { Name: 'apivol' });
  assert.equal(again.status, 201);
  assert.equal((JSON.parse(again.body) as VolumeInfo).CreatedAt, v.CreatedAt);
  const bad = await api(s(), 'POST', '/volumes/create', { Name: 'x/y' });
  assert.equal(bad.status, 400);
  const plugin = await api(s(), 'POST', '/volumes/create', { Name: 'pv', Driver: 'nosuch' });
  assert.equal(plugin.status, 404);
  const opt = await api(s(), 'POST', '/volumes/create', { Name: 'ov', DriverOpts: { color: 'red' } });
  assert.equal(opt.status, 400);
  assert.match(opt.body, /invalid option/);
  const noName = await api(s(), 'POST', '/volumes/create', {});
  const generated = (JSON.parse(noName.body) as VolumeInfo).Name;
  assert.match(generated, /^[0-9a-f]{64}$/);

  const list = async (filters: Record<string, string[]>): Promise<string[]> => {
    const r = await api(s(), 'GET', `/volumes?filters=${encodeURIComponent(JSON.stringify(filters))}`);
    assert.equal(r.status, 200, r.body);
    const b = JSON.parse(r.body) as { Volumes: VolumeInfo[]; Warnings: unknown };
    assert.deepEqual(b.Warnings, []);
    return b.Volumes.map((x) => x.Name).sort();
  };
  assert.deepEqual(await list({ label: ['tier=db'] }), ['apivol']);
  assert.deepEqual(await list({ label: ['tier'] }), ['apivol']);
  assert.deepEqual(await list({ label: ['tier=web'] }), []);
  assert.deepEqual(await list({ name: ['pivo'] }), ['apivol']);
  assert.deepEqual(await list({ driver: ['local'] }), ['apivol', generated].sort());
  assert.deepEqual(await list({ dangling: ['true'] }), ['apivol', generated].sort());
  assert.equal((await api(s(), 'GET', `/volumes?filters=${encodeURIComponent('{"color":["x"]}')}`)).status, 400);

  const inspected = await api(s(), 'GET', '/volumes/apivol');
  assert.deepEqual(JSON.parse(inspected.body), v);
  const missing = await api(s(), 'GET', '/volumes/nope');
  assert.equal(missing.status, 404);
  assert.match(missing.body, /get nope: no such volume/);
  assert.equal((await api(s(), 'DELETE', '/volumes/nope')).status, 404);
  assert.equal((await api(s(), 'DELETE', '/volumes/nope?force=1')).status, 204);
  assert.equal((await api(s(), 'DELETE', '/volumes/apivol')).status, 204);
  assert.equal((await api(s(), 'DELETE', `/volumes/${generated}`)).status, 204);
  assert.ok(!existsSync(join(volumesRoot(), 'apivol')), 'the directory is gone');

  // Events of the volume's life.
  const ev = await api(s(), 'GET', `/events?since=0&until=${Math.ceil(Date.now() / 1000) + 1}&filters=${encodeURIComponent('{"type":["volume"]}')}`);
  const actions = ev.body.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { Action: string; Actor: { ID: string } })
    .filter((e) => e.Actor.ID === 'apivol').map((e) => e.Action);
  assert.deepEqual(actions, ['create', 'destroy']);
});

test('a named volume is made on first use and shared by two containers', () => {
  dockerOk(s(), ['run', '-d', '--name', 'writer', '-v', 'shared:/data', 'busybox', 'sh', '-c', 'echo hello > /data/f; sleep 1000']);
  try {
    const v = inspectVolume('shared');
    assert.deepEqual(v.Labels, null);
    const m = mountsOf('writer').find((x) => x.Destination === '/data');
    assert.equal(m?.Type, 'volume');
    assert.equal(m?.Name, 'shared');
    assert.equal(m?.Source, v.Mountpoint);
    for (let i = 0; i < 50 && !existsSync(join(v.Mountpoint, 'f')); i++) spawnSync('sleep', ['0.1']);
    assert.equal(dockerOk(s(), ['run', '--rm', '-v', 'shared:/other', 'busybox', 'cat', '/other/f']), 'hello\n');
    dockerOk(s(), ['exec', 'writer', 'sh', '-c', 'echo more >> /data/f']);
    assert.equal(readFileSync(join(v.Mountpoint, 'f'), 'utf8'), 'hello\nmore\n');
  } finally {
    dockerOk(s(), ['rm', '-f', 'writer']);
  }
  assert.equal(readFileSync(join(inspectVolume('shared').Mountpoint, 'f'), 'utf8'), 'hello\nmore\n', 'the data outlives the containers');
  dockerOk(s(), ['volume', 'rm', 'shared']);
});

test('copy-up fills an empty volume from the image; nocopy does not', () => {
  const stat = "cd /etc && for f in *; do stat -c '%n %a %u %g %F' \"$f\"; done";
  const plain = dockerOk(s(), ['run', '--rm', 'busybox', 'sh', '-c', stat]);
  const names = plain.split('\n').filter((l) => l !== '').map((l) => l.split(' ')[0] ?? '');
  assert.ok(names.includes('passwd') && names.includes('group'), plain);
  const withVolume = dockerOk(s(), ['run', '--rm', '-v', 'etcv:/etc', 'busybox', 'sh', '-c', stat]);
  assert.equal(withVolume, plain, 'the volume shows the image\'s /etc, modes and owners kept');
  const mp = inspectVolume('etcv').Mountpoint;
  for (const n of ['passwd', 'group']) {
    assert.equal(readFileSync(join(mp, n), 'utf8'), dockerOk(s(), ['run', '--rm', 'busybox', 'cat', `/etc/${n}`]));
  }
  // Not empty any more: a second mount copies nothing over what is there.
  dockerOk(s(), ['run', '--rm', '-v', 'etcv:/etc', 'busybox', 'sh', '-c', 'echo changed > /etc/motd-test; rm /etc/group']);
  assert.equal(existsSync(join(mp, 'group')), false);
  dockerOk(s(), ['run', '--rm', '-v', 'etcv:/etc', 'busybox', 'true']);
  assert.equal(existsSync(join(mp, 'group')), false, 'a used volume is not refilled');

  const nocopy = dockerOk(s(), ['run', '--rm', '-v', 'nc:/etc:nocopy', 'busybox', 'ls', '/etc']).split('\n').filter((l) => l !== '');
  assert.ok(!nocopy.includes('passwd') && !nocopy.includes('group'), nocopy.join(' '));
  for (const n of nocopy) assert.ok(['hostname', 'hosts', 'resolv.conf'].includes(n), n);
  dockerOk(s(), ['volume', 'rm', 'etcv', 'nc']);
});

test('copy-up keeps owners, modes and links of an imported image', () => {
  const tree = join(dirs.base, 'tree');
  mkdirSync(join(tree, 'bin'), { recursive: true });
  copyFileSync('/usr/bin/busybox', join(tree, 'bin', 'busybox'));
  chmodSync(join(tree, 'bin', 'busybox'), 0o755);
  mkdirSync(join(tree, 'srv', 'd', 'sub'), { recursive: true });
  writeFileSync(join(tree, 'srv', 'd', 'f'), 'data\n');
  chownSync(join(tree, 'srv', 'd'), 1234, 5678);
  chmodSync(join(tree, 'srv', 'd'), 0o750);
  chownSync(join(tree, 'srv', 'd', 'f'), 42, 43);
  chmodSync(join(tree, 'srv', 'd', 'f'), 0o640);
  chownSync(join(tree, 'srv', 'd', 'sub'), 7, 8);
  chmodSync(join(tree, 'srv', 'd', 'sub'), 0o1777);
  symlinkSync('f', join(tree, 'srv', 'd', 'link'));
  const tar = join(dirs.base, 'tree.tar');
  const t = spawnSync('tar', ['--numeric-owner', '-C', tree, '-cf', tar, '.']);
  assert.equal(t.status, 0, String(t.stderr));
  dockerOk(s(), ['import', tar, 'owners:1']);
  try {
    dockerOk(s(), ['run', '--rm', '-v', 'ow:/srv/d', 'owners:1', '/bin/busybox', 'true']);
    const mp = inspectVolume('ow').Mountpoint;
    const root = lstatSync(mp);
    assert.deepEqual([root.uid, root.gid, root.mode & 0o7777], [1234, 5678, 0o750], 'the volume root takes the directory\'s owner and mode');
    const f = lstatSync(join(mp, 'f'));
    assert.deepEqual([f.uid, f.gid, f.mode & 0o7777], [42, 43, 0o640]);
    const sub = lstatSync(join(mp, 'sub'));
    assert.deepEqual([sub.uid, sub.gid, sub.mode & 0o7777], [7, 8, 0o1777]);
    assert.ok(lstatSync(join(mp, 'link')).isSymbolicLink());
    assert.equal(readFileSync(join(mp, 'link'), 'utf8'), 'data\n');
    assert.deepEqual(mountsUnder(join(dirs.dataRoot, 'tmp')), [], 'the copy-up overlay is unmounted');
  } finally {
    docker(s(), ['volume', 'rm', 'ow']);
    docker(s(), ['rmi', 'owners:1']);
  }
});

test('anonymous volumes: reused at restart, removed by rm -v and --rm, kept otherwise', () => {
  dockerOk(s(), ['run', '--name', 'anon1', '-v', '/data', '-v', 'named1:/n', 'busybox', 'sh', '-c', 'echo 1 >> /data/c; cat /data/c']);
  const m = mountsOf('anon1').find((x) => x.Destination === '/data');
  const name = m?.Name ?? '';
  assert.match(name, /^[0-9a-f]{64}$/);
  assert.deepEqual(inspectVolume(name).Labels, { 'com.docker.volume.anonymous': '' });
  assert.equal(dockerOk(s(), ['start', '-a', 'anon1']), '1\n1\n', 'a restart reuses the volume');
  assert.equal(mountsOf('anon1').find((x) => x.Destination === '/data')?.Name, name);
  dockerOk(s(), ['rm', '-v', 'anon1']);
  assert.equal(volumeExists(name), false, 'rm -v removed the anonymous volume');
  assert.ok(!existsSync(join(volumesRoot(), name)));
  assert.equal(volumeExists('named1'), true, 'rm -v keeps named volumes');

  dockerOk(s(), ['run', '--name', 'anon2', '-v', '/data', 'busybox', 'true']);
  const kept = mountsOf('anon2').find((x) => x.Destination === '/data')?.Name ?? '';
  dockerOk(s(), ['rm', 'anon2']);
  assert.equal(volumeExists(kept), true, 'rm without -v keeps it');
  const dangling = dockerOk(s(), ['volume', 'ls', '-q', '--filter', 'dangling=true']).split('\n');
  assert.ok(dangling.includes(kept));

  const before = new Set(dockerOk(s(), ['volume', 'ls', '-q']).split('\n'));
  dockerOk(s(), ['run', '--rm', '-v', '/data', '-v', 'named2:/n', 'busybox', 'true']);
  const afterRm = dockerOk(s(), ['volume', 'ls', '-q']).split('\n').filter((n) => !before.has(n));
  assert.deepEqual(afterRm, ['named2'], '--rm removed the anonymous volume, not the named one');

  dockerOk(s(), ['volume', 'rm', 'named1', 'named2', kept]);
});

test('Config.Volumes gives anonymous volumes', async () => {
  const r = await api(s(), 'POST', '/containers/create?name=cfgvol', { Image: 'busybox', Cmd: ['sh', '-c', 'echo x > /vol/f'], Volumes: { '/vol': {} } });
  assert.equal(r.status, 201, r.body);
  dockerOk(s(), ['start', '-a', 'cfgvol']);
  const name = mountsOf('cfgvol').find((x) => x.Destination === '/vol')?.Name ?? '';
  assert.equal(readFileSync(join(inspectVolume(name).Mountpoint, 'f'), 'utf8'), 'x\n');
  dockerOk(s(), ['rm', '-v', 'cfgvol']);
  assert.equal(volumeExists(name), false);
});

test('--volumes-from shares volumes and binds, read-only with :ro', () => {
  const hostDir = join(dirs.base, 'bindsrc');
  mkdirSync(hostDir);
  dockerOk(s(), ['create', '--name', 'store', '-v', '/data', '-v', 'vf:/vf', '-v', `${hostDir}:/h`, 'busybox', 'true']);
  try {
    dockerOk(s(), ['run', '--rm', '--volumes-from', 'store', 'busybox', 'sh', '-c', 'echo a > /data/a; echo b > /vf/b; echo c > /h/c']);
    assert.equal(readFileSync(join(hostDir, 'c'), 'utf8'), 'c\n');
    assert.equal(dockerOk(s(), ['run', '--rm', '--volumes-from', 'store', 'busybox', 'cat', '/data/a', '/vf/b', '/h/c']), 'a\nb\nc\n');
    const ro = docker(s(), ['run', '--rm', '--volumes-from', 'store:ro', 'busybox', 'sh', '-c', 'cat /data/a /vf/b; touch /data/z']);
    assert.equal(ro.stdout, 'a\nb\n');
    assert.notEqual(ro.code, 0);
    assert.match(ro.stderr, /Read-only file system/);
    // The store container started: its own mounts are what --volumes-from takes, the same volumes.
    dockerOk(s(), ['start', '-a', 'store']);
    const anon = mountsOf('store').find((x) => x.Destination === '/data')?.Name ?? '';
    assert.equal(dockerOk(s(), ['run', '--rm', '--volumes-from', 'store:rw', 'busybox', 'cat', '/data/a']), 'a\n');
    const conflict = docker(s(), ['volume', 'rm', anon]);
    assert.equal(conflict.code, 1);
    dockerOk(s(), ['rm', '-v', 'store']);
    assert.equal(volumeExists(anon), false);
  } finally {
    docker(s(), ['rm', '-f', '-v', 'store']);
    docker(s(), ['volume', 'rm', 'vf']);
  }
  assert.equal(readFileSync(join(hostDir, 'c'), 'utf8'), 'c\n', 'a bind source is never touched');
});

test('local driver: a tmpfs volume with a size limit, mounted only while used', () => {
  dockerOk(s(), ['volume', 'create', '--driver', 'local', '--opt', 'type=tmpfs', '--opt', 'device=tmpfs', '--opt', 'o=size=1m', 'tv']);
  const v = inspectVolume('tv');
  assert.deepEqual(v.Options, { type: 'tmpfs', device: 'tmpfs', o: 'size=1m' });
  assert.equal(mountedAt(v.Mountpoint), false, 'not mounted before first use');
  const big = docker(s(), ['run', '--rm', '-v', 'tv:/t', 'busybox', 'sh', '-c', 'dd if=/dev/zero of=/t/f bs=1024 count=2048']);
  assert.notEqual(big.code, 0, 'writing past the size fails');
  assert.match(big.stderr, /No space left on device/);
  dockerOk(s(), ['run', '-d', '--name', 'tuser', '-v', 'tv:/t', 'busybox', 'sleep', '1000']);
  try {
    assert.equal(mountedAt(v.Mountpoint), true, 'mounted while a container uses it');
    const fs = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === v.Mountpoint) ?? '';
    assert.match(fs, / - tmpfs /);
    assert.equal(dockerOk(s(), ['exec', 'tuser', 'sh', '-c', 'echo x > /t/small && cat /t/small']), 'x\n');
    const conflict = docker(s(), ['volume', 'rm', 'tv']);
    assert.equal(conflict.code, 1);
    assert.match(conflict.stderr, /remove tv: volume is in use - \[[0-9a-f]{64}\]/);
  } finally {
    dockerOk(s(), ['rm', '-f', 'tuser']);
  }
  for (let i = 0; i < 50 && mountedAt(v.Mountpoint); i++) spawnSync('sleep', ['0.1']);
  assert.equal(mountedAt(v.Mountpoint), false, 'unmounted when the last container stopped');
  dockerOk(s(), ['volume', 'rm', 'tv']);
  assert.equal(existsSync(v.Mountpoint), false);
});

test('local driver: a bind of a host directory; removing the volume keeps the directory', () => {
  const dir = join(dirs.base, 'bound');
  mkdirSync(dir);
  writeFileSync(join(dir, 'already'), 'here\n');
  dockerOk(s(), ['volume', 'create', '-o', 'type=none', '-o', 'o=bind', '-o', `device=${dir}`, 'bv']);
  const v = inspectVolume('bv');
  assert.equal(dockerOk(s(), ['run', '--rm', '-v', 'bv:/b', 'busybox', 'sh', '-c', 'cat /b/already; echo new > /b/new']), 'here\n');
  assert.equal(readFileSync(join(dir, 'new'), 'utf8'), 'new\n');
  for (let i = 0; i < 50 && mountedAt(v.Mountpoint); i++) spawnSync('sleep', ['0.1']);
  assert.equal(mountedAt(v.Mountpoint), false);
  dockerOk(s(), ['run', '-d', '--name', 'buser', '-v', 'bv:/b', 'busybox', 'sleep', '1000']);
  assert.equal(mountedAt(v.Mountpoint), true);
  dockerOk(s(), ['rm', '-f', 'buser']);
  dockerOk(s(), ['volume', 'rm', 'bv']);
  assert.deepEqual(readdirSync(dir).sort(), ['already', 'new'], 'the host directory and its files stay');
  assert.equal(mountedAt(v.Mountpoint), false);
  const missing = docker(s(), ['run', '--rm', '-v', 'bv2:/b', '--mount', 'type=volume,src=bv3,dst=/c,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/nonexistent/x', 'busybox', 'true']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /no such file or directory/);
  docker(s(), ['volume', 'rm', 'bv2', 'bv3']);
});

test('in use: 409 while a container refers to the volume', () => {
  dockerOk(s(), ['volume', 'create', 'inuse']);
  const id = dockerOk(s(), ['create', '--name', 'holder', '-v', 'inuse:/x', 'busybox', 'true']).trim();
  const r = docker(s(), ['volume', 'rm', 'inuse']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim(), `Error response from daemon: remove inuse: volume is in use - [${id}]`);
  assert.equal(docker(s(), ['volume', 'rm', '-f', 'inuse']).code, 1, 'force does not remove a volume in use');
  assert.ok(!dockerOk(s(), ['volume', 'ls', '-q', '-f', 'dangling=true']).split('\n').includes('inuse'));
  dockerOk(s(), ['rm', 'holder']);
  dockerOk(s(), ['volume', 'rm', 'inuse']);
});

test('prune: unused anonymous volumes by default, all unused with all=true', async () => {
  dockerOk(s(), ['volume', 'create', 'keepme']);
  dockerOk(s(), ['volume', 'create', 'usedvol']);
  dockerOk(s(), ['create', '--name', 'user1', '-v', 'usedvol:/u', 'busybox', 'true']);
  dockerOk(s(), ['run', '--name', 'p1', '-v', '/data', 'busybox', 'sh', '-c', 'head -c 5000 /dev/zero > /data/f']);
  const anon = mountsOf('p1').find((x) => x.Destination === '/data')?.Name ?? '';
  dockerOk(s(), ['rm', 'p1']);
  const r = await api(s(), 'POST', '/volumes/prune');
  assert.equal(r.status, 200, r.body);
  const pruned = JSON.parse(r.body) as { VolumesDeleted: string[]; SpaceReclaimed: number };
  assert.deepEqual(pruned.VolumesDeleted, [anon]);
  assert.equal(pruned.SpaceReclaimed, 5000);
  assert.equal(volumeExists('keepme'), true);
  const all = await api(s(), 'POST', `/volumes/prune?filters=${encodeURIComponent('{"all":["true"]}')}`);
  const deleted = (JSON.parse(all.body) as { VolumesDeleted: string[] }).VolumesDeleted;
  assert.ok(deleted.includes('keepme'));
  assert.ok(!deleted.includes('usedvol'), 'a used volume is never pruned');
  assert.equal(volumeExists('usedvol'), true);
  dockerOk(s(), ['rm', 'user1']);
  dockerOk(s(), ['volume', 'rm', 'usedvol']);
});

test('the berth CLI: volume create, ls, inspect, rm, prune as docker prints them', (t) => {
  t.after(() => {
    docker(s(), ['rm', '-f', 'clip']);
    docker(s(), ['volume', 'rm', '-f', 'clivol', 'clivol2']);
  });
  const c = berth(['volume', 'create', '--label', 'a=b', '-o', 'type=tmpfs', '-o', 'device=tmpfs', 'clivol']);
  assert.equal(c.code, 0, c.stderr);
  assert.equal(c.stdout, 'clivol\n');
  dockerOk(s(), ['volume', 'create', 'clivol2']);
  for (const args of [['volume', 'ls'], ['volume', 'ls', '-q'], ['volume', 'ls', '--filter', 'label=a=b'], ['volume', 'ls', '--format', '{{.Name}} {{.Driver}} {{.Labels}} {{.Scope}}'],
    ['volume', 'inspect', 'clivol'], ['volume', 'inspect', '-f', '{{.Name}} {{.Labels.a}} {{.Options.type}}', 'clivol']]) {
    const b = berth(args);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(b.stdout, dockerOk(s(), args), `berth ${args.join(' ')}`);
  }
  assert.match(berth(['volume', 'ls']).stdout, /^DRIVER {4}VOLUME NAME\nlocal {5}clivol\nlocal {5}clivol2\n/);
  const missing = berth(['volume', 'inspect', 'nope']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no such volume/);
  const rm = berth(['volume', 'rm', 'clivol', 'nope']);
  assert.equal(rm.code, 1);
  assert.equal(rm.stdout, 'clivol\n');
  assert.match(rm.stderr, /Error response from daemon: get nope: no such volume/);
  dockerOk(s(), ['run', '--name', 'clip', '-v', '/data', 'busybox', 'true']);
  const anon = mountsOf('clip').find((x) => x.Destination === '/data')?.Name ?? '';
  dockerOk(s(), ['rm', 'clip']);
  const p = berth(['volume', 'prune', '-f']);
  assert.equal(p.code, 0, p.stderr);
  assert.equal(p.stdout, `Deleted Volumes:\n${anon}\n\nTotal reclaimed space: 0B\n`);
  const pa = berth(['volume', 'prune', '-a'], 'y\n');
  assert.equal(pa.code, 0, pa.stderr);
  assert.match(pa.stdout, /^WARNING! This will remove all local volumes not used by at least one container\.\nAre you sure you want to continue\? \[y\/N\] Deleted Volumes:\nclivol2\n/);
  assert.equal(volumeExists('clivol2'), false);
});

test('volumes and their data survive a berthd restart', async () => {
  dockerOk(s(), ['run', '--rm', '-v', 'persist:/p', 'busybox', 'sh', '-c', 'echo kept > /p/f']);
  dockerOk(s(), ['run', '--name', 'again', '-v', '/data', 'busybox', 'sh', '-c', 'echo 1 >> /data/c; cat /data/c']);
  const anon = mountsOf('again').find((x) => x.Destination === '/data')?.Name ?? '';
  dockerOk(s(), ['volume', 'create', '-o', 'type=tmpfs', '-o', 'device=tmpfs', 'tmpkeep']);
  dockerOk(s(), ['run', '-d', '--name', 'tmpuser', '-v', 'tmpkeep:/t', 'busybox', 'sh', '-c', 'echo t > /t/x; sleep 1000']);
  const created = inspectVolume('persist').CreatedAt;
  await engine?.stop();
  engine = await startEngine(dirs);
  assert.equal(inspectVolume('persist').CreatedAt, created);
  assert.equal(dockerOk(s(), ['run', '--rm', '-v', 'persist:/p', 'busybox', 'cat', '/p/f']), 'kept\n');
  assert.equal(dockerOk(s(), ['start', '-a', 'again']), '1\n1\n', 'the same anonymous volume after the restart');
  const tmp = inspectVolume('tmpkeep').Mountpoint;
  assert.equal(mountedAt(tmp), true);
  assert.equal(dockerOk(s(), ['exec', 'tmpuser', 'cat', '/t/x']), 't\n');
  dockerOk(s(), ['rm', '-f', 'tmpuser']);
  for (let i = 0; i < 50 && mountedAt(tmp); i++) spawnSync('sleep', ['0.1']);
  assert.equal(mountedAt(tmp), false, 'the restarted engine still unmounts at the last stop');
  dockerOk(s(), ['rm', '-v', 'again']);
  assert.equal(volumeExists(anon), false);
  dockerOk(s(), ['volume', 'rm', 'persist', 'tmpkeep']);
  assert.deepEqual(mountsUnder(volumesRoot()), [], 'no volume is left mounted');
  assert.deepEqual(readdirSync(volumesRoot()), [], 'every volume this file made is gone');
});
