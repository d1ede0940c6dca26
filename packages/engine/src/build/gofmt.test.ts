import test from 'node:test';
import assert from 'node:assert/strict';
import { goDuration, goQuote, goQuoteList, goQuoteRune } from './gofmt.js';

test('time.Duration.String()', () => {
  const cases: [number, string][] = [
    [0, '0s'], [1, '1ns'], [999, '999ns'], [1_500, '1.5µs'], [2_000, '2µs'], [500_000_000, '500ms'],
    [1_500_000, '1.5ms'], [5e9, '5s'], [1.5e9, '1.5s'], [30e9, '30s'], [90e9, '1m30s'], [60e9, '1m0s'],
    [3600e9, '1h0m0s'], [3723.5e9, '1h2m3.5s'], [100 * 3600e9 + 1, '100h0m0.000000001s'], [-5e9, '-5s'],
  ];
  for (const [ns, want] of cases) assert.equal(goDuration(ns), want, String(ns));
});

test('%q of an int is a rune literal', () => {
  const cases: [number, string][] = [
    [0, "'\\x00'"], [3, "'\\x03'"], [7, "'\\a'"], [9, "'\\t'"], [10, "'\\n'"], [27, "'\\x1b'"], [32, "' '"],
    [39, "'\\''"], [34, "'\"'"], [65, "'A'"], [92, "'\\\\'"], [127, "'\\x7f'"], [0x85, "'\\u0085'"], [200, "'È'"],
    [-1, "'�'"],
  ];
  for (const [n, want] of cases) assert.equal(goQuoteRune(n), want, String(n));
});

test('%q of strings and string slices', () => {
  assert.equal(goQuote('plain'), '"plain"');
  assert.equal(goQuote('a"b\\c\n\u0001é\u007f'), '"a\\"b\\\\c\\n\\x01é\\x7f"');
  assert.equal(goQuote("it's"), '"it\'s"');
  assert.equal(goQuoteList(['CMD-SHELL', 'test -f /x']), '["CMD-SHELL" "test -f /x"]');
  assert.equal(goQuoteList([]), '[]');
});
