// berth's container commands against a real engine, compared with the docker CLI
// where the output is deterministic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readlinkSync, writeFileSync, symlinkSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { IMAGE, asDocker, forEachEngine, normaliseTable, sameResult } from './_engine.js';

forEachEngine('berth container commands', (engine) => {
  test('ps, ps -a, -q, --no-trunc, --format, filters match docker', async () => {
    const e = engine();
    assert.equal((await e.berth(['run', '-d', '--name', 'ps-run', '-l', 'k=v', IMAGE, 'sleep', '300'])).code, 0);
    assert.equal((await e.berth(['create', '--name', 'ps-created', IMAGE, 'true'])).code, 0);
    for (const args of [
      ['ps'],
      ['ps', '-a'],
      ['ps', '-aq'],
      ['ps', '-a', '--no-trunc'],
      ['ps', '-l'],
      ['ps', '-n', '1', '-q'],
      ['ps', '-a', '--format', '{{.ID}}\t{{.Names}}\t{{.Labels}}\t{{.State}}'],
      ['ps', '-a', '--format', 'table {{.ID}}\t{{.Names}}\t{{.Command}}'],
      ['ps', '-a', '--format', '{{.Label "k"}}|{{.Names}}'],
      ['ps', '-a', '-f', 'label=k=v', '--format', '{{.Names}}'],
      ['ps', '-a', '-f', 'status=created', '--format', '{{.Names}}'],
      ['container', 'ls', '-a', '-s', '--format', '{{.Names}} {{.Size}}'],
    ]) {
      const diff = sameResult(await e.berth(args), await e.docker(args), args.join(' '), normaliseTable);
      assert.equal(diff, undefined, diff);
    }
    const json = await e.berth(['ps', '--format', '{{json .}}', '-f', 'name=ps-run']);
    const row = JSON.parse(json.stdout) as Record<string, unknown>;
    assert.equal(row.Names, 'ps-run');
    assert.equal(row.Labels, 'k=v');
    assert.equal(row.State, 'running');
  });

  test('inspect JSON, --format templates, --type and errors match docker', async () => {
    const e = engine();
    await e.berth(['run', '-d', '--name', 'insp', '-e', 'A=1', '-l', 'k=v', IMAGE, 'sleep', '300']);
    for (const args of [
      ['inspect', 'insp'],
      ['inspect', 'insp', IMAGE],
      ['inspect', '--format', '{{.State.Status}}', 'insp'],
      ['inspect', '-f', '{{json .Config}}', 'insp'],
      ['inspect', '-f', '{{index .Config.Labels "k"}}', 'insp'],
      ['inspect', '-f', '{{range .Config.Env}}[{{.}}]{{end}}', 'insp'],
      ['inspect', '--type', 'image', '-f', '{{.Id}}', IMAGE],
      ['container', 'inspect', '-f', '{{.Name}}', 'insp'],
      ['image', 'inspect', '-f', '{{.Config.Cmd}}', IMAGE],
      ['inspect', 'no-such-thing'],
      ['inspect', 'insp', 'no-such-thing', '-f', '{{.Name}}'],
      ['inspect', '--type', 'image', 'insp'],
    ]) {
      const diff = sameResult(await e.berth(args), await e.docker(args), args.join(' '));
      assert.equal(diff, undefined, diff);
    }
  });

  test('stop, kill, restart, pause, unpause, rename, wait, rm and their errors', async () => {
    const e = engine();
    await e.berth(['run', '-d', '--name', 'life', IMAGE, 'sleep', '300']);
    const pause = await e.berth(['pause', 'life']);
    assert.deepEqual([pause.code, pause.stdout], [0, 'life\n']);
    assert.equal((await e.docker(['inspect', '-f', '{{.State.Status}}', 'life'])).stdout, 'paused\n');
    assert.equal((await e.berth(['unpause', 'life'])).code, 0);
    const kill = await e.berth(['kill', '-s', 'KILL', 'life']);
    assert.deepEqual([kill.code, kill.stdout], [0, 'life\n']);
    const wait = await e.berth(['wait', 'life']);
    assert.deepEqual([wait.code, wait.stdout], [0, '137\n']);
    assert.equal((await e.berth(['restart', '-t', '0', 'life'])).code, 0);
    assert.equal((await e.docker(['inspect', '-f', '{{.State.Running}}', 'life'])).stdout, 'true\n');
    const stop = await e.berth(['stop', '-t', '1', 'life']);
    assert.deepEqual([stop.code, stop.stdout], [0, 'life\n']);
    assert.equal((await e.berth(['rename', 'life', 'life2'])).code, 0);
    assert.equal((await e.docker(['inspect', '-f', '{{.Name}}', 'life2'])).stdout, '/life2\n');
    for (const args of [
      ['stop', 'nosuch'],
      ['kill', 'life2'],
      ['rm', 'nosuch', 'other-nosuch'],
      ['start', 'nosuch'],
      ['rename', 'nosuch', 'x'],
      ['wait', 'nosuch'],
      ['pause', 'life2'],
      ['rm'],
      ['rename', 'a'],
      ['ps', 'extra'],
      ['ps', '--bogus'],
      ['ps', '-n', 'x'],
      ['logs', 'nosuch'],
      ['port', 'life2', '80'],
    ]) {
      const diff = sameResult(await e.berth(args), await e.docker(args), args.join(' '));
      assert.equal(diff, undefined, diff);
    }
    await e.berth(['run', '-d', '--name', 'busy', IMAGE, 'sleep', '300']);
    const rmBusy = [await e.berth(['rm', 'busy']), await e.docker(['rm', 'busy'])];
    assert.equal(sameResult(rmBusy[0]!, rmBusy[1]!, 'rm busy'), undefined);
    const rm = await e.berth(['rm', '-f', 'busy', 'life2']);
    assert.deepEqual([rm.code, rm.stdout], [0, 'busy\nlife2\n']);
  });

  test('logs: tail, timestamps, since/until, stderr, -f ends when the container exits', async () => {
    const e = engine();
    await e.berth(['run', '--name', 'lg', IMAGE, 'sh', '-c', 'echo one; echo two >&2; echo three']);
    for (const args of [['logs', 'lg'], ['logs', '-n', '1', 'lg'], ['logs', '--tail', '2', '-t', 'lg'], ['logs', '--since', '1h', 'lg'], ['logs', '--until', '2000-01-01T00:00:00Z', 'lg']]) {
      const diff = sameResult(await e.berth(args), await e.docker(args), args.join(' '));
      assert.equal(diff, undefined, diff);
    }
    await e.berth(['run', '-d', '--name', 'lgf', IMAGE, 'sh', '-c', 'for i in 1 2 3; do echo tick$i; sleep 0.3; done']);
    const started = Date.now();
    const f = await e.berth(['logs', '-f', 'lgf'], { timeoutMs: 20_000 });
    assert.equal(f.code, 0);
    assert.equal(f.stdout, 'tick1\ntick2\ntick3\n');
    assert.ok(Date.now() - started < 15_000);
    await e.berth(['run', '-d', '-t', '--name', 'lgt', IMAGE, 'sh', '-c', 'echo tty-line']);
    await e.berth(['wait', 'lgt']);
    const tl = await e.berth(['logs', 'lgt']);
    assert.equal(tl.stdout, 'tty-line\r\n');
  });

  test('exec: exit codes, stdin, env, user, workdir, detach, errors', async () => {
    const e = engine();
    await e.berth(['run', '-d', '--name', 'ex', IMAGE, 'sleep', '300']);
    for (const args of [
      ['exec', 'ex', 'sh', '-c', 'echo out; echo err >&2; exit 4'],
      ['exec', '-e', 'X=1', '-w', '/tmp', '-u', '1:2', 'ex', 'sh', '-c', 'echo $X $(pwd) $(id -u):$(id -g)'],
      ['exec', 'ex', 'no-such-binary'],
      ['exec', 'nosuch', 'true'],
    ]) {
      const diff = sameResult(await e.berth(args), await e.docker(args), args.join(' '));
      assert.equal(diff, undefined, diff);
    }
    const cat = await e.berth(['exec', '-i', 'ex', 'cat'], { input: 'through stdin\n' });
    assert.deepEqual([cat.code, cat.stdout], [0, 'through stdin\n']);
    const d = await e.berth(['exec', '-d', 'ex', 'sh', '-c', 'echo bg > /tmp/bg']);
    assert.deepEqual([d.code, d.stdout], [0, '']);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await e.berth(['exec', 'ex', 'cat', '/tmp/bg'])).stdout, 'bg\n');
    const tty = await e.berthTty(['exec', '-it', 'ex', 'sh', '-c', 'sleep 0.3; tty; stty size'], { cols: 91, rows: 27 });
    assert.equal(tty.code, 0);
    assert.match(tty.stdout, /\/dev\/pts\/\d+\r\n27 91\r\n/);
    await e.berth(['stop', '-t', '0', 'ex']);
    const stopped = [await e.berth(['exec', 'ex', 'true']), await e.docker(['exec', 'ex', 'true'])];
    assert.equal(sameResult(stopped[0]!, stopped[1]!, 'exec on stopped'), undefined);
  });

  test('update changes the limits and the restart policy', async (t) => {
    const e = engine();
    await e.berth(['run', '-d', '--name', 'upd', IMAGE, 'sleep', '300']);
    const up = await e.berth(['update', '--memory', '64m', '--memory-swap', '128m', '--cpus', '0.5', '--restart', 'on-failure:3', 'upd']);
    assert.deepEqual([up.code, up.stdout, up.stderr], [0, 'upd\n', '']);
    const hc = await e.docker(['inspect', '-f', '{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}', 'upd']);
    assert.equal(hc.stdout, '67108864 134217728 500000000 on-failure:3\n');
    const st = await e.berth(['stats', '--no-stream', 'upd']);
    assert.match(st.stdout.split('\n')[1] ?? '', /^[0-9a-f]{12} +upd +\d+\.\d\d% +[\d.]+[KMG]?i?B \/ 64MiB +/);
    await e.berth(['rm', '-f', 'upd']);
  });

  test('top, diff, port, stats --no-stream, export, prune', async () => {
    const e = engine();
    await e.berth(['run', '-d', '--name', 'misc', IMAGE, 'sh', '-c', 'echo x > /made; rm -rf /home; sleep 300']);
    await new Promise((r) => setTimeout(r, 500));
    // ps's C column (recent CPU use) may change between the two runs: compare the rest.
    const noCpu = (s: string): string => s.split('\n').map((l) => l.replace(/^(\S+\s+\d+\s+\d+\s+)\d+(\s)/, '$1-$2')).join('\n');
    for (const args of [['top', 'misc'], ['diff', 'misc'], ['port', 'misc'], ['top', 'misc', '-o', 'pid,comm']]) {
      const diff = sameResult(await e.berth(args), await e.docker(args), args.join(' '), noCpu);
      assert.equal(diff, undefined, diff);
    }
    const st = await e.berth(['stats', '--no-stream', 'misc']);
    assert.equal(st.code, 0);
    const [head, row] = st.stdout.split('\n');
    assert.match(head ?? '', /^CONTAINER ID +NAME +CPU % +MEM USAGE \/ LIMIT +MEM % +NET I\/O +BLOCK I\/O +PIDS$/);
    assert.match(row ?? '', /^[0-9a-f]{12} +misc +\d+\.\d\d% +[\d.]+[KMG]?i?B \/ [\d.]+[KMGT]?i?B +[\d.]+% +.* +\d+$/);
    const sf = await e.berth(['stats', '--no-stream', '--format', '{{.Name}} {{.PIDs}}', 'misc']);
    assert.match(sf.stdout, /^misc \d+\n$/);
    const out = join(e.dir, 'misc.tar');
    assert.equal((await e.berth(['export', '-o', out, 'misc'])).code, 0);
    const list = await (await import('node:child_process')).spawnSync('tar', ['-tf', out], { encoding: 'utf8' });
    assert.ok(list.stdout.split('\n').includes('made'));
    const piped = await e.berth(['export', 'misc']);
    assert.ok(piped.stdout.length > 1024);
    await e.berth(['create', '--name', 'to-prune', IMAGE]);
    const pr = await e.berth(['container', 'prune', '-f']);
    assert.equal(pr.code, 0);
    assert.match(pr.stdout, /^Deleted Containers:\n([0-9a-f]{64}\n)+\nTotal reclaimed space: .*\n$/);
    assert.equal((await e.berth(['ps', '-a', '-q', '-f', 'name=to-prune'])).stdout, '');
    const no = await e.berth(['container', 'prune'], { input: 'n\n' });
    assert.equal(no.stdout, 'WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ');
  });

  test('cp both ways: files, directories, renames, contents, tar streams, errors', async (t) => {
    const e = engine();
    await e.berth(['run', '-d', '--name', 'cpc', IMAGE, 'sleep', '300']);
    const local = join(e.dir, 'cp');
    mkdirSync(join(local, 'tree', 'sub'), { recursive: true });
    writeFileSync(join(local, 'tree', 'sub', 'f'), 'payload\n');
    symlinkSync('f', join(local, 'tree', 'sub', 'link'));
    writeFileSync(join(local, 'single'), 'single\n', { mode: 0o751 });
    assert.equal((await e.berth(['cp', join(local, 'tree'), 'cpc:/tmp/'])).code, 0);
    assert.equal((await e.berth(['cp', join(local, 'tree'), 'cpc:/tmp/renamed'])).code, 0);
    assert.equal((await e.berth(['cp', `${join(local, 'tree')}/.`, 'cpc:/root/'])).code, 0);
    assert.equal((await e.berth(['cp', join(local, 'single'), 'cpc:/tmp/s2'])).code, 0);
    const seen = await e.berth(['exec', 'cpc', 'sh', '-c', 'cat /tmp/tree/sub/f /tmp/renamed/sub/f /root/sub/f; readlink /tmp/tree/sub/link; stat -c %a /tmp/s2']);
    assert.equal(seen.stdout, 'payload\npayload\npayload\nf\n751\n');
    const back = join(local, 'back');
    mkdirSync(back);
    assert.equal((await e.berth(['cp', 'cpc:/tmp/tree', back])).code, 0);
    assert.equal(readFileSync(join(back, 'tree', 'sub', 'f'), 'utf8'), 'payload\n');
    assert.equal(readlinkSync(join(back, 'tree', 'sub', 'link')), 'f');
    assert.equal((await e.berth(['cp', 'cpc:/etc/passwd', join(back, 'pw')])).code, 0);
    assert.equal(readFileSync(join(back, 'pw'), 'utf8'), (await e.berth(['exec', 'cpc', 'cat', '/etc/passwd'])).stdout);
    assert.equal((await e.berth(['cp', 'cpc:/tmp/renamed', join(back, 'newdir')])).code, 0);
    assert.ok(existsSync(join(back, 'newdir', 'sub', 'f')));
    const tarOut = await e.berth(['cp', 'cpc:/etc/hostname', '-']);
    assert.equal(tarOut.code, 0);
    assert.equal(tarOut.stdout.slice(0, 8), 'hostname');
    const tarIn = (await import('node:child_process')).spawnSync('tar', ['-C', local, '-c', 'single']);
    assert.equal((await e.berth(['cp', '-', 'cpc:/home'], { input: tarIn.stdout })).code, 0);
    assert.equal((await e.berth(['exec', 'cpc', 'cat', '/home/single'])).stdout, 'single\n');
    for (const args of [
      ['cp', 'cpc:/nonexist', back],
      ['cp', join(local, 'nonexist'), 'cpc:/tmp'],
      ['cp', join(local, 'tree'), 'cpc:/etc/passwd'],
      ['cp', join(local, 'single'), 'cpc:/nonexist/dir/x'],
      ['cp', 'a', 'b'],
    ]) {
      const b = await e.berth(args);
      const d = await e.docker(args);
      assert.equal(b.code, d.code, `${args.join(' ')}: ${b.stderr} / ${d.stderr}`);
      // docker logs its own tar-writer noise around the message; the message is what must agree
      const last = (s: string): string => s.trim().split('\n').filter((l) => !/^time=".*" level=/.test(l)).pop() ?? '';
      assert.equal(last(asDocker(b.stderr)), last(d.stderr), args.join(' '));
    }
  });
});
