/**
 * berthd driven by Debian's docker-compose 1.29 (python, docker-py) with
 * DOCKER_HOST pointing at an isolated engine, on projects that use only the
 * built-in busybox image: two services reaching each other by service name on
 * a custom network with a port published to the host (up, ps, logs, exec,
 * stop, start, down); a named volume shared by two services, kept by `down`
 * and removed by `down -v`; `run --rm`, depends_on with a healthcheck,
 * environment and command; a recreate that keeps an anonymous volume. Every
 * project is brought down with `down -v` even when a case fails, and the last
 * case checks that nothing of the engine is left in the kernel.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { api, docker, dockerOk, instanceTag, useEngine } from './_engine.js';
import type { RunResult } from './_engine.js';

const COMPOSE = '/usr/bin/docker-compose';
const { dirs, engine } = useEngine();
const sock = dirs.socket;
const tag = instanceTag(dirs.execRoot);

interface Project {
  readonly name: string;
  readonly dir: string;
}

/** A project dir (inside the engine's temp dir, so the engine cleanup removes it) with its compose file. */
function project(name: string, yaml: string): Project {
  const dir = join(dirs.base, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'docker-compose.yml'), yaml);
  return { name, dir };
}

/** docker-compose in the project's dir against the engine. */
function compose(p: Project, args: readonly string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): RunResult {
  const r = spawnSync(COMPOSE, ['-p', p.name, '--ansi', 'never', ...args], {
    cwd: p.dir, encoding: 'utf8', input: '', timeout: opts.timeoutMs ?? 120_000,
    env: { ...process.env, DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: join(dirs.base, '.docker'), ...opts.env },
  });
  if (r.error) throw r.error;
  return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
}

function composeOk(p: Project, args: readonly string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): string {
  const r = compose(p, args, opts);
  if (r.code !== 0) throw new Error(`docker-compose ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  noteBridges();
  return r.stdout;
}

/** The bridges of every user network seen while the tests ran (checked for at the end). */
const bridges = new Set<string>();
function noteBridges(): void {
  const ids = dockerOk(sock, ['network', 'ls', '-q', '--no-trunc', '--filter', 'type=custom']).split('\n').filter((s) => s !== '');
  for (const id of ids) bridges.add(`br-${id.slice(0, 12)}`);
}

/** Bring a project down with its volumes, whatever state it is in. */
function down(p: Project): void {
  compose(p, ['down', '-v', '--remove-orphans', '-t', '1']);
}

/** The project's containers (all states), by the label compose puts on them. */
function projectContainers(p: Project): string[] {
  return dockerOk(sock, ['ps', '-aq', '--filter', `label=com.docker.compose.project=${p.name}`]).split('\n').filter((s) => s !== '');
}

function inspect<T>(ref: string, format: string): T {
  return JSON.parse(dockerOk(sock, ['inspect', '--format', `{{json ${format}}}`, ref])) as T;
}

/** A TCP port on 127.0.0.1 that nothing listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** An HTTP/1.0 GET from the host over TCP: the body, or the connection error. */
function httpGet(port: number, path: string): Promise<{ body: string } | { error: string }> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    s.setTimeout(5000, () => s.destroy(new Error('timed out')));
    s.once('connect', () => s.write(`GET ${path} HTTP/1.0\r\nHost: localhost\r\n\r\n`));
    s.on('data', (b: Buffer) => chunks.push(b));
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    s.once('close', (hadError) => {
      if (hadError) return;
      const text = Buffer.concat(chunks).toString();
      const i = text.indexOf('\r\n\r\n');
      resolve({ body: i < 0 ? '' : text.slice(i + 4) });
    });
  });
}

/** Poll until f gives a value that is not undefined. */
async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

test('two services reach each other by service name on a custom network; a published port; up, ps, logs, exec, stop, start, down', async () => {
  const token = `hello-${randomBytes(6).toString('hex')}`;
  const port = await freePort();
  const p = project('cnet', `version: "3.8"
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    hostname: webhost
    volumes:
      - ./www:/www:ro
    networks: [front]
    ports:
      - "127.0.0.1:${port}:80"
  client:
    image: busybox
    command: ["sh", "-c", "while true; do printf 'GET /index.html HTTP/1.0\\\\r\\\\n\\\\r\\\\n' | nc web 80 | sed 's/^/got: /'; sleep 1; done"]
    networks: [front]
    depends_on: [web]
  side:
    image: busybox
    network_mode: "service:web"
    command: ["sleep", "3600"]
networks:
  front:
    labels:
      purpose: compose-test
`);
  mkdirSync(join(p.dir, 'www'));
  writeFileSync(join(p.dir, 'www', 'index.html'), `${token}\n`);
  try {
    composeOk(p, ['up', '-d']);

    // ps: both services up, the port mapping shown.
    const ids = composeOk(p, ['ps', '-q']).split('\n').filter((s) => s !== '');
    assert.equal(ids.length, 3);
    const table = composeOk(p, ['ps']);
    assert.match(table, /^cnet_web_1\s.*\sUp\s+127\.0\.0\.1:\d+->80\/tcp/m);
    assert.match(table, new RegExp(`127\\.0\\.0\\.1:${port}->80/tcp`));
    assert.match(table, /^cnet_client_1\s.*\sUp\b/m);
    assert.deepEqual(composeOk(p, ['port', 'web', '80']).trim(), `127.0.0.1:${port}`);

    // The network compose made: its labels, both containers in it, a bridge in the kernel.
    const net = await api(sock, 'GET', '/networks/cnet_front');
    assert.equal(net.status, 200, net.body);
    const netInfo = JSON.parse(net.body) as { Id: string; Driver: string; Labels: Record<string, string>; Containers: Record<string, { Name: string; IPv4Address: string }> };
    assert.equal(netInfo.Driver, 'bridge');
    assert.equal(netInfo.Labels['com.docker.compose.project'], 'cnet');
    assert.equal(netInfo.Labels['com.docker.compose.network'], 'front');
    assert.equal(netInfo.Labels['purpose'], 'compose-test');
    assert.deepEqual(Object.values(netInfo.Containers).map((c) => c.Name).sort(), ['cnet_client_1', 'cnet_web_1']);
    const bridge = `br-${netInfo.Id.slice(0, 12)}`;
    assert.ok(existsSync(`/sys/class/net/${bridge}`), `the network's bridge ${bridge} exists`);
    const webIp = inspect<Record<string, { IPAddress: string; Aliases: string[] | null }>>('cnet_web_1', '.NetworkSettings.Networks')['cnet_front'];
    assert.match(webIp?.IPAddress ?? '', /^\d+\.\d+\.\d+\.\d+$/);
    assert.ok(webIp?.Aliases?.includes('web'), 'compose asked for the service name as an alias');

    // The client fetched the file from `web` by name: its log has the page.
    const logs = await until('the client to log the page', () => {
      const out = composeOk(p, ['logs', '--no-color', 'client']);
      return out.includes(`got: ${token}`) ? out : undefined;
    });
    assert.match(logs, /got: HTTP\/1\.[01] 200 OK/);
    assert.match(logs, /^client_1\s+\| got: /m);

    // The same page from the host through the published port.
    assert.deepEqual(await httpGet(port, '/index.html'), { body: `${token}\n` });

    // exec: name resolution through the embedded DNS answers web's address; a command in web.
    const ns = composeOk(p, ['exec', '-T', 'client', 'nslookup', 'web']);
    assert.match(ns, new RegExp(`Name:\\s+web\\s+Address:\\s+${(webIp?.IPAddress ?? '').replace(/\./g, '\\.')}\\b`));
    assert.equal(composeOk(p, ['exec', '-T', 'web', 'cat', '/www/index.html']), `${token}\n`);
    // network_mode service:web shares web's network namespace, and (as with Docker) its hostname.
    assert.equal(composeOk(p, ['exec', '-T', 'side', 'hostname']), 'webhost\n');
    assert.match(composeOk(p, ['exec', '-T', 'side', 'sh', '-c', 'printf "GET /index.html HTTP/1.0\r\n\r\n" | nc 127.0.0.1 80']), new RegExp(token));
    const failed = compose(p, ['exec', '-T', 'web', 'sh', '-c', 'exit 5']);
    assert.equal(failed.code, 5, 'exec passes the exit code through');

    // stop: nothing runs, the port answers no more.
    composeOk(p, ['stop', '-t', '1']);
    for (const id of ids) assert.equal(inspect<boolean>(id, '.State.Running'), false);
    assert.match(composeOk(p, ['ps']), /^cnet_web_1\s.*\sExit \d+/m);
    assert.deepEqual(await httpGet(port, '/index.html'), { error: 'ECONNREFUSED' });

    // start: the same containers run again and serve again.
    composeOk(p, ['start']);
    assert.deepEqual(composeOk(p, ['ps', '-q']).split('\n').filter((s) => s !== '').sort(), [...ids].sort());
    for (const id of ids) assert.equal(inspect<boolean>(id, '.State.Running'), true);
    const again = await until('the page through the port after start', async () => {
      const r = await httpGet(port, '/index.html');
      return 'body' in r && r.body !== '' ? r : undefined;
    });
    assert.deepEqual(again, { body: `${token}\n` });
    assert.match(composeOk(p, ['exec', '-T', 'client', 'sh', '-c', 'printf "GET /index.html HTTP/1.0\\r\\n\\r\\n" | nc web 80']), new RegExp(token));

    // down: the containers, the network and its bridge are gone.
    composeOk(p, ['down', '-t', '1']);
    assert.deepEqual(projectContainers(p), []);
    assert.equal((await api(sock, 'GET', '/networks/cnet_front')).status, 404);
    assert.equal(existsSync(`/sys/class/net/${bridge}`), false, 'the bridge is gone');
    assert.deepEqual(await httpGet(port, '/index.html'), { error: 'ECONNREFUSED' });
  } finally {
    down(p);
  }
});

test('a named volume shared by two services is kept across down and removed by down -v', async () => {
  const token = `data-${randomBytes(6).toString('hex')}`;
  const p = project('cvol', `version: "3.8"
services:
  writer:
    image: busybox
    command: ["sh", "-c", "echo ${token} > /data/file.txt; echo run >> /data/runs; exec sleep 3600"]
    volumes:
      - shared:/data
  reader:
    image: busybox
    command: ["sleep", "3600"]
    volumes:
      - shared:/mnt/shared:ro
volumes:
  shared:
    labels:
      kind: shared
`);
  interface Volume { Name: string; Driver: string; Mountpoint: string; Labels: Record<string, string> | null }
  const getVolume = async (): Promise<Volume | undefined> => {
    const r = await api(sock, 'GET', '/volumes/cvol_shared');
    if (r.status === 404) return undefined;
    assert.equal(r.status, 200, r.body);
    return JSON.parse(r.body) as Volume;
  };
  try {
    assert.equal(await getVolume(), undefined);
    composeOk(p, ['up', '-d']);
    const v = await getVolume();
    assert.ok(v !== undefined, 'compose created the volume');
    assert.equal(v.Driver, 'local');
    assert.equal(v.Labels?.['com.docker.compose.project'], 'cvol');
    assert.equal(v.Labels?.['com.docker.compose.volume'], 'shared');
    assert.equal(v.Labels?.['kind'], 'shared');

    // Both services mount it; the reader sees what the writer wrote, and read-only.
    const seen = await until('the reader to see the writer\'s file', () => {
      const r = compose(p, ['exec', '-T', 'reader', 'cat', '/mnt/shared/file.txt']);
      return r.code === 0 && r.stdout !== '' ? r.stdout : undefined;
    });
    assert.equal(seen, `${token}\n`);
    const ro = compose(p, ['exec', '-T', 'reader', 'sh', '-c', 'echo x > /mnt/shared/other']);
    assert.notEqual(ro.code, 0);
    assert.match(ro.stderr + ro.stdout, /Read-only file system/);
    const mounts = inspect<{ Type: string; Name: string; Destination: string; RW: boolean }[]>('cvol_reader_1', '.Mounts');
    assert.deepEqual(mounts.map((m) => ({ Type: m.Type, Name: m.Name, Destination: m.Destination, RW: m.RW })),
      [{ Type: 'volume', Name: 'cvol_shared', Destination: '/mnt/shared', RW: false }]);
    assert.equal(readFileSync(join(v.Mountpoint, 'file.txt'), 'utf8'), `${token}\n`);

    // down keeps the volume and its data.
    composeOk(p, ['down', '-t', '1']);
    assert.deepEqual(projectContainers(p), []);
    const kept = await getVolume();
    assert.equal(kept?.Mountpoint, v.Mountpoint);
    assert.equal(readFileSync(join(v.Mountpoint, 'file.txt'), 'utf8'), `${token}\n`);
    assert.match(dockerOk(sock, ['volume', 'ls', '--format', '{{.Name}}']), /^cvol_shared$/m);

    // A second up uses the same volume: the writer's second run appends to the first.
    composeOk(p, ['up', '-d']);
    const runs = await until('the second run to be recorded', () => {
      const r = compose(p, ['exec', '-T', 'reader', 'cat', '/mnt/shared/runs']);
      return r.code === 0 && r.stdout === 'run\nrun\n' ? r.stdout : undefined;
    });
    assert.equal(runs, 'run\nrun\n');

    // down -v removes it and its data.
    composeOk(p, ['down', '-v', '-t', '1']);
    assert.deepEqual(projectContainers(p), []);
    assert.equal(await getVolume(), undefined);
    assert.equal(existsSync(v.Mountpoint), false, 'the volume\'s data is gone');
    assert.doesNotMatch(dockerOk(sock, ['volume', 'ls', '--format', '{{.Name}}']), /^cvol_shared$/m);
  } finally {
    down(p);
  }
});

test('run --rm of a one-off command; up with depends_on (service_healthy), environment, command, healthcheck', async () => {
  const p = project('capp', `version: "2.4"
services:
  db:
    image: busybox
    command: ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 2s
      retries: 30
  app:
    image: busybox
    depends_on:
      db:
        condition: service_healthy
    environment:
      GREETING: hello
      OTHER: "two words"
    command: ["sh", "-c", "echo \\"greeting=$$GREETING other=$$OTHER\\"; exec sleep 3600"]
`);
  try {
    // up of app alone brings db first and waits for it to be healthy.
    composeOk(p, ['up', '-d', 'app']);
    interface Health { Status: string; FailingStreak: number; Log: { Start: string; End: string; ExitCode: number }[] }
    const health = inspect<Health>('capp_db_1', '.State.Health');
    assert.equal(health.Status, 'healthy');
    assert.equal(health.FailingStreak, 0);
    const firstPass = health.Log.find((l) => l.ExitCode === 0);
    assert.ok(firstPass !== undefined, 'a passing probe is in the log');
    assert.ok(health.Log.some((l) => l.ExitCode !== 0), 'the probes failed before /tmp/ready was made');
    const appStarted = Date.parse(inspect<string>('capp_app_1', '.State.StartedAt'));
    const dbStarted = Date.parse(inspect<string>('capp_db_1', '.State.StartedAt'));
    assert.ok(appStarted >= Date.parse(firstPass.Start), 'app started after db passed its healthcheck');
    assert.ok(appStarted - dbStarted >= 2000, `app waited for db's 2 s warm-up (${appStarted - dbStarted} ms)`);
    assert.match(composeOk(p, ['ps']), /^capp_db_1\s.*Up \(healthy\)/m);

    // The healthcheck as compose sent it: a CMD probe with its timings in nanoseconds.
    const hc = inspect<{ Test: string[]; Interval: number; Timeout: number; Retries: number }>('capp_db_1', '.Config.Healthcheck');
    assert.deepEqual(hc.Test, ['CMD', 'test', '-f', '/tmp/ready']);
    assert.equal(hc.Interval, 1e9);
    assert.equal(hc.Timeout, 2e9);
    assert.equal(hc.Retries, 30);

    // environment and command.
    const cfg = inspect<{ Env: string[]; Cmd: string[] }>('capp_app_1', '.Config');
    assert.ok(cfg.Env.includes('GREETING=hello'));
    assert.ok(cfg.Env.includes('OTHER=two words'));
    assert.deepEqual(cfg.Cmd, ['sh', '-c', 'echo "greeting=$GREETING other=$OTHER"; exec sleep 3600']);
    const logs = await until('app\'s greeting', () => {
      const out = composeOk(p, ['logs', '--no-color', 'app']);
      return out.includes('greeting=') ? out : undefined;
    });
    assert.match(logs, /greeting=hello other=two words/);

    // run --rm: a one-off container with the service's environment (and an override), its exit code, then gone.
    const one = compose(p, ['run', '--rm', '-T', 'app', 'sh', '-c', 'echo "one-off $GREETING $OTHER"; hostname; exit 3']);
    assert.equal(one.code, 3, one.stderr);
    const [line, host] = one.stdout.split('\n');
    assert.equal(line, 'one-off hello two words');
    assert.match(host ?? '', /^[0-9a-f]{12}$/);
    const dbIp = inspect<Record<string, { IPAddress: string }>>('capp_db_1', '.NetworkSettings.Networks')['capp_default']?.IPAddress ?? '';
    assert.match(dbIp, /^\d+\.\d+\.\d+\.\d+$/);
    const two = compose(p, ['run', '--rm', '-T', '-e', 'GREETING=override', 'app', 'sh', '-c', 'echo $GREETING; nslookup db']);
    assert.equal(two.code, 0, two.stderr);
    assert.match(two.stdout, /^override\n/);
    assert.match(two.stdout, new RegExp(`Name:\\s+db\\s+Address:\\s+${dbIp.replace(/\./g, '\\.')}\\b`), 'the one-off resolves the service db');
    assert.deepEqual(dockerOk(sock, ['ps', '-aq', '--filter', 'label=com.docker.compose.oneoff=True']).trim(), '', 'run --rm removed its container');
    assert.equal(projectContainers(p).length, 2);
  } finally {
    down(p);
  }
  assert.deepEqual(projectContainers(p), []);
});

test('a recreate after a config change keeps the anonymous volume (API v1.44 image inspect with ContainerConfig)', async () => {
  // docker-compose 1.29 reads an image's ContainerConfig when it recreates; Docker dropped the
  // field in API v1.45, so (as against Docker) compose is pinned to v1.44 for this.
  const v144 = JSON.parse((await api(sock, 'GET', '/v1.44/images/busybox/json')).body) as Record<string, unknown>;
  assert.ok('ContainerConfig' in v144);
  assert.equal(v144['Container'], '');
  const v145 = JSON.parse((await api(sock, 'GET', '/v1.45/images/busybox/json')).body) as Record<string, unknown>;
  assert.equal('ContainerConfig' in v145, false);

  const env = { COMPOSE_API_VERSION: '1.44' };
  const yaml = (v: string): string => `version: "2.4"
services:
  keeper:
    image: busybox
    environment:
      V: "${v}"
    volumes:
      - /anon
    command: ["sh", "-c", "[ -f /anon/first ] || echo $$V > /anon/first; echo \\"first=$$(cat /anon/first) now=$$V\\"; exec sleep 3600"]
`;
  const p = project('crec', yaml('1'));
  let anon: string | undefined;
  try {
    composeOk(p, ['up', '-d'], { env });
    const before = projectContainers(p);
    assert.equal(before.length, 1);
    const m1 = inspect<{ Type: string; Name: string; Destination: string }[]>('crec_keeper_1', '.Mounts');
    assert.equal(m1.length, 1);
    assert.equal(m1[0]?.Type, 'volume');
    anon = m1[0]?.Name;
    assert.match(anon ?? '', /^[0-9a-f]{64}$/);

    // Unchanged: up leaves the container alone.
    const same = compose(p, ['up', '-d'], { env });
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stderr, /crec_keeper_1 is up-to-date/);
    assert.deepEqual(projectContainers(p), before);

    writeFileSync(join(p.dir, 'docker-compose.yml'), yaml('2'));
    const r = compose(p, ['up', '-d'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Recreating crec_keeper_1/);
    const now = projectContainers(p);
    assert.equal(now.length, 1);
    assert.notEqual(now[0], before[0], 'a new container');
    assert.equal(inspect<string>('crec_keeper_1', '.Name'), '/crec_keeper_1');
    const m2 = inspect<{ Type: string; Name: string; Destination: string }[]>('crec_keeper_1', '.Mounts');
    assert.deepEqual(m2.map((m) => [m.Type, m.Name, m.Destination]), [['volume', anon, '/anon']], 'the same anonymous volume');
    const logs = await until('the new container\'s line', () => {
      const out = composeOk(p, ['logs', '--no-color'], { env });
      return out.includes('now=2') ? out : undefined;
    });
    assert.match(logs, /first=1 now=2/, 'the data written by the first container is there');
  } finally {
    down(p);
    // Like Docker, `rm -v` spares a volume the new container names in its binds: remove it here.
    if (anon !== undefined) docker(sock, ['volume', 'rm', '-f', anon]);
  }
  assert.deepEqual(projectContainers(p), []);
});

/** What of this engine is in the kernel: its bridges and links on them, netns mounts, iptables rules. */
function traces(): { links: string[]; mounts: string[]; rules: string[] } {
  const links = JSON.parse(execFileSync('ip', ['-j', 'link'], { encoding: 'utf8' })) as { ifname: string; master?: string }[];
  const ours = new Set([`berth-${tag}`, ...bridges]);
  const mine = links.filter((l) => ours.has(l.ifname) || (l.master !== undefined && ours.has(l.master))).map((l) => l.ifname);
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith(dirs.execRoot));
  const rules = execFileSync('iptables-save', { encoding: 'utf8' }).split('\n').filter((l) => l.includes(tag));
  return { links: mine, mounts, rules };
}

test('after the projects are down, nothing of them is left; stopping the engine leaves nothing at all', async () => {
  assert.ok(bridges.size >= 4, `the projects' networks were seen (${[...bridges].join(', ')})`);
  for (const b of bridges) assert.equal(existsSync(`/sys/class/net/${b}`), false, `bridge ${b} is gone`);
  assert.deepEqual(dockerOk(sock, ['ps', '-aq']).trim(), '');
  assert.deepEqual(dockerOk(sock, ['network', 'ls', '--format', '{{.Name}}']).split('\n').filter((s) => s !== '').sort(), ['bridge', 'host', 'none']);
  assert.deepEqual(dockerOk(sock, ['volume', 'ls', '-q']).trim(), '');
  const nsDir = join(dirs.execRoot, 'netns');
  assert.deepEqual(existsSync(nsDir) ? readdirSync(nsDir) : [], []);
  await engine().stop();
  assert.deepEqual(traces(), { links: [], mounts: [], rules: [] });
});
