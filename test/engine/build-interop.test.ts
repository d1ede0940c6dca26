/**
 * Built images across engines: a berthd and a real dockerd (20.10, its own containerd) on temp
 * dirs, and a loopback docker-registry. The same busybox base image on both (saved from berthd,
 * loaded into dockerd). An image berthd builds from a multi-stage Dockerfile is pushed, pulled by
 * dockerd and run there; the same Dockerfile built by dockerd's classic builder is pushed, pulled
 * by berthd and run there; both runs behave alike, and the two images' configs and history
 * (`created_by`) are compared. Root only; needs /usr/sbin/dockerd and /usr/bin/docker-registry.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { compareVersions } from '@berth/base';
import { startDockerd } from './_dockerd.js';
import type { Dockerd } from './_dockerd.js';
import { DOCKER, cleanupEngine, engineDirs, startEngine } from './_engine.js';
import type { EngineProcess } from './_engine.js';
import { startRegistry } from '../registry/_registry.js';
import type { Registry } from '../registry/_registry.js';


interface Cli {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The real docker CLI against a socket, with a config dir beside it; input may be binary. */
function cli(socket: string, args: readonly string[], opts: { input?: Buffer; timeoutMs?: number; env?: Record<string, string> } = {}): Cli {
  const r = spawnSync(DOCKER, ['-H', `unix://${socket}`, ...args], {
    input: opts.input ?? Buffer.alloc(0), timeout: opts.timeoutMs ?? 120_000, maxBuffer: 512 << 20,
    env: { ...process.env, DOCKER_CONFIG: join(dirname(socket), '.docker'), ...opts.env },
  });
  if (r.error) throw r.error;
  return { code: r.status ?? 128, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
}

function ok(socket: string, args: readonly string[], opts: { input?: Buffer; timeoutMs?: number; env?: Record<string, string> } = {}): string {
  const r = cli(socket, args, opts);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------
// The Dockerfile, its context and what its image does

const DOCKERFILE = `FROM busybox AS stage
RUN mkdir -p /out && echo "from the first stage" > /out/stage.txt && chmod 604 /out/stage.txt

FROM busybox
LABEL org.example.app="interop" org.example.version="2"
ENV APP_HOME=/srv/app GREETING=hello
WORKDIR $APP_HOME
COPY --chown=1000:1000 --chmod=640 conf.txt ./
COPY --chown=1000:1000 data/ ./data/
COPY --chmod=755 entry.sh /usr/local/bin/entry.sh
COPY --from=stage /out/stage.txt /srv/stage.txt
RUN echo "$GREETING from $APP_HOME" > greeting && mkdir -p /var/app && chown 1000:1000 /var/app greeting
RUN ["/bin/sh", "-c", "echo exec form > /srv/app/exec.txt"]
EXPOSE 8080/tcp 9090/udp
HEALTHCHECK --interval=5s --timeout=2s --retries=3 CMD test -f /srv/app/greeting
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/entry.sh"]
CMD ["world"]
`;

/**
 * The same build without `--chmod` (which dockerd 20.10's classic builder refuses: "the --chmod
 * option requires BuildKit"): the context's files carry the modes instead.
 */
const PORTABLE = DOCKERFILE.replace(/--chmod=\d+ /g, '');

const ENTRY = `#!/bin/sh
echo "args=$*"
echo "id=$(id -u):$(id -g)"
echo "pwd=$(pwd)"
echo "greeting=$(cat greeting)"
echo "env=$GREETING $APP_HOME"
cat exec.txt /srv/stage.txt conf.txt
stat -c '%n %a %u:%g' /srv/app /srv/app/conf.txt /srv/app/data /srv/app/data/a.txt /srv/app/data/sub /srv/app/data/sub/b.txt /usr/local/bin/entry.sh /srv/stage.txt /var/app /srv/app/greeting
echo written > /var/app/w && cat /var/app/w
`;

const EXPECTED_RUN = [
  'args=world',
  'id=1000:1000',
  'pwd=/srv/app',
  'greeting=hello from /srv/app',
  'env=hello /srv/app',
  'exec form',
  'from the first stage',
  'answer=42',
  '/srv/app 755 0:0',
  '/srv/app/conf.txt 640 1000:1000',
  '/srv/app/data 755 1000:1000',
  '/srv/app/data/a.txt 644 1000:1000',
  '/srv/app/data/sub 755 1000:1000',
  '/srv/app/data/sub/b.txt 600 1000:1000',
  '/usr/local/bin/entry.sh 755 0:0',
  '/srv/stage.txt 604 0:0',
  '/var/app 755 1000:1000',
  '/srv/app/greeting 644 1000:1000',
  'written',
].join('\n');

/**
 * A context dir: with `chmodInContext` the files already have the modes `--chmod` gives them;
 * without, they have others, so that only `--chmod` can make the expected ones.
 */
function makeContext(base: string, name: string, dockerfile: string, chmodInContext: boolean): string {
  const dir = join(base, name);
  mkdirSync(join(dir, 'data', 'sub'), { recursive: true });
  writeFileSync(join(dir, 'Dockerfile'), dockerfile);
  writeFileSync(join(dir, 'conf.txt'), 'answer=42\n');
  writeFileSync(join(dir, 'data', 'a.txt'), 'alpha\n');
  writeFileSync(join(dir, 'data', 'sub', 'b.txt'), 'beta\n');
  writeFileSync(join(dir, 'entry.sh'), ENTRY);
  chmodSync(join(dir, 'data'), 0o755);
  chmodSync(join(dir, 'data', 'sub'), 0o755);
  chmodSync(join(dir, 'data', 'a.txt'), 0o644);
  chmodSync(join(dir, 'data', 'sub', 'b.txt'), 0o600);
  chmodSync(join(dir, 'conf.txt'), chmodInContext ? 0o640 : 0o666);
  chmodSync(join(dir, 'entry.sh'), chmodInContext ? 0o755 : 0o700);
  return dir;
}

interface ImageConfig {
  Cmd?: string[] | null;
  Entrypoint?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
  ExposedPorts?: Record<string, unknown> | null;
  Labels?: Record<string, string> | null;
  Healthcheck?: { Test?: string[]; Interval?: number; Timeout?: number; Retries?: number } | null;
}

const COMPARED = ['Cmd', 'Entrypoint', 'Env', 'WorkingDir', 'User', 'ExposedPorts', 'Labels', 'Healthcheck'] as const;

function configOf(socket: string, ref: string): ImageConfig {
  return JSON.parse(ok(socket, ['image', 'inspect', '--format', '{{json .Config}}', ref])) as ImageConfig;
}

function pick(c: ImageConfig): Record<string, unknown> {
  return Object.fromEntries(COMPARED.map((k) => [k, c[k] ?? null]));
}

function historyOf(socket: string, ref: string): string[] {
  return ok(socket, ['history', '--no-trunc', '--format', '{{.CreatedBy}}', ref]).split('\n').filter((s) => s !== '');
}

/** What the Dockerfile sets, checked on either engine. */
function assertConfig(c: ImageConfig, where: string): void {
  assert.deepEqual(c.Entrypoint, ['/usr/local/bin/entry.sh'], where);
  assert.deepEqual(c.Cmd, ['world'], where);
  assert.equal(c.WorkingDir, '/srv/app', where);
  assert.equal(c.User, '1000:1000', where);
  assert.ok(c.Env?.includes('APP_HOME=/srv/app') && c.Env.includes('GREETING=hello'), `${where}: Env ${JSON.stringify(c.Env)}`);
  assert.deepEqual(Object.keys(c.ExposedPorts ?? {}).sort(), ['8080/tcp', '9090/udp'], where);
  assert.equal(c.Labels?.['org.example.app'], 'interop', where);
  assert.equal(c.Labels?.['org.example.version'], '2', where);
  assert.deepEqual(c.Healthcheck, { Test: ['CMD-SHELL', 'test -f /srv/app/greeting'], Interval: 5e9, Timeout: 2e9, Retries: 3 }, where);
}

function runOutput(socket: string, ref: string, args: readonly string[] = []): string {
  return ok(socket, ['run', '--rm', '--network', 'none', ref, ...args], { timeoutMs: 60_000 }).trimEnd();
}

const builtId = (out: string): string => {
  const m = /Successfully built ([0-9a-f]{12})/.exec(out);
  assert.ok(m !== null, `no "Successfully built" line in:\n${out}`);
  return m[1] ?? '';
};

function build(socket: string, ctx: string, tag: string): Cli {
  return cli(socket, ['build', '-t', tag, ctx], { timeoutMs: 300_000, env: { DOCKER_BUILDKIT: '0' } });
}

function buildOk(socket: string, ctx: string, tag: string): string {
  const r = build(socket, ctx, tag);
  if (r.code !== 0) throw new Error(`docker build -t ${tag} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return builtId(r.stdout);
}

// ---------------------------------------------------------------------------

const berthDirs = engineDirs();
let berthd: EngineProcess | undefined;
let dockerd: Dockerd | undefined;
let registry: Registry | undefined;

const B = (): string => berthDirs.socket;
const D = (): string => {
  if (dockerd === undefined) throw new Error('dockerd not started');
  return dockerd.socket;
};
const R = (): string => {
  if (registry === undefined) throw new Error('registry not started');
  return registry.domain;
};

before(async () => {
  berthd = await startEngine(berthDirs);
  dockerd = await startDockerd();
  registry = await startRegistry();
  // berthd's own busybox, the same bytes in dockerd.
  const deadline = Date.now() + 30_000;
  while (cli(B(), ['image', 'inspect', '-f', '{{.Id}}', 'busybox:latest']).code !== 0) {
    if (Date.now() > deadline) throw new Error(`berthd has no busybox:latest:\n${berthd.log()}`);
    await sleep(100);
  }
  const saved = spawnSync(DOCKER, ['-H', `unix://${B()}`, 'save', 'busybox:latest'], { maxBuffer: 512 << 20, env: { ...process.env, DOCKER_CONFIG: join(berthDirs.base, '.docker') } });
  if (saved.status !== 0) throw new Error(`docker save on berthd exited ${saved.status}: ${saved.stderr.toString()}`);
  ok(D(), ['load'], { input: saved.stdout });
});

after(async () => {
  try {
    await registry?.stop();
  } finally {
    try {
      await dockerd?.stop();
    } finally {
      await cleanupEngine(berthd, berthDirs);
    }
  }
});

test('the base image is the same on both engines', () => {
  const b = ok(B(), ['image', 'inspect', '-f', '{{.Id}} {{json .RootFS.Layers}}', 'busybox:latest']).trim();
  const d = ok(D(), ['image', 'inspect', '-f', '{{.Id}} {{json .RootFS.Layers}}', 'busybox:latest']).trim();
  assert.equal(b, d);
});

let portableOnDockerd = false;

test('an image berthd builds runs on dockerd after a push and a pull', { timeout: 600_000 }, () => {
  const ctx = makeContext(berthDirs.base, 'ctx-chmod', DOCKERFILE, false);
  buildOk(B(), ctx, 'interop:berth');
  assert.equal(runOutput(B(), 'interop:berth'), EXPECTED_RUN, 'on berthd itself');

  const ref = `${R()}/interop/berth:1`;
  ok(B(), ['tag', 'interop:berth', ref]);
  ok(B(), ['push', ref], { timeoutMs: 180_000 });
  ok(D(), ['pull', ref], { timeoutMs: 180_000 });
  assertConfig(configOf(D(), ref), 'dockerd inspect of the berthd-built image');
  assert.equal(runOutput(D(), ref), EXPECTED_RUN, 'on dockerd');
  assert.match(runOutput(D(), ref, ['again']), /^args=again$/m);
  assert.deepEqual(historyOf(D(), ref), historyOf(B(), 'interop:berth'), 'dockerd shows the history berthd wrote');

  // dockerd's classic builder and --chmod: noted for the comparison below.
  const dctx = makeContext(dockerd?.dir ?? '', 'ctx-chmod', DOCKERFILE, false);
  const r = build(D(), dctx, 'interop:chmod');
  if (r.code !== 0) {
    assert.match(r.stderr + r.stdout, /--chmod option requires BuildKit/);
    portableOnDockerd = true;
  } else {
    assert.equal(runOutput(D(), 'interop:chmod'), EXPECTED_RUN, 'dockerd-built with --chmod');
  }
});

test('an image dockerd builds runs on berthd after a push and a pull', { timeout: 600_000 }, () => {
  const file = portableOnDockerd ? PORTABLE : DOCKERFILE;
  const ctx = makeContext(dockerd?.dir ?? '', 'ctx', file, portableOnDockerd);
  buildOk(D(), ctx, 'interop:docker');
  assert.equal(runOutput(D(), 'interop:docker'), EXPECTED_RUN, 'on dockerd itself');

  const ref = `${R()}/interop/docker:1`;
  ok(D(), ['tag', 'interop:docker', ref]);
  ok(D(), ['push', ref], { timeoutMs: 180_000 });
  ok(B(), ['pull', ref], { timeoutMs: 180_000 });
  assertConfig(configOf(B(), ref), 'berthd inspect of the dockerd-built image');
  assert.equal(runOutput(B(), ref), EXPECTED_RUN, 'on berthd');
  assert.match(runOutput(B(), ref, ['again']), /^args=again$/m);
  assert.deepEqual(historyOf(B(), ref), historyOf(D(), 'interop:docker'), 'berthd shows the history dockerd wrote');
});

/** The instruction of a history line: the word after `#(nop)`, or RUN. */
const instructionOf = (line: string): string => /#\(nop\)\s+([A-Z]+)/.exec(line)?.[1] ?? 'RUN';

function historyDiffs(bh: readonly string[], dh: readonly string[]): string[] {
  const diffs: string[] = [];
  for (let i = 0; i < Math.max(bh.length, dh.length); i++) {
    if (bh[i] !== dh[i]) diffs.push(`#${i}\n  berthd:  ${bh[i] ?? '(none)'}\n  dockerd: ${dh[i] ?? '(none)'}`);
  }
  return diffs;
}

let sameHistory: { berthd: string[]; dockerd: string[] } | undefined;

test('the same Dockerfile gives the same config and history shape on both engines', { timeout: 600_000 }, () => {
  // Both built from the Dockerfile dockerd could take, from the same context.
  const file = portableOnDockerd ? PORTABLE : DOCKERFILE;
  const ctx = makeContext(berthDirs.base, 'ctx-same', file, portableOnDockerd);
  buildOk(B(), ctx, 'interop:same');
  const bc = configOf(B(), 'interop:same');
  const dc = configOf(D(), 'interop:docker');
  assertConfig(bc, 'berthd');
  assert.deepEqual(pick(bc), pick(dc), 'the compared config fields');

  const bh = historyOf(B(), 'interop:same');
  const dh = historyOf(D(), 'interop:docker');
  sameHistory = { berthd: bh, dockerd: dh };
  assert.deepEqual(bh.map(instructionOf), dh.map(instructionOf), `one history entry per instruction, in order:\n${historyDiffs(bh, dh).join('\n')}`);
  // Lines without content hashes or flags: RUN (shell and exec form, with the build args), ENV,
  // LABEL, WORKDIR, EXPOSE, USER, ENTRYPOINT, CMD and the base image's own.
  const plain = (l: string): boolean => !['COPY', 'ADD', 'HEALTHCHECK'].includes(instructionOf(l));
  assert.deepEqual(historyDiffs(bh.filter(plain), dh.filter(plain)), []);
});

/**
 * dockerd before API 1.44 (Debian's is 20.10) has no StartInterval in its HealthConfig, so its
 * HEALTHCHECK line holds three durations where berthd (API 1.50) writes four, as current dockerd
 * does: the fourth is dropped from berthd's line for the comparison with an older dockerd.
 */
function olderHealthcheck(line: string): string {
  return line.replace(/(HEALTHCHECK &\{\[.*\] "[^"]*" "[^"]*" "[^"]*") "[^"]*" ('.*'\})$/, '$1 $2');
}

test('history created_by lines are the same as dockerd\'s, word for word', () => {
  assert.ok(sameHistory !== undefined, 'the builds above ran');
  const apiVersion = ok(D(), ['version', '-f', '{{.Server.APIVersion}}']).trim();
  const older = compareVersions(apiVersion, '1.44') < 0;
  const berthd = older ? sameHistory.berthd.map(olderHealthcheck) : sameHistory.berthd;
  const diffs = historyDiffs(berthd, sameHistory.dockerd);
  assert.deepEqual(diffs, [], `history created_by lines differ (dockerd API ${apiVersion}):\n${diffs.join('\n')}`);
});

test('--pull takes the registry\'s newer base image; without it the local one is used; --rm=false keeps the step containers', { timeout: 600_000 }, () => {
  const ref = `${R()}/interop/pullbase:1`;
  // The registry gets a newer image under the tag berthd has locally as plain busybox.
  ok(B(), ['tag', 'busybox:latest', ref]);
  const dctx = join(dockerd?.dir ?? '', 'ctx-pull-newer');
  mkdirSync(dctx, { recursive: true });
  writeFileSync(join(dctx, 'Dockerfile'), 'FROM busybox\nRUN echo newer > /marker\n');
  buildOk(D(), dctx, ref);
  ok(D(), ['push', ref], { timeoutMs: 180_000 });

  const bctx = join(berthDirs.base, 'ctx-pull');
  mkdirSync(bctx, { recursive: true });
  writeFileSync(join(bctx, 'Dockerfile'), `FROM ${ref}\nRUN cat /marker 2>/dev/null || echo none\n`);
  const local = build(B(), bctx, 'interop:pull-local');
  assert.equal(local.code, 0, local.stderr);
  assert.match(local.stdout, /^none$/m, 'the local base image, without --pull');

  const pulled = cli(B(), ['build', '--pull', '--rm=false', '-t', 'interop:pull-remote', bctx], { timeoutMs: 300_000, env: { DOCKER_BUILDKIT: '0' } });
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.match(pulled.stdout, /^newer$/m, 'the base image pulled from the registry');
  assert.match(pulled.stdout, /Pulling from interop\/pullbase/);
  assert.doesNotMatch(pulled.stdout, /Removing intermediate container/);
  const kept = ok(B(), ['ps', '-aq', '--no-trunc']).split('\n').filter((s) => s !== '');
  assert.equal(kept.length, 1, 'the RUN step\'s container stays with --rm=false');
  ok(B(), ['rm', ...kept]);
  assert.equal(ok(B(), ['image', 'inspect', '-f', '{{.Id}}', ref]).trim(), ok(D(), ['image', 'inspect', '-f', '{{.Id}}', ref]).trim(), 'the local tag now names the pulled image');

  // FROM by digest: the pulled image by its repo digest, then one only the registry has.
  const repoDigest = ok(B(), ['image', 'inspect', '-f', '{{index .RepoDigests 0}}', ref]).trim();
  assert.match(repoDigest, /@sha256:[0-9a-f]{64}$/);
  writeFileSync(join(bctx, 'Dockerfile'), `FROM ${repoDigest}\nRUN cat /marker\n`);
  const byDigest = build(B(), bctx, 'interop:by-digest');
  assert.equal(byDigest.code, 0, byDigest.stderr);
  assert.match(byDigest.stdout, /^newer$/m);
  ok(B(), ['rmi', 'interop:by-digest', 'interop:pull-remote', ref]);
  assert.notEqual(cli(B(), ['image', 'inspect', repoDigest]).code, 0, 'the repo digest went with the last tag of its repository');
  const again = build(B(), bctx, 'interop:by-digest');
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /Pulling from interop\/pullbase/, 'an image named by a digest it does not have is pulled');
  assert.match(again.stdout, /^newer$/m);
});
