/**
 * berthd's API beyond the lifecycle: views (top, stats, diff, export),
 * update, events, sizes and system df, and TCP with mutual TLS.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DOCKER, cleanupEngine, docker, dockerOk, engineDirs, startEngine, useEngine } from './_engine.js';

const { dirs } = useEngine();
const sock = (): string => dirs.socket;

test('top, stats, diff and export of a running container', () => {
  dockerOk(sock(), ['run', '-d', '--name', 'v1', 'busybox', 'sh', '-c', 'echo x > /added; rm /bin/vi; exec sleep 1000']);
  try {
    let diff = '';
    for (let i = 0; i < 50 && !diff.includes('/added'); i++) diff = dockerOk(sock(), ['diff', 'v1']);
    assert.match(diff, /^A \/added$/m);
    assert.match(diff, /^D \/bin\/vi$/m);
    assert.match(diff, /^C \/bin$/m);
    const top = dockerOk(sock(), ['top', 'v1']);
    assert.match(top, /^UID\s+PID\s+PPID/);
    assert.match(top, /sleep 1000/);
    const stats = JSON.parse(dockerOk(sock(), ['stats', '--no-stream', '--format', '{{json .}}', 'v1'])) as { Name: string; PIDs: string; MemUsage: string };
    assert.equal(stats.Name, 'v1');
    assert.equal(stats.PIDs, '1');
    const tar = spawnSync(DOCKER, ['-H', `unix://${sock()}`, 'export', 'v1'], { maxBuffer: 64 << 20 });
    assert.equal(tar.status, 0);
    const list = spawnSync('tar', ['-t'], { input: tar.stdout, encoding: 'utf8', maxBuffer: 16 << 20 });
    const names = list.stdout.split('\n');
    assert.ok(names.includes('added'), 'the container layer is in the export');
    assert.ok(names.includes('bin/busybox'), 'the image layers too');
    assert.ok(!names.includes('bin/vi'), 'deleted files are not');
  } finally {
    docker(sock(), ['rm', '-f', 'v1']);
  }
});

test('update changes a running container\'s limits and its restart policy', () => {
  dockerOk(sock(), ['run', '-d', '--name', 'u1', '-m', '64m', 'busybox', 'sleep', '1000']);
  try {
    dockerOk(sock(), ['update', '-m', '128m', '--memory-swap', '256m', '--restart', 'on-failure:3', 'u1']);
    const hc = JSON.parse(dockerOk(sock(), ['inspect', '--format', '{{json .HostConfig}}', 'u1'])) as { Memory: number; RestartPolicy: { Name: string; MaximumRetryCount: number } };
    assert.equal(hc.Memory, 128 * 1024 * 1024);
    assert.deepEqual(hc.RestartPolicy, { Name: 'on-failure', MaximumRetryCount: 3 });
    const stats = JSON.parse(dockerOk(sock(), ['stats', '--no-stream', '--format', '{{json .}}', 'u1'])) as { MemUsage: string };
    assert.match(stats.MemUsage, /\/ 128MiB$/);
    const bad = docker(sock(), ['update', '-m', '1k', 'u1']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Minimum memory limit/);
  } finally {
    docker(sock(), ['rm', '-f', 'u1']);
  }
});

test('events: a container\'s life in order, with filters and a time window', async () => {
  const since = Math.floor(Date.now() / 1000) - 1;
  dockerOk(sock(), ['run', '--name', 'e1', 'busybox', 'true']);
  dockerOk(sock(), ['rm', 'e1']);
  await sleep(1100);
  const until = Math.ceil(Date.now() / 1000);
  const out = dockerOk(sock(), ['events', '--since', String(since), '--until', String(until), '--filter', 'container=e1', '--format', '{{.Type}} {{.Action}} {{.Actor.Attributes.name}}']);
  const lines = out.trim().split('\n');
  assert.deepEqual(lines.filter((l) => /^container (create|start|die|destroy) /.test(l)), [
    'container create e1', 'container start e1', 'container die e1', 'container destroy e1',
  ]);
  const images = dockerOk(sock(), ['events', '--since', String(since), '--until', String(until), '--filter', 'type=image']);
  assert.equal(images.trim(), '', 'the type filter keeps container events out');
});

test('sizes and system df', () => {
  dockerOk(sock(), ['run', '--name', 's1', 'busybox', 'sh', '-c', 'dd if=/dev/zero of=/big bs=1k count=512 2>/dev/null']);
  try {
    const sized = JSON.parse(dockerOk(sock(), ['inspect', '-s', '--format', '{{json .}}', 's1'])) as { SizeRw: number; SizeRootFs: number };
    assert.ok(sized.SizeRw >= 512 * 1024, `SizeRw ${sized.SizeRw}`);
    assert.ok(sized.SizeRootFs > sized.SizeRw);
    const df = dockerOk(sock(), ['system', 'df', '--format', '{{.Type}} {{.TotalCount}}']);
    assert.match(df, /^Images [1-9]/m);
    assert.match(df, /^Containers 1$/m);
  } finally {
    docker(sock(), ['rm', '-f', 's1']);
  }
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a !== null && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

test('TCP only with TLS: client certificates are checked', async (t) => {
  const certs = mkdtempSync(join(tmpdir(), 'berth-tls-'));
  t.after(() => rmSync(certs, { recursive: true, force: true }));
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=berth-test-ca'], certs);
  const sign = (name: string, ext: string): void => {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], certs);
    writeFileSync(join(certs, `${name}.ext`), ext);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.ext`], certs);
  };
  sign('server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  sign('client', 'extendedKeyUsage=clientAuth\n');
  const port = await freePort();

  // Without TLS, a TCP address is refused.
  const plainDirs = engineDirs();
  try {
    await assert.rejects(startEngine(plainDirs, ['-H', `tcp://127.0.0.1:${port}`]), /without TLS/);
  } finally {
    await cleanupEngine(undefined, plainDirs);
  }

  const tlsDirs = engineDirs();
  let e;
  try {
    e = await startEngine(tlsDirs, ['-H', `tcp://127.0.0.1:${port}`, '--tlsverify', '--tlscacert', join(certs, 'ca.pem'),
      '--tlscert', join(certs, 'server.pem'), '--tlskey', join(certs, 'server-key.pem'), '--no-builtin-image']);
    const tls = ['--tlsverify', '--tlscacert', join(certs, 'ca.pem'), '--tlscert', join(certs, 'client.pem'), '--tlskey', join(certs, 'client-key.pem')];
    const ok = spawnSync(DOCKER, ['-H', `tcp://127.0.0.1:${port}`, ...tls, 'version', '--format', '{{.Server.APIVersion}}'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), '1.50');
    const noCert = spawnSync('curl', ['-s', '--cacert', join(certs, 'ca.pem'), `https://127.0.0.1:${port}/_ping`], { encoding: 'utf8', timeout: 30_000 });
    assert.notEqual(noCert.status, 0, 'a client without a certificate is refused');
    assert.notEqual(noCert.stdout, 'OK');
    assert.ok(readFileSync(join(certs, 'client.pem'), 'utf8').includes('BEGIN CERTIFICATE'));
  } finally {
    await cleanupEngine(e, tlsDirs);
  }
});
