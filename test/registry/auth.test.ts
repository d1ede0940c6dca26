// Authentication against Debian's docker-registry: htpasswd basic auth, and
// bearer tokens from a token server of our own (ES256 JWTs, the registry
// trusting our self-signed certificate). Needs /usr/bin/docker-registry,
// htpasswd (apache2-utils) and openssl.
import test, { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '@berth/base';
import { RegistryClient, pull, push } from '@berth/images';
import type { PushProgress } from '@berth/images';
import { MemoryStore, buildImage, startRegistry, startTokenServer } from './_registry.js';
import type { Registry, TokenServer } from './_registry.js';

const image = buildImage([
  [{ path: 'etc', dir: true }, { path: 'etc/motd', content: 'hello\n' }],
  [{ path: 'usr', dir: true }, { path: 'usr/x', content: 'x'.repeat(10_000) }],
]);

function isDenied(err: unknown): boolean {
  assert.ok(err instanceof BerthError, String(err));
  assert.equal(err.kind, 'PermissionDenied', err.message);
  return true;
}

describe('htpasswd basic auth', () => {
  let registry: Registry;
  before(async () => {
    registry = await startRegistry({ kind: 'htpasswd', users: { alice: 'wonderland' } });
  });
  after(async () => {
    await registry?.stop();
  });

  test('without credentials: unauthorized', async () => {
    const client = new RegistryClient();
    try {
      await assert.rejects(push(client, `${registry.domain}/basic/app:v1`, { store: new MemoryStore(image.blobs), descriptor: image.manifest }), (err) => {
        isDenied(err);
        assert.match((err as Error).message, /unauthorized: authentication required/);
        return true;
      });
    } finally {
      client.close();
    }
  });

  test('with a wrong password: unauthorized', async () => {
    const client = new RegistryClient({ credentials: () => ({ username: 'alice', password: 'nope' }) });
    try {
      await assert.rejects(pull(client, `${registry.domain}/basic/app:v1`, { store: new MemoryStore() }), isDenied);
    } finally {
      client.close();
    }
  });

  test('with the right credentials: push and pull', async () => {
    const asked: string[] = [];
    const client = new RegistryClient({
      credentials: (domain) => {
        asked.push(domain);
        return { username: 'alice', password: 'wonderland' };
      },
    });
    try {
      await push(client, `${registry.domain}/basic/app:v1`, { store: new MemoryStore(image.blobs), descriptor: image.manifest });
      const store = new MemoryStore();
      const got = await pull(client, `${registry.domain}/basic/app:v1`, { store });
      assert.equal(got.target.digest, image.manifest.digest);
      for (const [d, b] of image.blobs) assert.ok(store.blobs.get(d)?.equals(b));
      assert.ok(asked.length > 0 && asked.every((d) => d === registry.domain));
    } finally {
      client.close();
    }
  });
});

describe('bearer token auth', () => {
  let tokens: TokenServer;
  let registry: Registry;
  before(async () => {
    tokens = await startTokenServer({ alice: 'wonderland' }, ['pull']);
    registry = await startRegistry({ kind: 'token', server: tokens });
  });
  after(async () => {
    await registry?.stop();
    await tokens?.stop();
  });

  const alice = (): RegistryClient => new RegistryClient({ credentials: () => ({ username: 'alice', password: 'wonderland' }) });

  test('push and pull with a token; tokens are cached per scope', async () => {
    const client = alice();
    try {
      const n = tokens.requests.length;
      await push(client, `${registry.domain}/tok/app:v1`, { store: new MemoryStore(image.blobs), descriptor: image.manifest });
      const pushTokens = tokens.requests.slice(n);
      // One token for pull,push on the repository, however many requests the push made.
      assert.equal(pushTokens.length, 1, JSON.stringify(pushTokens));
      assert.deepEqual(pushTokens[0], { scopes: ['repository:tok/app:pull,push'], user: 'alice' });

      const m = tokens.requests.length;
      const got = await pull(client, `${registry.domain}/tok/app:v1`, { store: new MemoryStore() });
      assert.equal(got.target.digest, image.manifest.digest);
      await pull(client, `${registry.domain}/tok/app:v1`, { store: new MemoryStore() });
      assert.deepEqual(tokens.requests.slice(m), [{ scopes: ['repository:tok/app:pull'], user: 'alice' }]);
    } finally {
      client.close();
    }
  });

  test('anonymous clients may pull but not push', async () => {
    const client = new RegistryClient();
    try {
      await push(alice(), `${registry.domain}/tok/anon:v1`, { store: new MemoryStore(image.blobs), descriptor: image.manifest });
      const got = await pull(client, `${registry.domain}/tok/anon:v1`, { store: new MemoryStore() });
      assert.equal(got.target.digest, image.manifest.digest);
      await assert.rejects(
        push(client, `${registry.domain}/tok/anon2:v1`, { store: new MemoryStore(image.blobs), descriptor: image.manifest }),
        isDenied,
      );
    } finally {
      client.close();
    }
  });

  test('a token server answering access_token works too', async () => {
    tokens.useAccessToken = true;
    const client = alice();
    try {
      const got = await pull(client, `${registry.domain}/tok/app:v1`, { store: new MemoryStore() });
      assert.equal(got.target.digest, image.manifest.digest);
    } finally {
      tokens.useAccessToken = false;
      client.close();
    }
  });

  test('a wrong password is refused by the token server', async () => {
    const client = new RegistryClient({ credentials: () => ({ username: 'alice', password: 'nope' }) });
    try {
      await assert.rejects(pull(client, `${registry.domain}/tok/app:v1`, { store: new MemoryStore() }), (err) => {
        isDenied(err);
        assert.match((err as Error).message, /token server .* refused the credentials/);
        return true;
      });
    } finally {
      client.close();
    }
  });

  test('a cross-repository mount asks for a token with both scopes', async () => {
    const client = alice();
    try {
      await push(client, `${registry.domain}/tok/src:v1`, { store: new MemoryStore(image.blobs), descriptor: image.manifest });
      const n = tokens.requests.length;
      const events: PushProgress[] = [];
      await push(client, `${registry.domain}/tok/dst:v1`, {
        store: new MemoryStore(image.blobs),
        descriptor: image.manifest,
        sources: () => ['tok/src'],
        onProgress: (e) => events.push(e),
      });
      assert.equal(events.filter((e) => e.status === 'mounted').length, 1 + image.layers.length);
      assert.ok(
        tokens.requests.slice(n).some((r) => r.scopes.includes('repository:tok/src:pull') && r.scopes.includes('repository:tok/dst:pull,push')),
        JSON.stringify(tokens.requests.slice(n)),
      );
    } finally {
      client.close();
    }
  });
});
