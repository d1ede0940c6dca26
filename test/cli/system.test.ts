// berth's system commands and command-line conventions against a real engine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { IMAGE, forEachEngine, normaliseTable, sameResult } from './_engine.js';

forEachEngine('berth system commands', (engine) => {
  test('version shows client and server sections; negotiates the API version', async () => {
    const e = engine();
    const v = await e.berth(['version']);
    assert.equal(v.code, 0, v.stderr);
    const d = await e.docker(['version']);
    const serverOf = (s: string): string => s.slice(s.indexOf('\nServer:'));
    assert.equal(serverOf(v.stdout), serverOf(d.stdout));
    const api = (await e.docker(['version', '--format', '{{.Server.APIVersion}}'])).stdout.trim();
    assert.match(v.stdout, new RegExp(`^Client:\\n Version: +\\S+\\n API version: +${api.replace('.', '\\.')}`));
    const f = await e.berth(['version', '--format', '{{.Server.Version}}']);
    assert.equal(f.stdout, (await e.docker(['version', '--format', '{{.Server.Version}}'])).stdout);
  });

  test('info and system df match docker', async () => {
    const e = engine();
    await e.berth(['run', '-d', '--name', 'sys1', IMAGE, 'sleep', '300']);
    const bi = await e.berth(['info']);
    const di = await e.docker(['info']);
    assert.equal(bi.code, 0);
    const serverLines = (s: string): string[] => s.slice(s.indexOf('\nServer:')).split('\n').filter((l) => !/Runtimes:|System Time:/.test(l));
    assert.deepEqual(serverLines(bi.stdout), serverLines(di.stdout));
    assert.equal((await e.berth(['info', '-f', '{{.Containers}}'])).stdout, (await e.docker(['info', '-f', '{{.Containers}}'])).stdout);
    for (const args of [['system', 'df'], ['system', 'df', '-v']]) {
      const diff = sameResult(await e.berth(args), await e.docker(args), args.join(' '), normaliseTable);
      assert.equal(diff, undefined, diff);
    }
  });

  test('events: since/until, filters, --format', async () => {
    const e = engine();
    const since = String(Math.floor(Date.now() / 1000) - 1);
    await e.berth(['run', '--name', 'ev1', IMAGE, 'true']);
    await e.berth(['rm', 'ev1']);
    const until = String(Math.floor(Date.now() / 1000) + 1);
    for (const args of [
      ['events', '--since', since, '--until', until],
      ['events', '--since', since, '--until', until, '-f', 'event=die'],
      ['events', '--since', since, '--until', until, '--format', '{{json .}}'],
      ['events', '--since', since, '--until', until, '--format', '{{.Type}} {{.Action}} {{.Actor.Attributes.name}}'],
    ]) {
      const diff = sameResult(await e.berth(args), await e.docker(args), args.join(' '));
      assert.equal(diff, undefined, diff);
    }
    const b = await e.berth(['events', '--since', since, '--until', until, '-f', 'container=ev1', '--format', '{{.Action}}']);
    assert.deepEqual(b.stdout.split('\n').filter((l) => ['create', 'start', 'die', 'destroy'].includes(l)), ['create', 'start', 'die', 'destroy']);
  });

  test('system prune asks, then removes stopped containers', async () => {
    const e = engine();
    await e.berth(['create', '--name', 'prune-me', IMAGE]);
    const no = await e.berth(['system', 'prune'], { input: 'n\n' });
    assert.equal(no.code, 0);
    assert.match(no.stdout, /^WARNING! This will remove:\n {2}- all stopped containers\n/);
    assert.equal((await e.berth(['ps', '-aq', '-f', 'name=prune-me'])).stdout.length, 13);
    const yes = await e.berth(['system', 'prune', '-f']);
    assert.equal(yes.code, 0, yes.stderr);
    assert.match(yes.stdout, /Deleted Containers:\n[0-9a-f]{64}\n/);
    assert.match(yes.stdout, /Total reclaimed space: /);
  });

  test('unknown commands, flags, help, and an unreachable daemon', async () => {
    const e = engine();
    for (const args of [['nosuchcmd'], ['container', 'bogus'], ['--bogus', 'ps']]) {
      const b = await e.berth(args);
      const d = await e.docker(args);
      assert.equal(b.code, d.code, `${args.join(' ')}: ${b.stderr} / ${d.stderr}`);
    }
    const help = await e.berth(['ps', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: {2}berth ps \[OPTIONS\]\n\nList containers\n\nAliases:\n.*berth container ls.*\n\nOptions:\n/);
    assert.match(help.stdout, /^ {2}-a, --all +Show all containers/m);
    const top = await e.berth(['--help']);
    assert.match(top.stdout, /Management Commands:\n {2}container/);
    const down = await e.berth(['ps'], { env: { BERTH_HOST: `unix://${e.dir}/nothing.sock` } });
    const dDown = await e.docker(['ps'], { env: { DOCKER_HOST: `unix://${e.dir}/nothing.sock` } });
    assert.equal(down.code, dDown.code);
    assert.equal(down.code, 1);
    assert.equal(down.stderr, `Cannot connect to the Berth daemon at unix://${e.dir}/nothing.sock. Is the berth daemon running?\n`);
    assert.equal(down.stderr.replace('Berth daemon', 'Docker daemon').replace('berth daemon', 'docker daemon'), dDown.stderr);
    const unset = await e.berth(['ps'], { env: { BERTH_HOST: '', DOCKER_HOST: '' } });
    if (!existsSync('/run/berth/berth.sock')) {
      assert.equal(unset.code, 1);
      assert.equal(unset.stderr, 'Cannot connect to the Berth daemon at unix:///run/berth/berth.sock. Is the berth daemon running?\n');
    }
    const viaH = await e.berth(['-H', `unix://${e.socket}`, 'ps', '-q'], { env: { BERTH_HOST: 'unix:///nonexistent.sock' } });
    assert.equal(viaH.code, 0);
    const viaDocker = await e.berth(['ps', '-q'], { env: { BERTH_HOST: '', DOCKER_HOST: `unix://${e.socket}` } });
    assert.equal(viaDocker.code, 0);
  });
});
