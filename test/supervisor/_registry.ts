/**
 * What the image suites of berth-containerd share: Debian's docker-registry
 * on a free loopback port with temp storage (stopped by its PID, storage
 * removed), a proxy in front of it that can flip a byte of one blob, skopeo,
 * and images made by hand: the test rootfs as an OCI layout (umoci), and
 * layers of raw tar entries (symlinks, `..` names) for hostile input.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export const SKOPEO = '/usr/bin/skopeo';
export const UMOCI = '/usr/bin/umoci';

export { freePort, sha256, startRegistry, tempDir } from '../registry/_registry.js';
import { sha256, ustar } from '../registry/_registry.js';
import { killLeftovers, removeCtrFifos } from './_tasks.js';
export type { Registry } from '../registry/_registry.js';

export interface CorruptingProxy {
  readonly domain: string;
  /** Flip one byte of every GET of this blob digest. */
  corrupt: string | undefined;
  /** Blob GETs seen, by digest. */
  readonly blobGets: string[];
  stop(): Promise<void>;
}

/** A plain HTTP proxy to the registry on 127.0.0.1 that can corrupt one blob. */
export async function startProxy(target: string): Promise<CorruptingProxy> {
  const port = Number(target.slice(target.lastIndexOf(':') + 1));
  const state: { corrupt: string | undefined } = { corrupt: undefined };
  const blobGets: string[] = [];
  const server = http.createServer((req, res) => {
    const digest = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(req.url ?? '')?.[1];
    const isBlobGet = req.method === 'GET' && digest !== undefined;
    if (isBlobGet) blobGets.push(digest);
    const up = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers, agent: false }, (ures) => {
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      let flip = isBlobGet && digest === state.corrupt;
      ures.on('data', (chunk: Buffer) => {
        let c = chunk;
        if (flip && c.length > 0) {
          c = Buffer.from(c);
          c[c.length >> 1] = (c[c.length >> 1] ?? 0) ^ 0x55;
          flip = false;
        }
        res.write(c);
      });
      ures.on('end', () => res.end());
      ures.on('error', () => res.socket?.destroy());
    });
    up.on('error', () => res.socket?.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    domain: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    blobGets,
    get corrupt() {
      return state.corrupt;
    },
    set corrupt(v) {
      state.corrupt = v;
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Run a command that must succeed; stdout. */
export function runOk(cmd: string, args: readonly string[], timeout = 120_000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${String(r.status ?? r.signal)}: ${r.stderr}`);
  return r.stdout;
}

/** skopeo copy from an OCI layout dir to the registry (plain HTTP). */
export function skopeoPush(layout: string, tag: string, dest: string): void {
  runOk(SKOPEO, ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${dest}`]);
}

/** The manifest bytes skopeo reads for a reference (plain HTTP), and their digest. */
export function skopeoRaw(ref: string): { raw: string; digest: string } {
  const raw = runOk(SKOPEO, ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
  return { raw, digest: `sha256:${createHash('sha256').update(raw).digest('hex')}` };
}

/** An OCI layout of the test rootfs as one layer, with `sh` as its command (made by umoci). */
export function rootfsLayout(base: string, rootfs: string, tag = 'latest'): string {
  const layout = join(base, 'oci');
  const bundle = join(base, 'bundle');
  const image = `${layout}:${tag}`;
  runOk(UMOCI, ['init', '--layout', layout]);
  runOk(UMOCI, ['new', '--image', image]);
  runOk(UMOCI, ['unpack', '--image', image, bundle]);
  runOk('cp', ['-a', `${rootfs}/.`, join(bundle, 'rootfs')]);
  runOk(UMOCI, ['repack', '--image', image, bundle]);
  runOk(UMOCI, ['config', '--image', image, '--config.cmd', 'sh']);
  rmSync(bundle, { recursive: true, force: true });
  return layout;
}

// ---------------------------------------------------------------------------
// Raw tar layers

export interface RawEntry {
  readonly name: string;
  readonly type: 'file' | 'dir' | 'symlink';
  readonly content?: string;
  readonly linkname?: string;
}

/** A ustar archive written entry by entry, names as given (nothing normalised). */
export function rawTar(entries: readonly RawEntry[]): Buffer {
  return ustar(entries.map((e) => ({
    name: e.name,
    body: Buffer.from(e.type === 'file' ? e.content ?? '' : ''),
    mode: e.type === 'file' ? 0o644 : 0o755,
    type: e.type === 'file' ? '0' : e.type === 'dir' ? '5' : '2',
    ...(e.linkname !== undefined ? { linkname: e.linkname } : {}),
  })));
}


export interface LayoutImage {
  readonly layout: string;
  readonly manifest: string;
  readonly config: string;
  readonly layers: readonly string[];
  readonly diffIds: readonly string[];
}

/** An OCI layout at `dir` of one image of gzip layers (each a raw tar), tagged `tag`. */
export function writeLayout(dir: string, tag: string, layers: readonly Buffer[]): LayoutImage {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (b: Buffer): string => {
    const d = sha256(b);
    writeFileSync(join(blobs, d.slice('sha256:'.length)), b);
    return d;
  };
  const diffIds = layers.map(sha256);
  const layerDescs = layers.map((tar) => {
    const gz = gzipSync(tar);
    return { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: put(gz), size: gz.length };
  });
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const config = Buffer.from(JSON.stringify({
    architecture: arch, os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: diffIds },
  }));
  const configDesc = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: put(config), size: config.length };
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDesc, layers: layerDescs,
  }));
  const manifestDesc = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: put(manifest), size: manifest.length };
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2, manifests: [{ ...manifestDesc, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
  return { layout: dir, manifest: manifestDesc.digest, config: configDesc.digest, layers: layerDescs.map((l) => l.digest), diffIds };
}

/** The chain IDs of a list of diff IDs (OCI image spec). */
export function chainIdsOf(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}


/** Mount points at or below dir (from /proc/self/mountinfo), deepest first. */
export function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (point === undefined) continue;
    const p = point.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (p === dir || p.startsWith(`${dir}/`)) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Unmount (lazily) whatever is still mounted below dir; returns what was. */
export function unmountUnder(dir: string): string[] {
  const left = mountsUnder(dir);
  for (const m of left) spawnSync('umount', ['-l', m]);
  return left;
}

/**
 * After a suite that runs a supervisor in process: its tasks and ctr's fifos go, then the daemon
 * stops, whatever stays mounted below its base dir is unmounted and the dir removed.
 */
export async function teardownSupervisor(o: {
  daemon: { stop(): Promise<void> } | undefined; state: string; base: string; namespaces: readonly string[]; fifos: readonly string[];
}): Promise<void> {
  try {
    await killLeftovers(o.state, o.namespaces);
    removeCtrFifos(o.fifos);
  } finally {
    try {
      await o.daemon?.stop();
      unmountUnder(o.base);
    } finally {
      rmSync(o.base, { recursive: true, force: true });
    }
  }
}
