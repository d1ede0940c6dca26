// berth's image commands against a real engine and a loopback registry:
// listing, history, tag/rmi, save|load, import, pull/push with progress, login.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { startRegistry } from '../registry/_registry.js';
import { IMAGE, ROOTFS, forEachEngine, normaliseTable, sameResult } from './_engine.js';

const BIG = 256 * 1024 * 1024;

/** Image rows in a stable order: docker lists the tags of one image in map order. */
const sortedRows = (s: string): string => {
  const all = normaliseTable(s).split('\n');
  // a table keeps its header first; lines of `{{json .}}` all sort
  if (all[0]?.startsWith('{') === true) return all.filter((r) => r !== '').sort().join('\n');
  const [head = '', ...rows] = all;
  return [head, ...rows.filter((r) => r !== '').sort()].join('\n');
};

forEachEngine('berth image commands', (engine) => {
  test('images, history, tag, rmi match docker', async () => {
    const e = engine();
    assert.equal((await e.berth(['tag', IMAGE, 'other/name:v1'])).code, 0);
    for (const args of [
      ['images'],
      ['images', '-q'],
      ['images', '--no-trunc'],
      ['images', '--digests'],
      ['images', 'busybox'],
      ['images', '-f', 'reference=other/*', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}'],
      ['images', '--format', '{{json .}}'],
      ['image', 'ls', '--format', 'table {{.Repository}}\t{{.Size}}'],
      ['history', IMAGE],
      ['history', '--no-trunc', IMAGE],
      ['history', '-H=false', '-q', IMAGE],
      ['history', 'nosuch'],
      ['rmi', 'nosuch'],
    ]) {
      const diff = sameResult(await e.berth(args), await e.docker(args), args.join(' '), sortedRows);
      assert.equal(diff, undefined, diff);
    }
    const rmi = await e.berth(['rmi', 'other/name:v1']);
    assert.deepEqual([rmi.code, rmi.stdout], [0, 'Untagged: other/name:v1\n']);
  });

  test('save | load round trip, save -o, load -i, import with changes', async () => {
    const e = engine();
    const saved = join(e.dir, 'saved.tar');
    assert.equal((await e.berth(['save', '-o', saved, IMAGE])).code, 0);
    assert.ok(statSync(saved).size > 100_000);
    const piped = await runBinary(e, ['save', IMAGE]);
    assert.equal(piped.length, statSync(saved).size);
    await e.berth(['tag', IMAGE, 'roundtrip:1']);
    const save2 = join(e.dir, 'rt.tar');
    await e.berth(['save', '-o', save2, 'roundtrip:1']);
    assert.equal((await e.berth(['rmi', 'roundtrip:1'])).code, 0);
    const load = await e.berth(['load'], { input: readFileSync(save2) });
    assert.deepEqual([load.code, load.stdout], [0, 'Loaded image: roundtrip:1\n']);
    const loadI = await e.berth(['load', '-i', save2]);
    const dockerLoad = await e.docker(['load', '-i', save2]);
    assert.equal(sameResult(loadI, dockerLoad, 'load -i'), undefined);
    const missing = [await e.berth(['load', '-i', join(e.dir, 'nope.tar')]), await e.docker(['load', '-i', join(e.dir, 'nope.tar')])];
    assert.equal(missing[0]!.code, missing[1]!.code);
    const tar = spawnSync('tar', ['-C', ROOTFS, '-c', '.'], { maxBuffer: 256 * 1024 * 1024 });
    const imp = await e.berth(['import', '-c', 'ENV FROM_IMPORT=1', '-c', 'CMD ["sh"]', '-m', 'a message', '-', 'imported:v1'], { input: tar.stdout });
    assert.equal(imp.code, 0, imp.stderr);
    assert.match(imp.stdout, /^sha256:[0-9a-f]{64}\n$/);
    const cfg = await e.docker(['inspect', '-f', '{{.Config.Env}} {{.Config.Cmd}} {{.Comment}}', 'imported:v1']);
    assert.equal(cfg.stdout, '[FROM_IMPORT=1] [sh] a message\n');
    const file = join(e.dir, 'rootfs.tar');
    (await import('node:fs')).writeFileSync(file, tar.stdout);
    const impFile = await e.berth(['import', file, 'imported:v2']);
    assert.equal(impFile.code, 0, impFile.stderr);
  });

  test('push and pull through a loopback registry: plain lines, TTY progress, -q, errors', async (t) => {
    const e = engine();
    const reg = await startRegistry();
    t.after(() => reg.stop());
    // an image of its own layer (3 MB of random bytes), so that the pull has to download it
    const src = join(e.dir, 'pushsrc');
    mkdirSync(src);
    writeFileSync(join(src, 'blob'), randomBytes(3 * 1024 * 1024));
    const ref = `${reg.domain}/cli/busybox:v1`;
    const made = await e.berth(['import', '-', ref], { input: spawnSync('tar', ['-C', src, '-c', '.'], { maxBuffer: BIG }).stdout });
    assert.equal(made.code, 0, made.stderr);
    const push = await e.berth(['push', ref]);
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stdout, new RegExp(`^The push refers to repository \\[${reg.domain}/cli/busybox\\]\\n[0-9a-f]{12}: Preparing\\n([0-9a-f]{12}: Waiting\\n)?[0-9a-f]{12}: Pushed\\nv1: digest: sha256:[0-9a-f]{64} size: \\d+\\n$`));
    const gone = await e.berth(['rmi', ref]);
    assert.equal(gone.code, 0, gone.stderr);
    const tty = await e.berthTty(['pull', ref], { cols: 140 });
    assert.equal(tty.code, 0, tty.stdout);
    assert.match(tty.stdout, /v1: Pulling from cli\/busybox/);
    assert.match(tty.stdout, /\x1b\[2K\r[0-9a-f]{12}: (Downloading|Extracting) +\[=*>? *\] +[\d.]+[kM]?B\/[\d.]+[kM]?B/);
    assert.match(tty.stdout, /\x1b\[1A/);
    assert.match(tty.stdout, new RegExp(`Status: Downloaded newer image for ${reg.domain}/cli/busybox:v1\\r\\n${reg.domain}/cli/busybox:v1\\r\\n$`));
    const again = await e.berth(['pull', ref]);
    const dAgain = await e.docker(['pull', ref]);
    assert.equal(sameResult(again, dAgain, 'pull up to date'), undefined);
    const q = await e.berth(['pull', '-q', ref]);
    assert.deepEqual([q.code, q.stdout], [0, `${ref}\n`]);
    for (const args of [['pull', `${reg.domain}/cli/busybox:nosuch`], ['pull', 'Bad:Ref'], ['push', `${reg.domain}/cli/notlocal:v1`]]) {
      const diff = sameResult(await e.berth(args), await e.docker(args), args.join(' '));
      assert.equal(diff, undefined, diff);
    }
  });

  test('login stores base64 credentials in config.json and pull/push send them', async (t) => {
    const e = engine();
    const reg = await startRegistry({ kind: 'htpasswd', users: { alice: 's3cret' } });
    t.after(() => reg.stop());
    const bad = await e.berth(['login', '-u', 'alice', '--password-stdin', reg.domain], { input: 'wrong\n' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^Error response from daemon: .*(unauthorized|401)/i);
    const ok = await e.berth(['login', '-u', 'alice', '--password-stdin', reg.domain], { input: 's3cret\n' });
    assert.deepEqual([ok.code, ok.stdout], [0, 'Login Succeeded\n'], ok.stderr);
    const cfg = JSON.parse(readFileSync(join(e.dir, 'berth-config', 'config.json'), 'utf8')) as { auths: Record<string, { auth: string }> };
    assert.equal(Buffer.from(cfg.auths[reg.domain]?.auth ?? '', 'base64').toString(), 'alice:s3cret');
    const ref = `${reg.domain}/private/busybox:v1`;
    await e.berth(['tag', IMAGE, ref]);
    const push = await e.berth(['push', ref]);
    assert.equal(push.code, 0, push.stderr);
    await e.berth(['rmi', ref]);
    assert.equal((await e.berth(['pull', '-q', ref])).code, 0);
    const out = await e.berth(['logout', reg.domain]);
    assert.deepEqual([out.code, out.stdout], [0, `Removing login credentials for ${reg.domain}\n`]);
    const denied = await e.berth(['push', ref]);
    assert.notEqual(denied.code, 0);
  });

  test('image prune removes dangling images', async () => {
    const e = engine();
    const tar = spawnSync('tar', ['-C', ROOTFS, '-c', './etc'], { maxBuffer: BIG });
    await e.berth(['import', '-', 'dangling:1'], { input: tar.stdout });
    await e.berth(['import', '-', 'dangling:1'], { input: spawnSync('tar', ['-C', ROOTFS, '-c', './bin'], { maxBuffer: BIG }).stdout });
    const pr = await e.berth(['image', 'prune', '-f']);
    assert.equal(pr.code, 0);
    assert.match(pr.stdout, /^Deleted Images:\ndeleted: sha256:[0-9a-f]{64}\n(deleted: sha256:[0-9a-f]{64}\n)*\nTotal reclaimed space: .*B\n$/);
  });
});

async function runBinary(e: { socket: string; dir: string }, args: string[]): Promise<Buffer> {
  const { BERTH_BIN } = await import('./_engine.js');
  const r = spawnSync(process.execPath, [BERTH_BIN, ...args], {
    env: { ...process.env, BERTH_HOST: `unix://${e.socket}`, BERTH_CONFIG: join(e.dir, 'berth-config') },
    maxBuffer: 512 * 1024 * 1024,
  });
  assert.equal(r.status, 0, String(r.stderr));
  return r.stdout;
}
