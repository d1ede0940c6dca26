/**
 * Registry credentials as the Docker API carries them (the X-Registry-Auth
 * header: base64url JSON), which registries are plain HTTP, and `POST /auth`:
 * a v2 ping, then basic or token authentication with the credentials given.
 */
import { invalid } from '@berth/base';
import { RegistryClient, isLoopback } from '@berth/images';
import type { RegistryAuth } from '@berth/supervisor';
import { HttpStatus } from '../server/errors.js';

/** The auth config of Docker's API (`X-Registry-Auth`, the body of `POST /auth`). */
export interface AuthConfig {
  readonly username?: string;
  readonly password?: string;
  readonly serveraddress?: string;
  readonly identitytoken?: string;
  readonly registrytoken?: string;
}

function fromObject(o: Record<string, unknown>): AuthConfig {
  const s = (k: string): string | undefined => {
    const v = o[k] ?? o[k.charAt(0).toUpperCase() + k.slice(1)];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const out: { -readonly [K in keyof AuthConfig]: AuthConfig[K] } = {};
  const username = s('username');
  if (username !== undefined) out.username = username;
  const password = s('password');
  if (password !== undefined) out.password = password;
  const server = s('serveraddress');
  if (server !== undefined) out.serveraddress = server;
  const token = s('identitytoken');
  if (token !== undefined) out.identitytoken = token;
  return out;
}

/** The X-Registry-Auth header (base64url, or plain base64, of JSON); absent or empty: no credentials. */
export function decodeRegistryAuth(header: string | string[] | undefined): AuthConfig {
  const h = Array.isArray(header) ? header[0] : header;
  if (h === undefined || h.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(h.trim().replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8'));
  } catch (e) {
    throw invalid(`X-Registry-Auth: not base64url-encoded JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
  return fromObject(parsed as Record<string, unknown>);
}

export function authConfigOf(body: Record<string, unknown>): AuthConfig {
  return fromObject(body);
}

/** Credentials for the supervisor's transfer, if any were given. */
export function transferAuth(a: AuthConfig): RegistryAuth | undefined {
  if (a.identitytoken !== undefined) return { identityToken: a.identitytoken };
  if (a.username !== undefined) return { username: a.username, password: a.password ?? '' };
  return undefined;
}

/** Loopback registries are plain HTTP, and those the daemon was told are. */
export function isInsecure(domain: string, insecure: readonly string[]): boolean {
  if (isLoopback(domain)) return true;
  const host = domain.replace(/:\d+$/, '');
  return insecure.some((r) => r === domain || r === host || cidrContains(r, host));
}

function cidrContains(cidr: string, host: string): boolean {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  const h = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(host);
  if (m === null || h === null) return false;
  const n = (a: RegExpExecArray, from: number): number =>
    ((Number(a[from]) << 24) | (Number(a[from + 1]) << 16) | (Number(a[from + 2]) << 8) | Number(a[from + 3])) >>> 0;
  const bits = Number(m[5]);
  if (bits > 32) return false;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return ((n(m, 1) & mask) >>> 0) === ((n(h, 1) & mask) >>> 0);
}

/** The registry domain of a `serveraddress` (`https://index.docker.io/v1/` is docker.io). */
export function registryDomain(server: string | undefined): string {
  if (server === undefined || server === '') return 'docker.io';
  let s = server.trim().replace(/^https?:\/\//, '');
  s = s.replace(/\/.*$/, '');
  if (s === 'index.docker.io' || s === 'registry-1.docker.io' || s === 'docker.io') return 'docker.io';
  return s;
}

/**
 * Check credentials against a registry: `GET /v2/`; when it challenges,
 * answer with the credentials (basic, or a token from the realm). A refusal
 * is a 401 with Docker's message.
 */
export async function checkLogin(a: AuthConfig, insecure: readonly string[]): Promise<{ Status: string; IdentityToken: string }> {
  const domain = registryDomain(a.serveraddress);
  const creds = a.username === undefined ? undefined : { username: a.username, password: a.password ?? '' };
  const client = new RegistryClient({
    ...(creds === undefined ? {} : { credentials: (d: string) => (d === domain ? creds : undefined) }),
    ...(isInsecure(domain, insecure) ? { insecureRegistries: [domain] } : {}),
    retries: 0,
    timeoutMs: 15_000,
  });
  const endpoint = new URL('/v2/', client.endpoint(domain)).href;
  const refused = (status = '401 Unauthorized'): HttpStatus =>
    new HttpStatus(401, `login attempt to ${endpoint} failed with status: ${status}`);
  try {
    let res;
    try {
      res = await client.send(domain, { method: 'GET', url: '/v2/', scopes: [] });
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (/\b401\b|unauthorized|denied|credentials/i.test(msg)) throw refused();
      throw e;
    }
    res.body.resume();
    if (res.status === 200) return { Status: 'Login Succeeded', IdentityToken: '' };
    if (res.status === 401 || res.status === 403) throw refused(`${res.status} ${res.status === 401 ? 'Unauthorized' : 'Forbidden'}`);
    throw refused(`${res.status}`);
  } finally {
    client.close();
  }
}
