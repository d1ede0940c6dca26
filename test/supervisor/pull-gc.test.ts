/**
 * Garbage collection while pullImage runs, in a berth-containerd started in
 * this process, from Debian's docker-registry through a proxy that can hold
 * one blob half-way: collections run back to back during a multi-layer pull
 * (and while a layer is held mid-download, its extraction under way), and
 * remove nothing; the image then runs. A pull whose registry stops midway
 * fails, and the next collection takes what it left: snapshots, content
 * records, blob files (the interrupted layer's partial ingest stays, for a
 * retry to resume). Root only.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ErrorKind, Logger, isKind } from '@berth/base';
import { Daemon, pluginType, pullDepsOf, pullImage } from '@berth/supervisor';
import type { PullDeps } from '@berth/supervisor';
import { CTR } from './_daemon.js';
import { TEST_ROOTFS } from './_tasks.js';
import { chainIdsOf, rawTar, skopeoPush, startRegistry, teardownSupervisor, writeLayout } from './_registry.js';
import type { LayoutImage, Registry } from './_registry.js';

const run = promisify(execFile);
const NS = `pullgc${process.pid}`;
const skip = process.getuid?.() === 0 ? false : 'needs root (overlayfs snapshots)';
const base = mkdtempSync(join(tmpdir(), 'berth-pull-gc-'));
const paths = { root: join(base, 'root'), state: join(base, 'state'), address: join(base, 'state', 'containerd.sock') };
let daemon: Daemon | undefined;

interface GcStats { readonly content: number; readonly blobs: number; readonly snapshots: number; readonly leases: number }

before(async () => {
  if (skip !== false) return;
  daemon = await Daemon.start({ ...paths, log: new Logger({ level: 'warn', file: join(base, 'daemon.log') }) });
});

after(async () => {
  await teardownSupervisor({ daemon, state: paths.state, base, namespaces: [NS], fifos: ['pullgc1'] });
});

/** p, or a failure naming `what` after ms. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

function deps(): PullDeps {
  if (daemon === undefined) throw new Error('the daemon did not start');
  return pullDepsOf(daemon.plugins);
}

function collector(): { collectNow(): Promise<GcStats> } {
  if (daemon === undefined) throw new Error('the daemon did not start');
  const [gc] = daemon.plugins.getAll(pluginType<{ collectNow(): Promise<GcStats> }>('io.containerd.gc.v1')).values();
  if (gc === undefined) throw new Error('no garbage collector loaded');
  return gc;
}

/** A proxy to a registry that holds one blob's GET after `after` bytes until release(). */
async function startHoldingProxy(target: string): Promise<{ domain: string; hold(digest: string, after: number): Promise<void>; release(): void; cut(): void; stop(): Promise<void> }> {
  const port = Number(target.slice(target.lastIndexOf(':') + 1));
  let rule: { digest: string; after: number; held: () => void } | undefined;
  const waiters: Array<{ resume(): void; cut(): void }> = [];
  const server = http.createServer((req, res) => {
    const digest = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(req.url ?? '')?.[1];
    const up = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers, agent: false }, (ures) => {
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      let sent = 0;
      const r = req.method === 'GET' && rule !== undefined && digest === rule.digest ? rule : undefined;
      ures.on('data', (chunk: Buffer) => {
        if (r === undefined || rule !== r || sent + chunk.length <= r.after) {
          sent += chunk.length;
          res.write(chunk);
          return;
        }
        const first = chunk.subarray(0, Math.max(0, r.after - sent));
        sent += first.length;
        res.write(first);
        ures.pause();
        r.held();
        waiters.push({
          resume: () => {
            res.write(chunk.subarray(first.length));
            ures.resume();
          },
          cut: () => {
            ures.destroy();
            res.socket?.destroy();
          },
        });
      });
      ures.on('end', () => res.end());
      ures.on('error', () => res.socket?.destroy());
      ures.on('close', () => { if (!ures.complete) res.socket?.destroy(); });
    });
    up.on('error', () => res.socket?.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    domain: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    hold: (d, n) => new Promise<void>((resolve) => {
      rule = { digest: d, after: n, held: resolve };
    }),
    release: () => {
      rule = undefined;
      for (const w of waiters.splice(0)) w.resume();
    },
    /** Break the held downloads' connections (what the client sees of a registry that went away). */
    cut: () => {
      rule = undefined;
      for (const w of waiters.splice(0)) w.cut();
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The test rootfs (when asked), then `n` layers of 24 files of 96 KiB of random hex each (gzip halves them). */
function layers(tag: string, n: number, rootfs: boolean): Buffer[] {
  const out: Buffer[] = [];
  if (rootfs) {
    const r = spawnSync('tar', ['-C', TEST_ROOTFS, '--numeric-owner', '-cf', '-', '.'], { maxBuffer: 256 << 20 });
    if (r.status !== 0) throw new Error(`tar of ${TEST_ROOTFS}: ${r.stderr.toString()}`);
    out.push(r.stdout);
  }
  for (let i = 0; i < n; i++) {
    out.push(rawTar([
      { name: `data${i}/`, type: 'dir' },
      ...Array.from({ length: 24 }, (_, j) => ({ name: `data${i}/f${j}`, type: 'file' as const, content: randomBytes(48 << 10).toString('hex') })),
      { name: 'etc/berth-which', type: 'file', content: `${tag} layer ${i}\n` },
    ]));
  }
  return out;
}

function publish(registry: Registry, name: string, ls: readonly Buffer[]): LayoutImage {
  const dir = join(base, `layout-${name.replace(/[^a-z0-9]/g, '-')}`);
  const img = writeLayout(dir, 'latest', ls);
  skopeoPush(dir, 'latest', `${registry.domain}/${name}:latest`);
  return img;
}

function blobSize(name: string, digest: string): number {
  return statSync(join(base, `layout-${name.replace(/[^a-z0-9]/g, '-')}`, 'blobs', 'sha256', digest.slice(7))).size;
}

function blobFile(digest: string): string {
  return join(paths.root, 'content', 'blobs', 'sha256', digest.slice('sha256:'.length));
}

/** `${kind} ${name}` of the namespace's snapshots in overlayfs. */
async function snapshots(d: PullDeps): Promise<string[]> {
  const sn = d.snapshotters.get('overlayfs');
  if (sn === undefined) throw new Error('no overlayfs snapshotter');
  const out: string[] = [];
  await sn.walk((i) => { if (i.name.startsWith(`${NS}/`)) out.push(`${i.kind} ${i.name.slice(NS.length + 1)}`); });
  return out;
}

test('collections back to back during a multi-layer pull remove nothing of it; the pulled image runs', { skip }, async (t) => {
  const registry = await startRegistry();
  t.after(() => registry.stop());
  const gate = await startHoldingProxy(registry.domain);
  t.after(() => gate.stop());
  const name = 'gc/during';
  const img = publish(registry, name, layers('during', 4, true));
  const chain = chainIdsOf(img.diffIds);
  const held = img.layers[2] ?? '';
  const holding = gate.hold(held, blobSize(name, held) >> 1);
  const d = deps();
  const ref = `${gate.domain}/${name}:latest`;
  const gc = collector();

  let pulling = true;
  const removed: GcStats[] = [];
  const pull = pullImage(d, NS, ref).finally(() => { pulling = false; });
  pull.catch(() => undefined);
  const collecting = (async () => {
    let runs = 0;
    while (pulling) {
      removed.push(await gc.collectNow());
      runs++;
      await new Promise((r) => setImmediate(r));
    }
    return runs;
  })();
  try {
    // With layer 2 held half-way (layers below it committed or under way): more collections.
    await within(holding, 20_000, 'the held download');
    // Layer 2 is being extracted as it downloads: its active snapshot is there, half-written.
    const deadline = Date.now() + 20_000;
    while (!(await snapshots(d)).some((n) => n.startsWith('active') && n.endsWith(chain[2] ?? '-'))) {
      if (Date.now() > deadline) throw new Error(`no active snapshot for layer 2: ${(await snapshots(d)).join('; ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    for (let i = 0; i < 5; i++) removed.push(await gc.collectNow());
    const during = await snapshots(d);
    assert.ok(during.some((n) => n.startsWith('active') && n.endsWith(chain[2] ?? '-')), `the extraction survives: ${during.join('; ')}`);
    for (const c of [chain[0], chain[1]]) assert.ok(during.includes(`committed ${c ?? ''}`), `${c ?? ''} survives: ${during.join('; ')}`);
  } finally {
    gate.release();
  }
  const res = await pull;
  const runs = await collecting;
  assert.ok(runs >= 1, `collections ran during the pull (${runs})`);
  assert.deepEqual(removed.filter((s) => s.content + s.blobs + s.snapshots > 0), [], 'no collection during the pull removed anything');
  assert.equal(res.chainId, chain[chain.length - 1]);

  // One more collection after it: the image's chain and content are whole.
  await gc.collectNow();
  const names = await snapshots(d);
  for (const c of chain) assert.ok(names.includes(`committed ${c}`), `${c} committed: ${names.join('; ')}`);
  assert.ok(!names.some((n) => n.startsWith('active')), names.join('; '));
  const store = d.content.namespace(NS);
  for (const digest of [img.manifest, img.config, ...img.layers]) {
    await store.info(digest);
    assert.ok(existsSync(blobFile(digest)), `${digest} is on disk`);
  }
  const out = await run(CTR, ['--address', paths.address, '--namespace', NS, 'run', '--rm', ref, 'pullgc1', '/bin/sh', '-c',
    'cat /etc/berth-which; ls /data0 /data1 /data2 /data3 | grep -c ^f'], { timeout: 30_000 });
  assert.equal(out.stdout, 'during layer 3\n96\n');
});

test('a pull whose registry stops midway fails; the next collection removes what it left', { skip }, async (t) => {
  const registry = await startRegistry();
  let stopped = false;
  t.after(async () => { if (!stopped) await registry.stop(); });
  const gate = await startHoldingProxy(registry.domain);
  t.after(() => gate.stop());
  const name = 'gc/broken';
  const img = publish(registry, name, layers('broken', 3, false));
  const chain = chainIdsOf(img.diffIds);
  const held = img.layers[2] ?? '';
  const holding = gate.hold(held, blobSize(name, held) >> 1);
  const d = deps();
  const ref = `${gate.domain}/${name}:latest`;
  const before = new Set(await snapshots(d));

  const pull = pullImage(d, NS, ref);
  pull.catch(() => undefined);
  await within(holding, 20_000, 'the held download');
  // Layers 0 and 1 are committed (layer 2 is being extracted as it downloads) before the registry goes.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const names = await snapshots(d);
    if ([chain[0], chain[1]].every((c) => names.includes(`committed ${c ?? ''}`))) break;
    if (Date.now() > deadline) throw new Error(`layers 0 and 1 were not committed: ${names.join('; ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await registry.stop();
  stopped = true;
  gate.cut();
  await assert.rejects(pull, (e: unknown) => isKind(e, ErrorKind.Unavailable) && e instanceof Error && e.message.includes(held));
  assert.throws(() => d.images.get(NS, `${gate.domain}/${name}:latest`));

  // The pull's lease is gone: the next collection takes its snapshots and content.
  await collector().collectNow();
  const names = (await snapshots(d)).filter((n) => !before.has(n));
  assert.deepEqual(names, [], 'no snapshot of the failed pull is left');
  for (const digest of [img.manifest, img.config, ...img.layers]) {
    assert.equal(d.content.find(NS, digest), undefined, `${digest} has no record left`);
    assert.ok(!existsSync(blobFile(digest)), `${digest} has no blob file left`);
  }
  // The collector does not take ingests: what stays is the interrupted layer's partial download, for a retry to resume.
  const ingests = join(paths.root, 'content', 'ingest');
  const refs = readdirSync(ingests).map((n) => readFileSync(join(ingests, n, 'ref'), 'utf8'));
  assert.deepEqual(refs.filter((r) => r.startsWith(`${NS}/`)), [`${NS}/${held}`], 'no other ingest of the pull is left');
});
