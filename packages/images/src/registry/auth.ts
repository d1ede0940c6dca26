// Registry authentication: the WWW-Authenticate challenge (RFC 7235, as
// registries send it), basic credentials, and bearer tokens fetched from the
// realm with service and scopes, cached per (registry, service, scopes).
import { BerthError, ErrorKind, invalid } from '@berth/base';

export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
}

/** Returns the credentials for a registry domain (`docker.io`, `127.0.0.1:5000`), if any. */
export type CredentialsProvider = (
  domain: string,
) => RegistryCredentials | undefined | Promise<RegistryCredentials | undefined>;

export interface AuthChallenge {
  /** Lower-case scheme: `basic`, `bearer`. */
  readonly scheme: string;
  /** Lower-case parameter names: realm, service, scope, error. */
  readonly params: Readonly<Record<string, string>>;
}

/**
 * Parses a WWW-Authenticate header value into its challenges:
 * `Bearer realm="https://auth/token",service="registry",scope="repository:a:pull"`.
 */
export function parseWwwAuthenticate(value: string): AuthChallenge[] {
  const out: AuthChallenge[] = [];
  let i = 0;
  const n = value.length;
  const skipWs = (): void => {
    while (i < n && (value[i] === ' ' || value[i] === '\t')) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(value[i] ?? '')) i++;
    return value.slice(start, i);
  };
  let current: { scheme: string; params: Record<string, string> } | undefined;
  while (i < n) {
    skipWs();
    if (value[i] === ',') {
      i++;
      continue;
    }
    const save = i;
    const word = token();
    if (word === '') {
      i++; // unexpected character: skip it
      continue;
    }
    skipWs();
    if (value[i] === '=' && current !== undefined) {
      i++;
      skipWs();
      let v: string;
      if (value[i] === '"') {
        i++;
        v = '';
        while (i < n && value[i] !== '"') {
          if (value[i] === '\\' && i + 1 < n) i++;
          v += value[i];
          i++;
        }
        i++; // closing quote
      } else {
        v = token();
      }
      current.params[word.toLowerCase()] = v;
    } else {
      // A new scheme (a token not followed by '=').
      i = save + word.length;
      current = { scheme: word.toLowerCase(), params: {} };
      out.push(current);
    }
  }
  return out;
}

/** `repository:library/busybox:pull` */
export function repositoryScope(path: string, actions: readonly string[]): string {
  return `repository:${path}:${actions.join(',')}`;
}

/** Merges scopes on the same resource: `repository:a:pull` + `repository:a:push` → `repository:a:pull,push`. */
export function mergeScopes(scopes: readonly string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const s of scopes) {
    for (const one of s.split(' ')) {
      if (one === '') continue;
      const c = one.lastIndexOf(':');
      const resource = c === -1 ? one : one.slice(0, c);
      const actions = c === -1 ? [] : one.slice(c + 1).split(',');
      let set = byResource.get(resource);
      if (set === undefined) byResource.set(resource, (set = new Set()));
      for (const a of actions) if (a !== '') set.add(a);
    }
  }
  return [...byResource.entries()]
    .map(([r, acts]) => `${r}:${[...acts].sort().join(',')}`)
    .sort();
}

interface CachedToken {
  readonly token: string;
  readonly expiresAt: number;
}

/** The default lifetime of a token that does not say, as the spec gives it. */
const DEFAULT_TOKEN_SECONDS = 60;

export type TokenFetcher = (url: URL, headers: Record<string, string>) => Promise<{ status: number; body: Buffer }>;

/** Bearer tokens cached per (realm, service, scopes) until shortly before expiry. */
export class TokenCache {
  readonly #tokens = new Map<string, CachedToken>();
  readonly #pending = new Map<string, Promise<string>>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Number of token requests made: lets tests see caching. */
  fetches = 0;

  async get(
    domain: string,
    challenge: AuthChallenge,
    scopes: readonly string[],
    creds: RegistryCredentials | undefined,
    fetcher: TokenFetcher,
  ): Promise<string> {
    const realm = challenge.params['realm'];
    if (realm === undefined || realm === '') throw invalid(`registry ${domain}: bearer challenge without a realm`);
    const service = challenge.params['service'] ?? '';
    const merged = mergeScopes(scopes);
    const key = `${domain}\n${realm}\n${service}\n${merged.join(' ')}\n${creds?.username ?? ''}`;
    const hit = this.#tokens.get(key);
    if (hit !== undefined && hit.expiresAt > this.#now()) return hit.token;
    const inflight = this.#pending.get(key);
    if (inflight !== undefined) return inflight;
    const p = this.#fetch(domain, realm, service, merged, creds, fetcher).then(
      (t) => {
        this.#tokens.set(key, t);
        return t.token;
      },
    );
    this.#pending.set(key, p);
    try {
      return await p;
    } finally {
      this.#pending.delete(key);
    }
  }

  /** Forgets every token of a registry (after the registry refused one). */
  invalidate(domain: string): void {
    for (const k of this.#tokens.keys()) if (k.startsWith(`${domain}\n`)) this.#tokens.delete(k);
  }

  async #fetch(
    domain: string,
    realm: string,
    service: string,
    scopes: readonly string[],
    creds: RegistryCredentials | undefined,
    fetcher: TokenFetcher,
  ): Promise<CachedToken> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch (err) {
      throw invalid(`registry ${domain}: bearer realm ${JSON.stringify(realm)} is not a URL`, err);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw invalid(`registry ${domain}: bearer realm ${JSON.stringify(realm)} is not http(s)`);
    }
    if (service !== '') url.searchParams.set('service', service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (creds !== undefined) {
      headers['authorization'] = basicAuthorization(creds);
      url.searchParams.set('account', creds.username);
    }
    this.fetches++;
    const started = this.#now();
    const res = await fetcher(url, headers);
    if (res.status === 401 || res.status === 403) {
      throw new BerthError(
        ErrorKind.PermissionDenied,
        `unauthorized: token server ${url.origin} refused the credentials for ${domain} (HTTP ${res.status})`,
      );
    }
    if (res.status !== 200) {
      throw new BerthError(
        res.status >= 500 ? ErrorKind.Unavailable : ErrorKind.PermissionDenied,
        `token server ${url.origin} for ${domain} answered HTTP ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`,
      );
    }
    let body: unknown;
    try {
      body = JSON.parse(res.body.toString('utf8'));
    } catch (err) {
      throw invalid(`token server ${url.origin} for ${domain}: response is not JSON`, err);
    }
    if (typeof body !== 'object' || body === null) throw invalid(`token server ${url.origin}: response is not an object`);
    const b = body as Record<string, unknown>;
    const token = typeof b['token'] === 'string' && b['token'] !== '' ? b['token'] : b['access_token'];
    if (typeof token !== 'string' || token === '') {
      throw invalid(`token server ${url.origin} for ${domain}: response has neither token nor access_token`);
    }
    const seconds = typeof b['expires_in'] === 'number' && b['expires_in'] > 0 ? b['expires_in'] : DEFAULT_TOKEN_SECONDS;
    // Refresh a little before the end, never less than half the lifetime.
    const margin = Math.min(10, seconds / 2);
    return { token, expiresAt: started + (seconds - margin) * 1000 };
  }
}

export function basicAuthorization(creds: RegistryCredentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`, 'utf8').toString('base64')}`;
}
