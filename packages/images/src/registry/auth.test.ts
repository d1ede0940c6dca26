import test from 'node:test';
import assert from 'node:assert/strict';
import { TokenCache, mergeScopes, parseWwwAuthenticate } from './auth.js';

test('parses WWW-Authenticate challenges', () => {
  assert.deepEqual(
    parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"'),
    [{ scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:samalba/my-app:pull,push' } }],
  );
  assert.deepEqual(parseWwwAuthenticate('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  assert.deepEqual(parseWwwAuthenticate('Basic realm="a\\"b", Bearer realm=x, error=insufficient_scope'), [
    { scheme: 'basic', params: { realm: 'a"b' } },
    { scheme: 'bearer', params: { realm: 'x', error: 'insufficient_scope' } },
  ]);
});

test('merges scopes per resource', () => {
  assert.deepEqual(mergeScopes(['repository:a:pull', 'repository:a:push', 'repository:b:pull']), [
    'repository:a:pull,push',
    'repository:b:pull',
  ]);
  assert.deepEqual(mergeScopes(['repository:a:push,pull repository:c:pull']), ['repository:a:pull,push', 'repository:c:pull']);
});

test('caches tokens per scope until they expire', async () => {
  let now = 1_000_000;
  const cache = new TokenCache(() => now);
  const seen: string[] = [];
  const fetcher = async (url: URL): Promise<{ status: number; body: Buffer }> => {
    seen.push(url.searchParams.getAll('scope').join(' '));
    const body = seen.length % 2 === 0 ? { access_token: `t${seen.length}`, expires_in: 100 } : { token: `t${seen.length}`, expires_in: 100 };
    return { status: 200, body: Buffer.from(JSON.stringify(body)) };
  };
  const ch = { scheme: 'bearer', params: { realm: 'http://127.0.0.1:1/token', service: 's' } };
  assert.equal(await cache.get('r', ch, ['repository:a:pull'], undefined, fetcher), 't1');
  assert.equal(await cache.get('r', ch, ['repository:a:pull'], undefined, fetcher), 't1');
  assert.equal(await cache.get('r', ch, ['repository:b:pull'], undefined, fetcher), 't2');
  now += 95_000; // within 10 s of expiry: fetched again
  assert.equal(await cache.get('r', ch, ['repository:a:pull'], undefined, fetcher), 't3');
  assert.deepEqual(seen, ['repository:a:pull', 'repository:b:pull', 'repository:a:pull']);
  await assert.rejects(
    cache.get('r', ch, ['x'], undefined, async () => ({ status: 401, body: Buffer.from('no') })),
    (err: Error) => err.message.includes('unauthorized'),
  );
});
