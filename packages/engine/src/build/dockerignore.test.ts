import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PatternMatcher, cleanPath, contextFiles, listedTree, parseDockerignore } from './dockerignore.js';

test('cleanPath is Go path.Clean', () => {
  const cases: [string, string][] = [
    ['', '.'], ['.', '.'], ['/', '/'], ['a/', 'a'], ['//a//b/', '/a/b'], ['./a/./b', 'a/b'],
    ['a/../b', 'b'], ['../a', '../a'], ['/../a', '/a'], ['a/b/../../..', '..'], ['**/', '**'],
  ];
  for (const [input, want] of cases) assert.equal(cleanPath(input), want, input);
});

test('parseDockerignore: comments, blanks, slashes, exceptions', () => {
  const text = [
    '\uFEFF# comment',
    '',
    '   ',
    '*/temp*',
    '/abs/path/',
    '  spaced  ',
    '!README.md',
    '! /bang/dir/ ',
    ' # not a comment (leading space)',
    './a/../b',
    '/',
    'x\r',
  ].join('\n');
  assert.deepEqual(parseDockerignore(text), [
    '*/temp*', 'abs/path', 'spaced', '!README.md', '!bang/dir', '# not a comment (leading space)', 'b', '/', 'x',
  ]);
});

test('matching: Docker examples and rules', () => {
  const cases: [string[], string, boolean][] = [
    // The documented examples.
    [['*/temp*'], 'somedir/temporary.txt', true],
    [['*/temp*'], 'somedir/temp', true],
    [['*/temp*'], 'temp', false],
    [['*/temp*'], 'a/b/temp', false],
    [['*/*/temp*'], 'somedir/subdir/temporary.txt', true],
    [['*/*/temp*'], 'somedir/temporary.txt', false],
    [['temp?'], 'tempa', true],
    [['temp?'], 'temp', false],
    [['temp?'], 'temp/', false],
    [['**/*.go'], 'main.go', true],
    [['**/*.go'], 'a/b/c/main.go', true],
    [['**/*.go'], 'a/b/c/main.goo', false],
    [['*.md', '!README*.md', 'README-secret.md'], 'README-secret.md', true],
    [['*.md', '!README*.md', 'README-secret.md'], 'README.md', false],
    [['*.md', '!README*.md', 'README-secret.md'], 'other.md', true],
    [['*.md', 'README-secret.md', '!README*.md'], 'README-secret.md', false],
    // Directories exclude what is below them.
    [['foo'], 'foo/bar/baz', true],
    [['foo'], 'foobar', false],
    [['foo/'], 'foo/x', true],
    [['/foo'], 'foo/x', true],
    [['foo/**'], 'foo/x/y', true],
    [['foo/**'], 'foo', false],
    [['**'], 'anything/at/all', true],
    [['a/**/b'], 'a/b', true],
    [['a/**/b'], 'a/x/y/b', true],
    [['a/**/b'], 'a/x/y/bc', false],
    // Exceptions: last match wins; parent matching.
    [['foo', '!foo/keep'], 'foo/keep', false],
    [['foo', '!foo/keep'], 'foo/keep/inner', false],
    [['foo', '!foo/keep'], 'foo/other', true],
    [['!foo'], 'foo', false],
    [['*', '!src'], 'src/a.ts', false],
    [['*', '!src', 'src/*.log'], 'src/x.log', true],
    // filepath.Match syntax.
    [['[a-c].txt'], 'b.txt', true],
    [['[a-c].txt'], 'd.txt', false],
    [['[^a-c].txt'], 'd.txt', true],
    [['[^a-c].txt'], 'a.txt', false],
    [['\\*.txt'], '*.txt', true],
    [['\\*.txt'], 'a.txt', false],
    [['a.b'], 'axb', false],
    [['a+b(c)|{d}$^'], 'a+b(c)|{d}$^', true],
    [['*'], '.hidden', true],
    [['*.txt'], 'dir/a.txt', false],
    [['ünï*'], 'ünïcode', true],
    [['[\\]]x'], ']x', true],
    [['[a\\-z]'], '-', true],
    [['[a\\-z]'], 'b', false],
    [['a/[/]b'], 'a//b', false],
    [['**/'], 'x/y', true],
    [['a/**/**/b'], 'a/b', true],
    [['a/**/**/b'], 'a/x/b', true],
    [['**/x/**'], 'x/y', true],
    [['**/x/**'], 'q/x/y/z', true],
    [['**/x/**'], 'q/x', false],
    [['?'], 'é', true],
  ];
  for (const [patterns, file, want] of cases) {
    assert.equal(new PatternMatcher(parseDockerignore(patterns.join('\n'))).matches(file), want, `${JSON.stringify(patterns)} ${file}`);
  }
  assert.throws(() => new PatternMatcher(['[abc']), { message: 'syntax error in pattern "[abc"' });
  assert.throws(() => new PatternMatcher(['[-a]']), /syntax error in pattern/);
  assert.throws(() => new PatternMatcher(['[a-]']), /syntax error in pattern/);
  assert.equal(new PatternMatcher(['a]']).matches('a]'), true, 'a lone ] is a literal');
  // Hostile patterns match in linear time (no backtracking blow-up).
  const started = Date.now();
  const stars = new PatternMatcher([`${'*a'.repeat(40)}b`, `${'**/'.repeat(100_000)}x`, '**/a/**/a/**/a/**/a/**/b']);
  assert.equal(stars.matches('a'.repeat(250)), false);
  assert.equal(stars.matches('a/'.repeat(2000) + 'c'), false);
  assert.equal(stars.matches('q/'.repeat(100) + 'x'), true);
  assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started}ms`);
  assert.throws(() => new PatternMatcher(['[]']), /syntax error in pattern/);
  assert.throws(() => new PatternMatcher(['!']), { message: 'illegal exclusion pattern: "!"' });
  assert.equal(new PatternMatcher(['a']).hasExclusions, false);
  assert.equal(new PatternMatcher(['a', '!a/b']).hasExclusions, true);
});

test('contextFiles lists what is sent', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'berth-build-ctx-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const files = [
    'Dockerfile', '.dockerignore', 'app.js', 'README.md', 'notes.md',
    'node_modules/x/index.js', 'build/out.bin', 'build/keep/me.txt', 'src/a.ts', 'src/a.log', 'docker/Dockerfile.dev',
  ];
  for (const f of files) {
    await mkdir(path.dirname(path.join(root, f)), { recursive: true });
    await writeFile(path.join(root, f), f);
  }
  await mkdir(path.join(root, 'empty'));
  await symlink('app.js', path.join(root, 'link'));
  await symlink('/nonexistent', path.join(root, 'dangling'));

  const all = await contextFiles(root, []);
  assert.deepEqual(all.map((e) => `${e.path}:${e.type}`), [
    '.dockerignore:file', 'Dockerfile:file', 'README.md:file', 'app.js:file', 'build:directory',
    'build/keep:directory', 'build/keep/me.txt:file', 'build/out.bin:file', 'dangling:symlink',
    'docker:directory', 'docker/Dockerfile.dev:file', 'empty:directory', 'link:symlink',
    'node_modules:directory', 'node_modules/x:directory', 'node_modules/x/index.js:file', 'notes.md:file',
    'src:directory', 'src/a.log:file', 'src/a.ts:file',
  ]);
  assert.ok(all.every((e) => e.buildOnly === undefined));

  const patterns = parseDockerignore([
    '# ignore', 'node_modules', '*.md', '!README.md', 'build', '!build/keep/me.txt', '**/*.log',
    'Dockerfile', '.dockerignore', 'docker', 'link',
  ].join('\n'));
  const sent = await contextFiles(root, patterns);
  assert.deepEqual(sent.map((e) => `${e.path}${e.buildOnly === true ? ' (build only)' : ''}`), [
    '.dockerignore (build only)', 'Dockerfile (build only)', 'README.md', 'app.js', 'build/keep/me.txt',
    'dangling', 'empty', 'src', 'src/a.ts',
  ]);

  // A Dockerfile elsewhere, inside an excluded directory, is still read.
  const custom = await contextFiles(root, patterns, { dockerfile: 'docker/Dockerfile.dev' });
  assert.deepEqual(custom.filter((e) => e.buildOnly === true).map((e) => e.path),
    ['.dockerignore', 'docker/Dockerfile.dev']);
  assert.ok(!custom.some((e) => e.path === 'Dockerfile'), 'the default Dockerfile is excluded when another is used');

  await assert.rejects(contextFiles(path.join(root, 'missing'), []), { code: 'ENOENT' });

  // The same from a listing (a context tar's entries, parents left implicit, any order).
  const listing = all.filter((e) => e.type !== 'directory' || e.path === 'empty').reverse().map((e) => ({ path: e.path, type: e.type }));
  const tree = listedTree(listing);
  assert.deepEqual(await contextFiles(tree, []), all);
  assert.deepEqual(await contextFiles(tree, patterns), sent);
  assert.deepEqual(await contextFiles(tree, patterns, { dockerfile: 'docker/Dockerfile.dev' }), custom);
});
