import test from 'node:test';
import assert from 'node:assert/strict';
import { UsageError, formatFlags, parseArgs } from './args.js';
import type { FlagDef } from './args.js';

const defs: FlagDef[] = [
  { long: 'interactive', short: 'i', kind: 'bool', help: 'Keep STDIN open' },
  { long: 'tty', short: 't', kind: 'bool', help: 'Allocate a pseudo-TTY' },
  { long: 'env', short: 'e', kind: 'list', help: 'Set environment variables' },
  { long: 'name', kind: 'string', help: 'Name' },
  { long: 'last', short: 'n', kind: 'int', help: 'Last n', default: -1 },
  { long: 'sig-proxy', kind: 'bool', help: 'Proxy', default: true },
];

test('short bools bundle and values attach', () => {
  const p = parseArgs(['-it', '-eA=1', '-e', 'B=2', '--env=C=3', 'busybox', 'sh'], defs);
  assert.equal(p.flags.bool('interactive'), true);
  assert.equal(p.flags.bool('tty'), true);
  assert.deepEqual(p.flags.list('env'), ['A=1', 'B=2', 'C=3']);
  assert.deepEqual(p.args, ['busybox', 'sh']);
});

test('stopAtPositional leaves the command line of the container alone', () => {
  const p = parseArgs(['--name', 'x', 'busybox', 'ls', '-la', '--name'], defs, { stopAtPositional: true });
  assert.equal(p.flags.str('name'), 'x');
  assert.deepEqual(p.args, ['busybox', 'ls', '-la', '--name']);
  const q = parseArgs(['busybox', '-i'], defs);
  assert.equal(q.flags.bool('interactive'), true, 'flags are interspersed by default');
});

test('-- ends the flags; bools take =false; defaults apply', () => {
  const p = parseArgs(['--sig-proxy=false', '--', '-i'], defs);
  assert.equal(p.flags.bool('sig-proxy'), false);
  assert.deepEqual(p.args, ['-i']);
  assert.equal(parseArgs([], defs).flags.bool('sig-proxy'), true);
  assert.equal(parseArgs([], defs).flags.int('last'), -1);
  assert.equal(parseArgs(['-n', '3'], defs).flags.int('last'), 3);
  assert.equal(parseArgs([], defs).flags.changed('name'), false);
});

test('errors carry pflag wording', () => {
  assert.throws(() => parseArgs(['--bogus'], defs), new UsageError('unknown flag: --bogus'));
  assert.throws(() => parseArgs(['-x'], defs), new UsageError("unknown shorthand flag: 'x' in -x"));
  assert.throws(() => parseArgs(['-ix'], defs), new UsageError("unknown shorthand flag: 'x' in -ix"));
  assert.throws(() => parseArgs(['-e'], defs), new UsageError("flag needs an argument: 'e' in -e"));
  assert.throws(() => parseArgs(['--name'], defs), new UsageError('flag needs an argument: --name'));
  assert.throws(
    () => parseArgs(['-n', 'x'], defs),
    new UsageError('invalid argument "x" for "-n, --last" flag: strconv.ParseInt: parsing "x": invalid syntax'),
  );
});

test('--help and -h are recognised; help text lists the flags', () => {
  assert.equal(parseArgs(['--help'], defs).help, true);
  assert.equal(parseArgs(['-h'], defs).help, true);
  const text = formatFlags(defs);
  assert.match(text, /^ {2}-e, --env list +Set environment variables$/m);
  assert.match(text, /^ {6}--name string +Name$/m);
  assert.match(text, /--sig-proxy +Proxy \(default true\)/);
});
