import test from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable, Writable } from 'node:stream';
import { StdcopyError, demux, frame } from './stdcopy.js';

function sink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

test('demux splits frames across arbitrary chunk boundaries', async () => {
  const all = Buffer.concat([frame(1, Buffer.from('hello ')), frame(2, Buffer.from('oops')), frame(1, Buffer.from('world'))]);
  const chunks: Buffer[] = [];
  for (let i = 0; i < all.length; i += 3) chunks.push(all.subarray(i, i + 3));
  const out = sink();
  const err = sink();
  const r = await demux(Readable.from(chunks), out.stream, err.stream);
  assert.equal(out.text(), 'hello world');
  assert.equal(err.text(), 'oops');
  assert.deepEqual(r, { stdoutBytes: 11, stderrBytes: 4 });
});

test('demux reports a daemon error frame and a truncated frame', async () => {
  await assert.rejects(demux(Readable.from([frame(3, Buffer.from('boom'))]), sink().stream, sink().stream), StdcopyError);
  await assert.rejects(demux(Readable.from([frame(1, Buffer.from('abc')).subarray(0, 9)]), sink().stream, sink().stream), /ended inside a frame/);
});

test('demux waits for a slow consumer instead of buffering', async () => {
  const payload = Buffer.alloc(64 * 1024, 0x61);
  let pulled = 0;
  const source = Readable.from(
    (function* () {
      for (let i = 0; i < 64; i++) {
        pulled++;
        yield frame(1, payload);
      }
    })(),
  );
  let received = 0;
  let release: () => void = () => undefined;
  const slow = new Writable({
    highWaterMark: 1024,
    write(chunk: Buffer, _enc, cb) {
      received += chunk.length;
      release = () => cb();
    },
  });
  const done = demux(source, slow, sink().stream);
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(pulled < 10, `read ${pulled} frames ahead of a consumer that took one`);
  for (let i = 0; i < 64; i++) {
    release();
    await new Promise((r) => setImmediate(r));
  }
  await done;
  assert.equal(received, 64 * payload.length);
});
