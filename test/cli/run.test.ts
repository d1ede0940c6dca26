// berth run/create/start/attach against a real engine: exit codes, streams,
// terminals (through `script`), detach keys, --rm, and docker's error output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BERTH_BIN, IMAGE, forEachEngine, sameResult } from './_engine.js';

forEachEngine('berth run', (engine) => {
  test('exit codes and error messages match docker (0, 1, 3, 125, 126, 127)', async () => {
    const e = engine();
    for (const args of [
      ['run', '--rm', IMAGE, 'echo', 'hello'],
      ['run', '--rm', IMAGE, 'sh', '-c', 'exit 3'],
      ['run', '--rm', IMAGE, 'sh', '-c', 'echo to-err >&2; false'],
      ['run', '--rm', IMAGE, 'no-such-binary'],
      ['run', '--rm', IMAGE, '/etc'],
      ['run', '--rm', '--pull', 'never', 'no-such-image:1'],
      ['run', '--rm', '-x', IMAGE],
      ['run'],
      ['run', '-e'],
      ['run', '--rm', '--restart', 'always', IMAGE, 'true'],
      ['run', '--rm', '--memory', 'lots', IMAGE, 'true'],
      ['create', '--pull', 'never', 'no-such-image:1'],
    ]) {
      // the daemon may name the (new, random) container in its message
      const diff = sameResult(await e.berth(args), await e.docker(args), args.join(' '), (s) => s.replace(/\b[0-9a-f]{64}\b/g, '<id>'));
      assert.equal(diff, undefined, diff);
    }
  });

  test('stdin, -a, -d, --name, --cidfile, --rm, labels, env, workdir, user, entrypoint', async () => {
    const e = engine();
    const cat = await e.berth(['run', '--rm', '-i', IMAGE, 'cat'], { input: 'piped input\n' });
    assert.deepEqual([cat.code, cat.stdout], [0, 'piped input\n']);
    const onlyErr = await e.berth(['run', '--rm', '-a', 'stderr', IMAGE, 'sh', '-c', 'echo o; echo e >&2']);
    assert.deepEqual([onlyErr.stdout, onlyErr.stderr], ['', 'e\n']);
    const cid = join(e.dir, 'cidfile');
    const d = await e.berth(['run', '-d', '--name', 'rd', '--cidfile', cid, IMAGE, 'sleep', '300']);
    assert.equal(d.code, 0);
    assert.match(d.stdout, /^[0-9a-f]{64}\n$/);
    assert.equal(readFileSync(cid, 'utf8'), d.stdout.trim());
    const again = await e.berth(['run', '-d', '--cidfile', cid, IMAGE, 'true']);
    assert.equal(again.code, 125);
    assert.match(again.stderr, /container ID file found/);
    const env = join(e.dir, 'envfile');
    writeFileSync(env, '# comment\nFROM_FILE=yes\n');
    const r = await e.berth([
      'run', '--rm', '-e', 'A=1', '--env-file', env, '-w', '/tmp', '-u', '7:8', '--entrypoint', 'sh', '-h', 'myhost', IMAGE,
      '-c', 'echo $A $FROM_FILE $(pwd) $(id -u):$(id -g) $(hostname)',
    ]);
    assert.deepEqual([r.code, r.stdout], [0, '1 yes /tmp 7:8 myhost\n']);
    const rm = await e.berth(['run', '--rm', '--name', 'gone', IMAGE, 'true']);
    assert.equal(rm.code, 0);
    assert.equal((await e.berth(['ps', '-a', '-q', '-f', 'name=gone'])).stdout, '');
  });

  test('create options reach the engine as docker sends them', async () => {
    const e = engine();
    const flags = [
      '-l', 'a=b', '--label', 'c=d', '--hostname', 'h1', '--dns', '9.9.9.9', '--dns-search', 'example.org', '--add-host', 'x:1.2.3.4',
      '--cap-add', 'NET_ADMIN', '--cap-drop', 'MKNOD', '--read-only', '--security-opt', 'no-new-privileges', '--ulimit', 'nofile=100:200',
      '--init', '-m', '64m', '--memory-swap', '128m', '--cpus', '1.5', '--cpu-shares', '512', '--pids-limit', '50', '--sysctl',
      'net.ipv4.ip_forward=1', '--ipc', 'private', '--pid', 'host', '--group-add', '10', '--shm-size', '32m', '--restart',
      'on-failure:2', '--stop-signal', 'SIGUSR1', '--stop-timeout', '7', '--health-cmd', 'true', '--health-interval', '5s',
      '--health-retries', '2', '--log-driver', 'json-file', '--log-opt', 'max-size=1m', '--tmpfs', '/run:size=1m', '-v', '/data',
      '-v', `${e.dir}:/host:ro`, '--mount', `type=bind,source=${e.dir},target=/m,readonly`, '--oom-kill-disable', '-e', 'E=1',
      '--device', '/dev/null:/dev/mynull:rw', '--privileged=false', '--network', 'none', '-p', '8080:80', '--expose', '9000',
      '-w', '/w', '-u', 'nobody', '-t', '-i',
    ];
    const b = await e.berth(['create', '--name', 'opts-b', ...flags, IMAGE, 'sh', '-c', 'true']);
    const d = await e.docker(['create', '--name', 'opts-d', ...flags, IMAGE, 'sh', '-c', 'true']);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(d.code, 0, d.stderr);
    const fmt = '{{json .Config}}\n{{json .HostConfig}}';
    const bi = (await e.docker(['inspect', '-f', fmt, 'opts-b'])).stdout.replace(/opts-b/g, 'X');
    const di = (await e.docker(['inspect', '-f', fmt, 'opts-d'])).stdout.replace(/opts-d/g, 'X');
    const [bc, bh] = bi.split('\n').map((l) => (l === '' ? {} : (JSON.parse(l) as Record<string, unknown>)));
    const [dc, dh] = di.split('\n').map((l) => (l === '' ? {} : (JSON.parse(l) as Record<string, unknown>)));
    delete bc?.Hostname;
    delete dc?.Hostname;
    const differ: string[] = [];
    for (const k of Object.keys(dc ?? {})) if (JSON.stringify(bc?.[k]) !== JSON.stringify(dc?.[k])) differ.push(`Config.${k}: ${JSON.stringify(bc?.[k])} vs ${JSON.stringify(dc?.[k])}`);
    for (const k of Object.keys(dh ?? {})) {
      if (JSON.stringify(bh?.[k]) !== JSON.stringify(dh?.[k])) differ.push(`HostConfig.${k}: ${JSON.stringify(bh?.[k])} vs ${JSON.stringify(dh?.[k])}`);
    }
    assert.deepEqual(differ, []);
  });

  test('-it gives the container a terminal of the local size and ends with its exit code', async () => {
    const e = engine();
    const r = await e.berthTty(['run', '--rm', '-it', IMAGE, 'sh', '-c', 'sleep 0.3; tty; stty size; exit 5'], { cols: 123, rows: 45 });
    const d = await e.dockerTty(['run', '--rm', '-it', IMAGE, 'sh', '-c', 'sleep 0.3; tty; stty size; exit 5'], { cols: 123, rows: 45 });
    assert.equal(r.code, 5);
    assert.equal(r.stdout, d.stdout);
    assert.match(r.stdout, /\/dev\/pts\/\d+\r\n45 123\r\n$/);
    const typed = await e.berthTty(['run', '--rm', '-it', IMAGE, 'sh'], { input: 'echo typed-$((6*7))\nexit 7\n', timeoutMs: 30_000 });
    assert.equal(typed.code, 7);
    assert.match(typed.stdout, /typed-42/);
  });

  test('ctrl-p ctrl-q detaches and leaves the container running; terminal restored', async () => {
    const e = engine();
    const { spawn } = await import('node:child_process');
    const line = `stty cols 80 rows 24; '${process.execPath}' '${BERTH_BIN}' run -it --name det ${IMAGE} sh; echo "after:$?"; stty -a`;
    const child = spawn('script', ['-qefc', line, '/dev/null'], {
      env: { ...process.env, BERTH_HOST: `unix://${e.socket}`, BERTH_CONFIG: join(e.dir, 'berth-config') },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const closed = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    for (let i = 0; i < 100 && !out.includes('/ #'); i++) await new Promise((r) => setTimeout(r, 100));
    child.stdin.write('\x10\x11');
    for (let i = 0; i < 100 && !out.includes('after:'); i++) await new Promise((r) => setTimeout(r, 100));
    child.stdin.end();
    const code = await closed;
    clearTimeout(killer);
    assert.equal(code, 0, out);
    assert.match(out, /after:0/);
    assert.match(out, /(^|[^-])icanon/, 'canonical mode is back after berth exits');
    assert.match(out, /(^|[^-])echo /, 'echo is back after berth exits');
    const st = await e.docker(['inspect', '-f', '{{.State.Running}}', 'det']);
    assert.equal(st.stdout, 'true\n');
    await e.berth(['rm', '-f', 'det']);
  });

  test('start -a returns the exit code; attach follows a running container', async () => {
    const e = engine();
    await e.berth(['create', '--name', 'sa', IMAGE, 'sh', '-c', 'echo started; echo e >&2; exit 9']);
    const sa = await e.berth(['start', '-a', 'sa']);
    assert.deepEqual([sa.code, sa.stdout, sa.stderr], [9, 'started\n', 'e\n']);
    await e.berth(['create', '-i', '--name', 'sai', IMAGE, 'cat']);
    const sai = await e.berth(['start', '-ai', 'sai'], { input: 'via start -i\n' });
    assert.deepEqual([sai.code, sai.stdout], [0, 'via start -i\n']);
    await e.berth(['run', '-d', '--name', 'att', IMAGE, 'sh', '-c', 'sleep 1; echo late; exit 2']);
    const at = await e.berth(['attach', 'att']);
    assert.deepEqual([at.code, at.stdout], [2, 'late\n']);
    const stopped = [await e.berth(['attach', 'att']), await e.docker(['attach', 'att'])];
    assert.equal(sameResult(stopped[0]!, stopped[1]!, 'attach stopped'), undefined);
    assert.ok(!existsSync(join(e.dir, 'nothing')));
  });
});
