/**
 * `docker commit` end to end: a berthd on temp dirs (its own
 * berth-containerd), the real docker CLI and the berth CLI, containers on
 * the built-in busybox image, a loopback docker-registry and skopeo as the
 * independent reader of what is pushed. Root only.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ContainerdClient, SERVICES } from '@berth/supervisor';
import type { Message } from '@berth/supervisor';
import { startRegistry } from '../registry/_registry.js';
import type { Registry } from '../registry/_registry.js';
import { BERTH_BIN, api, docker, dockerOk, useEngine } from './_engine.js';

const { dirs } = useEngine();
const sock = (): string => dirs.socket;
const ok = (args: readonly string[]): string => dockerOk(sock(), args, { timeoutMs: 120_000 });

let registry: Registry | undefined;
before(async () => {
  registry = await startRegistry();
});
after(async () => {
  await registry?.stop();
});

interface Inspect {
  Id: string;
  Comment: string;
  Author: string;
  RepoTags: string[];
  Config: { Cmd: string[] | null; Env: string[] | null; WorkingDir: string; Labels: Record<string, string> | null; ExposedPorts?: Record<string, object> | null };
  RootFS: { Layers: string[] };
}

const inspectImage = (ref: string): Inspect => {
  const list = JSON.parse(ok(['image', 'inspect', ref])) as Inspect[];
  const first = list[0];
  if (first === undefined) throw new Error(`no inspect output for ${ref}`);
  return first;
};

/** A container that added, changed and deleted files, exited. */
function changedContainer(name: string): void {
  ok(['run', '--name', name, 'busybox', 'sh', '-c',
    'echo added > /added.txt && mkdir -p /newdir && echo deep > /newdir/f && echo changed > /etc/motd && rm /bin/vi && rm -rf /home']);
}

test('commit keeps added and changed files, deleted ones stay deleted, and appends one layer', async () => {
  changedContainer('c-files');
  const baseLayers = inspectImage('busybox').RootFS.Layers;
  const id = ok(['commit', 'c-files', 'committed/files:v1']).trim();
  assert.match(id, /^sha256:[a-f0-9]{64}$/);
  const img = inspectImage('committed/files:v1');
  assert.equal(img.Id, id);
  assert.deepEqual(img.RepoTags, ['committed/files:v1']);
  assert.equal(img.RootFS.Layers.length, baseLayers.length + 1);
  assert.deepEqual(img.RootFS.Layers.slice(0, baseLayers.length), baseLayers);
  // The container's command is kept as the image's.
  assert.deepEqual(img.Config.Cmd?.slice(0, 2), ['sh', '-c']);

  const out = ok(['run', '--rm', 'committed/files:v1', 'sh', '-c',
    'cat /added.txt /newdir/f /etc/motd; test -e /bin/vi && echo vi-present || echo vi-gone; test -e /home && echo home-present || echo home-gone; test -e /bin/ls && echo ls-present']);
  assert.deepEqual(out.trim().split('\n'), ['added', 'deep', 'changed', 'vi-gone', 'home-gone', 'ls-present']);

  // The base image is untouched.
  const baseOut = ok(['run', '--rm', 'busybox', 'sh', '-c', 'test -e /bin/vi && echo vi-present; test -e /added.txt || echo no-added']);
  assert.deepEqual(baseOut.trim().split('\n'), ['vi-present', 'no-added']);
  ok(['rm', 'c-files']);
  ok(['rmi', 'committed/files:v1']);
});

test('--change CMD and ENV are applied; the image runs without a command', async () => {
  ok(['create', '--name', 'c-change', '-e', 'KEEP=1', 'busybox', 'true']);
  ok(['commit', '--change', 'CMD ["echo","hi"]', '--change', 'ENV FOO=bar', '--change', 'WORKDIR /tmp', '--change', 'LABEL a=b', '--change', 'EXPOSE 8080',
    'c-change', 'committed/change']);
  const img = inspectImage('committed/change:latest');
  assert.deepEqual(img.Config.Cmd, ['echo', 'hi']);
  assert.ok(img.Config.Env?.includes('FOO=bar'), `Env: ${JSON.stringify(img.Config.Env)}`);
  assert.ok(img.Config.Env?.includes('KEEP=1'), `Env: ${JSON.stringify(img.Config.Env)}`);
  assert.equal(img.Config.WorkingDir, '/tmp');
  assert.equal(img.Config.Labels?.['a'], 'b');
  assert.ok(img.Config.ExposedPorts !== null && img.Config.ExposedPorts !== undefined && '8080/tcp' in img.Config.ExposedPorts);
  assert.equal(ok(['run', '--rm', 'committed/change']).trim(), 'hi');
  assert.equal(ok(['run', '--rm', 'committed/change', 'sh', '-c', 'echo $FOO $KEEP; pwd']).trim(), 'bar 1\n/tmp');
  // An unknown instruction is refused before anything is made.
  const before = ok(['images', '-q', '--no-trunc']).trim().split('\n').sort();
  const bad = docker(sock(), ['commit', '--change', 'RUN echo no', 'c-change', 'committed/bad']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /RUN is not a valid change command/);
  assert.deepEqual(ok(['images', '-q', '--no-trunc']).trim().split('\n').sort(), before);
  ok(['rm', 'c-change']);
  ok(['rmi', 'committed/change']);
});

test('-m and -a show in docker history and inspect; an empty diff still makes a layer', async () => {
  ok(['create', '--name', 'c-msg', 'busybox', 'echo', 'from', 'msg']);
  const baseLayers = inspectImage('busybox').RootFS.Layers.length;
  ok(['commit', '-m', 'my message', '-a', 'Some One <one@example.com>', 'c-msg', 'committed/msg:1']);
  const img = inspectImage('committed/msg:1');
  assert.equal(img.Comment, 'my message');
  assert.equal(img.Author, 'Some One <one@example.com>');
  assert.equal(img.RootFS.Layers.length, baseLayers + 1);
  const rows = ok(['history', '--no-trunc', '--format', '{{.CreatedBy}}|{{.Comment}}', 'committed/msg:1']).trim().split('\n');
  assert.equal(rows[0], 'echo from msg|my message');
  assert.equal(rows.length, inspectImage('busybox').RootFS.Layers.length + 1);
  ok(['rm', 'c-msg']);
  ok(['rmi', 'committed/msg:1']);
});

test('a running container is paused during the commit and resumed after', async () => {
  ok(['run', '-d', '--name', 'c-run', 'busybox', 'sh', '-c', 'echo live > /live.txt; while true; do sleep 1; done']);
  try {
    // Wait for the file to be written.
    for (let i = 0; i < 50; i++) {
      if (docker(sock(), ['exec', 'c-run', 'cat', '/live.txt']).stdout.trim() === 'live') break;
      await sleep(100);
    }
    const since = Math.floor(Date.now() / 1000) - 1;
    ok(['commit', 'c-run', 'committed/run']);
    const until = Math.floor(Date.now() / 1000) + 1;
    const events = ok(['events', '--since', String(since), '--until', String(until), '--filter', 'container=c-run', '--format', '{{.Action}}'])
      .trim().split('\n');
    const pause = events.indexOf('pause');
    const commit = events.indexOf('commit');
    const unpause = events.indexOf('unpause');
    assert.ok(pause >= 0 && unpause > pause && commit > pause, `events: ${events.join(',')}`);
    assert.equal(ok(['inspect', '-f', '{{.State.Status}}', 'c-run']).trim(), 'running');
    assert.equal(ok(['run', '--rm', 'committed/run', 'cat', '/live.txt']).trim(), 'live');

    // Without pause the container is never paused.
    const since2 = Math.floor(Date.now() / 1000);
    ok(['commit', '--pause=false', 'c-run', 'committed/run:nopause']);
    const until2 = Math.floor(Date.now() / 1000) + 1;
    const events2 = ok(['events', '--since', String(since2), '--until', String(until2), '--filter', 'container=c-run', '--format', '{{.Action}}'])
      .trim().split('\n');
    assert.ok(events2.includes('commit') && !events2.includes('pause'), `events: ${events2.join(',')}`);

    // A paused container stays paused.
    ok(['pause', 'c-run']);
    ok(['commit', 'c-run', 'committed/run:paused']);
    assert.equal(ok(['inspect', '-f', '{{.State.Status}}', 'c-run']).trim(), 'paused');
    ok(['unpause', 'c-run']);
  } finally {
    docker(sock(), ['rm', '-f', 'c-run']);
  }
  ok(['rmi', 'committed/run', 'committed/run:nopause', 'committed/run:paused']);
});

test('the committed image pushes to a registry and skopeo reads it', async () => {
  const reg = registry;
  assert.ok(reg !== undefined);
  changedContainer('c-push');
  const ref = `${reg.domain}/committed/push:v1`;
  const id = ok(['commit', '-m', 'pushed', 'c-push', ref]).trim();
  ok(['push', ref]);
  const raw = spawnSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(raw.status, 0, raw.stderr);
  const manifest = JSON.parse(raw.stdout) as { config: { digest: string }; layers: Array<{ mediaType: string; digest: string }> };
  assert.equal(manifest.config.digest, id);
  assert.equal(manifest.layers.length, inspectImage('busybox').RootFS.Layers.length + 1);
  assert.match(manifest.layers.at(-1)?.mediaType ?? '', /gzip/);
  const cfg = spawnSync('skopeo', ['inspect', '--config', '--tls-verify=false', `docker://${ref}`], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(cfg.status, 0, cfg.stderr);
  const config = JSON.parse(cfg.stdout) as { rootfs: { diff_ids: string[] }; history: Array<{ comment?: string }> };
  assert.deepEqual(config.rootfs.diff_ids, inspectImage(ref).RootFS.Layers);
  assert.equal(config.history.at(-1)?.comment, 'pushed');
  // Pulled back after removal, it runs with the changes.
  ok(['rm', 'c-push']);
  ok(['rmi', ref]);
  ok(['pull', ref]);
  assert.equal(ok(['run', '--rm', ref, 'cat', '/added.txt']).trim(), 'added');
  ok(['rmi', ref]);
});

test('POST /commit answers 201 {Id}; errors leave no image behind', async () => {
  ok(['create', '--name', 'c-api', 'busybox', 'true']);
  const r = await api(sock(), 'POST', '/v1.50/commit?container=c-api&repo=committed/api&tag=x&comment=c&author=a', { Cmd: ['echo', 'body'], Env: ['B=1'] });
  assert.equal(r.status, 201, r.body);
  const id = (JSON.parse(r.body) as { Id: string }).Id;
  const img = inspectImage('committed/api:x');
  assert.equal(img.Id, id);
  assert.deepEqual(img.Config.Cmd, ['echo', 'body']);
  // The body's Env comes first; the container's variables it does not set are kept.
  assert.equal(img.Config.Env?.[0], 'B=1');
  assert.ok(img.Config.Env?.some((e) => e.startsWith('PATH=')));
  const imagesBefore = ok(['images', '-q', '--no-trunc']).trim();
  const missing = await api(sock(), 'POST', '/v1.50/commit?container=nope&repo=committed/none');
  assert.equal(missing.status, 404);
  assert.match(missing.body, /No such container: nope/);
  const badRef = await api(sock(), 'POST', '/v1.50/commit?container=c-api&repo=Bad%20Name');
  assert.equal(badRef.status, 400, badRef.body);
  assert.equal(ok(['images', '-q', '--no-trunc']).trim(), imagesBefore);
  ok(['rm', 'c-api']);
  ok(['rmi', 'committed/api:x']);
});

test('berth commit', async () => {
  changedContainer('c-berth');
  const r = spawnSync(process.execPath, [BERTH_BIN, '-H', `unix://${sock()}`, 'commit', '-a', 'B', '-m', 'via berth', '-c', 'CMD ["cat","/added.txt"]', 'c-berth', 'committed/berth:t'], {
    encoding: 'utf8', timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const id = r.stdout.trim();
  const img = inspectImage('committed/berth:t');
  assert.equal(img.Id, id);
  assert.equal(img.Author, 'B');
  assert.equal(img.Comment, 'via berth');
  assert.equal(ok(['run', '--rm', 'committed/berth:t']).trim(), 'added');
  // `berth container commit` is the same command.
  const r2 = spawnSync(process.execPath, [BERTH_BIN, '-H', `unix://${sock()}`, 'container', 'commit', 'c-berth'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r2.status, 0, r2.stderr);
  const dangling = r2.stdout.trim();
  assert.match(dangling, /^sha256:[a-f0-9]{64}$/);
  ok(['rm', 'c-berth']);
  ok(['rmi', 'committed/berth:t', dangling]);
});

test('a commit leaves no lease, view snapshot or gc.root label behind', async () => {
  changedContainer('c-clean');
  ok(['commit', 'c-clean', 'committed/clean']);
  const layers = inspectImage('committed/clean').RootFS.Layers;
  const client = new ContainerdClient(join(dirs.execRoot, 'containerd', 'containerd.sock'), { namespace: 'berth' });
  try {
    const leases = await client.call(SERVICES.leases, 'List', { filters: [] });
    const ids = ((leases['leases'] ?? []) as Message[]).map((l) => String(l['id']));
    assert.deepEqual(ids.filter((i) => i.includes('commit')), []);
    const keys: string[] = [];
    for await (const m of client.stream(SERVICES.snapshots, 'List', { snapshotter: 'overlayfs', filters: [] })) {
      for (const i of ((m as Message)['info'] ?? []) as Message[]) keys.push(String(i['name']));
    }
    assert.deepEqual(keys.filter((k) => k.startsWith('commit-view')), []);
    // The new layer's blob is held by the image alone: no gc.root label.
    const manifest = JSON.parse(ok(['image', 'inspect', '-f', '{{json .Descriptor}}', 'committed/clean'])) as { digest: string };
    const mbytes: Buffer[] = [];
    for await (const m of client.stream(SERVICES.content, 'Read', { digest: manifest.digest, offset: 0, size: 0 })) {
      mbytes.push((m as Message)['data'] as Buffer);
    }
    const parsed = JSON.parse(Buffer.concat(mbytes).toString()) as { layers: Array<{ digest: string }> };
    assert.equal(parsed.layers.length, layers.length);
    const top = parsed.layers.at(-1)?.digest ?? '';
    const info = await client.call(SERVICES.content, 'Info', { digest: top });
    const labels = ((info['info'] as Message)['labels'] ?? {}) as Record<string, string>;
    assert.equal(labels['containerd.io/gc.root'], undefined);
    assert.equal(labels['containerd.io/uncompressed'], layers.at(-1));
  } finally {
    client.close();
  }
  ok(['rm', 'c-clean']);
  ok(['rmi', 'committed/clean']);
});
