import test from 'node:test';
import assert from 'node:assert/strict';
import { decodeRegistryAuth, isInsecure, registryDomain, transferAuth } from './_auth.js';
import { applyChanges } from './_changes.js';
import { boolFilter, globRegExp, labelsMatch, parseTimestamp } from './_filters.js';
import { PullReporter, humanSize, progressBar } from './_progress.js';
import type { JsonMessage } from './_progress.js';
import { tagOf } from './service.js';

test('reference globs follow path.Match: * stops at /', () => {
  assert.ok(globRegExp('busy*').test('busybox'));
  assert.ok(globRegExp('busybox:*').test('busybox:latest'));
  assert.ok(!globRegExp('*').test('example.com/team/app'));
  assert.ok(globRegExp('*/*/app').test('example.com/team/app'));
  assert.ok(globRegExp('b?sybox').test('busybox'));
  assert.ok(globRegExp('[a-c]usybox').test('busybox'));
  assert.ok(!globRegExp('busybox').test('busybox2'));
  assert.throws(() => globRegExp('[abc'), /syntax error in pattern/);
});

test('label filters: key, key=value, key!=value', () => {
  const l = { a: '1', b: 'two' };
  assert.ok(labelsMatch(l, ['a']));
  assert.ok(labelsMatch(l, ['a=1', 'b=two']));
  assert.ok(!labelsMatch(l, ['a=2']));
  assert.ok(!labelsMatch(l, ['c']));
  assert.ok(labelsMatch(l, ['a!=2']));
  assert.ok(!labelsMatch(l, ['a!=1']));
});

test('dangling filter values', () => {
  assert.equal(boolFilter(new Map([['dangling', ['true']]]), 'dangling'), true);
  assert.equal(boolFilter(new Map([['dangling', ['0']]]), 'dangling'), false);
  assert.equal(boolFilter(new Map(), 'dangling'), undefined);
  assert.throws(() => boolFilter(new Map([['dangling', ['maybe']]]), 'dangling'), /invalid filter 'dangling=maybe'/);
});

test('timestamps: unix seconds, RFC 3339, durations', () => {
  assert.equal(parseTimestamp('946684800', 'until'), 946684800000);
  assert.equal(parseTimestamp('2000-01-01T00:00:00Z', 'until'), 946684800000);
  assert.equal(parseTimestamp('10m', 'until', 1_000_000), 1_000_000 - 600_000);
  assert.throws(() => parseTimestamp('yesterday', 'until'), /invalid filter 'until=yesterday'/);
});

test('sizes and progress bars as Docker prints them', () => {
  assert.equal(humanSize(0), '0B');
  assert.equal(humanSize(999), '999B');
  assert.equal(humanSize(1234), '1.234kB');
  assert.equal(humanSize(2_500_000), '2.5MB');
  assert.equal(progressBar(50, 100), `[${'='.repeat(25)}>${' '.repeat(25)}]      50B/100B`);
  assert.equal(progressBar(100, 100), `[${'='.repeat(50)}>]     100B/100B`);
});

test('pull progress: one layer downloaded and extracted', () => {
  const got: JsonMessage[] = [];
  const r = new PullReporter((m) => got.push(m));
  const layer = `layer-sha256:${'ab'.repeat(32)}`;
  r.on({ event: 'Pulling from docker.io/library/x:latest', name: '', parents: [], progress: 0, total: 0 });
  assert.ok(r.resolved);
  for (const [event, progress] of [['waiting', 0], ['downloading', 10], ['downloading', 100], ['complete', 100], ['extracting', 0], ['extracted', 100]] as const) {
    r.on({ event, name: layer, parents: [], progress, total: 100 });
  }
  assert.deepEqual(got.map((m) => m.status), [
    'Pulling fs layer', 'Waiting', 'Downloading', 'Downloading', 'Verifying Checksum', 'Download complete', 'Extracting', 'Pull complete',
  ]);
  assert.ok(got.every((m) => m.id === 'abababababab'));
  assert.deepEqual(got[2]?.progressDetail, { current: 10, total: 100 });
});

test('import --change instructions', () => {
  const c = applyChanges({}, ['CMD ["/bin/true"]', 'ENTRYPOINT /start', 'ENV A=1 B="two words"', 'ENV C 3', 'LABEL x=y', 'EXPOSE 80 53/udp', 'VOLUME /data', 'USER nobody', 'WORKDIR /w', 'STOPSIGNAL SIGINT']);
  assert.deepEqual(c, {
    Cmd: ['/bin/true'],
    Entrypoint: ['/bin/sh', '-c', '/start'],
    Env: ['A=1', 'B=two words', 'C=3'],
    Labels: { x: 'y' },
    ExposedPorts: { '80/tcp': {}, '53/udp': {} },
    Volumes: { '/data': {} },
    User: 'nobody',
    WorkingDir: '/w',
    StopSignal: 'SIGINT',
  });
  assert.throws(() => applyChanges({}, ['RUN make']), /RUN is not a valid change command/);
});

test('X-Registry-Auth and registry addresses', () => {
  const h = Buffer.from(JSON.stringify({ username: 'u', password: 'p', serveraddress: 'r.example:5000' })).toString('base64url');
  const a = decodeRegistryAuth(h);
  assert.deepEqual(a, { username: 'u', password: 'p', serveraddress: 'r.example:5000' });
  assert.deepEqual(transferAuth(a), { username: 'u', password: 'p' });
  assert.deepEqual(decodeRegistryAuth(undefined), {});
  assert.deepEqual(decodeRegistryAuth('e30='), {});
  assert.deepEqual(transferAuth(decodeRegistryAuth(Buffer.from('{"identitytoken":"t"}').toString('base64'))), { identityToken: 't' });
  assert.throws(() => decodeRegistryAuth('!!!'), /X-Registry-Auth/);
  assert.equal(registryDomain('https://index.docker.io/v1/'), 'docker.io');
  assert.equal(registryDomain('127.0.0.1:5000'), '127.0.0.1:5000');
  assert.ok(isInsecure('127.0.0.1:5000', []));
  assert.ok(isInsecure('localhost:5000', []));
  assert.ok(!isInsecure('r.example:5000', []));
  assert.ok(isInsecure('r.example:5000', ['r.example:5000']));
  assert.ok(isInsecure('10.1.2.3:5000', ['10.0.0.0/8']));
  assert.ok(!isInsecure('11.1.2.3:5000', ['10.0.0.0/8']));
});

test('tags as users see them', () => {
  assert.equal(tagOf('docker.io/library/busybox:latest'), 'busybox:latest');
  assert.equal(tagOf('127.0.0.1:5000/a/b:1'), '127.0.0.1:5000/a/b:1');
  assert.equal(tagOf('docker.io/library/busybox@sha256:' + 'a'.repeat(64)), undefined);
  assert.equal(tagOf('moby-dangling@sha256:' + 'a'.repeat(64)), undefined);
});
