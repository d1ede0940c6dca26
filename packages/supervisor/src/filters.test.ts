import test from 'node:test';
import assert from 'node:assert/strict';
import { isKind } from '@berth/base';
import { mapField, parseFilter, parseFilters, present } from './filters.js';
import type { Adaptor } from './filters.js';

const obj = (fields: Record<string, string>, labels: Record<string, string> = {}): Adaptor => (fp) =>
  fp[0] === 'labels' ? mapField(fp.slice(1), labels) : fp.length === 1 ? present(fields[fp[0] ?? ''] ?? '') : undefined;

const c1 = obj({ id: 'web-1', image: 'docker.io/library/nginx:latest' }, { env: 'prod', 'com.example/team': 'a b' });
const c2 = obj({ id: 'db-1', image: 'docker.io/library/postgres:16' }, { env: 'dev' });
const c3 = obj({ id: 'bare', image: '' });

test('equality, inequality, presence and regexp selectors', () => {
  const cases: [string, boolean, boolean, boolean][] = [
    ['id==web-1', true, false, false],
    ['id!=web-1', false, true, true],
    ['image', true, true, false],
    ['labels.env', true, true, false],
    ['labels.env==prod', true, false, false],
    ['labels."com.example/team"=="a b"', true, false, false],
    ['labels."com.example/team"~=^a', true, false, false],
    ['labels.com-example==x', false, false, false],
    ['image~=nginx', true, false, false],
    ['image~=/library\\/post/', false, true, false],
    ['image~=|postgres:1[0-9]|', false, true, false],
    ['image~=(?i)NGINX', true, false, false],
    ['id~=-1$,labels.env!=dev', true, false, false],
    ['  id == bare  ', false, false, true],
    ['labels.missing!=x', true, true, true],
    ['', true, true, true],
  ];
  for (const [f, a, b, c] of cases) {
    const filter = parseFilter(f);
    assert.deepEqual([filter.match(c1), filter.match(c2), filter.match(c3)], [a, b, c], f);
  }
});

test('a list of filters matches when any one does', () => {
  const f = parseFilters(['id==web-1', 'labels.env==dev']);
  assert.deepEqual([f.match(c1), f.match(c2), f.match(c3)], [true, true, false]);
  assert.equal(parseFilters([]).match(c3), true);
});

test('Go escapes in quoted strings', () => {
  const a = obj({ name: 'tab\there é' });
  assert.equal(parseFilter('name~="^tab\\t.*é$"').match(a), true);
  assert.equal(parseFilter('name!="🐳"').match(obj({ name: '🐳' })), false);
  assert.equal(parseFilter('name=="tab\\there \\u00e9"').match(a), true);
  assert.equal(parseFilter('name=="tab\\x09here \\303\\251"').match(a), true); // bytes, decoded as UTF-8
});

test('syntax errors are InvalidArgument with the position', () => {
  for (const bad of ['id=x', 'id==', 'image==/library/x', "labels.'a'==b", 'id=!x', 'labels.containerd.io/key==v', 'id==x y', '"unterminated==x', 'id===x', ',', 'labels."\\g"==x', 'id~=(', 'id==/x/']) {
    assert.throws(() => parseFilter(bad), (e: unknown) => {
      assert.ok(isKind(e, 'InvalidArgument'), `${bad}: ${String(e)}`);
      assert.match((e as Error).message, /^filters: parse error: \[/);
      return true;
    }, bad);
  }
});
