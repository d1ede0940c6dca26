// The distribution API client: transport (node:http/https), authentication
// (anonymous, basic, bearer), retries for idempotent requests, and the
// registry's errors mapped onto BerthError kinds.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { BerthError, ErrorKind, invalid } from '@berth/base';
import {
  TokenCache,
  basicAuthorization,
  mergeScopes,
  parseWwwAuthenticate,
  repositoryScope,
} from './auth.js';
import type { AuthChallenge, CredentialsProvider, RegistryCredentials } from './auth.js';
import { DEFAULT_DOMAIN, validateDigest } from './reference.js';
import type { ImageReference } from './reference.js';
import { MANIFEST_ACCEPT, detectManifestType } from './media.js';
import type { ImageDescriptor } from './media.js';

export interface RegistryClientOptions {
  /** Credentials per registry domain; none means anonymous. */
  readonly credentials?: CredentialsProvider;
  /** Registry domains (`host[:port]`) reached over plain HTTP. Loopback always is. */
  readonly insecureRegistries?: readonly string[];
  readonly userAgent?: string;
  /** Retries of idempotent requests on 5xx and broken connections (default 3). */
  readonly retries?: number;
  /** First backoff delay, doubled on each retry (default 200 ms). */
  readonly retryDelayMs?: number;
  /** Idle socket timeout (default 60 s). */
  readonly timeoutMs?: number;
  /** Extra trusted CA certificates (PEM), added to the system's. */
  readonly ca?: readonly string[];
}

/** The registry's answer; `body` must be consumed or destroyed by the caller. */
export interface RegistryResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: IncomingMessage;
  readonly url: URL;
}

/** A registry error, with the registry's error codes when it sent any. */
export class RegistryError extends BerthError {
  readonly status: number;
  readonly codes: readonly string[];
  constructor(kind: ErrorKind, message: string, status: number, codes: readonly string[]) {
    super(kind, message);
    this.status = status;
    this.codes = codes;
  }
}

const CODE_KINDS: Record<string, ErrorKind> = {
  BLOB_UNKNOWN: ErrorKind.NotFound,
  BLOB_UPLOAD_UNKNOWN: ErrorKind.NotFound,
  MANIFEST_UNKNOWN: ErrorKind.NotFound,
  NAME_UNKNOWN: ErrorKind.NotFound,
  BLOB_UPLOAD_INVALID: ErrorKind.InvalidArgument,
  DIGEST_INVALID: ErrorKind.InvalidArgument,
  MANIFEST_BLOB_UNKNOWN: ErrorKind.InvalidArgument,
  MANIFEST_INVALID: ErrorKind.InvalidArgument,
  MANIFEST_UNVERIFIED: ErrorKind.InvalidArgument,
  NAME_INVALID: ErrorKind.InvalidArgument,
  SIZE_INVALID: ErrorKind.InvalidArgument,
  TAG_INVALID: ErrorKind.InvalidArgument,
  PAGINATION_NUMBER_INVALID: ErrorKind.InvalidArgument,
  RANGE_INVALID: ErrorKind.FailedPrecondition,
  UNAUTHORIZED: ErrorKind.PermissionDenied,
  DENIED: ErrorKind.PermissionDenied,
  UNSUPPORTED: ErrorKind.NotImplemented,
  TOOMANYREQUESTS: ErrorKind.ResourceExhausted,
  UNAVAILABLE: ErrorKind.Unavailable,
};

function statusKind(status: number): ErrorKind {
  if (status === 401 || status === 403) return ErrorKind.PermissionDenied;
  if (status === 404) return ErrorKind.NotFound;
  if (status === 405) return ErrorKind.NotImplemented;
  if (status === 409) return ErrorKind.Conflict;
  if (status === 412 || status === 416) return ErrorKind.FailedPrecondition;
  if (status === 429) return ErrorKind.ResourceExhausted;
  if (status >= 500) return ErrorKind.Unavailable;
  if (status >= 400) return ErrorKind.InvalidArgument;
  return ErrorKind.Internal;
}

/** Reads a (small) response body, refusing more than `limit` bytes. */
export async function readBody(res: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res) {
    const b = c as Buffer;
    n += b.length;
    if (n > limit) {
      res.destroy();
      throw invalid(`${what}: response larger than ${limit} bytes`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/**
 * Turns an unexpected response into a RegistryError: the registry's own
 * words (`manifest unknown: manifest unknown`) after the step's context.
 */
export async function responseError(res: RegistryResponse, context: string): Promise<RegistryError> {
  let text = '';
  const codes: string[] = [];
  try {
    const body = await readBody(res.body, 64 * 1024, context);
    const parsed: unknown = body.length > 0 ? JSON.parse(body.toString('utf8')) : undefined;
    const errors = typeof parsed === 'object' && parsed !== null ? (parsed as { errors?: unknown }).errors : undefined;
    if (Array.isArray(errors)) {
      const parts: string[] = [];
      for (const e of errors) {
        if (typeof e !== 'object' || e === null) continue;
        const { code, message } = e as { code?: unknown; message?: unknown };
        const c = typeof code === 'string' ? code : 'UNKNOWN';
        codes.push(c);
        const name = c.toLowerCase().replace(/_/g, ' ');
        parts.push(typeof message === 'string' && message !== '' ? `${name}: ${message}` : name);
      }
      text = parts.join('; ');
    } else if (body.length > 0 && !res.headers['content-type']?.includes('json')) {
      text = body.toString('utf8').trim().slice(0, 200);
    }
  } catch {
    // An unreadable body: the status says enough.
  }
  if (text === '') {
    // A HEAD, or a registry that sent no error body: say it in the registry's words.
    const plain: Record<number, string> = {
      401: 'unauthorized: authentication required',
      403: 'denied: requested access to the resource is denied',
      404: 'not found',
    };
    text = plain[res.status] ?? `HTTP ${res.status} ${http.STATUS_CODES[res.status] ?? ''}`.trim();
  }
  const first = codes[0];
  const kind = (first !== undefined ? CODE_KINDS[first] : undefined) ?? statusKind(res.status);
  return new RegistryError(kind, `${context}: ${text}`, res.status, codes);
}

const RETRYABLE_ERRNO = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'EAI_AGAIN']);

function isRetryableError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && RETRYABLE_ERRNO.has(code)) return true;
  const msg = (err as { message?: unknown }).message;
  return typeof msg === 'string' && /socket hang up|timed out|premature close|aborted/i.test(msg);
}

export { isRetryableError };

/** The host part of a `host[:port]` domain, without brackets for IPv6. */
function hostOf(domain: string): string {
  if (domain.startsWith('[')) {
    const end = domain.indexOf(']');
    return end === -1 ? domain : domain.slice(1, end);
  }
  const c = domain.lastIndexOf(':');
  return c === -1 ? domain : domain.slice(0, c);
}

/** True for localhost, 127.0.0.0/8 and ::1. */
export function isLoopback(domain: string): boolean {
  const h = hostOf(domain).toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1';
  return false;
}

const SYSTEM_CA_FILES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt'];
let systemCa: string | null | undefined;
function loadSystemCa(): string | null {
  if (systemCa !== undefined) return systemCa;
  systemCa = null;
  for (const f of SYSTEM_CA_FILES) {
    try {
      systemCa = readFileSync(f, 'utf8');
      break;
    } catch {
      // try the next one
    }
  }
  return systemCa;
}

export interface SendOptions {
  readonly method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /** A path under the registry (`/v2/…`) or an absolute URL (an upload Location). */
  readonly url: string | URL;
  readonly headers?: Readonly<Record<string, string>>;
  /** A body to send; a function is called again for each attempt. */
  readonly body?: Buffer | (() => Readable);
  /** Token scopes this request needs. */
  readonly scopes: readonly string[];
  /** Whether the request may be sent again after a failure (default: GET, HEAD). */
  readonly idempotent?: boolean;
}

const MAX_REDIRECTS = 5;

export class RegistryClient {
  readonly #opts: RegistryClientOptions;
  readonly #httpAgent: http.Agent;
  readonly #httpsAgent: https.Agent;
  readonly #challenges = new Map<string, Promise<AuthChallenge | null>>();
  readonly tokens = new TokenCache();

  constructor(opts: RegistryClientOptions = {}) {
    this.#opts = opts;
    this.#httpAgent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const ca: string[] = [];
    const sys = loadSystemCa();
    if (sys !== null) ca.push(sys);
    if (opts.ca !== undefined) ca.push(...opts.ca);
    this.#httpsAgent = new https.Agent({
      keepAlive: true,
      maxSockets: 32,
      ...(ca.length > 0 ? { ca } : {}),
    });
  }

  /** Closes idle connections; the client must not be used afterwards. */
  close(): void {
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }

  /** `http://127.0.0.1:5000` or `https://registry-1.docker.io`. */
  endpoint(domain: string): URL {
    const host = domain === DEFAULT_DOMAIN ? 'registry-1.docker.io' : domain;
    const plain = isLoopback(domain) || (this.#opts.insecureRegistries ?? []).includes(domain);
    return new URL(`${plain ? 'http' : 'https'}://${host}`);
  }

  /** A repository of a registry, for pulling (`pull`) or pushing (`pull,push`). */
  repository(ref: ImageReference | { domain: string; path: string }, push = false): Repository {
    return new Repository(this, ref.domain, ref.path, push ? ['pull', 'push'] : ['pull']);
  }

  async #credentials(domain: string): Promise<RegistryCredentials | undefined> {
    return this.#opts.credentials === undefined ? undefined : await this.#opts.credentials(domain);
  }

  /** The registry's challenge from `GET /v2/`, learned once: null when open. */
  challenge(domain: string): Promise<AuthChallenge | null> {
    let p = this.#challenges.get(domain);
    if (p === undefined) {
      p = this.#ping(domain);
      this.#challenges.set(domain, p);
      p.catch(() => this.#challenges.delete(domain));
    }
    return p;
  }

  async #ping(domain: string): Promise<AuthChallenge | null> {
    const url = new URL('/v2/', this.endpoint(domain));
    const res = await this.#sendWithRetries(domain, url, { method: 'GET', url, scopes: [] }, {});
    if (res.status === 200) {
      res.body.resume();
      return null;
    }
    if (res.status === 401) {
      res.body.resume();
      return pickChallenge(res.headers['www-authenticate']) ?? null;
    }
    throw await responseError(res, `registry ${domain} (GET ${url.href})`);
  }

  async #authorization(domain: string, challenge: AuthChallenge | null, scopes: readonly string[]): Promise<string | undefined> {
    if (challenge === null) return undefined;
    const creds = await this.#credentials(domain);
    if (challenge.scheme === 'basic') return creds === undefined ? undefined : basicAuthorization(creds);
    if (challenge.scheme === 'bearer') {
      const token = await this.tokens.get(domain, challenge, scopes, creds, (u, h) => this.#fetchToken(domain, u, h));
      return `Bearer ${token}`;
    }
    return undefined;
  }

  async #fetchToken(domain: string, url: URL, headers: Record<string, string>): Promise<{ status: number; body: Buffer }> {
    const res = await this.#sendWithRetries(domain, url, { method: 'GET', url, scopes: [] }, headers);
    const body = await readBody(res.body, 1024 * 1024, `token from ${url.origin}`);
    return { status: res.status, body };
  }

  /**
   * Sends a request with authentication: the first 401 refreshes the
   * challenge (and the token's scopes) and sends it once more.
   * Non-2xx statuses are returned, not thrown: the caller knows which are fine.
   */
  async send(domain: string, opts: SendOptions): Promise<RegistryResponse> {
    let challenge = await this.challenge(domain);
    let scopes = mergeScopes(opts.scopes);
    const base = this.endpoint(domain);
    for (let reauth = 0; ; reauth++) {
      const headers: Record<string, string> = { ...(opts.headers ?? {}) };
      const authz = await this.#authorization(domain, challenge, scopes);
      if (authz !== undefined) headers['authorization'] = authz;
      const url = typeof opts.url === 'string' ? new URL(opts.url, base) : opts.url;
      const res = await this.#sendWithRetries(domain, url, opts, headers);
      if (res.status !== 401 || reauth > 0) return res;
      const fresh = pickChallenge(res.headers['www-authenticate']);
      if (fresh === undefined) return res;
      if (fresh.scheme === 'basic' && (await this.#credentials(domain)) === undefined) return res;
      res.body.resume();
      if (fresh.scheme === 'bearer') {
        const extra = fresh.params['scope'];
        if (extra !== undefined) scopes = mergeScopes([...scopes, extra]);
        this.tokens.invalidate(domain);
      }
      challenge = fresh;
      this.#challenges.set(domain, Promise.resolve(fresh));
    }
  }

  async #sendWithRetries(
    domain: string,
    first: URL,
    opts: SendOptions,
    headers: Record<string, string>,
  ): Promise<RegistryResponse> {
    const idempotent = opts.idempotent ?? (opts.method === 'GET' || opts.method === 'HEAD');
    const retries = idempotent ? (this.#opts.retries ?? 3) : 0;
    const delay = this.#opts.retryDelayMs ?? 200;
    for (let attempt = 0; ; attempt++) {
      let res: RegistryResponse;
      try {
        res = await this.#sendFollowing(first, opts, headers);
      } catch (err) {
        if (attempt < retries && isRetryableError(err)) {
          await sleep(delay * 2 ** attempt);
          continue;
        }
        throw new BerthError(
          ErrorKind.Unavailable,
          `registry ${domain}: ${opts.method} ${first.href}: ${(err as Error).message}`,
          { cause: err },
        );
      }
      if (attempt < retries && (res.status >= 500 || res.status === 429)) {
        res.body.resume();
        const after = Number(res.headers['retry-after']);
        await sleep(Number.isFinite(after) && after > 0 ? Math.min(after * 1000, 10_000) : delay * 2 ** attempt);
        continue;
      }
      return res;
    }
  }

  async #sendFollowing(first: URL, opts: SendOptions, headers: Record<string, string>): Promise<RegistryResponse> {
    let url = first;
    let hdrs = headers;
    for (let i = 0; ; i++) {
      const res = await this.#sendOnce(url, opts.method, hdrs, opts.body);
      const loc = res.headers.location;
      const redirect = res.statusCode === 301 || res.statusCode === 302 || res.statusCode === 303 ||
        res.statusCode === 307 || res.statusCode === 308;
      if (!redirect || loc === undefined || (opts.method !== 'GET' && opts.method !== 'HEAD') || i >= MAX_REDIRECTS) {
        return { status: res.statusCode ?? 0, headers: res.headers, body: res, url };
      }
      res.resume();
      const next = new URL(loc, url);
      if (next.origin !== url.origin) {
        // Credentials are for the registry, never for where it sends us.
        const { authorization: _dropped, ...rest } = hdrs;
        hdrs = rest;
      }
      url = next;
    }
  }

  #sendOnce(url: URL, method: string, headers: Record<string, string>, body: SendOptions['body']): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const mod = url.protocol === 'https:' ? https : http;
      const agent = url.protocol === 'https:' ? this.#httpsAgent : this.#httpAgent;
      const h: Record<string, string> = { 'user-agent': this.#opts.userAgent ?? 'berth', ...headers };
      if (Buffer.isBuffer(body)) h['content-length'] = String(body.length);
      else if (body === undefined && (method === 'PUT' || method === 'POST' || method === 'PATCH')) h['content-length'] = '0';
      const req = mod.request(url, { method, headers: h, agent });
      req.setTimeout(this.#opts.timeoutMs ?? 60_000, () => {
        req.destroy(Object.assign(new Error(`${method} ${url.href} timed out`), { code: 'ETIMEDOUT' }));
      });
      req.once('error', reject);
      req.once('response', (res) => {
        req.off('error', reject);
        // Errors after this point surface on the response stream.
        req.on('error', (err) => res.destroy(err));
        resolve(res);
      });
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        const src = body();
        src.once('error', (err) => req.destroy(err));
        src.pipe(req);
      }
    });
  }
}

/** The challenge to answer: bearer if offered, else basic. */
function pickChallenge(header: string | undefined): AuthChallenge | undefined {
  if (header === undefined) return undefined;
  const all = parseWwwAuthenticate(header);
  return all.find((c) => c.scheme === 'bearer') ?? all.find((c) => c.scheme === 'basic');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The outcome of starting an upload: mounted from another repository, or a session. */
export type UploadStart = { readonly mounted: true } | { readonly mounted: false; readonly location: URL };

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** One repository of one registry: the endpoints of the distribution spec. */
export class Repository {
  readonly client: RegistryClient;
  readonly domain: string;
  readonly path: string;
  readonly #scopes: readonly string[];

  constructor(client: RegistryClient, domain: string, path: string, actions: readonly string[]) {
    this.client = client;
    this.domain = domain;
    this.path = path;
    this.#scopes = [repositoryScope(path, actions)];
  }

  get name(): string {
    return `${this.domain}/${this.path}`;
  }

  #url(kind: 'manifests' | 'blobs', ref: string): string {
    return `/v2/${this.path}/${kind}/${encodeURIComponent(ref).replace(/%3A/g, ':')}`;
  }

  /** HEAD a manifest by tag or digest: its descriptor, or undefined if absent. */
  async headManifest(reference: string): Promise<ImageDescriptor | undefined> {
    const res = await this.client.send(this.domain, {
      method: 'HEAD',
      url: this.#url('manifests', reference),
      headers: { accept: MANIFEST_ACCEPT },
      scopes: this.#scopes,
    });
    res.body.resume();
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw await responseError(res, `manifest ${this.name}:${reference}`);
    const digest = header(res.headers, 'docker-content-digest');
    const mediaType = header(res.headers, 'content-type');
    const size = Number(header(res.headers, 'content-length'));
    if (digest === undefined || mediaType === undefined || !Number.isSafeInteger(size)) return undefined;
    validateDigest(digest);
    return { mediaType: mediaType.split(';')[0]?.trim() ?? mediaType, digest, size };
  }

  /** GET a manifest or index by tag or digest: its bytes, media type and announced digest. */
  async getManifest(reference: string): Promise<{ bytes: Buffer; mediaType: string; digest: string | undefined }> {
    const res = await this.client.send(this.domain, {
      method: 'GET',
      url: this.#url('manifests', reference),
      headers: { accept: MANIFEST_ACCEPT },
      scopes: this.#scopes,
    });
    if (res.status !== 200) throw await responseError(res, `manifest for ${this.name}:${reference}`);
    const bytes = await readBody(res.body, MAX_MANIFEST_BYTES, `manifest ${this.name}:${reference}`);
    const ct = header(res.headers, 'content-type')?.split(';')[0]?.trim();
    const mediaType = detectManifestType(bytes, ct);
    return { bytes, mediaType, digest: header(res.headers, 'docker-content-digest') };
  }

  /** PUT a manifest under a tag or its digest; returns the digest the registry computed. */
  async putManifest(reference: string, mediaType: string, bytes: Buffer): Promise<string> {
    const res = await this.client.send(this.domain, {
      method: 'PUT',
      url: this.#url('manifests', reference),
      headers: { 'content-type': mediaType },
      body: bytes,
      scopes: this.#scopes,
      idempotent: true,
    });
    if (res.status !== 201 && res.status !== 200 && res.status !== 202) {
      throw await responseError(res, `put manifest ${this.name}:${reference}`);
    }
    res.body.resume();
    return header(res.headers, 'docker-content-digest') ?? `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  }

  /** HEAD a blob: its size, or undefined if the repository does not have it. */
  async headBlob(digest: string): Promise<number | undefined> {
    const res = await this.client.send(this.domain, { method: 'HEAD', url: this.#url('blobs', digest), scopes: this.#scopes });
    res.body.resume();
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw await responseError(res, `blob ${this.name}@${digest}`);
    const size = Number(header(res.headers, 'content-length'));
    return Number.isSafeInteger(size) ? size : 0;
  }

  /**
   * GET a blob from `offset` (a Range request when not 0). `start` is where
   * the body begins: 0 when the registry ignored the range.
   */
  async getBlob(digest: string, offset = 0): Promise<{ body: IncomingMessage; start: number; status: number }> {
    const headers: Record<string, string> = {};
    if (offset > 0) headers['range'] = `bytes=${offset}-`;
    const res = await this.client.send(this.domain, { method: 'GET', url: this.#url('blobs', digest), headers, scopes: this.#scopes });
    if (res.status === 200) return { body: res.body, start: 0, status: 200 };
    if (res.status === 206 && offset > 0) {
      const m = /^bytes (\d+)-/.exec(header(res.headers, 'content-range') ?? '');
      const start = m?.[1] !== undefined ? Number(m[1]) : offset;
      if (start !== offset) {
        res.body.destroy();
        throw new BerthError(ErrorKind.Unavailable, `blob ${this.name}@${digest}: asked for bytes from ${offset}, got from ${start}`);
      }
      return { body: res.body, start, status: 206 };
    }
    throw await responseError(res, `blob ${this.name}@${digest}`);
  }

  /**
   * Starts an upload (POST …/blobs/uploads/). With `mount`, first asks the
   * registry to mount the blob from another repository of the same registry.
   */
  async startUpload(mount?: { digest: string; from: string }): Promise<UploadStart> {
    let url = `/v2/${this.path}/blobs/uploads/`;
    let scopes = this.#scopes;
    if (mount !== undefined) {
      url += `?mount=${encodeURIComponent(mount.digest)}&from=${encodeURIComponent(mount.from)}`;
      scopes = [...scopes, repositoryScope(mount.from, ['pull'])];
    }
    const res = await this.client.send(this.domain, { method: 'POST', url, scopes });
    if (res.status === 201 && mount !== undefined) {
      res.body.resume();
      return { mounted: true };
    }
    if (res.status !== 202) throw await responseError(res, `start upload to ${this.name}`);
    res.body.resume();
    return { mounted: false, location: this.#location(res) };
  }

  /** PATCH one chunk at `offset`; returns the location for the next request. */
  async uploadChunk(location: URL, chunk: Buffer, offset: number): Promise<URL> {
    const res = await this.client.send(this.domain, {
      method: 'PATCH',
      url: location,
      headers: {
        'content-type': 'application/octet-stream',
        'content-range': `${offset}-${offset + chunk.length - 1}`,
      },
      body: chunk,
      scopes: this.#scopes,
    });
    if (res.status !== 202) throw await responseError(res, `upload chunk at ${offset} to ${this.name}`);
    res.body.resume();
    const range = header(res.headers, 'range');
    const m = range === undefined ? null : /^(?:bytes=)?0-(\d+)$/.exec(range);
    if (m?.[1] !== undefined && Number(m[1]) !== offset + chunk.length - 1) {
      throw new BerthError(
        ErrorKind.Internal,
        `upload to ${this.name}: registry has bytes 0-${m[1]} after the chunk ending at ${offset + chunk.length - 1}`,
      );
    }
    return this.#location(res);
  }

  /** PUT …?digest= to finish an upload, with the last (or only) bytes if any. */
  async completeUpload(location: URL, digest: string, body?: Buffer | (() => Readable), size?: number): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', digest);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (typeof body === 'function' && size !== undefined) headers['content-length'] = String(size);
    const res = await this.client.send(this.domain, {
      method: 'PUT',
      url,
      headers,
      ...(body !== undefined ? { body } : {}),
      scopes: this.#scopes,
    });
    if (res.status !== 201) throw await responseError(res, `complete upload of ${digest} to ${this.name}`);
    res.body.resume();
  }

  /** DELETE an upload session (best effort). */
  async cancelUpload(location: URL): Promise<void> {
    try {
      const res = await this.client.send(this.domain, { method: 'DELETE', url: location, scopes: this.#scopes });
      res.body.resume();
    } catch {
      // nothing to do: the registry expires abandoned uploads
    }
  }

  #location(res: RegistryResponse): URL {
    const loc = header(res.headers, 'location');
    if (loc === undefined) throw new BerthError(ErrorKind.Internal, `upload to ${this.name}: registry sent no Location`);
    return new URL(loc, res.url);
  }
}

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}
