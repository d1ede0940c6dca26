import test from 'node:test';
import assert from 'node:assert/strict';
import { BerthError, ErrorKind } from '@berth/base';
import { shimStdio, stdioArgs } from './bundle.js';
import type { ShimStdio, Stdio } from './bundle.js';

const io = (over: Partial<Stdio>): Stdio => ({ stdin: '', stdout: '', stderr: '', terminal: false, ...over });
const none: ShimStdio = { stdinFifo: undefined, stdoutFifo: undefined, stderrFifo: undefined, stdinOpen: false, log: undefined, files: [] };

function rejects(s: Stdio, kind: ErrorKind, message: RegExp, owner: Parameters<typeof shimStdio>[1] = { kind: 'init' }): void {
  assert.throws(() => shimStdio(s, owner), (e: unknown) => e instanceof BerthError && e.kind === kind && message.test(e.message));
}

test('shimStdio: fifos, file:// and empty fields as before', () => {
  assert.deepEqual(shimStdio(io({})), none);
  assert.deepEqual(shimStdio(io({ stdin: '/run/f/in', stdout: 'fifo:///run/f/out', stderr: 'file:///var/log/x.log' })), {
    ...none, stdinFifo: '/run/f/in', stdoutFifo: '/run/f/out', stderrFifo: '/var/log/x.log', files: ['/var/log/x.log'],
  });
  rejects(io({ stdin: 'file:///x' }), ErrorKind.InvalidArgument, /^stdin: a file:\/\/ URI cannot be read as stdin/);
  rejects(io({ stdout: 'binary:///bin/logger' }), ErrorKind.NotImplemented, /binary:\/\//);
  rejects(io({ stdout: 'relative/path' }), ErrorKind.InvalidArgument, /^stdout: "relative\/path" is neither/);
  rejects(io({ stdout: 'tcp://host:1' }), ErrorKind.InvalidArgument, /unsupported URI scheme "tcp:"/);
});

test('shimStdio: attach: stdin is a pipe kept open, for the init process and for an exec', () => {
  assert.deepEqual(shimStdio(io({ stdin: 'attach:' })), { ...none, stdinOpen: true });
  assert.deepEqual(shimStdio(io({ stdin: 'attach:', stdout: '/f/out' }), { kind: 'exec', execId: 'e1' }), { ...none, stdinOpen: true, stdoutFifo: '/f/out' });
  assert.deepEqual(stdioArgs(shimStdio(io({ stdin: 'attach:' }))), ['--stdin']);
  rejects(io({ stdout: 'attach:' }), ErrorKind.InvalidArgument, /^stdout: attach: is a stdin form/);
  rejects(io({ stderr: 'attach:' }), ErrorKind.InvalidArgument, /^stderr: attach: is a stdin form/);
});

test('shimStdio: jsonfile:// is the shim\'s json-file log, with Docker\'s rotation options', () => {
  const uri = 'jsonfile:///var/lib/berth/engine/containers/abc/abc-json.log?max-size=1048576&max-file=3';
  const log = { path: '/var/lib/berth/engine/containers/abc/abc-json.log', maxSize: 1048576, maxFiles: 3 };
  assert.deepEqual(shimStdio(io({ stdout: uri, stderr: uri })), { ...none, log });
  assert.deepEqual(shimStdio(io({ stdout: uri })), { ...none, log });
  assert.deepEqual(stdioArgs(shimStdio(io({ stdout: uri, stdin: 'attach:' }))), [
    '--stdin', '--log-path', log.path, '--log-max-size', '1048576', '--log-max-files', '3',
  ]);
  // Defaults: no rotation, one file; percent-encoding decoded.
  assert.deepEqual(shimStdio(io({ stdout: 'jsonfile:///logs/a%20b/x-json.log' })).log, { path: '/logs/a b/x-json.log', maxSize: 0, maxFiles: 1 });
  // Mixed: the log has both streams, stderr also goes to a file (or fifo).
  assert.deepEqual(shimStdio(io({ stdout: uri, stderr: 'file:///tmp/err.log', stdin: '/f/in' })), {
    ...none, log, stderrFifo: '/tmp/err.log', files: ['/tmp/err.log'], stdinFifo: '/f/in',
  });
});

test('shimStdio: what the shim cannot do is an InvalidArgument naming the field', () => {
  const uri = 'jsonfile:///l/x-json.log';
  rejects(io({ stdout: uri }), ErrorKind.InvalidArgument, /^stdout: exec e7: jsonfile:\/\/ logs are written for a task's init process only/, { kind: 'exec', execId: 'e7' });
  rejects(io({ stdout: '', stderr: uri }), ErrorKind.InvalidArgument, /^stderr: exec e7: jsonfile/, { kind: 'exec', execId: 'e7' });
  rejects(io({ stdout: '/f/out', stderr: uri }), ErrorKind.InvalidArgument, /^stderr: a jsonfile:\/\/ log needs the same URI as stdout/);
  rejects(io({ stdout: uri, stderr: 'jsonfile:///l/other-json.log' }), ErrorKind.InvalidArgument, /^stderr: .* differs from stdout/);
  rejects(io({ stdout: uri, stderr: `${uri}?max-file=2` }), ErrorKind.InvalidArgument, /differs from stdout/);
  rejects(io({ stdin: uri }), ErrorKind.InvalidArgument, /^stdin: a jsonfile:\/\/ URI is an output/);
  rejects(io({ stdout: 'jsonfile://host/l/x.log' }), ErrorKind.InvalidArgument, /has no host/);
  rejects(io({ stdout: `${uri}?max-file=0` }), ErrorKind.InvalidArgument, /max-file must be a whole number of at least 1 \(got "0"\)/);
  rejects(io({ stdout: `${uri}?max-size=10m` }), ErrorKind.InvalidArgument, /max-size must be a whole number \(got "10m"\)/);
  rejects(io({ stdout: `${uri}?compress=true` }), ErrorKind.InvalidArgument, /unknown option "compress"/);
  rejects(io({ stdout: 'jsonfile:relative.log' }), ErrorKind.InvalidArgument, /does not name an absolute path/);
});
