/**
 * Image references and registry credentials: docker's reference normalisation
 * (`busybox` is `docker.io/library/busybox:latest`), the config file in docker's
 * config.json format (`auths` with base64 `user:password`), the X-Registry-Auth
 * header, and the login and logout commands.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '@berth/base';
import { StatusError, daemonMessage } from '../command.js';
import type { Command, Context } from '../command.js';

export const INDEX_SERVER = 'https://index.docker.io/v1/';
const DEFAULT_DOMAIN = 'docker.io';

export interface Reference {
  /** Registry host (`docker.io`, `127.0.0.1:5000`). */
  readonly domain: string;
  /** Repository path within the registry (`library/busybox`). */
  readonly path: string;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}

/** Parses and normalises an image reference as docker does. */
export function parseReference(ref: string): Reference {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  if (rest === '' || !/^[A-Za-z0-9._:/[\]-]+$/.test(rest)) throw new StatusError(1, 'invalid reference format');
  const slash = rest.indexOf('/');
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      domain = first;
      path = rest.slice(slash + 1);
    }
  }
  if (domain === 'index.docker.io') domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = `library/${path}`;
  if (/[A-Z]/.test(path)) throw new StatusError(1, `invalid reference format: repository name (${path}) must be lowercase`);
  return { domain, path, tag, digest };
}

/** The short form docker shows: `busybox`, `user/app`, `127.0.0.1:5000/app`. */
export function familiarName(r: Reference): string {
  if (r.domain !== DEFAULT_DOMAIN) return `${r.domain}/${r.path}`;
  return r.path.startsWith('library/') ? r.path.slice('library/'.length) : r.path;
}

/** The full name with its tag or digest, `latest` when neither. */
export function fullString(r: Reference): string {
  let s = `${r.domain}/${r.path}`;
  if (r.tag !== undefined) s += `:${r.tag}`;
  if (r.digest !== undefined) s += `@${r.digest}`;
  if (r.tag === undefined && r.digest === undefined) s += ':latest';
  return s;
}

/** The key of a registry in config.json's `auths`. */
export function authKey(domain: string): string {
  return domain === DEFAULT_DOMAIN ? INDEX_SERVER : domain;
}

interface AuthEntry {
  auth?: string;
  identitytoken?: string;
}
interface ConfigFile {
  auths?: Record<string, AuthEntry>;
  [k: string]: unknown;
}

function configPath(ctx: Context): string {
  return join(ctx.configDir, 'config.json');
}

export function readConfig(ctx: Context): ConfigFile {
  try {
    return JSON.parse(readFileSync(configPath(ctx), 'utf8')) as ConfigFile;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new StatusError(1, `loading config file ${configPath(ctx)}: ${(err as Error).message}`);
  }
}

function writeConfig(ctx: Context, cfg: ConfigFile): void {
  mkdirSync(ctx.configDir, { recursive: true, mode: 0o700 });
  writeFileAtomic(configPath(ctx), `${JSON.stringify(cfg, null, '\t')}\n`, 0o600);
}

export interface AuthConfig {
  username?: string;
  password?: string;
  identitytoken?: string;
  serveraddress: string;
}

/** Credentials stored for a registry (by its domain). */
export function credentialsFor(ctx: Context, domain: string): AuthConfig {
  const key = authKey(domain);
  const auths = readConfig(ctx).auths ?? {};
  const entry = auths[key] ?? auths[`https://${key}`] ?? auths[`http://${key}`];
  if (entry === undefined) return { serveraddress: key };
  const out: AuthConfig = { serveraddress: key };
  if (entry.auth !== undefined && entry.auth !== '') {
    const plain = Buffer.from(entry.auth, 'base64').toString('utf8');
    const c = plain.indexOf(':');
    out.username = plain.slice(0, c < 0 ? plain.length : c);
    out.password = c < 0 ? '' : plain.slice(c + 1);
  }
  if (entry.identitytoken !== undefined) out.identitytoken = entry.identitytoken;
  return out;
}

/** The X-Registry-Auth header value for an image reference. */
export function registryAuthHeader(ctx: Context, ref: Reference): string {
  const c = credentialsFor(ctx, ref.domain);
  const body = c.username === undefined && c.identitytoken === undefined ? {} : c;
  // base64 URL encoding with padding, as Go's base64.URLEncoding reads it
  return Buffer.from(JSON.stringify(body)).toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

async function readLine(ctx: Context): Promise<string> {
  return await new Promise<string>((resolve) => {
    let buf = '';
    const onData = (d: Buffer | string): void => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        done();
        resolve(buf.slice(0, nl).replace(/\r$/, ''));
      }
    };
    const onEnd = (): void => {
      done();
      resolve(buf.replace(/\r?\n$/, ''));
    };
    const done = (): void => {
      ctx.stdin.off('data', onData);
      ctx.stdin.off('end', onEnd);
      ctx.stdin.pause();
    };
    ctx.stdin.on('data', onData);
    ctx.stdin.on('end', onEnd);
    ctx.stdin.resume();
  });
}

async function readAllStdin(ctx: Context): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of ctx.stdin) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

function serverOf(arg: string | undefined): string {
  if (arg === undefined || arg === '') return INDEX_SERVER;
  const host = arg.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  if (host === 'docker.io' || host === 'index.docker.io' || host === 'registry-1.docker.io') return INDEX_SERVER;
  return host;
}

export const login: Command = {
  name: 'login',
  usage: 'login [OPTIONS] [SERVER]',
  description: 'Authenticate to a registry.\nDefaults to Docker Hub if no server is specified.',
  args: { max: 1 },
  flags: [
    { long: 'password', short: 'p', kind: 'string', help: 'Password or Personal Access Token (PAT)' },
    { long: 'password-stdin', kind: 'bool', help: 'Take the Password or Personal Access Token (PAT) from stdin' },
    { long: 'username', short: 'u', kind: 'string', help: 'Username' },
  ],
  async run(ctx, flags, args) {
    const server = serverOf(args[0]);
    let username = flags.str('username');
    let password = flags.str('password');
    if (flags.bool('password-stdin')) {
      if (flags.changed('password')) throw new StatusError(1, '--password and --password-stdin are mutually exclusive');
      if (username === '') throw new StatusError(1, 'Must provide --username with --password-stdin');
      password = (await readAllStdin(ctx)).replace(/\r?\n$/, '');
    } else if (flags.changed('password')) {
      ctx.err('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
    }
    if (username === '') {
      ctx.out('Username: ');
      username = (await readLine(ctx)).trim();
      if (username === '') throw new StatusError(1, 'Error: Non-null Username Required');
    }
    if (password === '') {
      ctx.out('Password: ');
      password = await readLine(ctx);
      ctx.out('\n');
      if (password === '') throw new StatusError(1, 'Error: Password Required');
    }
    const client = await ctx.client();
    let r: { Status?: string; IdentityToken?: string };
    try {
      r = await client.json('POST', '/auth', { body: { username, password, serveraddress: server } });
    } catch (err) {
      throw new StatusError(1, daemonMessage(err));
    }
    const cfg = readConfig(ctx);
    const auths = (cfg.auths ??= {});
    auths[server] =
      r?.IdentityToken !== undefined && r.IdentityToken !== ''
        ? { auth: Buffer.from(`${username}:`).toString('base64'), identitytoken: r.IdentityToken }
        : { auth: Buffer.from(`${username}:${password}`).toString('base64') };
    writeConfig(ctx, cfg);
    ctx.out('Login Succeeded\n');
    return 0;
  },
};

export const logout: Command = {
  name: 'logout',
  usage: 'logout [SERVER]',
  description: 'Log out from a registry.\nIf no server is specified, the default is defined by the daemon.',
  args: { max: 1 },
  flags: [],
  async run(ctx, _flags, args) {
    const server = serverOf(args[0]);
    const cfg = readConfig(ctx);
    const auths = cfg.auths ?? {};
    const keys = [server, `https://${server}`, `http://${server}`].filter((k) => k in auths);
    if (keys.length === 0) {
      ctx.out(`Not logged in to ${server === INDEX_SERVER ? 'https://index.docker.io/v1/' : server}\n`);
      return 0;
    }
    ctx.out(`Removing login credentials for ${server}\n`);
    for (const k of keys) delete auths[k];
    cfg.auths = auths;
    writeConfig(ctx, cfg);
    return 0;
  },
};
