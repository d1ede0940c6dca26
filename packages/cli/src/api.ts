/**
 * A small Docker Engine API client over node:http: a UNIX socket or TCP (optionally
 * TLS), API version negotiation through `/_ping`, JSON calls, raw and JSON-lines
 * streaming responses, and connection hijacking for attach and exec (`Upgrade: tcp`,
 * 101 Switching Protocols). Errors carry the HTTP status and the daemon's message.
 */
import http from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import type { Duplex, Readable } from 'node:stream';
import { BerthError, ErrorKind, compareVersions } from '@berth/base';

export const MAX_API_VERSION = '1.50';
export const MIN_API_VERSION = '1.24';
export const DEFAULT_HOST = 'unix:///run/berth/berth.sock';

export interface TlsFiles {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  /** Verify the daemon's certificate against `ca`. */
  readonly verify: boolean;
}

export type Host =
  | { readonly proto: 'unix'; readonly path: string; readonly url: string }
  | { readonly proto: 'tcp'; readonly host: string; readonly port: number; readonly url: string; readonly tls?: TlsFiles };

/** Parses `unix:///path`, `tcp://host:port`, `host:port` or a bare socket path. */
export function parseHost(value: string, tls?: TlsFiles): Host {
  if (value.startsWith('unix://')) {
    const path = value.slice('unix://'.length);
    if (path === '') throw new BerthError(ErrorKind.InvalidArgument, `invalid bind address (${value}): empty socket path`);
    return { proto: 'unix', path, url: value };
  }
  if (value.startsWith('/')) return { proto: 'unix', path: value, url: `unix://${value}` };
  let rest = value;
  if (value.startsWith('tcp://')) rest = value.slice('tcp://'.length);
  else if (value.startsWith('http://') || value.startsWith('https://')) rest = value.replace(/^https?:\/\//, '');
  else if (/^[a-z]+:\/\//.test(value)) throw new BerthError(ErrorKind.InvalidArgument, `Invalid bind address format: ${value}`);
  rest = rest.replace(/\/+$/, '');
  const m = /^(\[[^\]]+\]|[^:]*)(?::(\d+))?$/.exec(rest);
  if (m === null) throw new BerthError(ErrorKind.InvalidArgument, `Invalid bind address format: ${value}`);
  const host = (m[1] ?? '').replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = m[2] !== undefined ? Number(m[2]) : tls !== undefined ? 2376 : 2375;
  const base = { proto: 'tcp' as const, host, port, url: `tcp://${m[1] || '127.0.0.1'}:${port}` };
  return tls !== undefined ? { ...base, tls } : base;
}

/** An error answer from the daemon. */
export class ApiError extends BerthError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(kindOfStatus(status), message);
  }
}

/** The daemon could not be reached. */
export class ConnectError extends BerthError {
  constructor(message: string, cause: unknown) {
    super(ErrorKind.Unavailable, message, { cause });
  }
}

function kindOfStatus(status: number): ErrorKind {
  switch (status) {
    case 400:
      return ErrorKind.InvalidArgument;
    case 401:
    case 403:
      return ErrorKind.PermissionDenied;
    case 404:
      return ErrorKind.NotFound;
    case 409:
      return ErrorKind.Conflict;
    case 501:
      return ErrorKind.NotImplemented;
    case 503:
      return ErrorKind.Unavailable;
    default:
      return ErrorKind.Internal;
  }
}

export type QueryValue = string | number | boolean | undefined | readonly string[];
export type Query = Readonly<Record<string, QueryValue>>;

export interface RequestOptions {
  readonly query?: Query;
  /** A JSON body (serialised), raw bytes, or a stream. */
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  /** Called when the request is made, to abort it later. */
  readonly signal?: AbortSignal;
}

/** `{"key":{"value":true}}`, the filters encoding the docker CLI sends. */
export function encodeFilters(filters: ReadonlyMap<string, readonly string[]> | Readonly<Record<string, readonly string[]>>): string | undefined {
  const entries = filters instanceof Map ? [...filters.entries()] : Object.entries(filters);
  if (entries.length === 0) return undefined;
  const out: Record<string, Record<string, boolean>> = {};
  for (const [k, vs] of entries) {
    const m: Record<string, boolean> = {};
    for (const v of vs as readonly string[]) m[v] = true;
    out[k] = m;
  }
  return JSON.stringify(out);
}

function queryString(q: Query | undefined): string {
  if (q === undefined) return '';
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v as readonly string[]) p.append(k, x);
    else if (typeof v === 'boolean') p.append(k, v ? '1' : '0');
    else p.append(k, String(v));
  }
  const s = p.toString();
  return s === '' ? '' : `?${s}`;
}

function isReadable(v: unknown): v is Readable {
  return typeof v === 'object' && v !== null && typeof (v as Readable).pipe === 'function' && typeof (v as Readable).on === 'function';
}

async function readAll(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function errorMessage(status: number, body: Buffer, headers: IncomingHttpHeaders): string {
  const text = body.toString('utf8').trim();
  if ((headers['content-type'] ?? '').includes('json') || text.startsWith('{')) {
    try {
      const j = JSON.parse(text) as { message?: unknown };
      if (typeof j.message === 'string') return j.message;
    } catch {
      // fall through to the raw text
    }
  }
  return text !== '' ? text : `${status} ${http.STATUS_CODES[status] ?? ''}`.trim();
}

export interface Hijacked {
  /** The raw connection: read the container's output, write its input. */
  readonly socket: Duplex;
  /** False when the daemon answered 200 without upgrading (output only). */
  readonly upgraded: boolean;
  readonly headers: IncomingHttpHeaders;
}

export class Client {
  /** The API version used in paths, set by negotiate(). */
  version: string = MAX_API_VERSION;
  /** What the daemon said in /_ping. */
  serverVersion: string | undefined;
  osType: string | undefined;

  constructor(readonly host: Host) {}

  private cannotConnect(err: unknown): ConnectError {
    return new ConnectError(`Cannot connect to the Berth daemon at ${this.host.url}. Is the berth daemon running?`, err);
  }

  private raw(method: string, path: string, opts: RequestOptions, upgrade: boolean): http.ClientRequest {
    const headers: Record<string, string> = { 'User-Agent': 'berth/0.1.0', ...(opts.headers ?? {}) };
    let payload: Buffer | Readable | undefined;
    if (opts.body !== undefined) {
      if (Buffer.isBuffer(opts.body)) payload = opts.body;
      else if (isReadable(opts.body)) payload = opts.body;
      else {
        payload = Buffer.from(JSON.stringify(opts.body));
        headers['Content-Type'] ??= 'application/json';
      }
      if (Buffer.isBuffer(payload)) headers['Content-Length'] = String(payload.length);
    }
    if (upgrade) {
      headers.Connection = 'Upgrade';
      headers.Upgrade = 'tcp';
    }
    const fullPath = `${path.startsWith('/_ping') ? '' : `/v${this.version}`}${path}${queryString(opts.query)}`;
    const common = { method, path: fullPath, headers, agent: false as const, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) };
    let req: http.ClientRequest;
    const h = this.host;
    if (h.proto === 'unix') req = http.request({ ...common, socketPath: h.path });
    else if (h.tls !== undefined) {
      // TLS is loaded only for TLS hosts: it is a noticeable part of berth's start-up
      const https = createRequire(import.meta.url)('node:https') as typeof import('node:https');
      req = https.request({
        ...common,
        host: h.host,
        port: h.port,
        ...(h.tls.ca !== undefined ? { ca: h.tls.ca } : {}),
        ...(h.tls.cert !== undefined ? { cert: h.tls.cert } : {}),
        ...(h.tls.key !== undefined ? { key: h.tls.key } : {}),
        rejectUnauthorized: h.tls.verify,
      });
    } else req = http.request({ ...common, host: h.host, port: h.port });
    if (payload === undefined) req.end();
    else if (Buffer.isBuffer(payload)) req.end(payload);
    else {
      payload.on('error', (err) => req.destroy(err));
      payload.pipe(req);
    }
    return req;
  }

  /** A request whose response status is below 400; the body is left to the caller. */
  request(method: string, path: string, opts: RequestOptions = {}): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = this.raw(method, path, opts, false);
      req.on('error', (err) => {
        const code = (err as { code?: unknown }).code;
        reject(code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES' ? this.cannotConnect(err) : err);
      });
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        if (status < 400) {
          resolve(res);
          return;
        }
        readAll(res).then(
          (body) => reject(new ApiError(status, errorMessage(status, body, res.headers))),
          reject,
        );
      });
    });
  }

  /** A request answered with JSON (or nothing): the parsed body. */
  async json<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.request(method, path, opts);
    const body = await readAll(res);
    if (body.length === 0) return undefined as T;
    return JSON.parse(body.toString('utf8')) as T;
  }

  /** A request whose body is discarded. */
  async call(method: string, path: string, opts: RequestOptions = {}): Promise<void> {
    const res = await this.request(method, path, opts);
    await readAll(res);
  }

  /** Negotiates the API version: min(daemon's, 1.50). */
  async negotiate(): Promise<void> {
    const res = await this.request('GET', '/_ping');
    await readAll(res);
    const v = res.headers['api-version'];
    this.serverVersion = typeof v === 'string' ? v : undefined;
    const os = res.headers['ostype'];
    this.osType = typeof os === 'string' ? os : undefined;
    const server = this.serverVersion ?? MIN_API_VERSION;
    this.version = compareVersions(server, MAX_API_VERSION) < 0 ? server : MAX_API_VERSION;
  }

  /** Opens a hijacked connection (attach, exec start). */
  hijack(method: string, path: string, opts: RequestOptions = {}): Promise<Hijacked> {
    return new Promise((resolve, reject) => {
      const req = this.raw(method, path, opts, true);
      req.on('error', (err) => {
        const code = (err as { code?: unknown }).code;
        reject(code === 'ECONNREFUSED' || code === 'ENOENT' ? this.cannotConnect(err) : err);
      });
      req.on('upgrade', (res, socket, head) => {
        if (head.length > 0) socket.unshift(head);
        resolve({ socket, upgraded: true, headers: res.headers });
      });
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 400) {
          readAll(res).then((body) => reject(new ApiError(status, errorMessage(status, body, res.headers))), reject);
          return;
        }
        resolve({ socket: res as unknown as Duplex, upgraded: false, headers: res.headers });
      });
    });
  }
}

/** Iterates the JSON values of a newline-delimited JSON stream. */
export async function* jsonLines<T>(source: AsyncIterable<Uint8Array | string>): AsyncGenerator<T, void, undefined> {
  let pending = '';
  const decoder = new TextDecoder();
  for await (const chunk of source) {
    pending += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line !== '') yield JSON.parse(line) as T;
    }
  }
  const last = pending.trim();
  if (last !== '') yield JSON.parse(last) as T;
}

export { readAll };
