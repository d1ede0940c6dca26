// berth's network commands against a real engine, compared with the docker CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { IMAGE, forEachEngine, normaliseTable, sameResult } from './_engine.js';
import type { Engine } from './_engine.js';

/** A /24 prefix (`10.214.N`) that no route or address here uses. */
function freePrefix(taken: Set<string>): string {
  const used = `${spawnSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' }).stdout}\n${spawnSync('ip', ['-4', 'addr'], { encoding: 'utf8' }).stdout}`;
  for (let i = 0; i < 200; i++) {
    const p = `10.214.${Math.floor(Math.random() * 256)}`;
    if (!used.includes(`${p}.`) && !taken.has(p)) {
      taken.add(p);
      return p;
    }
  }
  throw new Error('no free /24 in 10.214.0.0/16');
}

const same = (a: Awaited<ReturnType<Engine['berth']>>, b: Awaited<ReturnType<Engine['docker']>>, what: string, norm?: (s: string) => string): void => {
  const diff = sameResult(a, b, what, norm);
  assert.equal(diff, undefined, diff);
};

/**
 * Removes the named networks after the test, pass or fail: a daemon keeps its networks
 * (and their bridges and rules) when it stops.
 */
function removeAfter(t: { after(fn: () => Promise<void>): void }, e: Engine, names: readonly string[]): void {
  t.after(async () => {
    await e.docker(['network', 'rm', ...names]);
  });
}

forEachEngine('berth network commands', (engine) => {
  const taken = new Set<string>();

  test('create with IPAM, labels, options and --internal; inspect matches docker', async (t) => {
    const e = engine();
    removeAfter(t, e, ['netcreate']);
    const p = freePrefix(taken);
    const c = await e.berth([
      'network', 'create', '--driver', 'bridge', '--subnet', `${p}.0/24`, '--gateway', `${p}.1`, '--ip-range', `${p}.128/25`,
      '--internal', '--label', 'tier=back', '--label', 'empty', '-o', 'com.docker.network.bridge.name=bnt' + p.split('.')[2], 'netcreate',
    ]);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /^[0-9a-f]{64}\n$/);
    const f = await e.berth(['network', 'inspect', '--format', '{{.Id}} {{.Driver}} {{.Internal}} {{json .IPAM.Config}} {{json .Labels}} {{index .Options "com.docker.network.bridge.name"}}', 'netcreate']);
    assert.equal(f.code, 0, f.stderr);
    const [id, driver, internal, ipam, labels, bridge] = f.stdout.trim().split(' ');
    assert.equal(id, c.stdout.trim());
    assert.equal(driver, 'bridge');
    assert.equal(internal, 'true');
    assert.deepEqual(JSON.parse(ipam ?? ''), [{ Subnet: `${p}.0/24`, IPRange: `${p}.128/25`, Gateway: `${p}.1` }]);
    assert.deepEqual(JSON.parse(labels ?? ''), { tier: 'back', empty: '' });
    assert.equal(bridge, `bnt${p.split('.')[2] ?? ''}`);
    for (const args of [
      ['network', 'inspect', 'netcreate'],
      ['network', 'inspect', '--format', '{{.Name}} {{.Scope}} {{.EnableIPv6}}', 'netcreate', id ?? ''],
      ['network', 'inspect', '--format', 'json', 'netcreate'],
      ['network', 'inspect', 'netcreate', 'no-such-network'],
    ]) {
      same(await e.berth(args), await e.docker(args), args.join(' '));
    }
  });

  test('create refuses what docker refuses', async (t) => {
    const e = engine();
    const p = freePrefix(taken);
    removeAfter(t, e, ['netdup', 'netopt', 'netbad1', 'netbad2', 'netbad3', 'netbad5']);
    const q = freePrefix(taken);
    assert.equal((await e.berth(['network', 'create', '--subnet', `${p}.0/24`, 'netdup'])).code, 0);
    for (const args of [
      ['network', 'create', '--gateway', `${q}.1`, 'netbad1'],
      ['network', 'create', '--subnet', `${q}.0/24`, '--gateway', '192.0.2.1', 'netbad2'],
      ['network', 'create', '--subnet', `${q}.0/24`, '--ip-range', '192.0.2.0/28', 'netbad3'],
      ['network', 'create', 'netdup'],
      ['network', 'create'],
      ['network', 'create', '--driver', 'no-such-driver', 'netbad5'],
    ]) {
      same(await e.berth(args), await e.docker(args), args.join(' '));
    }
    // an option without a value is kept with an empty one, as docker does
    assert.equal((await e.berth(['network', 'create', '--subnet', `${q}.0/24`, '-o', 'novalue', 'netopt'])).code, 0);
    const opts = await e.docker(['network', 'inspect', '--format', '{{json .Options}}', 'netopt']);
    assert.equal(opts.stdout, '{"novalue":""}\n');
  });

  test('ls: table, -q, --no-trunc, --format, filters', async (t) => {
    const e = engine();
    removeAfter(t, e, ['netls10', 'netls2', 'netls1']);
    for (const [name, label] of [['netls10', 'a=1'], ['netls2', 'a=2'], ['netls1', 'b=3']] as const) {
      const r = await e.berth(['network', 'create', '--subnet', `${freePrefix(taken)}.0/24`, '--label', label, name]);
      assert.equal(r.code, 0, r.stderr);
    }
    for (const args of [
      ['network', 'ls'],
      ['network', 'list', '-q'],
      ['network', 'ls', '--no-trunc'],
      ['network', 'ls', '--format', '{{.Name}}\\t{{.Driver}} {{.Internal}} {{.IPv6}} {{.Labels}} {{.Label "a"}}'],
      ['network', 'ls', '--format', 'table {{.Name}}\\t{{.Scope}}'],
      ['network', 'ls', '--format', 'json'],
      ['network', 'ls', '-f', 'label=a'],
      ['network', 'ls', '-f', 'name=netls', '-f', 'driver=bridge', '--format', '{{.Name}}'],
      ['network', 'ls', '-f', 'bogus=1'],
    ]) {
      same(await e.berth(args), await e.docker(args), args.join(' '), normaliseTable);
    }
    const names = (await e.berth(['network', 'ls', '-f', 'name=netls', '--format', '{{.Name}}'])).stdout.split('\n').filter((x) => x !== '');
    assert.deepEqual(names, ['netls1', 'netls2', 'netls10']);
  });

  test('connect --ip --alias and disconnect -f a running container', async (t) => {
    const e = engine();
    removeAfter(t, e, ['netconn1', 'netconn2']);
    const p = freePrefix(taken);
    const q = freePrefix(taken);
    assert.equal((await e.berth(['network', 'create', '--subnet', `${p}.0/24`, 'netconn1'])).code, 0);
    assert.equal((await e.berth(['network', 'create', '--subnet', `${q}.0/24`, 'netconn2'])).code, 0);
    const run = await e.berth(['run', '-d', '--name', 'netc', '--network', 'netconn1', IMAGE, 'sleep', '300']);
    assert.equal(run.code, 0, run.stderr);
    try {
      const c = await e.berth(['network', 'connect', '--ip', `${q}.77`, '--alias', 'svc', '--alias', 'other', 'netconn2', 'netc']);
      assert.equal(c.code, 0, c.stderr);
      assert.equal(c.stdout, '');
      const i = await e.berth(['inspect', '--format', '{{with index .NetworkSettings.Networks "netconn2"}}{{.IPAddress}} {{json .Aliases}}{{end}}', 'netc']);
      const [addr, aliases] = i.stdout.trim().split(' ');
      assert.equal(addr, `${q}.77`);
      assert.ok((JSON.parse(aliases ?? '[]') as string[]).includes('svc'), i.stdout);
      const inside = await e.berth(['exec', 'netc', 'ip', '-4', '-o', 'addr']);
      assert.match(inside.stdout, new RegExp(`inet ${q.replace(/\./g, '\\.')}\\.77/24`));
      const members = await e.berth(['network', 'inspect', '--format', '{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}', 'netconn2']);
      assert.equal(members.stdout, `netc ${q}.77/24\n`);
      for (const args of [
        ['network', 'connect', '--ip', 'not-an-ip', 'netconn2', 'netc'],
        ['network', 'connect', 'netconn2', 'no-such-container'],
        ['network', 'connect', 'netconn2'],
        ['network', 'disconnect', 'no-such-network', 'netc'],
      ]) {
        same(await e.berth(args), await e.docker(args), args.join(' '));
      }
      const d = await e.berth(['network', 'disconnect', '-f', 'netconn2', 'netc']);
      assert.equal(d.code, 0, d.stderr);
      const after = await e.berth(['inspect', '--format', '{{len .NetworkSettings.Networks}}', 'netc']);
      assert.equal(after.stdout, '1\n');
      // a network in use cannot go
      same(await e.berth(['network', 'rm', 'netconn1']), await e.docker(['network', 'rm', 'netconn1']), 'rm in use');
    } finally {
      await e.berth(['rm', '-f', 'netc']);
    }
  });

  test('rm and prune', async (t) => {
    const e = engine();
    removeAfter(t, e, ['netrm1', 'netrm2', 'netprune1', 'netprune2']);
    for (const n of ['netrm1', 'netrm2', 'netprune1', 'netprune2']) {
      assert.equal((await e.berth(['network', 'create', '--subnet', `${freePrefix(taken)}.0/24`, '--label', `group=${n.replace(/\d$/, '')}`, n])).code, 0);
    }
    const rm = await e.berth(['network', 'rm', 'netrm1', 'no-such-net', 'netrm2']);
    assert.equal(rm.code, 1);
    assert.equal(rm.stdout, 'netrm1\nnetrm2\n');
    const drm = await e.docker(['network', 'rm', 'no-such-net']);
    same(await e.berth(['network', 'rm', 'no-such-net']), drm, 'rm missing');
    same(await e.berth(['network', 'rm', '-f', 'no-such-net']), await e.docker(['network', 'rm', '-f', 'no-such-net']), 'rm -f missing');
    same(await e.berth(['network', 'prune'], { input: 'n\n' }), await e.docker(['network', 'prune'], { input: 'n\n' }), 'prune declined');
    const pr = await e.berth(['network', 'prune', '-f', '--filter', 'label=group=netprune']);
    assert.equal(pr.code, 0, pr.stderr);
    const lines = pr.stdout.split('\n');
    assert.equal(lines[0], 'Deleted Networks:');
    assert.deepEqual(lines.slice(1, 3).sort(), ['netprune1', 'netprune2']);
    assert.equal(pr.stdout.endsWith('\n\n'), true);
    same(await e.berth(['network', 'prune', '-f', '--filter', 'label=group=netprune']), await e.docker(['network', 'prune', '-f', '--filter', 'label=group=netprune']), 'prune nothing');
  });
});
