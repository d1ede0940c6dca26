import test from 'node:test';
import assert from 'node:assert/strict';
import { BerthError, ErrorKind } from '@berth/base';
import { DockerfileError, parseDockerfile } from './parser.js';
import { findTarget, mountFrom, planBuild, resolveStageRef, stageGraph } from './stages.js';
import type { PlanOptions } from './stages.js';

const plan = (text: string, opts: PlanOptions = {}): ReturnType<typeof planBuild> => planBuild(parseDockerfile(text), opts);

test('stages by index and name: the reference example', () => {
  const text = [
    'FROM ubuntu AS base',
    'RUN apt-get update && apt-get install -y shared-tooling',
    '',
    'FROM base AS dev',
    'RUN apt-get install -y dev-tooling',
    '',
    'FROM base AS prod',
    'COPY --from=build /app /app',
  ].join('\n');
  const g = stageGraph(parseDockerfile(text));
  assert.deepEqual(g.stages.map((s) => [s.index, s.name, s.instructions.length]), [[0, 'base', 1], [1, 'dev', 1], [2, 'prod', 1]]);
  assert.deepEqual([...g.byName], [['base', 0], ['dev', 1], ['prod', 2]]);
  const p = plan(text);
  assert.equal(p.target, 2);
  assert.deepEqual(p.needed, [0, 2]);
  assert.deepEqual(p.levels, [[0], [2]]);
  assert.deepEqual(p.stages[2]?.base, { kind: 'stage', index: 0 });
  assert.deepEqual(p.stages[2]?.images, ['build'], '"build" is no stage: an image');
  const dev = plan(text, { target: 'dev' });
  assert.deepEqual([dev.target, dev.needed], [1, [0, 1]]);
  assert.deepEqual(plan(text, { target: 'BASE' }).needed, [0]);
});

test('independent stages level together; only needed stages are planned', () => {
  const text = [
    'FROM alpine AS a', 'RUN make a',
    'FROM alpine AS b', 'RUN make b',
    'FROM alpine AS unused', 'RUN false',
    'FROM a AS c', 'COPY --from=b /b /b',
    'FROM scratch', 'COPY --from=c /out /', 'COPY --from=1 /b2 /',
  ].join('\n');
  const p = plan(text);
  assert.equal(p.target, 4);
  assert.deepEqual(p.needed, [0, 1, 3, 4]);
  assert.deepEqual(p.levels, [[0, 1], [3], [4]]);
  assert.deepEqual(p.stages[3]?.dependsOn, [0, 1]);
  assert.deepEqual(p.stages[4]?.dependsOn, [1, 3]);
  assert.deepEqual(p.stages[4]?.base, { kind: 'scratch' });
  assert.deepEqual(plan(text, { target: 'unused' }).levels, [[2]]);
  assert.deepEqual(plan(text, { target: 'b' }).needed, [1]);
});

test('bases: tag, digest, scratch, stage, global ARG', () => {
  const digest = `sha256:${'0123456789abcdef'.repeat(4)}`;
  const p = plan([
    'ARG TAG=3.19',
    'ARG REG=localhost:5000',
    'FROM alpine:${TAG} AS one',
    `FROM busybox@${digest}`,
    'FROM $REG/team/app:v1 AS three',
    'FROM scratch',
    'FROM One',
    'FROM --platform=$BUILDPLATFORM golang AS five',
  ].join('\n'), { builtinArgs: { BUILDPLATFORM: 'linux/amd64' } });
  assert.deepEqual(p.stages.map((s) => s.base), [
    { kind: 'image', name: 'alpine:3.19', reference: { domain: 'docker.io', path: 'library/alpine', tag: '3.19' } },
    { kind: 'image', name: `busybox@${digest}`, reference: { domain: 'docker.io', path: 'library/busybox', digest } },
    { kind: 'image', name: 'localhost:5000/team/app:v1', reference: { domain: 'localhost:5000', path: 'team/app', tag: 'v1' } },
    { kind: 'scratch' },
    { kind: 'stage', index: 0 },
    { kind: 'image', name: 'golang', reference: { domain: 'docker.io', path: 'library/golang', tag: 'latest' } },
  ]);
  assert.equal(p.stages[5]?.platform, 'linux/amd64');
  assert.equal(p.globals.get('TAG'), '3.19');
  assert.equal(plan('ARG TAG=3.19\nFROM alpine:$TAG\n', { buildArgs: { TAG: 'edge' } }).stages[0]?.base.kind, 'image');
  const edge = plan('ARG TAG=3.19\nFROM alpine:$TAG\n', { buildArgs: { TAG: 'edge' } }).stages[0]?.base;
  assert.ok(edge?.kind === 'image');
  assert.equal(edge.name, 'alpine:edge');
  // A stage named like a later image is not a base before it is defined.
  const later = plan('FROM x\nFROM alpine AS x\n');
  assert.equal(later.stages[0]?.base.kind, 'image');
  // Stage ARGs are not used in FROM.
  const stageArg = plan('FROM a\nARG T=1\nFROM b:${T:-none}\n');
  const b = stageArg.stages[1]?.base;
  assert.ok(b?.kind === 'image');
  assert.equal(b.name, 'b:none');
});

test('--from and --mount from= resolution', () => {
  const p = plan([
    'FROM alpine AS builder',
    'FROM alpine AS other',
    'FROM alpine',
    'ARG SRC=builder',
    'COPY --from=$SRC /a /a',
    'COPY --from=0 /b /b',
    'COPY --from=nginx:latest /etc/nginx /etc/nginx',
    'RUN --mount=type=bind,from=other,target=/o --mount=type=cache,target=/c true',
  ].join('\n'));
  assert.deepEqual(p.stages[2]?.dependsOn, [0, 1]);
  assert.deepEqual(p.stages[2]?.images, ['nginx:latest']);
  assert.deepEqual(p.levels, [[0, 1], [2]]);
  assert.equal(mountFrom('type=bind,from=x,target=/y'), 'x');
  assert.equal(mountFrom('type=cache,target=/y'), undefined);
  const g = stageGraph(parseDockerfile('FROM a AS x\nFROM b\n'));
  assert.deepEqual(resolveStageRef(g, 'X', 1), { kind: 'stage', index: 0 });
  assert.deepEqual(resolveStageRef(g, 'x', 0), { kind: 'image', name: 'x' });
  assert.throws(() => resolveStageRef(g, '1', 1), { message: 'invalid from flag value 1: refers to current or future build stage' });
  assert.throws(() => plan('FROM a\nCOPY --from=1 /a /b\nFROM b\n'),
    (e: unknown) => e instanceof DockerfileError && e.startLine === 2 && /refers to current or future build stage/.test(e.message));
});

test('errors', () => {
  const cases: [string, PlanOptions, string | RegExp, ErrorKind][] = [
    ['', {}, 'Dockerfile: file with no instructions', ErrorKind.InvalidArgument],
    ['ARG A\n', {}, 'Dockerfile: no build stage in current context', ErrorKind.InvalidArgument],
    ['RUN x\nFROM a\n', {}, 'Dockerfile:1: no build stage in current context', ErrorKind.InvalidArgument],
    ['FROM a AS x\nFROM b AS X\n', {}, 'Dockerfile:2: duplicate stage name "x"', ErrorKind.InvalidArgument],
    ['FROM a\n', { target: 'nope' }, 'target stage "nope" could not be found', ErrorKind.NotFound],
    ['ARG B\nFROM $B\n', {}, 'Dockerfile:2: base name ($B) should not be blank', ErrorKind.InvalidArgument],
    ['FROM Alpine\n', {}, /^Dockerfile:1: invalid reference format: repository name \(library\/Alpine\) must be lowercase$|^Dockerfile:1: invalid reference format/, ErrorKind.InvalidArgument],
    ['FROM a:${\n', {}, "Dockerfile:1: syntax error: missing '}'", ErrorKind.InvalidArgument],
  ];
  for (const [text, opts, msg, kind] of cases) {
    assert.throws(() => plan(text, opts), (e: unknown) => {
      assert.ok(e instanceof BerthError, String(e));
      assert.equal(e.kind, kind, text);
      if (typeof msg === 'string') assert.equal(e.message, msg, text);
      else assert.match(e.message, msg, text);
      return true;
    });
  }
  const g = stageGraph(parseDockerfile('FROM a AS x\n'));
  assert.equal(findTarget(g, 'X'), 0);
});
