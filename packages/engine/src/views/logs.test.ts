import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isKind, ErrorKind } from '@berth/base';
import {
  formatLogTime, parseGoDuration, parseLogLine, parseLogTime, parseRfc3339, stdcopyFrame, streamLogs,
} from './logs.js';
import type { StreamLogsOptions } from './logs.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-logs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const BASE = Date.UTC(2026, 10, 22, 22, 33, 44);

/** A json-file line as the shim writes it; `n` seconds after BASE plus 123456789 ns. */
function entry(log: string, stream: 'stdout' | 'stderr', n: number): string {
  const t = new Date(BASE + n * 1000).toISOString().slice(0, 19);
  return `${JSON.stringify({ log, stream, time: `${t}.123456789Z` })}\n`;
}

const unixOf = (n: number, fracNs = 123456789): number => (BASE + n * 1000) / 1000 + fracNs / 1e9;

interface Frame {
  stream: number;
  text: string;
}

function demux(buf: Buffer): Frame[] {
  const out: Frame[] = [];
  let off = 0;
  while (off < buf.length) {
    assert.ok(off + 8 <= buf.length, 'truncated frame header');
    const stream = buf[off] as number;
    assert.deepEqual([...buf.subarray(off + 1, off + 4)], [0, 0, 0]);
    const len = buf.readUInt32BE(off + 4);
    out.push({ stream, text: buf.subarray(off + 8, off + 8 + len).toString() });
    off += 8 + len;
  }
  return out;
}

type Opts = Partial<StreamLogsOptions> & Pick<StreamLogsOptions, 'path'>;

async function collect(o: Opts): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await streamLogs({
    maxFiles: 3,
    stdout: true,
    stderr: true,
    timestamps: false,
    follow: false,
    tty: false,
    isRunning: () => false,
    signal: new AbortController().signal,
    write: async (c) => {
      chunks.push(c);
    },
    ...o,
  });
  return Buffer.concat(chunks);
}

test('stdcopyFrame: 8-byte header, stream byte, big-endian length', () => {
  const f = stdcopyFrame(2, Buffer.from('hello'));
  assert.deepEqual([...f.subarray(0, 8)], [2, 0, 0, 0, 0, 0, 0, 5]);
  assert.equal(f.subarray(8).toString(), 'hello');
  const big = stdcopyFrame(1, Buffer.alloc(0x012345));
  assert.deepEqual([...big.subarray(0, 8)], [1, 0, 0, 0, 0, 0x01, 0x23, 0x45]);
});

test('parseLogTime: unix timestamps, RFC 3339, durations relative to now', () => {
  assert.equal(parseLogTime(''), 0);
  assert.equal(parseLogTime('0'), 0);
  assert.equal(parseLogTime('1700000000'), 1700000000);
  assert.equal(parseLogTime('1700000000.5'), 1700000000.5);
  assert.equal(parseLogTime('2026-11-22T22:33:44Z'), BASE / 1000);
  assert.equal(parseLogTime('2026-11-22T22:33:44.25Z'), BASE / 1000 + 0.25);
  assert.equal(parseLogTime('2026-11-22T23:33:44+01:00'), BASE / 1000);
  assert.equal(parseLogTime('2026-11-22T20:03:44-02:30'), BASE / 1000);
  // without a zone: local time, as the docker CLI reads it
  assert.equal(parseLogTime('2026-11-22T22:33:44'), new Date(2026, 10, 22, 22, 33, 44).getTime() / 1000);
  assert.equal(parseLogTime('2026-11-22'), new Date(2026, 10, 22).getTime() / 1000);
  const now = 1_800_000_000_000;
  assert.equal(parseLogTime('10m', now), now / 1000 - 600);
  assert.equal(parseLogTime('1h30m', now), now / 1000 - 5400);
  assert.equal(parseLogTime('1.5s', now), now / 1000 - 1.5);
  for (const bad of ['yesterday', '10 minutes', '2026-13-01', '12:00']) {
    assert.throws(() => parseLogTime(bad), (e: unknown) => isKind(e, ErrorKind.InvalidArgument), bad);
  }
});

test('parseGoDuration and time formatting', () => {
  assert.equal(parseGoDuration('300ms'), 0.3);
  assert.equal(parseGoDuration('-2h'), -7200);
  assert.equal(parseGoDuration('2h45m10s'), 9910);
  assert.equal(parseGoDuration('10'), undefined);
  const ns = parseRfc3339('2026-11-22T22:33:44.000000001Z');
  assert.equal(ns, BigInt(BASE) * 1_000_000n + 1n);
  assert.equal(formatLogTime(ns ?? 0n), '2026-11-22T22:33:44.000000001Z');
  assert.equal(formatLogTime(parseRfc3339('2026-11-22T23:33:44.5+01:00') ?? 0n), '2026-11-22T22:33:44.500000000Z');
});

test('parseLogLine: the shim format; anything else is not an entry', () => {
  const e = parseLogLine(entry('a\u0000<b>\n', 'stderr', 0).trimEnd());
  assert.ok(e !== undefined);
  assert.equal(e.stream, 'stderr');
  assert.equal(e.log.toString(), 'a\u0000<b>\n');
  assert.equal(parseLogLine('{"log":"x","stream":"stdin","time":"2026-11-22T22:33:44Z"}'), undefined);
  assert.equal(parseLogLine('{"log":"x","stream":"stdout"'), undefined);
  assert.equal(parseLogLine('[]'), undefined);
});

test('streamLogs: rotated files oldest first, stdcopy frames, stream filters', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c-json.log');
  writeFileSync(`${path}.2`, entry('one\n', 'stdout', 1) + entry('two\n', 'stderr', 2));
  writeFileSync(`${path}.1`, entry('three\n', 'stdout', 3));
  writeFileSync(path, entry('four\n', 'stderr', 4) + entry('five\n', 'stdout', 5));
  assert.deepEqual(demux(await collect({ path })), [
    { stream: 1, text: 'one\n' },
    { stream: 2, text: 'two\n' },
    { stream: 1, text: 'three\n' },
    { stream: 2, text: 'four\n' },
    { stream: 1, text: 'five\n' },
  ]);
  assert.deepEqual(demux(await collect({ path, stderr: false })).map((f) => f.text), ['one\n', 'three\n', 'five\n']);
  assert.deepEqual(demux(await collect({ path, stdout: false })).map((f) => f.text), ['two\n', 'four\n']);
  // maxFiles 2: <log>.2 is not one of the files
  assert.deepEqual(demux(await collect({ path, maxFiles: 2 })).map((f) => f.text), ['three\n', 'four\n', 'five\n']);
});

test('streamLogs: tail counts lines across files; a line being written is not emitted', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c-json.log');
  writeFileSync(`${path}.1`, entry('a\n', 'stdout', 1) + entry('b\n', 'stdout', 2) + entry('c\n', 'stdout', 3));
  writeFileSync(path, entry('d\n', 'stdout', 4) + entry('e\n', 'stderr', 5) + entry('partial', 'stdout', 6).slice(0, 30));
  const texts = async (tail: number | 'all'): Promise<string[]> =>
    demux(await collect({ path, tail })).map((f) => f.text);
  assert.deepEqual(await texts('all'), ['a\n', 'b\n', 'c\n', 'd\n', 'e\n']);
  assert.deepEqual(await texts(0), []);
  assert.deepEqual(await texts(1), ['e\n']);
  assert.deepEqual(await texts(2), ['d\n', 'e\n']);
  assert.deepEqual(await texts(3), ['c\n', 'd\n', 'e\n']);
  assert.deepEqual(await texts(4), ['b\n', 'c\n', 'd\n', 'e\n']);
  assert.deepEqual(await texts(100), ['a\n', 'b\n', 'c\n', 'd\n', 'e\n']);
  assert.deepEqual(await texts(-1), ['a\n', 'b\n', 'c\n', 'd\n', 'e\n']);
  // tail counts lines of both streams, then the stream filter applies (as docker)
  assert.deepEqual(demux(await collect({ path, tail: 2, stderr: false })).map((f) => f.text), ['d\n']);
});

test('streamLogs: timestamps, tty, since and until', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c-json.log');
  writeFileSync(path, entry('x\n', 'stdout', 1) + entry('y\n', 'stderr', 2) + entry('z', 'stdout', 3));
  const raw = await collect({ path, tty: true, timestamps: true });
  assert.equal(
    raw.toString(),
    '2026-11-22T22:33:45.123456789Z x\n2026-11-22T22:33:46.123456789Z y\n2026-11-22T22:33:47.123456789Z z',
  );
  const texts = async (o: Partial<StreamLogsOptions>): Promise<string[]> =>
    demux(await collect({ path, ...o })).map((f) => f.text);
  assert.deepEqual(await texts({ since: unixOf(2) }), ['y\n', 'z']);
  assert.deepEqual(await texts({ since: unixOf(2, 200_000_000) }), ['z']);
  assert.deepEqual(await texts({ until: unixOf(2) }), ['x\n', 'y\n']);
  assert.deepEqual(await texts({ since: unixOf(2), until: unixOf(2) }), ['y\n']);
  assert.deepEqual(await texts({ since: 0, until: 0 }), ['x\n', 'y\n', 'z']);
});

test('streamLogs: a missing log is an empty log', async (t) => {
  const dir = tempDir(t);
  assert.equal((await collect({ path: join(dir, 'none.log') })).length, 0);
});

/** Follows `path` in the background; the frames so far and the promise of the end. */
function following(path: string, o: Partial<StreamLogsOptions> = {}) {
  const ac = new AbortController();
  let running = true;
  const chunks: Buffer[] = [];
  const done = streamLogs({
    path,
    maxFiles: 3,
    stdout: true,
    stderr: true,
    timestamps: false,
    follow: true,
    tty: false,
    isRunning: () => running,
    signal: ac.signal,
    write: async (c) => {
      chunks.push(c);
    },
    ...o,
  });
  return {
    done,
    abort: () => ac.abort(),
    stop: () => {
      running = false;
    },
    texts: () => demux(Buffer.concat(chunks)).map((f) => f.text),
  };
}

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Rotation as the shim does it: <log>.N-2 -> <log>.N-1 ... <log> -> <log>.1, then a new <log>. */
function rotate(path: string, maxFiles: number): void {
  for (let i = maxFiles - 1; i >= 1; i--) {
    const from = i === 1 ? path : `${path}.${i - 1}`;
    try {
      renameSync(from, `${path}.${i}`);
    } catch {
      // not there yet
    }
  }
  writeFileSync(path, '');
}

test('streamLogs follow: growth, a line completed later, rotations, then the stop', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c-json.log');
  writeFileSync(path, entry('first\n', 'stdout', 1));
  const f = following(path);
  t.after(() => f.abort());
  await until('the first line', () => f.texts().length === 1);
  const line = entry('second\n', 'stderr', 2);
  appendFileSync(path, line.slice(0, 20));
  await sleep(300);
  assert.deepEqual(f.texts(), ['first\n']);
  appendFileSync(path, line.slice(20));
  await until('the completed line', () => f.texts().length === 2);
  // one rotation, with lines written just before it
  appendFileSync(path, entry('third\n', 'stdout', 3));
  rotate(path, 3);
  appendFileSync(path, entry('fourth\n', 'stdout', 4));
  await until('the line after a rotation', () => f.texts().length === 4);
  // two rotations while the reader sleeps: <log>.1 is read between the old fd and <log>
  appendFileSync(path, entry('fifth\n', 'stdout', 5));
  rotate(path, 3);
  appendFileSync(path, entry('sixth\n', 'stdout', 6));
  rotate(path, 3);
  appendFileSync(path, entry('seventh\n', 'stdout', 7));
  await until('lines after two rotations', () => f.texts().length === 7);
  appendFileSync(path, entry('last\n', 'stdout', 8));
  f.stop();
  await f.done;
  assert.deepEqual(f.texts(), ['first\n', 'second\n', 'third\n', 'fourth\n', 'fifth\n', 'sixth\n', 'seventh\n', 'last\n']);
});

test('streamLogs follow: a single file truncated in place, a log created later, abort', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c-json.log');
  const f = following(path, { maxFiles: 1 });
  await sleep(100);
  writeFileSync(path, entry('a\n', 'stdout', 1) + entry('b\n', 'stdout', 2));
  await until('the lines of a new log', () => f.texts().length === 2);
  truncateSync(path, 0);
  await sleep(400);
  appendFileSync(path, entry('c\n', 'stdout', 3));
  await until('the line after truncation', () => f.texts().length === 3);
  f.abort();
  await f.done;
  assert.deepEqual(f.texts(), ['a\n', 'b\n', 'c\n']);
});

test('streamLogs follow: until ends the stream', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c-json.log');
  const k = Math.ceil((Date.now() - BASE) / 1000); // now, in seconds after BASE
  writeFileSync(path, entry('a\n', 'stdout', k - 10));
  const f = following(path, { until: unixOf(k + 60) });
  t.after(() => f.abort());
  await until('a', () => f.texts().length === 1);
  appendFileSync(path, entry('b\n', 'stdout', k - 5) + entry('late\n', 'stdout', k + 61) + entry('later\n', 'stdout', k + 62));
  await f.done;
  assert.deepEqual(f.texts(), ['a\n', 'b\n']);
  // an until already past ends a follow once the log is read
  const g = following(path, { until: (Date.now() - 1000) / 1000 });
  t.after(() => g.abort());
  await g.done;
  assert.deepEqual(g.texts(), ['a\n', 'b\n']);
});

test('streamLogs: a slow consumer gets everything, in order, one write at a time', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c-json.log');
  const n = 20000;
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(entry(`line ${i} ${'x'.repeat(i % 50)}\n`, i % 3 === 0 ? 'stderr' : 'stdout', i));
  writeFileSync(path, lines.join(''));
  let inFlight = 0;
  let maxInFlight = 0;
  const chunks: Buffer[] = [];
  await streamLogs({
    path, maxFiles: 1, stdout: true, stderr: true, timestamps: false, follow: false, tty: false,
    isRunning: () => false,
    signal: new AbortController().signal,
    write: async (c) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await sleep(1);
      chunks.push(c);
      inFlight--;
    },
  });
  assert.equal(maxInFlight, 1);
  const frames = demux(Buffer.concat(chunks));
  assert.equal(frames.length, n);
  for (let i = 0; i < n; i += 997) {
    assert.deepEqual(frames[i], { stream: i % 3 === 0 ? 2 : 1, text: `line ${i} ${'x'.repeat(i % 50)}\n` });
  }
});
