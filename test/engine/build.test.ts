/**
 * Image builds end to end: a berthd on temp dirs, the real docker CLI's
 * classic builder (DOCKER_BUILDKIT=0) and the berth CLI sending contexts,
 * the built images run on the same engine. Root only.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BERTH_BIN, DOCKER, docker, useEngine } from './_engine.js';
import type { RunResult } from './_engine.js';

const { dirs } = useEngine();
const sock = (): string => dirs.socket;

const build = (ctx: string, args: readonly string[] = [], input?: string): RunResult =>
  docker(sock(), ['build', ...args, ctx], { timeoutMs: 180_000, env: { DOCKER_BUILDKIT: '0' }, ...(input === undefined ? {} : { input }) });

const ok = (args: readonly string[]): string => {
  const r = docker(sock(), args, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
};

const buildOk = (ctx: string, args: readonly string[] = [], input?: string): string => {
  const r = build(ctx, args, input);
  if (r.code !== 0) throw new Error(`docker build exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
};

let n = 0;
/** A context directory with the given files (path -> content). */
function context(files: Record<string, string>): string {
  const dir = join(dirs.base, `ctx-${n++}`);
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), content);
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The step lines of a build's output, each with whether it was cached. */
function steps(out: string): { step: string; cached: boolean }[] {
  const res: { step: string; cached: boolean }[] = [];
  for (const line of out.split('\n')) {
    const m = /^Step \d+\/\d+ : (.*)$/.exec(line);
    if (m !== null) res.push({ step: m[1] ?? '', cached: false });
    else if (line === ' ---> Using cache') {
      const last = res[res.length - 1];
      if (last !== undefined) last.cached = true;
    }
  }
  return res;
}

const builtId = (out: string): string => {
  const m = /Successfully built ([0-9a-f]{12})/.exec(out);
  assert.ok(m !== null, `no "Successfully built" line in:\n${out}`);
  return m[1] ?? '';
};

const snapshotCount = (): number => readdirSync(join(dirs.dataRoot, 'containerd', 'snapshots', 'overlayfs', 'snapshots')).length;
const imageIds = (): string[] => ok(['images', '-aq', '--no-trunc']).split('\n').filter((s) => s !== '').sort();
const mountsUnder = (dir: string): number => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => (l.split(' ')[4] ?? '').startsWith(dir)).length;

const MAIN_DOCKERFILE = `# a build using most instructions
FROM busybox
ARG GREETING=hello
ENV APP_HOME=/srv/app \\
    MODE=test
LABEL org.example.name="demo" org.example.version=1
WORKDIR $APP_HOME
COPY app.txt ./
COPY --chown=1000:1000 --chmod=640 conf/ /etc/demo/
COPY *.data data/
ADD bundle.tar /opt/
COPY . /ctxcopy/
RUN echo "$GREETING from $MODE" > /srv/app/greeting && mkdir -p /var/demo && chown 1000:1000 /var/demo
SHELL ["/bin/sh", "-c"]
EXPOSE 8080/tcp 9090/udp
VOLUME /var/demo
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=2s CMD true
ONBUILD RUN echo child
USER 1000:1000
CMD ["cat", "greeting"]
`;

function mainContext(): string {
  const dir = context({
    'Dockerfile': MAIN_DOCKERFILE,
    'app.txt': 'app file\n',
    'conf/a.conf': 'a=1\n',
    'conf/sub/b.conf': 'b=2\n',
    'one.data': '1\n',
    'two.data': '2\n',
    'secret.key': 'do not send\n',
    'logs/x.log': 'noise\n',
    '.dockerignore': 'secret.key\nlogs\n',
    'bundle/inner/file.txt': 'from the tar\n',
  });
  const t = spawnSync('tar', ['-C', dir, '-cf', join(dir, 'bundle.tar'), 'bundle']);
  assert.equal(t.status, 0, String(t.stderr));
  return dir;
}

let mainCtx = '';
let firstId = '';

test('a multi-step Dockerfile builds and the image runs as written', async () => {
  mainCtx = mainContext();
  const out = buildOk(mainCtx, ['-t', 'demo:1', '--build-arg', 'GREETING=hi']);
  firstId = builtId(out);
  assert.match(out, /Step 1\/19 : FROM busybox/);
  assert.match(out, / ---> Running in [0-9a-f]{12}/);
  assert.match(out, /Successfully tagged demo:1/);
  assert.ok(steps(out).every((s) => !s.cached), 'a first build uses no cache');

  // CMD, ENV, WORKDIR, USER and the RUN's result with the build arg.
  assert.equal(ok(['run', '--rm', 'demo:1']), 'hi from test\n');
  const facts = ok(['run', '--rm', 'demo:1', 'sh', '-c', 'id -u; id -g; pwd; echo $APP_HOME $MODE; echo ${GREETING:-unset}']);
  assert.equal(facts, '1000\n1000\n/srv/app\n/srv/app test\nunset\n');

  // Copied files: modes, owners, directory semantics, wildcards, the extracted tar, .dockerignore.
  const ls = ok(['run', '--rm', '--user', '0', 'demo:1', 'sh', '-c',
    'stat -c "%n %a %u:%g" /srv/app/app.txt /etc/demo/a.conf /etc/demo/sub/b.conf /srv/app/data/one.data /srv/app/data/two.data /opt/bundle/inner/file.txt; cat /opt/bundle/inner/file.txt; ls /srv/app; ls -A /ctxcopy']);
  assert.equal(ls, [
    '/srv/app/app.txt 644 0:0',
    '/etc/demo/a.conf 640 1000:1000',
    '/etc/demo/sub/b.conf 640 1000:1000',
    '/srv/app/data/one.data 644 0:0',
    '/srv/app/data/two.data 644 0:0',
    '/opt/bundle/inner/file.txt 644 0:0',
    'from the tar',
    'app.txt', 'data', 'greeting',
    '.dockerignore', 'Dockerfile', 'app.txt', 'bundle', 'bundle.tar', 'conf', 'one.data', 'two.data',
    '',
  ].join('\n'));

  const [img] = JSON.parse(ok(['image', 'inspect', 'demo:1'])) as {
    Id: string;
    Config: {
      Cmd: string[]; Env: string[]; WorkingDir: string; User: string; Labels: Record<string, string>;
      ExposedPorts: Record<string, object>; Volumes: Record<string, object>; StopSignal: string;
      Healthcheck: { Test: string[]; Interval: number; Timeout: number }; OnBuild: string[]; Shell: string[];
    };
  }[] ?? [];
  assert.ok(img !== undefined);
  assert.equal(img.Id.slice(7, 19), firstId);
  assert.deepEqual(img.Config.Cmd, ['cat', 'greeting']);
  assert.ok(img.Config.Env.includes('APP_HOME=/srv/app') && img.Config.Env.includes('MODE=test'));
  assert.ok(!img.Config.Env.some((e) => e.startsWith('GREETING=')), 'build args stay out of the image ENV');
  assert.equal(img.Config.WorkingDir, '/srv/app');
  assert.equal(img.Config.User, '1000:1000');
  assert.deepEqual(img.Config.Labels, { 'org.example.name': 'demo', 'org.example.version': '1' });
  assert.deepEqual(Object.keys(img.Config.ExposedPorts).sort(), ['8080/tcp', '9090/udp']);
  assert.deepEqual(Object.keys(img.Config.Volumes), ['/var/demo']);
  assert.equal(img.Config.StopSignal, 'SIGINT');
  assert.deepEqual(img.Config.Healthcheck.Test, ['CMD-SHELL', 'true']);
  assert.equal(img.Config.Healthcheck.Interval, 5e9);
  assert.deepEqual(img.Config.OnBuild, ['RUN echo child']);
  assert.deepEqual(img.Config.Shell, ['/bin/sh', '-c']);
  assert.equal(ok(['ps', '-aq']), '', 'no intermediate container is left');
});

test('docker history shows the steps as Docker writes them', () => {
  const rows = ok(['history', '--no-trunc', '--format', '{{.CreatedBy}}\t{{.Size}}', 'demo:1']).split('\n').filter((l) => l !== '');
  const by = rows.map((r) => r.slice(0, r.lastIndexOf('\t')));
  const size = (r: string): string => r.slice(r.lastIndexOf('\t') + 1);
  assert.equal(by[0], '/bin/sh -c #(nop)  CMD ["cat" "greeting"]');
  assert.equal(by[1], '/bin/sh -c #(nop)  USER 1000:1000');
  assert.ok(by.includes('/bin/sh -c #(nop)  ENV APP_HOME=/srv/app MODE=test'), by.join('\n'));
  assert.ok(by.includes('/bin/sh -c #(nop) WORKDIR /srv/app'), by.join('\n'));
  assert.ok(by.some((b) => /^\/bin\/sh -c #\(nop\) COPY file:[0-9a-f]{64} in \.\/ $/.test(b)), by.join('\n'));
  assert.ok(by.some((b) => /^\/bin\/sh -c #\(nop\) ADD file:[0-9a-f]{64} in \/opt\/ $/.test(b)), by.join('\n'));
  assert.ok(by.includes('|1 GREETING=hi /bin/sh -c echo "$GREETING from $MODE" > /srv/app/greeting && mkdir -p /var/demo && chown 1000:1000 /var/demo'), by.join('\n'));
  // Metadata-only steps are empty layers; the RUN has a size.
  assert.ok(by.some((b) => /^\/bin\/sh -c #\(nop\) COPY multi:[0-9a-f]{64} in data\/ $/.test(b)), by.join('\n'));
  // --chown is glued to the hash, as dockerd writes it.
  assert.ok(by.some((b) => /^\/bin\/sh -c #\(nop\) COPY --chown=1000:1000dir:[0-9a-f]{64} in \/etc\/demo\/ $/.test(b)), by.join('\n'));
  assert.ok(by.includes('/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "2s" "0s" "0s" \'\\x00\'}'), by.join('\n'));
  const run = rows.find((r) => r.startsWith('|1 GREETING=hi'));
  assert.ok(run !== undefined && size(run) !== '0B', run);
  assert.equal(size(rows[0] ?? ''), '0B');
});

test('a second build is fully cached and gives the same image', () => {
  const out = buildOk(mainCtx, ['-t', 'demo:2', '--build-arg', 'GREETING=hi']);
  const s = steps(out);
  assert.equal(s.length, 19);
  assert.ok(s.slice(1).every((x) => x.cached), out);
  assert.doesNotMatch(out, /Running in/);
  assert.equal(builtId(out), firstId);
});

test('changing one copied file rebuilds from that step on', () => {
  writeFileSync(join(mainCtx, 'one.data'), 'changed\n');
  const out = buildOk(mainCtx, ['-t', 'demo:3', '--build-arg', 'GREETING=hi']);
  const s = steps(out);
  const at = s.findIndex((x) => x.step.startsWith('COPY *.data'));
  assert.ok(at > 0);
  assert.ok(s.slice(1, at).every((x) => x.cached), `steps before the changed COPY come from the cache:\n${out}`);
  assert.ok(s.slice(at).every((x) => !x.cached), `the changed COPY and what follows are rebuilt:\n${out}`);
  assert.notEqual(builtId(out), firstId);
  assert.equal(ok(['run', '--rm', 'demo:3', 'cat', '/srv/app/data/one.data']), 'changed\n');
  // Touching a file without changing its content keeps the cache.
  const again = buildOk(mainCtx, ['--build-arg', 'GREETING=hi']);
  assert.ok(steps(again).slice(1).every((x) => x.cached), again);
});

test('a failing RUN reports its step, line and exit code and leaves nothing behind', () => {
  const ctx = context({ Dockerfile: 'FROM busybox\n\n# fails\nRUN echo partial > /partial && exit 3\nRUN echo never\n' });
  const imagesBefore = imageIds();
  const snapsBefore = snapshotCount();
  const r = build(ctx, ['-t', 'broken']);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stdout, /Step 2\/3 : RUN echo partial > \/partial && exit 3/);
  assert.match(r.stderr, /The command '\/bin\/sh -c echo partial > \/partial && exit 3' returned a non-zero code: 3/);
  assert.match(r.stderr, /step 2\/3, Dockerfile:4/);
  assert.doesNotMatch(r.stdout, /never/);
  assert.equal(ok(['ps', '-aq']), '');
  assert.deepEqual(imageIds(), imagesBefore);
  assert.equal(snapshotCount(), snapsBefore);
  assert.equal(docker(sock(), ['image', 'inspect', 'broken']).code, 1);
  assert.deepEqual(readdirSync(join(dirs.dataRoot, 'tmp')), []);
  assert.equal(mountsUnder(join(dirs.dataRoot, 'tmp')), 0);
});

test('a missing source and an ADD of a URL fail clearly', () => {
  const ctx = context({ Dockerfile: 'FROM busybox\nCOPY missing.txt /x\n' });
  const r = build(ctx);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /COPY failed: file not found in build context or excluded by \.dockerignore: stat missing\.txt/);
  const u = build('-', [], 'FROM busybox\nADD http://example.invalid/f /f\n');
  assert.equal(u.code, 1);
  assert.match(u.stderr, /needs network access/);
  // A context file named like a whiteout would delete a file of the image's own layers: refused.
  const wh = context({ Dockerfile: 'FROM busybox\nCOPY . /etc/\n', '.wh.passwd': 'x\n' });
  const w = build(wh);
  assert.equal(w.code, 1);
  assert.match(w.stderr, /"\.wh\." are reserved for layer whiteouts/);
  assert.equal(ok(['ps', '-aq']), '');
  assert.match(ok(['run', '--rm', 'busybox', 'head', '-1', '/etc/passwd']), /^root:/, 'the base image is intact');

  // A Dockerfile that is a symlink in the context tar (sent as it is, `docker build - < ctx.tar`)
  // is followed inside the context, never out of it.
  const tarBuild = (dir: string): RunResult => {
    const r = spawnSync('sh', ['-c', `tar -C "$1" -cf - . | "$2" -H "unix://$3" build -`, 'sh', dir, DOCKER, sock()], {
      encoding: 'utf8', timeout: 180_000, env: { ...process.env, DOCKER_BUILDKIT: '0', DOCKER_CONFIG: join(dirs.base, '.docker') },
    });
    return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
  };
  const linked = context({ 'real/Dockerfile.in': 'FROM busybox\nRUN echo linked-dockerfile\n' });
  symlinkSync('real/Dockerfile.in', join(linked, 'Dockerfile'));
  const l = tarBuild(linked);
  assert.equal(l.code, 0, l.stderr);
  assert.match(l.stdout, /linked-dockerfile/);
  const escaping = context({ 'etc/hostname': 'FROM busybox\nRUN echo inside-the-context\n' });
  symlinkSync('/etc/hostname', join(escaping, 'Dockerfile'));
  const e = tarBuild(escaping);
  assert.equal(e.code, 0, `the link resolves to the context's own etc/hostname: ${e.stderr}`);
  assert.match(e.stdout, /inside-the-context/);
  // A tar can hold a name below a symlink (`link -> /etc`, then `link/passwd`): it is no file of the
  // context, so a COPY of it fails and nothing is read through the link on the host.
  const through = join(dirs.base, 'through.tar');
  const py = [
    'import io, sys, tarfile',
    'with tarfile.open(sys.argv[1], "w") as t:',
    '    def add(name, data=None, link=None):',
    '        i = tarfile.TarInfo(name)',
    '        if link is not None:',
    '            i.type = tarfile.SYMTYPE; i.linkname = link; t.addfile(i)',
    '        else:',
    '            i.size = len(data); t.addfile(i, io.BytesIO(data))',
    '    add("Dockerfile", b"FROM busybox\\nCOPY link/passwd /leak\\n")',
    '    add("link", link="/etc")',
    '    add("link/passwd", b"FAKE\\n")',
  ].join('\n');
  const made = spawnSync('python3', ['-c', py, through], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  const t = spawnSync('sh', ['-c', '"$1" -H "unix://$2" build - < "$3"', 'sh', DOCKER, sock(), through], {
    encoding: 'utf8', timeout: 180_000, env: { ...process.env, DOCKER_BUILDKIT: '0', DOCKER_CONFIG: join(dirs.base, '.docker') },
  });
  assert.equal(t.status, 1, t.stdout);
  assert.match(t.stderr, /file not found in build context or excluded by \.dockerignore: stat link\/passwd/);
  assert.doesNotMatch(t.stdout + t.stderr, /root:/);
  const absent = context({ 'x': 'x\n' });
  symlinkSync('/etc/passwd', join(absent, 'Dockerfile'));
  const a = tarBuild(absent);
  assert.equal(a.code, 1);
  assert.match(a.stderr, /Cannot locate specified Dockerfile: Dockerfile/);
  assert.doesNotMatch(a.stderr, /root:/, 'nothing of the host file is read');
});

test('multi-stage: COPY --from a stage, only the needed stages, --target', () => {
  const ctx = context({
    'Dockerfile': [
      'FROM busybox AS builder',
      'RUN mkdir /out && echo artefact > /out/result && echo builder-ran',
      'FROM busybox AS unused',
      'RUN echo unused-ran',
      'FROM scratch',
      'COPY --from=builder /out/result /result',
      'COPY --from=builder /bin/busybox /bin/cat',
      'CMD ["/bin/cat", "/result"]',
      '',
    ].join('\n'),
  });
  const out = buildOk(ctx, ['-t', 'multi']);
  assert.match(out, /builder-ran/);
  assert.doesNotMatch(out, /unused-ran/);
  assert.equal(ok(['run', '--rm', 'multi']), 'artefact\n');
  const t = buildOk(ctx, ['--target', 'unused', '-t', 'only-unused']);
  assert.match(t, /Step 1\/2 : FROM busybox AS unused/);
  assert.doesNotMatch(t, /builder-ran|FROM scratch/);
  assert.notEqual(docker(sock(), ['run', '--rm', 'only-unused', 'ls', '/out']).code, 0);
});

test('independent stages build side by side; the output stays in step order; a failing stage stops the others', () => {
  const ctx = context({
    'Dockerfile': [
      'FROM busybox AS a',
      'RUN cut -d" " -f1 /proc/uptime > /start && sleep 2 && cut -d" " -f1 /proc/uptime > /end',
      'FROM busybox AS b',
      'RUN cut -d" " -f1 /proc/uptime > /start && sleep 2 && cut -d" " -f1 /proc/uptime > /end',
      'FROM busybox',
      'COPY --from=a /start /a.start',
      'COPY --from=a /end /a.end',
      'COPY --from=b /start /b.start',
      'COPY --from=b /end /b.end',
      '',
    ].join('\n'),
  });
  const out = buildOk(ctx, ['-t', 'parallel']);
  const numbers = [...out.matchAll(/^Step (\d+)\/9 : /gm)].map((m) => Number(m[1]));
  assert.deepEqual(numbers, [1, 2, 3, 4, 5, 6, 7, 8, 9], out);
  const [aStart, aEnd, bStart, bEnd] = ok(['run', '--rm', 'parallel', 'cat', '/a.start', '/a.end', '/b.start', '/b.end']).trim().split('\n').map(Number);
  assert.ok(aStart !== undefined && aEnd !== undefined && bStart !== undefined && bEnd !== undefined);
  assert.ok(aStart < bEnd && bStart < aEnd, 'the two RUN steps overlapped in time');

  const failing = context({
    'Dockerfile': ['FROM busybox AS slow', 'RUN sleep 120', 'FROM busybox AS broken', 'RUN exit 7', 'FROM busybox', 'COPY --from=slow /etc/hostname /s', 'COPY --from=broken /etc/hostname /b', ''].join('\n'),
  });
  const started = Date.now();
  const r = build(failing, ['-t', 'parallel:bad']);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout + r.stderr, /The command '\/bin\/sh -c exit 7' returned a non-zero code: 7/);
  assert.ok(Date.now() - started < 90_000, 'the slow stage was stopped when the other one failed');
  assert.equal(ok(['ps', '-aq']), '', 'no intermediate container is left');
});

test('RUN heredocs: a script for the shell, a #! script, heredocs fed to commands, quoted delimiters', () => {
  const dockerfile = [
    'FROM busybox',
    'ENV WHO=heredoc',
    'RUN <<EOF',
    'set -e',
    'echo one > /h1',
    'echo "two $((1 + 1)) $WHO" > /h2',
    'EOF',
    'RUN <<EOT sh',
    'echo three > /h3',
    'EOT',
    'RUN <<-A cat > /h4 && <<B cat > /h5',
    '\ttabbed',
    '\tA',
    'plain',
    'B',
    'RUN <<EOF',
    '#!/bin/sh',
    'echo "script $0 $WHO" > /h6',
    'EOF',
    "RUN <<'EOF'",
    "echo '$WHO' \"$WHO\" > /h7",
    'EOF',
    'RUN <<EOF',
    'exit 3',
    'EOF',
    '',
  ].join('\n');
  const failing = context({ Dockerfile: dockerfile });
  const r = build(failing, ['-t', 'heredoc:bad']);
  assert.notEqual(r.code, 0, 'the last heredoc exits 3');
  assert.match(r.stdout + r.stderr, /returned a non-zero code: 3/);
  const ctx = context({ Dockerfile: dockerfile.replace('exit 3', 'true') });
  const out = buildOk(ctx, ['-t', 'heredoc']);
  // Everything up to the changed step came from the cache of the failed build.
  assert.deepEqual(steps(out).filter((s) => s.step.startsWith('RUN')).map((s) => s.cached), [true, true, true, true, true, false]);
  const files = ok(['run', '--rm', 'heredoc', 'cat', '/h1', '/h2', '/h3', '/h4', '/h5', '/h6', '/h7']);
  assert.equal(files.trimEnd(), ['one', 'two 2 heredoc', 'three', 'tabbed', 'plain', 'script /dev/pipes/EOF heredoc', '$WHO heredoc'].join('\n'));
  // The image's own files (what export gives, no /dev mount over them) hold nothing of the script.
  ok(['create', '--name', 'heredoc-files', 'heredoc']);
  try {
    const listing = spawnSync('sh', ['-c', '"$1" -H "unix://$2" export heredoc-files | tar -t', 'sh', DOCKER, sock()], { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, DOCKER_CONFIG: join(dirs.base, '.docker') } });
    assert.equal(listing.status, 0, listing.stderr);
    assert.match(listing.stdout, /^h6$/m, 'the listing has the image\'s files');
    assert.doesNotMatch(listing.stdout, /pipes/, 'the #! script is not left in the image');
  } finally {
    docker(sock(), ['rm', 'heredoc-files']);
  }
  assert.ok(steps(buildOk(ctx, ['-t', 'heredoc'])).every((s) => s.cached || s.step.startsWith('FROM')), 'a second build is fully cached');
});

test('RUN steps: on the default bridge network unless --network says otherwise; --add-host, --shm-size; berth build --iidfile', () => {
  ok(['run', '-d', '--name', 'build-web', 'busybox', 'sh', '-c', 'mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www']);
  try {
    const ip = ok(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', 'build-web']).trim();
    assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/);
    // (busybox-static's wget crashes in glibc's resolver: nc speaks HTTP instead.)
    const dockerfile = "FROM busybox\nARG IP\nRUN printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $IP 8080 | tail -1 > /got && grep myhost /etc/hosts > /hosts && df -k /dev/shm | tail -1 > /shm && test -s /got\n";
    const ctx = context({ Dockerfile: dockerfile });
    buildOk(ctx, ['--no-cache', '--build-arg', `IP=${ip}`, '--add-host', 'myhost:10.1.2.3', '--shm-size', '64m', '-t', 'netbuild']);
    const out = ok(['run', '--rm', 'netbuild', 'cat', '/got', '/hosts', '/shm']).split('\n');
    assert.equal(out[0], 'hello-from-web', 'a RUN step reached another container over the default bridge');
    assert.match(out[1] ?? '', /^10\.1\.2\.3\s+myhost$/);
    assert.match(out[2] ?? '', /\s65536\s/, '/dev/shm of 64 MiB');
    const none = build(ctx, ['--no-cache', '--network', 'none', '--build-arg', `IP=${ip}`, '--add-host', 'myhost:10.1.2.3']);
    assert.notEqual(none.code, 0, 'no network with --network none');
    assert.match(none.stdout + none.stderr, /returned a non-zero code/);

    const iid = join(dirs.base, 'iid.txt');
    writeFileSync(iid, 'stale');
    const env = { ...process.env, BERTH_HOST: `unix://${sock()}` };
    const r = spawnSync(process.execPath, [BERTH_BIN, 'build', '--network', 'none', '--iidfile', iid, '-t', 'iid:1', '-'], { encoding: 'utf8', env, timeout: 180_000, input: 'FROM busybox\nRUN echo iid > /iid\n' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(iid, 'utf8'), ok(['image', 'inspect', '-f', '{{.Id}}', 'iid:1']).trim());
    const bad = spawnSync(process.execPath, [BERTH_BIN, 'build', '--iidfile', iid, '-'], { encoding: 'utf8', env, timeout: 180_000, input: 'FROM busybox\nRUN exit 4\n' });
    assert.equal(bad.status, 4);
    assert.ok(!existsSync(iid), 'a failed build leaves no ID file');
  } finally {
    docker(sock(), ['rm', '-f', 'build-web']);
  }
  assert.equal(ok(['ps', '-aq']), '', 'no intermediate container is left');
});

test('ONBUILD triggers run when a later build uses the image', () => {
  const out = buildOk('-', ['-t', 'child'], 'FROM demo:1\nUSER 0\nRUN test -f /srv/app/greeting && echo child-step\n');
  assert.match(out, /# Executing 1 build trigger/);
  assert.match(out, /\nchild\n/);
  const [img] = JSON.parse(ok(['image', 'inspect', 'child'])) as { Config: { OnBuild: string[] | null } }[];
  assert.ok(img !== undefined && (img.Config.OnBuild === null || img.Config.OnBuild.length === 0));
});

test('berth build: -t, --build-arg, --label, -q and a Dockerfile on stdin', () => {
  const ctx = context({ 'Dockerfile': 'FROM busybox\nARG WHO=nobody\nCOPY . /ctx/\nRUN echo "hello $WHO" > /hello\nCMD ["cat", "/hello"]\n', 'keep.txt': 'k\n', 'skip.txt': 's\n', '.dockerignore': 'skip.txt\n' });
  const env = { ...process.env, BERTH_HOST: `unix://${sock()}` };
  const r = spawnSync(process.execPath, [BERTH_BIN, 'build', '-t', 'berth-built:1', '--build-arg', 'WHO=berth', '--label', 'made.by=berth', ctx], { encoding: 'utf8', env, timeout: 180_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Successfully tagged berth-built:1/);
  assert.equal(ok(['run', '--rm', 'berth-built:1']), 'hello berth\n');
  assert.equal(ok(['run', '--rm', 'berth-built:1', 'ls', '/ctx']), 'Dockerfile\nkeep.txt\n');
  const [img] = JSON.parse(ok(['image', 'inspect', 'berth-built:1'])) as { Id: string; Config: { Labels: Record<string, string> } }[];
  assert.equal(img?.Config.Labels['made.by'], 'berth');
  const q = spawnSync(process.execPath, [BERTH_BIN, 'build', '-q', '-t', 'berth-built:1', '--build-arg', 'WHO=berth', '--label', 'made.by=berth', ctx], { encoding: 'utf8', env, timeout: 180_000 });
  assert.equal(q.status, 0, q.stderr);
  assert.equal(q.stdout, `${img?.Id}\n`);
  const f = spawnSync(process.execPath, [BERTH_BIN, 'build', '-'], { encoding: 'utf8', env, input: 'FROM busybox\nRUN exit 7\n', timeout: 180_000 });
  assert.equal(f.status, 7);
  assert.match(f.stderr, /returned a non-zero code: 7/);
});

test('docker build -q, a Dockerfile outside the context, a gzipped context on stdin, COPY --from an image', () => {
  const ctx = context({ 'in/f.txt': 'payload\n' });
  const df = join(dirs.base, 'outside.Dockerfile');
  writeFileSync(df, 'ARG BASE=busybox\nFROM $BASE\nCOPY --from=busybox /bin/busybox /bb\nWORKDIR rel\nWORKDIR sub\nCOPY in/f.txt .\nRUN ["/bin/sh", "-c", "pwd > /where"]\nCMD ["cat", "/where", "f.txt"]\n');
  const q = build(ctx, ['-q', '-f', df, '-t', 'outside']);
  assert.equal(q.code, 0, q.stderr);
  assert.match(q.stdout, /^sha256:[0-9a-f]{64}\n$/);
  assert.equal(ok(['run', '--rm', 'outside']), '/rel/sub\npayload\n');
  assert.equal(ok(['run', '--rm', 'outside', 'cmp', '/bb', '/bin/busybox']), '');
  const tgz = spawnSync('tar', ['-C', ctx, '-czf', '-', '.']);
  assert.equal(tgz.status, 0);
  const r = spawnSync('/usr/local/bin/docker', ['-H', `unix://${sock()}`, 'build', '-q', '-f', 'in/Dockerfile', '-'], {
    input: spawnSync('sh', ['-c', `mkdir -p ${ctx}/in && printf 'FROM busybox\\nCOPY f.txt /g\\n' > ${ctx}/in/Dockerfile && cp ${ctx}/in/f.txt ${ctx}/f.txt && tar -C ${ctx} -czf - .`]).stdout,
    env: { ...process.env, DOCKER_BUILDKIT: '0', DOCKER_CONFIG: join(dirs.base, '.docker') }, encoding: 'buffer', timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr.toString());
  const id = r.stdout.toString().trim();
  assert.equal(ok(['run', '--rm', id, 'cat', '/g']), 'payload\n');
});
