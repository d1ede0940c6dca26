/**
 * The Transfer and Streaming services of a berth-containerd started in this
 * process, driven through the engine's client (transfer-client.ts) over the
 * daemon's socket: pull from Debian's docker-registry on 127.0.0.1 with
 * progress, pull with basic auth answered on the auth stream, push to
 * another name, export -> import round trip, a garbage import, and the
 * errors for unknown streams and unsupported pairs. Root only (overlayfs).
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorKind, Logger, isKind } from '@berth/base';
import {
  ContainerdClient, Daemon, SERVICES, exportArchive, importArchive, pullDepsOf, transferPull, transferPush,
} from '@berth/supervisor';
import type { PullDeps, TransferProgress } from '@berth/supervisor';
import { SKOPEO, chainIdsOf, rawTar, runOk, skopeoPush, skopeoRaw, startRegistry, unmountUnder, writeLayout } from './_registry.js';
import type { LayoutImage, Registry } from './_registry.js';

const NS = `transfer${process.pid}`;
const NS_IMPORT = `transferimp${process.pid}`;
const base = mkdtempSync(join(tmpdir(), 'berth-transfer-'));
const paths = { root: join(base, 'root'), state: join(base, 'state'), address: join(base, 'state', 'containerd.sock') };
const USER = 'berth';
const PASSWORD = `pw-${randomBytes(4).toString('hex')}`;
let registry: Registry | undefined;
let authRegistry: Registry | undefined;
let daemon: Daemon | undefined;
let client: ContainerdClient | undefined;

before(async () => {
  registry = await startRegistry();
  authRegistry = await startRegistry({ kind: 'htpasswd', users: { [USER]: PASSWORD } });
  daemon = await Daemon.start({ ...paths, log: new Logger({ level: 'warn', file: join(base, 'daemon.log') }) });
  client = new ContainerdClient(paths.address, { namespace: NS });
  await client.ready();
});

after(async () => {
  try {
    client?.close();
    await daemon?.stop();
    unmountUnder(base);
  } finally {
    rmSync(base, { recursive: true, force: true });
    await registry?.stop();
    await authRegistry?.stop();
  }
});

function cl(): ContainerdClient {
  if (client === undefined) throw new Error('the daemon did not start');
  return client;
}

function deps(): PullDeps {
  if (daemon === undefined) throw new Error('the daemon did not start');
  return pullDepsOf(daemon.plugins);
}

function reg(r: Registry | undefined): Registry {
  if (r === undefined) throw new Error('the registry did not start');
  return r;
}

/** A small image of two layers of its own (content unique to this run), as an OCI layout. */
function smallImage(name: string): LayoutImage {
  const tag = `${name} ${process.pid} ${Date.now()}`;
  const dir = join(base, `layout-${name.replace(/[^a-z0-9]/g, '-')}`);
  return writeLayout(dir, 'latest', [
    rawTar([{ name: 'etc/', type: 'dir' }, { name: 'etc/which', type: 'file', content: `bottom ${tag}\n` }]),
    rawTar([{ name: 'etc/which', type: 'file', content: `top ${tag}\n` }, { name: 'data', type: 'file', content: randomBytes(3000).toString('hex') }]),
  ]);
}

async function imageNames(ns: string): Promise<string[]> {
  const res = await cl().call(SERVICES.images, 'List', { filters: [] }, { namespace: ns });
  const images = Array.isArray(res['images']) ? res['images'] as Array<Record<string, unknown>> : [];
  return images.map((i) => String(i['name']));
}

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('transfer pull: content, unpack and record; per-layer progress reaches the totals', async () => {
  const img = smallImage('pull');
  const ref = `${reg(registry).domain}/transfer/pull:latest`;
  skopeoPush(img.layout, 'latest', ref);
  const events: TransferProgress[] = [];
  const res = await transferPull(cl(), ref, { onProgress: (p) => events.push(p) });
  assert.equal(res.name, ref);
  assert.equal(res.target.digest, img.manifest);
  assert.equal(res.target.mediaType, 'application/vnd.oci.image.manifest.v1+json');

  const kinds = events.map((e) => e.event);
  assert.equal(kinds[0], `Resolving from ${ref}`);
  assert.ok(kinds.includes('unpacking'), kinds.join(', '));
  assert.equal(kinds[kinds.length - 1], `Completed pull from ${ref}`);
  assert.ok(kinds.indexOf('saved') > kinds.indexOf('unpacking'));
  for (const l of img.layers) {
    const mine = events.filter((e) => e.name === `layer-${l}`);
    const complete = mine.find((e) => e.event === 'complete');
    assert.ok(complete !== undefined, `${l}: ${mine.map((e) => e.event).join(',')}`);
    assert.ok(complete.total > 0);
    assert.equal(complete.progress, complete.total, 'the bytes reach the total');
    assert.equal(complete.desc?.digest, l);
    assert.equal(complete.desc?.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    assert.deepEqual(complete.parents, [`manifest-${img.manifest}`]);
    assert.ok(mine.some((e) => e.event === 'extracted'), `${l} extracted`);
  }

  // The record, and the rootfs committed as the top chain ID.
  const d = deps();
  assert.equal(d.images.get(NS, ref).target.digest, img.manifest);
  const top = chainIdsOf(img.diffIds)[1] ?? '';
  const sn = d.snapshotters.get('overlayfs');
  assert.equal((await sn?.stat(`${NS}/${top}`))?.kind, 'committed');

  // Another name for the record, with labels: the reference's name is not recorded beside it.
  const ref2 = `${reg(registry).domain}/transfer/pull2:latest`;
  skopeoPush(img.layout, 'latest', ref2);
  const named = await transferPull(cl(), ref2, { name: 'local/renamed:v1', labels: { 'com.example.k': 'v' } });
  assert.equal(named.name, 'docker.io/local/renamed:v1');
  assert.equal(d.images.get(NS, named.name).labels['com.example.k'], 'v');
  assert.ok(!(await imageNames(NS)).includes(ref2));
});

test('transfer pull with basic auth: credentials asked on the auth stream; a wrong password records nothing', async () => {
  const img = smallImage('auth');
  const domain = reg(authRegistry).domain;
  const ref = `${domain}/transfer/private:latest`;
  runOk(SKOPEO, ['copy', '--quiet', '--dest-tls-verify=false', '--dest-creds', `${USER}:${PASSWORD}`, `oci:${img.layout}:latest`, `docker://${ref}`]);

  await assert.rejects(transferPull(cl(), ref), (e: unknown) => {
    assert.ok(isKind(e, ErrorKind.PermissionDenied), String(e));
    assert.match(String(e), /unauthorized/);
    return true;
  });
  await assert.rejects(transferPull(cl(), ref, { credentials: { username: USER, password: 'wrong' } }), (e: unknown) => {
    assert.ok(isKind(e, ErrorKind.PermissionDenied), String(e));
    assert.match(String(e), /unauthorized/);
    return true;
  });
  assert.ok(!(await imageNames(NS)).includes(ref), 'nothing recorded');

  const res = await transferPull(cl(), ref, { credentials: { username: USER, password: PASSWORD } });
  assert.equal(res.target.digest, img.manifest);
  assert.ok((await imageNames(NS)).includes(ref));

  // Identity tokens are refused with a clear error, not sent as a password.
  await assert.rejects(transferPull(cl(), ref, { credentials: { identityToken: 'tok' } }), (e: unknown) => {
    assert.ok(isKind(e, ErrorKind.NotImplemented), String(e));
    assert.match(String(e), /identity-token/);
    return true;
  });
});

test('transfer auth stream, as a containerd client sees it: AuthRequest with host, reference and the challenge', async () => {
  const c = cl();
  const img = smallImage('authraw');
  const domain = reg(authRegistry).domain;
  const ref = `${domain}/transfer/authraw:latest`;
  runOk(SKOPEO, ['copy', '--quiet', '--dest-tls-verify=false', '--dest-creds', `${USER}:${PASSWORD}`, `oci:${img.layout}:latest`, `docker://${ref}`]);
  const id = `auth-raw-${process.pid}`;
  const raw = c.duplex(SERVICES.streaming, 'Stream');
  try {
    const received: Array<Record<string, unknown>> = [];
    let notify: (() => void) | undefined;
    raw.on('data', (m: Record<string, unknown>) => {
      received.push(m);
      notify?.();
    });
    raw.on('error', () => undefined);
    const nextMessage = async (): Promise<Record<string, unknown>> => {
      while (received.length === 0) await new Promise<void>((resolve) => { notify = resolve; });
      return received.shift() ?? {};
    };
    raw.write({ ...c.types.pack('containerd.services.streaming.v1.StreamInit', { id }) });
    const ack = await nextMessage();
    assert.equal(ack['type_url'], 'google.protobuf.Empty');
    const src = c.types.pack('containerd.types.transfer.OCIRegistry', { reference: ref, resolver: { auth_stream: id } });
    const dst = c.types.pack('containerd.types.transfer.ImageStore', { name: 'local/authraw:latest' });
    const transferring = c.call(SERVICES.transfer, 'Transfer', { source: src, destination: dst });
    const q = await nextMessage();
    assert.equal(q['type_url'], 'containerd.types.transfer.AuthRequest');
    const req = c.types.decode('containerd.types.transfer.AuthRequest', q['value'] as Buffer);
    assert.equal(req['host'], domain);
    assert.equal(req['reference'], ref);
    assert.deepEqual(req['wwwauthenticate'], ['Basic realm="berth-test"']);
    raw.write({ ...c.types.pack('containerd.types.transfer.AuthResponse', { authType: 'CREDENTIALS', username: USER, secret: PASSWORD }) });
    await transferring;
    assert.equal(deps().images.get(NS, 'docker.io/local/authraw:latest').target.digest, img.manifest);
    // The transfer closed the stream: the client sees its end.
    await new Promise<void>((resolve) => (raw.readableEnded ? resolve() : raw.once('end', resolve)));
  } finally {
    raw.cancel();
  }
});

test('transfer push: an image to another name, read back from the registry', async () => {
  const img = smallImage('push');
  const src = `${reg(registry).domain}/transfer/push-src:latest`;
  skopeoPush(img.layout, 'latest', src);
  await transferPull(cl(), src);
  const dest = `${reg(registry).domain}/transfer/pushed:v2`;
  const events: TransferProgress[] = [];
  const res = await transferPush(cl(), src, dest, { onProgress: (p) => events.push(p) });
  assert.equal(res.digest, img.manifest);
  assert.equal(skopeoRaw(dest).digest, img.manifest);
  for (const l of img.layers) {
    assert.ok(events.some((e) => e.name === `layer-${l}` && (e.event === 'complete' || e.event === 'already exists') && e.progress === e.total), l);
  }
  assert.equal(events[events.length - 1]?.event, `Completed push to ${dest}`);

  // Pushed with credentials to the registry that asks for them.
  const authDest = `${reg(authRegistry).domain}/transfer/pushed:v3`;
  await assert.rejects(transferPush(cl(), src, authDest), (e: unknown) => isKind(e, ErrorKind.PermissionDenied));
  const ok = await transferPush(cl(), src, authDest, { credentials: { username: USER, password: PASSWORD } });
  assert.equal(ok.digest, img.manifest);

  await assert.rejects(transferPush(cl(), 'docker.io/library/not-here:latest', dest), (e: unknown) => isKind(e, ErrorKind.NotFound));
});

test('transfer export -> import: the same digests in another namespace, unpacked', async () => {
  const img = smallImage('roundtrip');
  const ref = `${reg(registry).domain}/transfer/roundtrip:latest`;
  skopeoPush(img.layout, 'latest', ref);
  await transferPull(cl(), ref);

  const tar = await collect(exportArchive(cl(), [ref]));
  assert.ok(tar.includes(Buffer.from('manifest.json')), 'docker-save compatible');
  assert.ok(tar.includes(Buffer.from('oci-layout')));

  const events: TransferProgress[] = [];
  // Sent in small pieces, so that many Data messages and window updates go by.
  const pieces = Readable.from((function* () {
    for (let off = 0; off < tar.length; off += 5000) yield tar.subarray(off, off + 5000);
  })());
  const res = await importArchive(cl(), pieces, { namespace: NS_IMPORT, labels: { imported: 'yes' }, onProgress: (p) => events.push(p) });
  assert.deepEqual(res.images, [{ name: ref, digest: img.manifest }]);
  assert.ok(events.some((e) => e.event === 'saved' && e.name === ref));
  const d = deps();
  const rec = d.images.get(NS_IMPORT, ref);
  assert.equal(rec.target.digest, img.manifest);
  assert.equal(rec.labels['imported'], 'yes');
  const top = chainIdsOf(img.diffIds)[1] ?? '';
  assert.equal((await d.snapshotters.get('overlayfs')?.stat(`${NS_IMPORT}/${top}`))?.kind, 'committed');

  // Exported again from there: the same bytes (the export is deterministic).
  const again = await collect(exportArchive(cl(), [ref], { namespace: NS_IMPORT }));
  assert.ok(again.equals(tar));

  // A name given to the import.
  const named = await importArchive(cl(), Readable.from([tar]), { namespace: NS_IMPORT, name: 'local/loaded:v1' });
  assert.deepEqual(named.images.map((i) => i.name).sort(), [ref, 'docker.io/local/loaded:v1'].sort());
});

test('transfer export with a slow reader: backpressure holds, the bytes are whole', async () => {
  const img = smallImage('slow');
  const ref = `${reg(registry).domain}/transfer/slow:latest`;
  skopeoPush(img.layout, 'latest', ref);
  await transferPull(cl(), ref);
  const fast = await collect(exportArchive(cl(), [ref]));
  const parts: Buffer[] = [];
  await pipeline(exportArchive(cl(), [ref]), new Writable({
    highWaterMark: 1024,
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      void sleep(2).then(() => cb());
    },
  }));
  assert.ok(Buffer.concat(parts).equals(fast));

  // An image that does not exist: the error comes on the stream.
  await assert.rejects(collect(exportArchive(cl(), ['docker.io/library/absent:latest'])), (e: unknown) => isKind(e, ErrorKind.NotFound));
});

test('transfer import of garbage or a hostile archive fails and records nothing', async () => {
  const ns = `${NS_IMPORT}bad`;
  await assert.rejects(importArchive(cl(), Readable.from([randomBytes(200_000)]), { namespace: ns }), (e: unknown) => {
    assert.ok(isKind(e, ErrorKind.InvalidArgument) || isKind(e, ErrorKind.FailedPrecondition), String(e));
    return true;
  });
  const hostile = rawTar([
    { name: 'index.json', type: 'file', content: '{"schemaVersion":2,"manifests":[]}' },
    { name: '../escape', type: 'file', content: 'x' },
  ]);
  await assert.rejects(importArchive(cl(), Readable.from([hostile]), { namespace: ns }), /"\.\." is not allowed/);
  const empty = rawTar([{ name: 'oci-layout', type: 'file', content: '{"imageLayoutVersion":"1.0.0"}' }]);
  await assert.rejects(importArchive(cl(), Readable.from([empty]), { namespace: ns }), /not an image archive/);
  assert.deepEqual(await imageNames(ns), []);
});

test('transfer: unknown streams are NOT_FOUND, unsupported pairs UNIMPLEMENTED', async () => {
  const c = cl();
  const store = c.types.pack('containerd.types.transfer.ImageStore', { name: 'docker.io/library/x:latest' });
  const registryAny = c.types.pack('containerd.types.transfer.OCIRegistry', { reference: `${reg(registry).domain}/transfer/none:latest` });
  await assert.rejects(
    c.call(SERVICES.transfer, 'Transfer', { source: registryAny, destination: store, options: { progress_stream: 'no-such-stream' } }),
    (e: unknown) => isKind(e, ErrorKind.NotFound) && /progress stream "no-such-stream"/.test(String(e)),
  );
  const importAny = c.types.pack('containerd.types.transfer.ImageImportStream', { stream: 'missing-data' });
  await assert.rejects(
    c.call(SERVICES.transfer, 'Transfer', { source: importAny, destination: store }),
    (e: unknown) => isKind(e, ErrorKind.NotFound) && /import data stream "missing-data"/.test(String(e)),
  );
  await assert.rejects(
    c.call(SERVICES.transfer, 'Transfer', { source: store, destination: store }),
    (e: unknown) => isKind(e, ErrorKind.NotImplemented) && /ImageStore -> containerd.types.transfer.ImageStore is not supported/.test(String(e)),
  );
  await assert.rejects(
    c.call(SERVICES.transfer, 'Transfer', { source: { type_url: 'example.com/Unknown', value: Buffer.alloc(0) }, destination: store }),
    (e: unknown) => isKind(e, ErrorKind.NotImplemented),
  );
  // A stream must start with StreamInit.
  const raw = c.duplex(SERVICES.streaming, 'Stream');
  const failed = new Promise<unknown>((resolve) => raw.on('error', resolve));
  raw.on('data', () => undefined);
  raw.write({ ...c.types.pack('containerd.types.transfer.Data', { data: Buffer.from('x') }) });
  const err = await failed;
  assert.match(String(err), /StreamInit/);
});
