/**
 * The docker cp race (the symlink-exchange CVE class): a container process
 * flips path components between a real directory and symlinks out of the
 * container (to "/", to "../../../..", to a host temp dir by absolute path and
 * by a long "../" climb) while the real docker CLI and raw archive API calls
 * copy files in and out of paths below them, for several seconds.
 *
 * Two attackers run at once: a busybox sh loop that renames /data/d between a
 * directory and each of the links (and flips the last components, /data/d/f
 * and the incoming names, into symlinks to host files), and, where a static C
 * toolchain is there, a helper that swaps /data/e with links atomically
 * (renameat2 RENAME_EXCHANGE), so that the path always exists.
 *
 * Facts checked on the host afterwards: the secret file of a host dir never
 * appears in any output, every regular file copied out holds one of the
 * contents the container was given, the host dir is byte for byte as before,
 * the names copied in appear nowhere outside the container's upper dir (the
 * engine's whole temp dir, / and /tmp searched), no container view stays
 * mounted, and berthd still serves correct copies.
 * Root only. Containers go with the engine; host temp dirs in t.after.
 */
import test from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DOCKER, api, docker, dockerOk, useEngine } from './_engine.js';

const isRoot = process.getuid?.() === 0;
// The race runs at least MIN_MS, then until enough copies went through both ways (a loaded
// machine is slow), at most MAX_MS.
const MIN_MS = 5_000;
const MAX_MS = 12_000;
const ENOUGH = 10;
const WORKERS = 6;
const { dirs, engine } = useEngine();
const sock = (): string => dirs.socket;

function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join('/tmp', prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const rand = (): string => randomBytes(6).toString('hex');

/** Every entry below dir (not following symlinks): relative path -> type, mode, size, content hash or link target. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    const p = rel === '' ? dir : join(dir, rel);
    const st = lstatSync(p);
    let what: string;
    if (st.isSymbolicLink()) what = `link ${readlinkSync(p)}`;
    else if (st.isFile()) what = `file ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    else if (st.isDirectory()) what = 'dir';
    else what = 'other';
    out.set(rel, `${what} mode=${st.mode.toString(8)} size=${st.size} mtime=${st.mtimeMs} ctime=${st.ctimeMs}`);
    if (st.isDirectory()) for (const n of readdirSync(p)) walk(rel === '' ? n : join(rel, n));
  };
  walk('');
  return out;
}

/** Regular files below p (p itself included), never through a symlink. */
function regularFiles(p: string): string[] {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (st === undefined) return [];
  if (st.isFile()) return [p];
  if (!st.isDirectory()) return [];
  return readdirSync(p).flatMap((n) => regularFiles(join(p, n)));
}

/** Paths named `names` anywhere below root, on its own file system only (overlay mounts below are skipped). */
function findNamed(root: string, names: readonly string[]): string[] {
  const args = [root, '-xdev', '('];
  names.forEach((n, i) => args.push(...(i > 0 ? ['-o'] : []), '-name', n));
  args.push(')', '-print');
  const r = spawnSync('find', args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return r.stdout.split('\n').filter((s) => s !== '');
}

interface CliResult { code: number; stdout: string; stderr: string }

function dockerAsync(args: readonly string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(DOCKER, ['-H', `unix://${sock()}`, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DOCKER_CONFIG: join(dirs.base, '.docker') },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128, stdout, stderr });
    });
  });
}

/** A raw archive call; the body as bytes. */
function rawArchive(method: 'GET' | 'PUT', path: string, body?: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = body === undefined ? {} : { 'Content-Type': 'application/x-tar', 'Content-Length': body.length };
    const req = request({ socketPath: sock(), method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A static helper that swaps a path with others by renameat2(RENAME_EXCHANGE) forever; undefined without a static toolchain. */
function buildExchanger(dir: string): string | undefined {
  const src = join(dir, 'xchg.c');
  const bin = join(dir, 'xchg');
  writeFileSync(src, [
    '#define _GNU_SOURCE',
    '#include <fcntl.h>',
    '#include <sys/syscall.h>',
    '#include <unistd.h>',
    '/* Exchanges argv[1] with argv[2], argv[3], ... in turn, forever. */',
    'int main(int argc, char **argv) {',
    '  if (argc < 3) return 2;',
    '  if (nice(10) == -1) return 3; /* the engine keeps a share of a small machine */',
    '  for (int i = 2;; i = i + 1 < argc ? i + 1 : 2) syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[i], 2 /* RENAME_EXCHANGE */);',
    '}',
    '',
  ].join('\n'));
  const r = spawnSync('cc', ['-static', '-O2', '-o', bin, src], { encoding: 'utf8' });
  return r.status === 0 ? bin : undefined;
}

test('symlinks swapped during docker cp never lead out of the container', { skip: !isRoot && 'needs root', timeout: 120_000 }, async (t) => {
  const tag = rand();
  // The host side: a dir with a secret, a victim file and a watched subdir, all by absolute path in the links.
  const host = tempDir(t, 'berth-race-host-');
  const SECRET = `host-secret-${tag}`;
  writeFileSync(join(host, 'secret'), `${SECRET}\n`);
  writeFileSync(join(host, 'victim'), `host-victim-${tag}\n`);
  mkdirSync(join(host, 'watched'));
  writeFileSync(join(host, 'watched', 'keep'), `host-keep-${tag}\n`);
  // The names the link targets would give these files on the host if a copy escaped.
  writeFileSync(join(host, 'file'), `${SECRET}\n`);
  writeFileSync(join(host, 'f'), `${SECRET}\n`);
  const before = snapshot(host);

  // What is copied in: a file and a directory with unique names.
  const src = tempDir(t, 'berth-race-src-');
  const IN = `race-in-${tag}`;
  const INDIR = `race-dir-${tag}`;
  const INNER = `race-inner-${tag}`;
  const IN_DATA = `incoming-${tag}\n`;
  writeFileSync(join(src, IN), IN_DATA);
  mkdirSync(join(src, INDIR));
  writeFileSync(join(src, INDIR, INNER), IN_DATA);
  const tarred = spawnSync('tar', ['-C', src, '-cf', '-', IN, INDIR], { maxBuffer: 16 << 20 });
  assert.equal(tarred.status, 0, String(tarred.stderr));
  const inTar = tarred.stdout;
  const out = tempDir(t, 'berth-race-out-');
  const tools = tempDir(t, 'berth-race-tools-');

  // The container: content it owns, the links, and the swapping loop.
  const DATA = `container-data-${tag}`;
  const ROOTFILE = `container-root-${tag}`;
  const MARKER = `race-marker-${tag}`;
  const deep = '../'.repeat(16);
  const script = [
    'set -u',
    `touch /${MARKER}`,
    'mkdir -p /data/d /data/e',
    `echo ${DATA} > /data/d/file; echo ${DATA} > /data/d/f; echo ${DATA} > /data/e/file`,
    `echo ${ROOTFILE} > /file; echo ${ROOTFILE} > /f`,
    'ln -s / /data/l0; ln -s ../../../.. /data/l1',
    `ln -s ${host} /data/l2; ln -s ${deep}${host.slice(1)} /data/l3`,
    `ln -s / /data/ea; ln -s ${deep}${host.slice(1)} /data/eb`,
    'touch /data/ready',
    // The atomic swapper, once the test has copied it in.
    '( while [ ! -x /xchg ]; do sleep 0.1; done; exec /xchg /data/e /data/ea /data/eb ) &',
    'while :; do',
    '  for l in 0 1 2 3; do',
    '    mv -T /data/d /data/real',
    '    mv -T /data/l$l /data/d',
    `    ln -sfn ${host}/secret /data/real/f`,
    `    ln -sfn ${host}/victim /data/real/${IN}`,
    `    ln -sfn ${host}/watched /data/real/${INDIR}`,
    '    mv -T /data/d /data/l$l',
    '    mv -T /data/real /data/d',
    // Written beside the swapped dir, then renamed in: a copy of /data/d never catches it half written.
    `    echo ${DATA} > /data/f.new; mv -f /data/f.new /data/d/f`,
    '  done',
    'done',
  ].join('\n');
  const name = `cp-race-${tag}`;
  dockerOk(sock(), ['run', '-d', '--name', name, 'busybox', 'sh', '-c', script]);
  for (let i = 0; i < 100 && docker(sock(), ['exec', name, 'test', '-e', '/data/ready']).code !== 0; i++) await sleep(100);
  const xchg = buildExchanger(tools);
  if (xchg !== undefined) dockerOk(sock(), ['cp', xchg, `${name}:/xchg`]);
  else t.diagnostic('no static C toolchain: only the busybox sh swapper runs');

  // The copies, in both directions, WORKERS at a time.
  const allowed = new Set([DATA, ROOTFILE, IN_DATA.trim()]);
  // (The shell's temp file /data/f.new may come along, empty, through a link to "/": not one of these.)
  const ours = new Set(['file', 'f', IN, INNER]);
  const counts = { outOk: 0, outFailed: 0, inOk: 0, inFailed: 0, fromRoot: 0, rawOk: 0 };
  const leaks: string[] = [];
  const checkOut = (p: string): void => {
    for (const f of regularFiles(p)) {
      const bytes = readFileSync(f);
      const text = bytes.toString('utf8').trim();
      if (bytes.includes(SECRET)) leaks.push(`${f}: the host secret`);
      // A link to "/" may bring the whole container root along: only the files the test made are known.
      else if (ours.has(basename(f)) && !allowed.has(text)) leaks.push(`${f}: unexpected content ${JSON.stringify(text.slice(0, 80))}`);
      if (text === ROOTFILE) counts.fromRoot++;
    }
    rmSync(p, { recursive: true, force: true });
  };
  const outSources = ['/data/d/file', '/data/d/f', '/data/d', '/data/d/.', '/data/e/file', '/data/e/.'];
  const inTargets = ['/data/d/', '/data/d/.', '/data/e/'];
  // Failures are expected (a path missing or of another type for a moment); their messages are reported.
  const failures = new Map<string, number>();
  const failure = (stderr: string, count: () => void): void => {
    count();
    const key = stderr.trim().replace(/[0-9a-f]{12,}|cp-race-\w+|berth-race-\w+-\w+/g, '…').slice(0, 200);
    failures.set(key, (failures.get(key) ?? 0) + 1);
  };
  let seq = 0;
  const start = Date.now();
  const racing = (): boolean => {
    const ms = Date.now() - start;
    if (ms < MIN_MS) return true;
    return ms < MAX_MS && (counts.outOk < ENOUGH || counts.inOk < ENOUGH);
  };
  const worker = async (w: number): Promise<void> => {
    while (racing()) {
      const n = seq++;
      const kind = n % 8;
      if (kind < 3) {
        const from = outSources[((n >> 3) * 3 + kind) % outSources.length] ?? '/data/d/file';
        const dest = join(out, `o-${w}-${n}`);
        const r = await dockerAsync(['cp', `${name}:${from}`, dest]);
        if (r.code === 0) counts.outOk++;
        else failure(`cp ${from}: ${r.stderr}`, () => counts.outFailed++);
        if (`${r.stdout}${r.stderr}`.includes(SECRET)) leaks.push(`docker cp ${from}: the host secret in its output`);
        checkOut(dest);
      } else if (kind < 6) {
        const to = inTargets[(n >> 3) % inTargets.length] ?? '/data/d/';
        const what = ((n >> 3) + kind) % 2 === 0 ? IN : INDIR;
        const r = await dockerAsync(['cp', join(src, what), `${name}:${to}`]);
        if (r.code === 0) counts.inOk++;
        else failure(`cp ${what} to ${to}: ${r.stderr}`, () => counts.inFailed++);
      } else {
        // Raw calls: no stat by the CLI first, the engine resolves the path once.
        const path = ['/data/d', '/data/e', '/data/d/.'][(n >> 3) % 3] ?? '/data/d';
        if (kind === 6) {
          const g = await rawArchive('GET', `/containers/${name}/archive?path=${encodeURIComponent(`${path}/file`)}`);
          if (g.body.includes(SECRET)) leaks.push(`GET ${path}/file: the host secret in the body`);
          if (g.status === 200) counts.rawOk++;
        } else {
          const p = await rawArchive('PUT', `/containers/${name}/archive?path=${encodeURIComponent(path)}`, inTar);
          if (p.status === 200) counts.rawOk++;
        }
      }
    }
  };
  // What the engine sees at the swapped paths meanwhile: the race is real only if both states show.
  const seen = new Map<string, Set<string>>([['/data/d', new Set()], ['/data/e', new Set()]]);
  const observer = async (): Promise<void> => {
    while (racing()) {
      for (const [path, states] of seen) {
        const h = await api(sock(), 'HEAD', `/containers/${name}/archive?path=${encodeURIComponent(path)}`);
        const header = h.headers['x-docker-container-path-stat'];
        if (h.status !== 200 || typeof header !== 'string') {
          states.add('missing');
          continue;
        }
        const st = JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as { mode: number; linkTarget: string };
        states.add(st.linkTarget !== '' ? `link to ${st.linkTarget}` : st.mode >= 2 ** 31 ? 'dir' : 'other');
      }
      await sleep(20);
    }
  };
  await Promise.all([...Array.from({ length: WORKERS }, (_, w) => worker(w)), observer()]);
  t.diagnostic(`copies out ${counts.outOk} ok / ${counts.outFailed} failed, in ${counts.inOk} ok / ${counts.inFailed} failed, raw ${counts.rawOk} ok; ${counts.fromRoot} outputs came through a link to the container's /`);
  for (const [msg, k] of failures) t.diagnostic(`${k} x ${msg}`);
  for (const [path, states] of seen) t.diagnostic(`${path} seen as: ${[...states].sort().join(', ')}`);

  // The attackers stop before the file systems are searched.
  dockerOk(sock(), ['rm', '-f', name], { timeoutMs: 30_000 });

  assert.deepEqual(leaks, [], 'nothing read from the host');
  assert.ok(counts.outOk >= 1, `copies out went through during the race (${counts.outOk})`);
  assert.ok(counts.inOk >= 1, `copies in went through during the race (${counts.inOk})`);
  // Which states the engine met is reported above, not asserted: on a loaded machine the HEAD probes are few.

  assert.deepEqual(snapshot(host), before, 'the host dir is unchanged');
  const names = [IN, INDIR, INNER];
  for (const dir of ['/', '/tmp']) {
    for (const f of readdirSync(dir)) assert.ok(!names.includes(f), `${join(dir, f)} was written on the host`);
  }
  assert.deepEqual(readdirSync(out), [], 'every output was checked');
  // The container is gone, so its upper dir is too: any copy of the names left in the engine's dirs escaped.
  assert.deepEqual(findNamed(dirs.base, [...names, MARKER]), [], 'no copied name outside the container');

  // berthd is healthy: alive, no view left mounted, and copies are still correct.
  assert.ok(engine().running, 'berthd is running');
  const views = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(dirs.base) && l.includes('tmp-archive-'));
  assert.deepEqual(views, [], 'no container view left mounted');
  const tmpDir = join(dirs.dataRoot, 'tmp');
  if (existsSync(tmpDir)) assert.deepEqual(readdirSync(tmpDir).filter((n) => n.startsWith('tmp-archive-')), [], 'no view dir left');
  const check = `cp-race-after-${tag}`;
  dockerOk(sock(), ['run', '-d', '--name', check, 'busybox', 'sleep', '1000']);
  dockerOk(sock(), ['cp', join(src, INDIR), `${check}:/tmp/`]);
  dockerOk(sock(), ['cp', `${check}:/tmp/${INDIR}/${INNER}`, join(out, 'back')]);
  assert.equal(readFileSync(join(out, 'back'), 'utf8'), IN_DATA);
  const ping = await api(sock(), 'GET', '/_ping');
  assert.equal(ping.status, 200);
  dockerOk(sock(), ['rm', '-f', check]);
});
