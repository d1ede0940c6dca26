/**
 * What the registry suites share: Debian's docker-registry started on a free
 * loopback port (no auth, htpasswd, or token auth with a token server of our
 * own), a proxy in front of it that counts, corrupts or cuts responses,
 * hand-made images (tar layers, config, manifest, index) and an in-memory store.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import type { ImageDescriptor, PullStore, PushStore } from '@berth/images';

export const REGISTRY_BIN = '/usr/bin/docker-registry';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Registry {
  readonly domain: string;
  readonly port: number;
  readonly dir: string;
  /** The registry's log so far (stdout and stderr). */
  log(): string;
  stop(): Promise<void>;
}

export type RegistryAuth =
  | { readonly kind: 'none' }
  | { readonly kind: 'htpasswd'; readonly users: Readonly<Record<string, string>> }
  | { readonly kind: 'token'; readonly server: TokenServer };

function bcryptLine(user: string, password: string): string {
  const r = spawnSync('htpasswd', ['-Bbn', user, password], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`htpasswd -Bbn failed: ${r.stderr || String(r.error)}`);
  return r.stdout.trim();
}

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return await Promise.race([
    new Promise<boolean>((r) => child.once('exit', () => r(true))),
    sleep(ms, undefined, { ref: false }).then(() => false),
  ]);
}

/** Starts docker-registry on 127.0.0.1:<free port> with storage in a temp dir. */
export async function startRegistry(auth: RegistryAuth = { kind: 'none' }): Promise<Registry> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-registry-'));
  let child: ChildProcess | undefined;
  const stop = async (): Promise<void> => {
    if (child !== undefined && child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, 'SIGTERM');
      if (!(await waitExit(child, 5000))) {
        process.kill(child.pid, 'SIGKILL');
        await waitExit(child, 5000);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const port = await freePort();
    let authYaml = '';
    if (auth.kind === 'htpasswd') {
      const lines = Object.entries(auth.users).map(([u, p]) => bcryptLine(u, p));
      writeFileSync(join(dir, 'htpasswd'), `${lines.join('\n')}\n`);
      authYaml = `auth:\n  htpasswd:\n    realm: berth-test\n    path: ${join(dir, 'htpasswd')}\n`;
    } else if (auth.kind === 'token') {
      writeFileSync(join(dir, 'token-ca.pem'), auth.server.certPem);
      authYaml =
        `auth:\n  token:\n    realm: ${auth.server.url}/token\n    service: ${auth.server.service}\n` +
        `    issuer: ${auth.server.issuer}\n    rootcertbundle: ${join(dir, 'token-ca.pem')}\n`;
    }
    const config =
      'version: 0.1\n' +
      'log:\n  level: info\n  accesslog:\n    disabled: false\n' +
      `storage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\n  delete:\n    enabled: true\n` +
      '  maintenance:\n    uploadpurging:\n      enabled: false\n' +
      `http:\n  addr: 127.0.0.1:${port}\n  secret: ${randomBytes(16).toString('hex')}\n` +
      authYaml;
    writeFileSync(join(dir, 'config.yml'), config);
    const logPath = join(dir, 'registry.log');
    const fd = openSync(logPath, 'a');
    try {
      child = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    const log = (): string => {
      try {
        return readFileSync(logPath, 'utf8');
      } catch {
        return '';
      }
    };
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`docker-registry exited ${child.exitCode}: ${log()}`);
      const up = await new Promise<boolean>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/v2/', agent: false }, (res) => {
          res.resume();
          resolve(true);
        });
        req.on('error', () => resolve(false));
      });
      if (up) break;
      if (Date.now() > deadline) throw new Error(`docker-registry did not listen on ${port}: ${log()}`);
      await sleep(50);
    }
    return { domain: `127.0.0.1:${port}`, port, dir, log, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Token server

export interface TokenServer {
  readonly url: string;
  readonly service: string;
  readonly issuer: string;
  readonly certPem: string;
  /** Every token request: its scopes and whether it carried valid credentials. */
  readonly requests: Array<{ scopes: string[]; user: string }>;
  /** Answer with `access_token` instead of `token`. */
  useAccessToken: boolean;
  stop(): Promise<void>;
}

/** The key id the registry's libtrust computes: base32 of 240 bits of sha256(SPKI DER), by 4 with ':'. */
export function libtrustKeyId(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  const sum = createHash('sha256').update(der).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of sum) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  return (out.match(/.{4}/g) ?? []).join(':');
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

/**
 * A token server on 127.0.0.1: `users` may do everything (pull, push) on
 * every repository; anonymous clients get `anonymous` actions.
 */
export async function startTokenServer(users: Readonly<Record<string, string>>, anonymous: readonly string[] = []): Promise<TokenServer> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-token-'));
  try {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    writeFileSync(join(dir, 'key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const r = spawnSync('openssl', ['req', '-x509', '-new', '-key', join(dir, 'key.pem'), '-subj', '/CN=berth-test-token', '-days', '1', '-out', join(dir, 'cert.pem')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
    const certPem = readFileSync(join(dir, 'cert.pem'), 'utf8');
    const kid = libtrustKeyId(publicKey);
    const service = 'berth-test-registry';
    const issuer = 'berth-test-issuer';
    const requests: TokenServer['requests'] = [];
    const state = { useAccessToken: false };
    const server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      let user = '';
      const authz = req.headers.authorization;
      if (authz !== undefined) {
        const [u, ...rest] = Buffer.from(authz.replace(/^Basic /, ''), 'base64').toString().split(':');
        if (u === undefined || users[u] !== rest.join(':')) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
          return;
        }
        user = u;
      }
      const scopes = url.searchParams.getAll('scope');
      requests.push({ scopes, user });
      const access = scopes.flatMap((s) => {
        const [type, name, actions] = [s.slice(0, s.indexOf(':')), s.slice(s.indexOf(':') + 1, s.lastIndexOf(':')), s.slice(s.lastIndexOf(':') + 1)];
        const granted = actions.split(',').filter((a) => (user !== '' ? true : anonymous.includes(a)));
        return granted.length > 0 ? [{ type, name, actions: granted }] : [];
      });
      const now = Math.floor(Date.now() / 1000);
      const header = { typ: 'JWT', alg: 'ES256', kid };
      const claims = { iss: issuer, sub: user, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(12).toString('hex'), access };
      const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
      const sig = sign('sha256', Buffer.from(signingInput), { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const token = `${signingInput}.${b64url(sig)}`;
      const body = state.useAccessToken ? { access_token: token, expires_in: 300 } : { token, expires_in: 300, issued_at: new Date().toISOString() };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    return {
      url: `http://127.0.0.1:${port}`,
      service,
      issuer,
      certPem,
      requests,
      get useAccessToken() {
        return state.useAccessToken;
      },
      set useAccessToken(v: boolean) {
        state.useAccessToken = v;
      },
      stop: async () => {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

// ---------------------------------------------------------------------------
// A proxy in front of the registry

export interface ProxyRequest {
  readonly method: string;
  readonly path: string;
  readonly range: string | undefined;
  status: number;
}

export interface Proxy {
  readonly domain: string;
  readonly requests: ProxyRequest[];
  /** Flip one byte of every GET of this blob digest. */
  corrupt: string | undefined;
  /** Cut the connection after this many body bytes, on the next GET of the digest (once). */
  cut: { digest: string; after: number } | undefined;
  /** Delay every blob GET response by this many ms (to make downloads overlap). */
  delayMs: number;
  /** Answer the next n requests with 503 without passing them on. */
  failNext: number;
  stop(): Promise<void>;
}

export async function startProxy(target: number): Promise<Proxy> {
  const requests: ProxyRequest[] = [];
  const state: { corrupt: string | undefined; cut: Proxy['cut']; delayMs: number; failNext: number } = {
    corrupt: undefined,
    cut: undefined,
    delayMs: 0,
    failNext: 0,
  };
  const server = http.createServer((req, res) => {
    const entry: ProxyRequest = { method: req.method ?? '', path: req.url ?? '', range: req.headers.range, status: 0 };
    requests.push(entry);
    if (state.failNext > 0) {
      state.failNext--;
      entry.status = 503;
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}');
      return;
    }
    const up = http.request(
      { host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers, agent: false },
      async (ures) => {
        entry.status = ures.statusCode ?? 0;
        const isBlobGet = req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '');
        if (isBlobGet && state.delayMs > 0) await sleep(state.delayMs);
        const digest = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(req.url ?? '')?.[1];
        const corrupt = isBlobGet && digest !== undefined && digest === state.corrupt;
        const cut = isBlobGet && state.cut !== undefined && digest === state.cut.digest ? state.cut : undefined;
        if (cut !== undefined) state.cut = undefined;
        res.writeHead(ures.statusCode ?? 502, ures.headers);
        let sent = 0;
        let flipped = false;
        ures.on('data', (chunk: Buffer) => {
          let c = chunk;
          if (corrupt && !flipped && c.length > 0) {
            c = Buffer.from(c);
            c[c.length - 1] = (c[c.length - 1] ?? 0) ^ 0xff;
            flipped = true;
          }
          if (cut !== undefined && sent + c.length >= cut.after) {
            res.write(c.subarray(0, cut.after - sent));
            sent = cut.after;
            ures.destroy();
            res.socket?.destroy();
            return;
          }
          sent += c.length;
          res.write(c);
        });
        ures.on('end', () => res.end());
      },
    );
    up.on('error', () => res.socket?.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    domain: `127.0.0.1:${port}`,
    requests,
    get corrupt() {
      return state.corrupt;
    },
    set corrupt(v) {
      state.corrupt = v;
    },
    get cut() {
      return state.cut;
    },
    set cut(v) {
      state.cut = v;
    },
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(v) {
      state.delayMs = v;
    },
    get failNext() {
      return state.failNext;
    },
    set failNext(v) {
      state.failNext = v;
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------
// Hand-made images

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, '0')}\0`;
}

/** One entry of a hand-made ustar archive, written as given (nothing normalised). */
export interface UstarEntry {
  readonly name: string;
  readonly body: Buffer;
  readonly mode: number;
  /** '0' file, '5' directory, '2' symlink. */
  readonly type: '0' | '5' | '2';
  readonly linkname?: string;
}

/** A ustar archive of the entries (names and link names under 100 bytes), uid/gid 0, mtime 0. */
export function ustar(entries: readonly UstarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100, 'utf8');
    h.write(octal(e.mode, 8), 100, 'ascii');
    h.write(octal(0, 8), 108, 'ascii');
    h.write(octal(0, 8), 116, 'ascii');
    h.write(octal(e.body.length, 12), 124, 'ascii');
    h.write(octal(0, 12), 136, 'ascii');
    h.write('        ', 148, 'ascii');
    h.write(e.type, 156, 'ascii');
    if (e.linkname !== undefined) h.write(e.linkname, 157, 100, 'utf8');
    h.write('ustar\0', 257, 'ascii');
    h.write('00', 263, 'ascii');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
    parts.push(h, e.body, Buffer.alloc((512 - (e.body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** A ustar archive of regular files and directories (directory names get their `/`). */
export function tarOf(entries: ReadonlyArray<{ path: string; content?: Buffer | string; mode?: number; dir?: boolean }>): Buffer {
  return ustar(entries.map((e) => ({
    name: e.dir === true && !e.path.endsWith('/') ? `${e.path}/` : e.path,
    body: e.dir === true ? Buffer.alloc(0) : Buffer.from(e.content ?? ''),
    mode: e.mode ?? (e.dir === true ? 0o755 : 0o644),
    type: e.dir === true ? '5' : '0',
  })));
}

export const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface BuiltImage {
  readonly manifest: ImageDescriptor;
  readonly config: ImageDescriptor;
  readonly layers: readonly ImageDescriptor[];
  /** Every blob by digest: layers, config, manifest. */
  readonly blobs: ReadonlyMap<string, Buffer>;
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

/** Builds an OCI image of gzip layers made from `layers` (each a list of files). */
export function buildImage(
  layers: ReadonlyArray<ReadonlyArray<{ path: string; content?: Buffer | string; dir?: boolean }>>,
  opts: { architecture?: string; variant?: string; label?: string } = {},
): BuiltImage {
  const blobs = new Map<string, Buffer>();
  const layerDescs: ImageDescriptor[] = [];
  const diffIds: string[] = [];
  for (const files of layers) {
    const tar = tarOf(files);
    const gz = gzipSync(tar);
    diffIds.push(sha256(tar));
    blobs.set(sha256(gz), gz);
    layerDescs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(gz), size: gz.length });
  }
  const architecture = opts.architecture ?? 'amd64';
  const config = Buffer.from(
    JSON.stringify({
      architecture,
      os: 'linux',
      ...(opts.variant !== undefined ? { variant: opts.variant } : {}),
      config: { Cmd: ['/bin/sh'], Labels: { 'berth.test': opts.label ?? 'x' } },
      rootfs: { type: 'layers', diff_ids: diffIds },
    }),
  );
  const configDesc: ImageDescriptor = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length };
  blobs.set(configDesc.digest, config);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: configDesc, layers: layerDescs }));
  const manifestDesc: ImageDescriptor = { mediaType: OCI_MANIFEST, digest: sha256(manifest), size: manifest.length };
  blobs.set(manifestDesc.digest, manifest);
  return { manifest: manifestDesc, config: configDesc, layers: layerDescs, blobs };
}

/** An index over images, each entry with its platform. */
export function buildIndex(images: ReadonlyArray<{ image: BuiltImage; os: string; architecture: string; variant?: string }>): {
  index: ImageDescriptor;
  blobs: Map<string, Buffer>;
} {
  const blobs = new Map<string, Buffer>();
  const manifests = images.map(({ image, os, architecture, variant }) => {
    for (const [d, b] of image.blobs) blobs.set(d, b);
    return { ...image.manifest, platform: { os, architecture, ...(variant !== undefined ? { variant } : {}) } };
  });
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  const index: ImageDescriptor = { mediaType: OCI_INDEX, digest: sha256(bytes), size: bytes.length };
  blobs.set(index.digest, bytes);
  return { index, blobs };
}

/** Writes an OCI image layout (oci-layout, index.json, blobs/) naming `root` with `tag`. */
export function writeOciLayout(dir: string, blobs: ReadonlyMap<string, Buffer>, root: ImageDescriptor, tag: string): void {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  for (const [d, b] of blobs) writeFileSync(join(dir, 'blobs', 'sha256', d.slice('sha256:'.length)), b);
  const entry = { ...root, annotations: { 'org.opencontainers.image.ref.name': tag } };
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [entry] }));
}

// ---------------------------------------------------------------------------
// An in-memory store

/** A store that keeps a blob only when its stream ended cleanly; it does not verify digests itself. */
export class MemoryStore implements PullStore, PushStore {
  readonly blobs = new Map<string, Buffer>();
  readonly writes: string[] = [];

  constructor(blobs?: ReadonlyMap<string, Buffer>) {
    if (blobs !== undefined) for (const [d, b] of blobs) this.blobs.set(d, b);
  }

  /** Another store object over the same blobs (as a per-pull adapter over one content store is). */
  view(): MemoryStore {
    const v = new MemoryStore();
    (v as { blobs: Map<string, Buffer> }).blobs = this.blobs;
    (v as { writes: string[] }).writes = this.writes;
    return v;
  }

  has(desc: ImageDescriptor): boolean {
    return this.blobs.has(desc.digest);
  }

  async write(desc: ImageDescriptor, stream: Readable): Promise<void> {
    this.writes.push(desc.digest);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    this.blobs.set(desc.digest, Buffer.concat(chunks));
  }

  read(desc: ImageDescriptor): Readable {
    const b = this.blobs.get(desc.digest);
    if (b === undefined) throw new Error(`no blob ${desc.digest}`);
    // Small pieces, so that chunked uploads see many reads.
    const pieces: Buffer[] = [];
    for (let i = 0; i < b.length; i += 64 * 1024) pieces.push(b.subarray(i, i + 64 * 1024));
    return Readable.from(pieces);
  }
}

/** Runs a command, returning stdout; throws with stderr on failure. */
export function run(cmd: string, args: readonly string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${String(r.status ?? r.signal)}: ${r.stderr || String(r.error)}`);
  return r.stdout;
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
