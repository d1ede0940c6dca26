/**
 * The archive API behind `docker cp`, driven by the real docker CLI and raw
 * API calls against an isolated berthd, on stopped and running containers:
 * copies both ways (files, directories, `dir/.`, symlinks, modes, owners),
 * HEAD stat, Docker's errors, volumes and read-only mounts, and the attacks
 * of the docker cp CVE class (symlinks in the container pointing out of it,
 * hostile archives), checked on the host's file system afterwards.
 * Root only. Containers go with the engine; host temp dirs in t.after.
 */
import test from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { api, docker, dockerOk, useEngine } from './_engine.js';

const isRoot = process.getuid?.() === 0;
const { dirs } = useEngine();
const sock = (): string => dirs.socket;

function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join('/tmp', prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const rand = (): string => randomBytes(4).toString('hex');

interface Stat { name: string; size: number; mode: number; mtime: string; linkTarget: string }

function decodeStat(h: string | string[] | undefined): Stat {
  assert.equal(typeof h, 'string', 'the X-Docker-Container-Path-Stat header is there');
  return JSON.parse(Buffer.from(h as string, 'base64').toString('utf8')) as Stat;
}

const q = (p: string): string => encodeURIComponent(p);

/** A raw PUT of a tar body. */
function put(path: string, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: sock(), method: 'PUT', path, headers: { 'Content-Type': 'application/x-tar', 'Content-Length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A tar made by Python's tarfile from a list of entries (names as given: "..", absolute, links). */
function makeTar(entries: Array<{ name: string; type: 'file' | 'dir' | 'symlink' | 'hardlink'; data?: string; link?: string; mode?: number; uid?: number }>): Buffer {
  const script = `
import io, json, sys, tarfile
entries = json.loads(sys.argv[1])
out = io.BytesIO()
with tarfile.open(fileobj=out, mode='w', format=tarfile.PAX_FORMAT) as tf:
    for e in entries:
        ti = tarfile.TarInfo(e['name'])
        ti.mode = e.get('mode', 0o644)
        ti.uid = e.get('uid', 0)
        ti.gid = e.get('uid', 0)
        data = None
        if e['type'] == 'file':
            data = e.get('data', '').encode()
            ti.size = len(data)
        elif e['type'] == 'dir':
            ti.type = tarfile.DIRTYPE
            ti.mode = e.get('mode', 0o755)
        elif e['type'] == 'symlink':
            ti.type = tarfile.SYMTYPE
            ti.linkname = e['link']
        else:
            ti.type = tarfile.LNKTYPE
            ti.linkname = e['link']
        tf.addfile(ti, io.BytesIO(data) if data is not None else None)
sys.stdout.buffer.write(out.getvalue())
`;
  const r = spawnSync('python3', ['-c', script, JSON.stringify(entries)], { maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, r.stderr.toString());
  return r.stdout;
}

/** `tar -tv --numeric-owner` of what `docker cp ctr:path -` writes: "mode uid/gid name[ -> target]" lines. */
function listing(ref: string): string[] {
  const r = spawnSync('sh', ['-c', `docker -H unix://${sock()} cp ${ref} - | tar -tv --numeric-owner`], {
    encoding: 'utf8', env: { ...process.env, DOCKER_CONFIG: join(dirs.base, '.docker') },
  });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split('\n').map((l) => {
    const f = l.split(/\s+/);
    return [f[0], f[1], ...f.slice(5)].join(' ');
  });
}

/** No view of a container is left mounted after the requests (a GET's view goes once its stream is done). */
async function assertNoViews(): Promise<void> {
  const views = (): string[] => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes('tmp-archive-'));
  for (let i = 0; i < 50 && views().length > 0; i++) await sleep(100);
  assert.deepEqual(views(), [], 'no container view left mounted');
  assert.deepEqual(readdirSync(join(dirs.dataRoot, 'tmp')).filter((n) => n.startsWith('tmp-archive-')), [], 'no view dir left');
}

/** A host tree: d/ (0750) with f (0640), x (4755), sub/g, link -> f, owned by 1234:2345. */
function hostTree(t: TestContext): string {
  const base = tempDir(t, 'berth-cp-src-');
  const d = join(base, 'd');
  mkdirSync(join(d, 'sub'), { recursive: true });
  writeFileSync(join(d, 'f'), 'hello\n');
  writeFileSync(join(d, 'x'), '#!/bin/sh\n');
  writeFileSync(join(d, 'sub', 'g'), 'g\n');
  symlinkSync('f', join(d, 'link'));
  chmodSync(join(d, 'f'), 0o640);
  chmodSync(join(d, 'x'), 0o755);
  chmodSync(d, 0o750);
  for (const p of ['f', 'x', 'sub', 'sub/g', '']) chownSync(join(d, p), 1234, 2345);
  return base;
}

test('docker cp both ways on a stopped container: files, dirs, dir/., symlinks, modes, owners', { skip: !isRoot && 'needs root' }, async (t) => {
  const base = hostTree(t);
  const out = tempDir(t, 'berth-cp-out-');
  const name = `cp-stopped-${rand()}`;
  dockerOk(sock(), ['create', '--name', name, 'busybox', 'sleep', '1000']);

  // a directory to a new name, then back out
  dockerOk(sock(), ['cp', join(base, 'd'), `${name}:/tmp/d`]);
  dockerOk(sock(), ['cp', `${name}:/tmp/d`, join(out, 'd2')]);
  assert.equal(readFileSync(join(out, 'd2', 'f'), 'utf8'), 'hello\n');
  assert.equal(readFileSync(join(out, 'd2', 'sub', 'g'), 'utf8'), 'g\n');
  assert.equal(readlinkSync(join(out, 'd2', 'link')), 'f');
  assert.equal(lstatSync(join(out, 'd2', 'f')).mode & 0o7777, 0o640);
  assert.equal(lstatSync(join(out, 'd2', 'x')).mode & 0o7777, 0o755);
  assert.equal(lstatSync(join(out, 'd2')).mode & 0o7777, 0o750);

  // owners: root without -a, the archive's with -a; modes as copied
  const plain = listing(`${name}:/tmp/d`);
  assert.ok(plain.includes('drwxr-x--- 0/0 d/'), plain.join('\n'));
  assert.ok(plain.includes('-rw-r----- 0/0 d/f'), plain.join('\n'));
  assert.ok(plain.includes('lrwxrwxrwx 0/0 d/link -> f'), plain.join('\n'));
  dockerOk(sock(), ['cp', '-a', join(base, 'd'), `${name}:/tmp/owned`]);
  const owned = listing(`${name}:/tmp/owned`);
  assert.ok(owned.includes('-rw-r----- 1234/2345 owned/f'), owned.join('\n'));
  assert.ok(owned.includes('drwxr-xr-x 1234/2345 owned/sub/'), owned.join('\n'));

  // dir/. : the contents, into an existing directory and into a new one
  dockerOk(sock(), ['cp', `${join(base, 'd')}/.`, `${name}:/tmp/`]);
  const head = docker(sock(), ['cp', `${name}:/tmp/f`, join(out, 'f1')]);
  assert.equal(head.code, 0, head.stderr);
  assert.equal(readFileSync(join(out, 'f1'), 'utf8'), 'hello\n');
  mkdirSync(join(out, 'e'));
  dockerOk(sock(), ['cp', `${name}:/tmp/d/.`, join(out, 'e')]);
  assert.deepEqual(readdirSync(join(out, 'e')).sort(), ['f', 'link', 'sub', 'x']);
  const dot = listing(`${name}:/tmp/d/.`);
  assert.ok(dot.some((l) => l.endsWith(' ./f')), dot.join('\n'));

  // one file, to a directory and to a new name
  dockerOk(sock(), ['cp', join(base, 'd', 'f'), `${name}:/etc/`]);
  dockerOk(sock(), ['cp', `${name}:/etc/f`, join(out, 'etc-f')]);
  assert.equal(readFileSync(join(out, 'etc-f'), 'utf8'), 'hello\n');

  // a symlink: copied as itself, or followed with -L
  dockerOk(sock(), ['cp', `${name}:/tmp/d/link`, join(out, 'l')]);
  assert.equal(readlinkSync(join(out, 'l')), 'f');
  dockerOk(sock(), ['cp', '-L', `${name}:/tmp/d/link`, join(out, 'lf')]);
  assert.equal(readFileSync(join(out, 'lf'), 'utf8'), 'hello\n');

  // what was copied in while stopped is there once it runs
  dockerOk(sock(), ['start', name]);
  assert.equal(dockerOk(sock(), ['exec', name, 'stat', '-c', '%a %u %g', '/tmp/owned/f', '/tmp/d/f']), '640 1234 2345\n640 0 0\n');
  await assertNoViews();
});

test('docker cp both ways on a running container', { skip: !isRoot && 'needs root' }, async (t) => {
  const base = hostTree(t);
  const out = tempDir(t, 'berth-cp-out-');
  const name = `cp-running-${rand()}`;
  dockerOk(sock(), ['run', '-d', '--name', name, 'busybox', 'sh', '-c', 'echo made-inside > /made; sleep 1000']);
  dockerOk(sock(), ['cp', join(base, 'd'), `${name}:/tmp/`]);
  assert.equal(dockerOk(sock(), ['exec', name, 'cat', '/tmp/d/f', '/tmp/d/sub/g']), 'hello\ng\n');
  assert.equal(dockerOk(sock(), ['exec', name, 'readlink', '/tmp/d/link']), 'f\n');
  assert.equal(dockerOk(sock(), ['exec', name, 'stat', '-c', '%a %u', '/tmp/d', '/tmp/d/f']), '750 0\n640 0\n');
  // what the container wrote is copied out
  for (let i = 0; i < 100 && docker(sock(), ['cp', `${name}:/made`, join(out, 'made')]).code !== 0; i++) spawnSync('sleep', ['0.1']);
  assert.equal(readFileSync(join(out, 'made'), 'utf8'), 'made-inside\n');
  dockerOk(sock(), ['cp', `${name}:/tmp/d/.`, join(out, 'back')]);
  assert.equal(readFileSync(join(out, 'back', 'sub', 'g'), 'utf8'), 'g\n');
  // the network files are the engine's, as the container sees them
  dockerOk(sock(), ['cp', `${name}:/etc/hostname`, join(out, 'hostname')]);
  assert.equal(readFileSync(join(out, 'hostname'), 'utf8'), dockerOk(sock(), ['exec', name, 'cat', '/etc/hostname']));
  await assertNoViews();
});

test('HEAD stat and Docker errors', { skip: !isRoot && 'needs root' }, async (t) => {
  const base = hostTree(t);
  const name = `cp-stat-${rand()}`;
  dockerOk(sock(), ['create', '--name', name, 'busybox', 'true']);
  dockerOk(sock(), ['cp', join(base, 'd'), `${name}:/d`]);

  const f = await api(sock(), 'HEAD', `/containers/${name}/archive?path=${q('/d/f')}`);
  assert.equal(f.status, 200);
  const fs = decodeStat(f.headers['x-docker-container-path-stat']);
  assert.equal(fs.name, 'f');
  assert.equal(fs.size, 6);
  assert.equal(fs.mode, 0o640);
  assert.equal(fs.linkTarget, '');
  assert.ok(Math.abs(Date.parse(fs.mtime) - lstatSync(join(base, 'd', 'f')).mtimeMs) < 2000, fs.mtime);

  const d = decodeStat((await api(sock(), 'HEAD', `/containers/${name}/archive?path=${q('/d')}`)).headers['x-docker-container-path-stat']);
  assert.equal(d.mode, 2 ** 31 + 0o750);
  assert.equal(d.name, 'd');
  const l = decodeStat((await api(sock(), 'HEAD', `/containers/${name}/archive?path=${q('/d/link')}`)).headers['x-docker-container-path-stat']);
  assert.equal(l.mode, 2 ** 27 + 0o777);
  assert.equal(l.linkTarget, '/d/f');
  const tmp = decodeStat((await api(sock(), 'HEAD', `/containers/${name}/archive?path=${q('/tmp/')}`)).headers['x-docker-container-path-stat']);
  assert.equal(tmp.mode, 2 ** 31 + 2 ** 20 + 0o777, 'sticky /tmp');

  const missing = await api(sock(), 'HEAD', `/containers/${name}/archive?path=${q('/nope')}`);
  assert.equal(missing.status, 404);
  const get = await api(sock(), 'GET', `/containers/${name}/archive?path=${q('/nope')}`);
  assert.equal(get.status, 404);
  assert.equal((JSON.parse(get.body) as { message: string }).message, `Could not find the file /nope in container ${name}`);
  const putMissing = await put(`/containers/${name}/archive?path=${q('/nope')}`, makeTar([{ name: 'a', type: 'file', data: 'a' }]));
  assert.equal(putMissing.status, 404);
  assert.equal((JSON.parse(putMissing.body) as { message: string }).message, `Could not find the file /nope in container ${name}`);
  const putFile = await put(`/containers/${name}/archive?path=${q('/d/f')}`, makeTar([{ name: 'a', type: 'file', data: 'a' }]));
  assert.equal(putFile.status, 400);
  assert.equal((JSON.parse(putFile.body) as { message: string }).message, 'extraction point is not a directory');
  const noPath = await api(sock(), 'GET', `/containers/${name}/archive`);
  assert.equal(noPath.status, 400);
  const noCtr = await api(sock(), 'HEAD', `/containers/nope-${rand()}/archive?path=/`);
  assert.equal(noCtr.status, 404);

  // replacing a directory by a file is refused (the CLI asks for noOverwriteDirNonDir)
  const over = await put(`/containers/${name}/archive?path=/&noOverwriteDirNonDir=1`, makeTar([{ name: 'd', type: 'file', data: 'x' }]));
  assert.equal(over.status, 500);
  assert.match(over.body, /cannot overwrite directory \\"\/d\\" with non-directory \\"\/\\"/);

  const cli = docker(sock(), ['cp', `${name}:/nope`, join(base, 'x')]);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /Could not find the file \/nope in container|No such container:path/);
  await assertNoViews();
});

test('volumes and read-only mounts', { skip: !isRoot && 'needs root' }, async (t) => {
  const rw = tempDir(t, 'berth-cp-rw-');
  const ro = tempDir(t, 'berth-cp-ro-');
  writeFileSync(join(ro, 'keep'), 'ro\n');
  const src = hostTree(t);
  const name = `cp-vol-${rand()}`;
  dockerOk(sock(), ['run', '-d', '--name', name, '--read-only', '-v', `${rw}:/rw`, '-v', `${ro}:/ro:ro`, 'busybox', 'sleep', '1000']);

  dockerOk(sock(), ['cp', join(src, 'd', 'f'), `${name}:/rw/`]);
  assert.equal(readFileSync(join(rw, 'f'), 'utf8'), 'hello\n', 'the bind mount source got the file');
  const out = tempDir(t, 'berth-cp-out-');
  dockerOk(sock(), ['cp', `${name}:/ro/keep`, join(out, 'keep')]);
  assert.equal(readFileSync(join(out, 'keep'), 'utf8'), 'ro\n');

  const tar = makeTar([{ name: 'new', type: 'file', data: 'n' }]);
  const toRo = await put(`/containers/${name}/archive?path=/ro`, tar);
  assert.equal(toRo.status, 400);
  assert.equal((JSON.parse(toRo.body) as { message: string }).message, 'mounted volume is marked read-only');
  const toRoot = await put(`/containers/${name}/archive?path=/tmp`, tar);
  assert.equal(toRoot.status, 400);
  assert.equal((JSON.parse(toRoot.body) as { message: string }).message, 'container rootfs is marked read-only');
  const cli = docker(sock(), ['cp', join(src, 'd', 'f'), `${name}:/ro/`]);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /mounted volume is marked read-only/);
  assert.deepEqual(readdirSync(ro), ['keep']);

  // the same on the stopped container
  dockerOk(sock(), ['stop', '-t', '1', name]);
  dockerOk(sock(), ['cp', join(src, 'd', 'x'), `${name}:/rw/`]);
  assert.ok(existsSync(join(rw, 'x')));
  const stoppedRo = await put(`/containers/${name}/archive?path=/ro`, tar);
  assert.equal(stoppedRo.status, 400);
  assert.deepEqual(readdirSync(ro), ['keep']);
  await assertNoViews();
});

/** Symlinks in the container pointing out of it: /escape -> / and /up -> ../../../.. */
async function escapeLinks(name: string): Promise<void> {
  const links = makeTar([
    { name: 'escape', type: 'symlink', link: '/' },
    { name: 'up', type: 'symlink', link: '../../../..' },
  ]);
  const r = await put(`/containers/${name}/archive?path=/`, links);
  assert.equal(r.status, 200, r.body);
}

for (const running of [false, true]) {
  test(`symlinks out of the container neither reveal nor touch host files (${running ? 'running' : 'stopped'})`, { skip: !isRoot && 'needs root' }, async (t) => {
    const host = tempDir(t, 'berth-cp-host-');
    writeFileSync(join(host, 'secret'), 'host secret\n');
    const out = tempDir(t, 'berth-cp-out-');
    const src = hostTree(t);
    const name = `cp-esc-${rand()}`;
    if (running) dockerOk(sock(), ['run', '-d', '--name', name, 'busybox', 'sleep', '1000']);
    else dockerOk(sock(), ['create', '--name', name, 'busybox', 'sleep', '1000']);
    await escapeLinks(name);

    // as a source: the host's file is not found; the container's own is
    for (const link of ['/escape', '/up']) {
      const r = docker(sock(), ['cp', `${name}:${link}${host}/secret`, join(out, 'stolen')]);
      assert.notEqual(r.code, 0, `${link}: must not be found`);
      assert.equal(existsSync(join(out, 'stolen')), false);
      const g = await api(sock(), 'GET', `/containers/${name}/archive?path=${q(`${link}${host}/secret`)}`);
      assert.equal(g.status, 404);
      assert.doesNotMatch(g.body, /host secret/);
    }
    const mine = makeTar([{ name: `${host.slice(1)}/secret`, type: 'file', data: 'container secret\n' }]);
    assert.equal((await put(`/containers/${name}/archive?path=/`, mine)).status, 200);
    dockerOk(sock(), ['cp', `${name}:/up${host}/secret`, join(out, 'c')]);
    assert.equal(readFileSync(join(out, 'c'), 'utf8'), 'container secret\n');
    assert.equal(readFileSync(join(host, 'secret'), 'utf8'), 'host secret\n');

    // HEAD reports where the link leads inside the container
    const st = decodeStat((await api(sock(), 'HEAD', `/containers/${name}/archive?path=/up`)).headers['x-docker-container-path-stat']);
    assert.equal(st.linkTarget, '/');

    // as a destination: the files land in the container, never on the host
    dockerOk(sock(), ['cp', join(src, 'd', 'f'), `${name}:/escape${host}/`]);
    dockerOk(sock(), ['cp', join(src, 'd', 'x'), `${name}:/up${host}/`]);
    const unique = `cp-esc-${rand()}`;
    dockerOk(sock(), ['cp', join(src, 'd', 'f'), `${name}:/escape/${unique}`]);
    dockerOk(sock(), ['cp', join(src, 'd', 'f'), `${name}:/up/tmp/${unique}`]);
    assert.deepEqual(readdirSync(host), ['secret'], 'nothing written in the host dir');
    assert.equal(existsSync(`/${unique}`), false);
    assert.equal(existsSync(`/tmp/${unique}`), false);
    for (const p of [`${host}/f`, `${host}/x`, `/${unique}`, `/tmp/${unique}`]) {
      const h = await api(sock(), 'HEAD', `/containers/${name}/archive?path=${q(p)}`);
      assert.equal(h.status, 200, `${p} is in the container`);
    }
    await assertNoViews();
  });
}

test('a hostile archive cannot write outside the container', { skip: !isRoot && 'needs root' }, async (t) => {
  const host = tempDir(t, 'berth-cp-host-');
  const name = `cp-tar-${rand()}`;
  dockerOk(sock(), ['run', '-d', '--name', name, 'busybox', 'sleep', '1000']);
  const tag = rand();

  // names climbing out of the destination are refused, nothing is written
  for (const bad of [`../x-${tag}`, `a/../../x-${tag}`, `../../../../../../..${host}/x`]) {
    const r = await put(`/containers/${name}/archive?path=/tmp`, makeTar([{ name: bad, type: 'file', data: 'pwned' }]));
    assert.equal(r.status, 500, r.body);
    assert.match(r.body, /is outside of/);
  }
  const hard = await put(`/containers/${name}/archive?path=/tmp`, makeTar([{ name: 'h', type: 'hardlink', link: `../../../../../..${host}/secret` }]));
  assert.notEqual(hard.status, 200);

  // absolute names land below the destination
  assert.equal((await put(`/containers/${name}/archive?path=/tmp`, makeTar([{ name: `${host}/abs`, type: 'file', data: 'abs' }]))).status, 200);
  assert.equal(dockerOk(sock(), ['exec', name, 'cat', `/tmp${host}/abs`]), 'abs');

  // a symlink entry to a missing directory, then a file through it: refused
  const missing = await put(`/containers/${name}/archive?path=/tmp`, makeTar([
    { name: 'l0', type: 'symlink', link: host },
    { name: `l0/pwned0-${tag}`, type: 'file', data: 'through a link to nothing' },
  ]));
  assert.equal(missing.status, 400, missing.body);
  assert.match(missing.body, /is a symlink to a missing directory/);
  assert.deepEqual(readdirSync(host), []);

  // a symlink entry, then a file through it: it stays in the container
  dockerOk(sock(), ['exec', name, 'mkdir', '-p', host]);
  const through = makeTar([
    { name: 'l1', type: 'symlink', link: host },
    { name: `l1/pwned-${tag}`, type: 'file', data: 'through an absolute link' },
    { name: 'l2', type: 'symlink', link: `../../../../../../..${host}` },
    { name: `l2/pwned2-${tag}`, type: 'file', data: 'through a relative link' },
  ]);
  const r = await put(`/containers/${name}/archive?path=/tmp`, through);
  assert.equal(r.status, 200, r.body);
  // a link through /proc of the host's (magic links are never followed; /proc of the view is the image's empty dir)
  const magic = await put(`/containers/${name}/archive?path=/tmp`, makeTar([
    { name: 'l3', type: 'symlink', link: '/proc/self/root' },
    { name: `l3/tmp/pwned3-${tag}`, type: 'file', data: 'through a magic link' },
  ]));
  assert.equal(magic.status, 400, magic.body);
  assert.deepEqual(readdirSync(host), [], 'nothing written in the host dir');
  assert.equal(existsSync(`/tmp/pwned3-${tag}`), false);
  assert.equal(existsSync(`/tmp/pwned-${tag}`), false);
  // where a symlink would have led in the container, Docker's chroot semantics
  assert.equal(dockerOk(sock(), ['exec', name, 'cat', `${host}/pwned-${tag}`]), 'through an absolute link');
  assert.equal(dockerOk(sock(), ['exec', name, 'cat', `${host}/pwned2-${tag}`]), 'through a relative link');
  for (const f of readdirSync('/')) assert.ok(!f.includes(tag), `/${f}`);
  for (const f of readdirSync('/tmp')) assert.ok(!f.includes(tag), `/tmp/${f}`);
  await assertNoViews();
});

test('docker cp of large files and many entries in one directory, and an archive whose "." is not a directory', { skip: !isRoot && 'needs root' }, async (t) => {
  const base = tempDir(t, 'berth-cp-big-');
  const out = tempDir(t, 'berth-cp-big-out-');
  const name = `cp-big-${rand()}`;
  dockerOk(sock(), ['run', '-d', '--name', name, 'busybox', 'sleep', '1000']);
  // 5 MiB of random data with 1 MiB of zeros in its middle (written in batches, the zeros as a hole)
  const big = Buffer.concat([randomBytes(2 << 20), Buffer.alloc(1 << 20), randomBytes((2 << 20) + 123)]);
  const d = join(base, 'd');
  mkdirSync(d);
  writeFileSync(join(d, 'big'), big);
  for (let i = 0; i < 300; i++) writeFileSync(join(d, `f${i}`), `${i}\n`);
  dockerOk(sock(), ['cp', d, `${name}:/tmp/`]);
  assert.equal(dockerOk(sock(), ['exec', name, 'sh', '-c', 'ls /tmp/d | wc -l; cat /tmp/d/f0 /tmp/d/f299']).trim(), '301\n0\n299');
  dockerOk(sock(), ['cp', `${name}:/tmp/d`, join(out, 'd')]);
  assert.ok(readFileSync(join(out, 'd', 'big')).equals(big), 'the large file comes back byte for byte');
  assert.equal(readFileSync(join(out, 'd', 'f150'), 'utf8'), '150\n');

  // an entry "." that is a file: refused with noOverwriteDirNonDir, otherwise left out (the directory stays)
  const dot = makeTar([{ name: '.', type: 'file', data: 'x' }, { name: 'after', type: 'file', data: 'after\n' }]);
  const refused = await put(`/containers/${name}/archive?path=/tmp/d&noOverwriteDirNonDir=1`, dot);
  assert.equal(refused.status, 500, refused.body);
  assert.match(refused.body, /cannot overwrite directory \\"\/tmp\/d\\" with non-directory/);
  const skipped = await put(`/containers/${name}/archive?path=/tmp/d`, dot);
  assert.equal(skipped.status, 200, skipped.body);
  assert.equal(dockerOk(sock(), ['exec', name, 'sh', '-c', 'cat /tmp/d/after; ls /tmp/d | wc -l']).trim(), 'after\n302');
  await assertNoViews();
});
