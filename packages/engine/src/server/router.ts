/**
 * The API's routing: Docker's paths with `{name}` parameters, reached with or
 * without a `/v1.NN` prefix (1.24 to 1.50), a context per request with typed
 * access to the query, the JSON body and a hijack of the connection for
 * attach and exec.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { compareVersions, invalid, notFound } from '@berth/base';

export const API_VERSION = '1.50';
export const MIN_API_VERSION = '1.24';

export interface Hijacked {
  /** The raw connection: the client's bytes in, ours out. */
  readonly stream: Duplex;
  /** Bytes the client sent after the request head. */
  readonly head: Buffer;
  /** Whether the client asked for the upgrade (then the 101 answer was sent). */
  readonly upgraded: boolean;
}

export class Ctx {
  readonly params: Record<string, string> = {};
  private bodyCache: unknown;
  private bodyRead = false;

  constructor(
    readonly req: IncomingMessage,
    /** Undefined on an upgrade request, whose answer is written on the socket. */
    readonly res: ServerResponse | undefined,
    readonly path: string,
    readonly query: URLSearchParams,
    readonly apiVersion: string,
    private upgrade: { socket: Duplex; head: Buffer } | undefined,
  ) {}

  /** The API version is at least v. */
  atLeast(v: string): boolean {
    return compareVersions(this.apiVersion, v) >= 0;
  }

  /** A query value; Docker's boolean rules for flags ("1", "true", "True" are true; "0", "false", "" false). */
  bool(name: string, dflt = false): boolean {
    const v = this.query.get(name);
    if (v === null) return dflt;
    const l = v.toLowerCase();
    if (l === '' || l === '0' || l === 'false' || l === 'no') return false;
    return true;
  }

  str(name: string): string | undefined {
    const v = this.query.get(name);
    return v === null ? undefined : v;
  }

  int(name: string, dflt?: number): number | undefined {
    const v = this.query.get(name);
    if (v === null || v === '') return dflt;
    if (!/^-?\d+$/.test(v)) throw invalid(`invalid value for ${name}: ${JSON.stringify(v)}: not an integer`);
    return Number(v);
  }

  /** Docker's `filters` query parameter: {"key": ["v"]} or the old {"key": {"v": true}}. */
  filters(): Map<string, string[]> {
    const raw = this.query.get('filters');
    const out = new Map<string, string[]>();
    if (raw === null || raw === '') return out;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (e) {
      throw invalid(`invalid filter: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid('invalid filter: not a JSON object');
    for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
      if (Array.isArray(v)) out.set(k, v.map(String));
      else if (typeof v === 'object' && v !== null) out.set(k, Object.entries(v).filter(([, b]) => b === true).map(([s]) => s));
      else throw invalid(`invalid filter: ${k} must be a list`);
    }
    return out;
  }

  /** The raw body. */
  async raw(limit = 64 << 20): Promise<Buffer> {
    if (this.upgrade !== undefined) return this.upgradeBody(limit);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of this.req) {
      const b = c as Buffer;
      size += b.length;
      if (size > limit) throw invalid(`request body larger than ${limit} bytes`);
      chunks.push(b);
    }
    return Buffer.concat(chunks);
  }

  /**
   * On an upgrade request the HTTP parser stops at the head: the body (its
   * Content-Length) is the first bytes of the connection, the raw stream the rest.
   */
  private async upgradeBody(limit: number): Promise<Buffer> {
    const up = this.upgrade;
    if (up === undefined) return Buffer.alloc(0);
    const len = Number(this.req.headers['content-length'] ?? '0');
    if (!Number.isInteger(len) || len <= 0) return Buffer.alloc(0);
    if (len > limit) throw invalid(`request body larger than ${limit} bytes`);
    let buf = up.head;
    while (buf.length < len) {
      const chunk = await new Promise<Buffer | undefined>((resolve) => {
        const onData = (c: Buffer): void => { cleanup(); up.socket.pause(); resolve(c); };
        const onEnd = (): void => { cleanup(); resolve(undefined); };
        const cleanup = (): void => { up.socket.off('data', onData); up.socket.off('end', onEnd); up.socket.off('close', onEnd); };
        up.socket.on('data', onData);
        up.socket.once('end', onEnd);
        up.socket.once('close', onEnd);
        up.socket.resume();
      });
      if (chunk === undefined) throw invalid('the request body ended early');
      buf = Buffer.concat([buf, chunk]);
    }
    this.upgrade = { socket: up.socket, head: buf.subarray(len) };
    return buf.subarray(0, len);
  }

  /** The JSON body (undefined when empty); 400 when malformed. */
  async json(): Promise<unknown> {
    if (this.bodyRead) return this.bodyCache;
    this.bodyRead = true;
    const buf = await this.raw();
    if (buf.length === 0 || buf.toString().trim() === '') return (this.bodyCache = undefined);
    try {
      this.bodyCache = JSON.parse(buf.toString('utf8'));
    } catch (e) {
      throw invalid(`invalid JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
    return this.bodyCache;
  }

  /** A JSON object body ({} when empty); 400 for anything else. */
  async object(): Promise<Record<string, unknown>> {
    const v = await this.json();
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) throw invalid('invalid JSON: the body must be a JSON object');
    return v as Record<string, unknown>;
  }

  private answered = false;

  get responded(): boolean {
    return this.answered || (this.res?.headersSent ?? false);
  }

  send(status: number, body?: unknown, headers: Record<string, string> = {}): void {
    this.answered = true;
    const res = this.mustRes();
    if (body === undefined) {
      res.writeHead(status, headers);
      res.end();
      return;
    }
    const text = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body) + '\n';
    const type = typeof body === 'string' ? 'text/plain; charset=utf-8' : Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json';
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': String(Buffer.byteLength(text)), ...headers });
    res.end(text);
  }

  /** Start a streamed answer (chunked). */
  stream(status: number, contentType: string, headers: Record<string, string> = {}): ServerResponse {
    this.answered = true;
    const res = this.mustRes();
    res.writeHead(status, { 'Content-Type': contentType, ...headers });
    res.flushHeaders();
    return res;
  }

  /**
   * Take the connection over for a raw stream (attach, exec start). With the
   * `Upgrade: tcp` the docker CLI sends, answers 101; otherwise 200 and the
   * socket carries the raw stream from then on.
   */
  hijack(contentType = 'application/vnd.docker.raw-stream'): Hijacked {
    this.answered = true;
    if (this.upgrade !== undefined) {
      const { socket, head } = this.upgrade;
      socket.write(`HTTP/1.1 101 UPGRADED\r\nContent-Type: ${contentType}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`);
      return { stream: socket, head, upgraded: true };
    }
    const res = this.mustRes();
    const socket = res.socket;
    if (socket === null) throw invalid('connection already closed');
    // Take the socket from the HTTP machinery: no more parsing, no chunked framing.
    res.detachSocket(socket);
    socket.removeAllListeners('data');
    socket.removeAllListeners('timeout');
    socket.setTimeout(0);
    socket.write(`HTTP/1.1 200 OK\r\nContent-Type: ${contentType}\r\n\r\n`);
    socket.resume();
    return { stream: socket, head: Buffer.alloc(0), upgraded: false };
  }

  private mustRes(): ServerResponse {
    if (this.res === undefined) throw invalid('this endpoint does not upgrade the connection');
    return this.res;
  }
}

export type Handler = (ctx: Ctx) => Promise<void> | void;

interface Route {
  readonly method: string;
  readonly parts: readonly string[];
  readonly handler: Handler;
  /** A trailing `{name*}` parameter takes the rest of the path (image names have slashes). */
  readonly rest: boolean;
}

export class Router {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler): this {
    const parts = pattern.split('/').filter((p) => p !== '');
    const last = parts[parts.length - 1] ?? '';
    this.routes.push({ method, parts, handler, rest: last.endsWith('*}') });
    return this;
  }

  get(p: string, h: Handler): this { return this.add('GET', p, h); }
  post(p: string, h: Handler): this { return this.add('POST', p, h); }
  put(p: string, h: Handler): this { return this.add('PUT', p, h); }
  head(p: string, h: Handler): this { return this.add('HEAD', p, h); }
  delete(p: string, h: Handler): this { return this.add('DELETE', p, h); }

  /** The handler and its parameters, or a 404/405-style error. */
  match(method: string, path: string): { handler: Handler; params: Record<string, string> } {
    const segs = path.split('/').filter((p) => p !== '').map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
    let pathMatched = false;
    for (const r of this.routes) {
      const params = matchParts(r, segs);
      if (params === undefined) continue;
      pathMatched = true;
      if (r.method === method) return { handler: r.handler, params };
    }
    // Image references contain slashes: try the routes whose name parameter may span segments.
    for (const r of this.routes) {
      if (r.method !== method) continue;
      const params = matchSpanning(r, segs);
      if (params !== undefined) return { handler: r.handler, params };
    }
    if (pathMatched) throw notFound(`page not found`);
    throw notFound('page not found');
  }
}

function matchParts(r: Route, segs: readonly string[]): Record<string, string> | undefined {
  if (r.rest ? segs.length < r.parts.length : segs.length !== r.parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < r.parts.length; i++) {
    const p = r.parts[i] ?? '';
    const s = segs[i] ?? '';
    if (p.startsWith('{')) {
      if (p.endsWith('*}')) {
        params[p.slice(1, -2)] = segs.slice(i).join('/');
        return params;
      }
      params[p.slice(1, -1)] = s;
    } else if (p !== s) {
      return undefined;
    }
  }
  return params;
}

/** `/images/{name}/json` with a name of several segments (`127.0.0.1:5000/a/b:tag`). */
function matchSpanning(r: Route, segs: readonly string[]): Record<string, string> | undefined {
  const idx = r.parts.findIndex((p) => p === '{name}');
  if (idx < 0) return undefined;
  const before = r.parts.slice(0, idx);
  const after = r.parts.slice(idx + 1);
  if (segs.length <= r.parts.length) return undefined;
  for (let i = 0; i < before.length; i++) if (before[i] !== segs[i]) return undefined;
  for (let i = 0; i < after.length; i++) {
    if (after[after.length - 1 - i] !== segs[segs.length - 1 - i]) return undefined;
  }
  return { name: segs.slice(idx, segs.length - after.length).join('/') };
}
