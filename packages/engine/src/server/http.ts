/**
 * The API server: HTTP/1.1 on a UNIX socket (root only, group `berth` if it
 * exists) and, when asked, on TCP with TLS and client certificates. Versioned
 * paths as dockerd's, Docker's error bodies, hijacked connections for attach.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import { BerthError, compareVersions, invalid } from '@berth/base';
import type { Logger } from '@berth/base';
import { messageOf, statusOf } from './errors.js';
import { API_VERSION, Ctx, MIN_API_VERSION } from './router.js';
import type { Router } from './router.js';

export interface TlsOptions {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** Require and check client certificates against the CA. */
  readonly verify: boolean;
}

export interface Listener {
  /** `unix:///path` or `tcp://host:port`. */
  readonly address: string;
}

export const SERVER_HEADERS = (): Record<string, string> => ({
  'Api-Version': API_VERSION,
  'Docker-Experimental': 'false',
  'Ostype': 'linux',
  'Server': `Docker/28.2.2 (linux)`,
});

const VERSIONED = /^\/v(\d+\.\d+)(\/.*)$/;

function splitVersion(pathname: string): { version: string; path: string } {
  const m = VERSIONED.exec(pathname);
  if (m === null) return { version: API_VERSION, path: pathname };
  const version = m[1] ?? API_VERSION;
  if (compareVersions(version, MIN_API_VERSION) < 0) {
    throw invalid(`client version ${version} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`);
  }
  if (compareVersions(version, API_VERSION) > 0) {
    throw invalid(`client version ${version} is too new. Maximum supported API version is ${API_VERSION}`);
  }
  return { version, path: m[2] ?? '/' };
}

/** Group id of `berth`, if the group exists. */
function berthGid(): number | undefined {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === 'berth' && f[2] !== undefined) return Number(f[2]);
    }
  } catch {
    /* no group file */
  }
  return undefined;
}

export class ApiServer {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Duplex>();

  constructor(private readonly router: Router, private readonly log: Logger) {}

  async listen(listeners: readonly Listener[], tls: TlsOptions | undefined): Promise<void> {
    for (const l of listeners) {
      const url = l.address;
      if (url.startsWith('unix://') || url.startsWith('/')) {
        const path = url.startsWith('unix://') ? url.slice('unix://'.length) : url;
        mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
        if (existsSync(path)) unlinkSync(path);
        const srv = this.make(undefined);
        await new Promise<void>((resolve, reject) => {
          srv.once('error', reject);
          srv.listen(path, () => { srv.off('error', reject); resolve(); });
        });
        chmodSync(path, 0o660);
        const gid = berthGid();
        if (gid !== undefined) chownSync(path, 0, gid);
        this.servers.push(srv);
      } else if (url.startsWith('tcp://')) {
        if (tls === undefined) {
          throw invalid(`refusing to listen on ${url} without TLS: give --tlsverify with --tlscacert, --tlscert and --tlskey`);
        }
        const u = new URL(url);
        const srv = this.make(tls);
        await new Promise<void>((resolve, reject) => {
          srv.once('error', reject);
          srv.listen(Number(u.port || '2376'), u.hostname.replace(/^\[|\]$/g, '') || '0.0.0.0', () => { srv.off('error', reject); resolve(); });
        });
        this.servers.push(srv);
      } else {
        throw invalid(`-H ${url}: only unix:// and tcp:// addresses are supported`);
      }
    }
  }

  /** The TCP port a tcp:// listener got (for tests that ask for port 0). */
  tcpPort(): number | undefined {
    for (const s of this.servers) {
      const a = s.address();
      if (a !== null && typeof a === 'object') return a.port;
    }
    return undefined;
  }

  private make(tls: TlsOptions | undefined): Server {
    const srv = tls === undefined
      ? createServer()
      : createTlsServer({
        ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key),
        requestCert: tls.verify, rejectUnauthorized: tls.verify,
      });
    srv.keepAliveTimeout = 60_000;
    srv.headersTimeout = 0;
    srv.requestTimeout = 0;
    srv.on('request', (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res, undefined));
    srv.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.handle(req, undefined, { socket, head }));
    srv.on('connection', (s: Duplex) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    srv.on('clientError', (_err, socket: Duplex) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    });
    return srv;
  }

  private async handle(req: IncomingMessage, res: ServerResponse | undefined, upgrade: { socket: Duplex; head: Buffer } | undefined): Promise<void> {
    const started = performance.now();
    const url = new URL(req.url ?? '/', 'http://berth');
    let ctx: Ctx | undefined;
    try {
      if (res !== undefined) for (const [k, v] of Object.entries(SERVER_HEADERS())) res.setHeader(k, v);
      const { version, path } = splitVersion(url.pathname);
      ctx = new Ctx(req, res, path, url.searchParams, version, upgrade);
      const method = req.method === 'HEAD' && path === '/_ping' ? 'HEAD' : (req.method ?? 'GET');
      const { handler, params } = this.router.match(method, path);
      Object.assign(ctx.params, params);
      await handler(ctx);
    } catch (e) {
      this.fail(req, res, upgrade, ctx, e);
    } finally {
      this.log.debug('api', { method: req.method, url: req.url, ms: Math.round(performance.now() - started) });
    }
  }

  private fail(req: IncomingMessage, res: ServerResponse | undefined, upgrade: { socket: Duplex } | undefined, ctx: Ctx | undefined, e: unknown): void {
    const status = statusOf(e);
    const message = messageOf(e);
    if (status >= 500 && !(e instanceof BerthError)) this.log.error('api handler failed', { url: req.url, error: e instanceof Error ? e.stack : String(e) });
    else this.log.debug('api error', { url: req.url, status, message });
    const body = JSON.stringify({ message }) + '\n';
    if (upgrade !== undefined && !(ctx?.responded ?? false)) {
      const s = upgrade.socket;
      if (s.writable) {
        s.end(`HTTP/1.1 ${status} ${status === 304 ? 'Not Modified' : 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nApi-Version: ${API_VERSION}\r\nConnection: close\r\n\r\n${status === 304 ? '' : body}`);
      }
      return;
    }
    if (res === undefined) return;
    if (res.headersSent || (ctx?.responded ?? false)) {
      // A stream already started: say it in the stream's own way, then end.
      if (!res.writableEnded) {
        if ((res.getHeader('Content-Type') ?? '').toString().includes('json')) res.write(JSON.stringify({ errorDetail: { message }, error: message }) + '\n');
        res.end();
      }
      return;
    }
    if (status === 304) {
      res.writeHead(304);
      res.end();
      return;
    }
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) });
    res.end(body);
  }

  async close(): Promise<void> {
    for (const s of this.servers) s.close();
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => (s.listening ? s.once('close', () => r()) : r()))));
  }
}
