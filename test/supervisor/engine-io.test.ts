/**
 * The stdio a Docker engine asks of berth-containerd's tasks (packages/supervisor/IO.md):
 * a `jsonfile://` stdout the shim writes as Docker's json-file log (rotation
 * included), an `attach:` stdin fed through the shim's attach socket, output
 * to attach clients from a process's very start (init and exec, with and
 * without a terminal), the task runtime plugin's exports that say where the
 * attach sockets are, and a supervisor restart under a logging task. Root only.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { Api, CONTAINERS, INTROSPECTION, cleanup, grpcError, specAny, startDaemon, tempDirs } from './_daemon.js';
import type { DaemonProcess, Msg } from './_daemon.js';
import { BERTH_RUNC, copyRootfs, killLeftovers, until } from './_tasks.js';

const TASKS = 'containerd.services.tasks.v1.Tasks';
const PROCESS_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/Process';
const ns = `engineio${process.pid}`;
const dirs = tempDirs();
let daemon: DaemonProcess | undefined;
let api: Api | undefined;
let rootfs = '';
let baseSpec: Record<string, unknown> = {};

before(async () => {
  rootfs = copyRootfs(dirs.base);
  const specDir = join(dirs.base, 'spec');
  mkdirSync(specDir);
  const r = spawnSync(process.execPath, [BERTH_RUNC, 'spec', '--bundle', specDir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`berth-runc spec: ${r.stderr}`);
  baseSpec = JSON.parse(readFileSync(join(specDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  daemon = await startDaemon(dirs);
  api = new Api(dirs.address);
});

after(async () => {
  api?.close();
  try {
    await killLeftovers(dirs.state, [ns]);
  } finally {
    await cleanup(daemon, dirs);
  }
});

function client(): Api {
  if (api === undefined) throw new Error('the daemon did not start');
  return api;
}

/** A container running args on the test rootfs, in its own cgroup under the namespace's. */
async function container(id: string, args: string[], terminal = false): Promise<void> {
  const spec = structuredClone(baseSpec) as Record<string, unknown> & { process: Msg; linux: Msg };
  spec['root'] = { path: rootfs, readonly: false };
  spec.process['args'] = args;
  spec.process['terminal'] = terminal;
  spec.linux['cgroupsPath'] = `/${ns}/${id}`;
  await client().unary(CONTAINERS, 'Create', { container: { id, runtime: { name: 'io.containerd.runc.v2' }, spec: specAny(spec) } }, ns);
}

/** Kill (if it runs), delete the task and the container; for finally blocks. */
async function remove(id: string): Promise<void> {
  const a = client();
  await a.unary(TASKS, 'Kill', { container_id: id, signal: 9, all: true }, ns).catch(() => undefined);
  await a.unary(TASKS, 'Wait', { container_id: id }, ns).catch(() => undefined);
  await a.unary(TASKS, 'Delete', { container_id: id }, ns).catch(() => undefined);
  await a.unary(CONTAINERS, 'Delete', { id }, ns).catch(() => undefined);
}

function execSpec(args: string[]): { type_url: string; value: Buffer } {
  const p = { args, cwd: '/', env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'], user: { uid: 0, gid: 0 } };
  return { type_url: PROCESS_TYPE, value: Buffer.from(JSON.stringify(p)) };
}

const attachSock = (id: string): string => join(dirs.state, 'shims', ns, id, 'attach.sock');

interface Frame {
  stream: number;
  data: Buffer;
}

/**
 * A client of a shim's attach socket (native/shim/PROTOCOL.md): open() resolves
 * once the shim has answered the request line, so output from then on is ours.
 */
class Attach {
  readonly frames: Frame[] = [];
  raw = Buffer.alloc(0);
  readonly closed: Promise<void>;
  private pending = Buffer.alloc(0);

  private constructor(private readonly sock: Socket, readonly terminal: boolean) {
    this.closed = new Promise((resolve) => sock.once('close', () => resolve()));
  }

  static async open(path: string, req: { exec_id?: string; stdin?: boolean; stdout?: boolean; stderr?: boolean; stdin_once?: boolean }): Promise<Attach> {
    const sock = connect(path);
    sock.on('error', () => undefined);
    return new Promise((resolve, reject) => {
      let head = Buffer.alloc(0);
      const onData = (d: Buffer): void => {
        head = Buffer.concat([head, d]);
        const nl = head.indexOf(10);
        if (nl < 0) return;
        sock.off('data', onData);
        const answer = JSON.parse(head.subarray(0, nl).toString('utf8')) as Msg;
        if (answer['ok'] !== true) {
          sock.destroy();
          reject(new Error(`attach refused: ${JSON.stringify(answer)}`));
          return;
        }
        const a = new Attach(sock, answer['terminal'] === true);
        sock.on('data', (chunk: Buffer) => a.receive(chunk));
        if (head.length > nl + 1) a.receive(head.subarray(nl + 1));
        resolve(a);
      };
      sock.on('data', onData);
      sock.once('close', () => reject(new Error(`attach to ${path}: closed before an answer (${head.toString('utf8')})`)));
      sock.once('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    });
  }

  private receive(d: Buffer): void {
    this.raw = Buffer.concat([this.raw, d]);
    if (this.terminal) return;
    this.pending = Buffer.concat([this.pending, d]);
    while (this.pending.length >= 8) {
      const stream = this.pending[0] ?? 0;
      assert.deepEqual([...this.pending.subarray(1, 4)], [0, 0, 0], 'stdcopy header bytes 1-3 are zero');
      const len = this.pending.readUInt32BE(4);
      if (this.pending.length < 8 + len) return;
      this.frames.push({ stream, data: Buffer.from(this.pending.subarray(8, 8 + len)) });
      this.pending = this.pending.subarray(8 + len);
    }
  }

  text(stream: number): string {
    return Buffer.concat(this.frames.filter((f) => f.stream === stream).map((f) => f.data)).toString('utf8');
  }

  write(s: string): void {
    this.sock.write(s);
  }

  /** Close the write side: the end of stdin when stdin_once was asked. */
  endInput(): void {
    this.sock.end();
  }

  destroy(): void {
    this.sock.destroy();
  }

  async waitClosed(ms = 15_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closed,
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('the attach connection did not end')), ms); }),
    ]).finally(() => clearTimeout(timer));
  }
}

interface LogEntry {
  log: string;
  stream: string;
  time: string;
}

function readJsonLog(path: string): LogEntry[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as LogEntry);
}

test('the task runtime plugin exports where the bundles and the shims (attach sockets) are', async () => {
  const r = await client().unary(INTROSPECTION, 'Plugins', { filters: ['type==io.containerd.runtime.v2'] });
  const plugins = r['plugins'] as Msg[];
  assert.deepEqual(plugins.map((p) => [p['type'], p['id'], p['init_err'] ?? null]), [['io.containerd.runtime.v2', 'task', null]]);
  const exports = plugins[0]?.['exports'] as Record<string, string>;
  assert.deepEqual(exports, {
    root: join(dirs.root, 'io.containerd.runtime.v2.task'),
    state: join(dirs.state, 'io.containerd.runtime.v2.task'),
    shims: join(dirs.state, 'shims'),
  });
  const tasks = ((await client().unary(INTROSPECTION, 'Plugins', { filters: ['id==tasks'] }))['plugins'] as Msg[]);
  assert.deepEqual(tasks.map((p) => [p['type'], p['requires']]), [['io.containerd.grpc.v1', ['io.containerd.runtime.v2']]]);

  await container('x1', ['/bin/true']);
  try {
    await client().unary(TASKS, 'Create', { container_id: 'x1' }, ns);
    assert.ok(existsSync(join(exports['shims'] ?? '', ns, 'x1', 'attach.sock')), 'the attach socket is at <shims>/<namespace>/<id>/attach.sock');
    assert.ok(existsSync(join(exports['state'] ?? '', ns, 'x1', 'config.json')), 'the bundle is at <state>/<namespace>/<id>');
  } finally {
    await remove('x1');
  }
});

test('a jsonfile:// stdout: Docker json-file lines, streams told apart, the directory made; rotation by max-size and max-file', async () => {
  const a = client();
  const logDir = join(dirs.base, 'engine', 'containers', 'j1');
  const logPath = join(logDir, 'j1-json.log');
  const uri = `jsonfile://${logPath}`;
  // The long line twice: written piecemeal, then in one write.
  await container('j1', ['/bin/sh', '-c', 'v=$(printf "x%.0s" $(seq 1 20000)); echo out1; echo "err <1>" >&2; printf "x%.0s" $(seq 1 20000); echo; echo "$v"; echo err2 >&2; printf tail']);
  try {
    await a.unary(TASKS, 'Create', { container_id: 'j1', stdout: uri, stderr: uri }, ns);
    assert.ok(existsSync(logDir), 'the log directory is made');
    const got = await a.unary(TASKS, 'Get', { container_id: 'j1' }, ns);
    assert.deepEqual([(got['process'] as Msg)['stdout'], (got['process'] as Msg)['stderr']], [uri, uri]);
    await a.unary(TASKS, 'Start', { container_id: 'j1' }, ns);
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 'j1' }, ns))['exit_status'], 0);
    const log = readJsonLog(logPath);
    for (const e of log) assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    assert.deepEqual(log.filter((e) => e.stream === 'stderr').map((e) => e.log), ['err <1>\n', 'err2\n']);
    const out = log.filter((e) => e.stream === 'stdout').map((e) => e.log);
    // A 20001-byte line is split in 16 KiB pieces, as Docker does.
    const long = ['x'.repeat(16384), `${'x'.repeat(20000 - 16384)}\n`];
    assert.deepEqual(out, ['out1\n', ...long, ...long, 'tail']);
    assert.ok(readFileSync(logPath, 'utf8').includes('"log":"err \\u003c1\\u003e\\n"'), 'escaped as Docker does');
  } finally {
    await remove('j1');
  }

  // Rotation: 200-byte files, 3 kept; what is kept is the newest lines, in order.
  const rotDir = join(dirs.base, 'engine', 'containers', 'j2');
  const rot = join(rotDir, 'j2-json.log');
  const rotUri = `jsonfile://${rot}?max-size=200&max-file=3`;
  await container('j2', ['/bin/sh', '-c', 'i=0; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); done']);
  try {
    await a.unary(TASKS, 'Create', { container_id: 'j2', stdout: rotUri, stderr: rotUri }, ns);
    await a.unary(TASKS, 'Start', { container_id: 'j2' }, ns);
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 'j2' }, ns))['exit_status'], 0);
    assert.deepEqual(readdirSync(rotDir).sort(), ['j2-json.log', 'j2-json.log.1', 'j2-json.log.2']);
    for (const f of ['j2-json.log.1', 'j2-json.log.2']) {
      const size = readFileSync(join(rotDir, f)).length;
      assert.ok(size >= 200 && size < 300, `${f} was rotated when it reached max-size (${size} bytes)`);
    }
    const kept = [`${rot}.2`, `${rot}.1`, rot].flatMap((f) => readJsonLog(f).map((e) => e.log));
    assert.equal(kept[kept.length - 1], 'line39\n');
    const first = Number(/^line(\d+)\n$/.exec(kept[0] ?? '')?.[1]);
    assert.ok(first > 0, 'the oldest lines were rotated away');
    assert.deepEqual(kept, Array.from({ length: 40 - first }, (_, i) => `line${first + i}\n`));
  } finally {
    await remove('j2');
  }
});

test('mixed forms: a jsonfile log with stderr also to a file and stdin from attach; what the shim cannot do is INVALID_ARGUMENT', async () => {
  const a = client();
  const logPath = join(dirs.base, 'engine', 'containers', 'm1', 'm1-json.log');
  const errFile = join(dirs.base, 'logs', 'm1-err.log');
  await container('m1', ['/bin/sh', '-c', 'read x; echo "in:$x"; echo oops >&2']);
  try {
    await a.unary(TASKS, 'Create', { container_id: 'm1', stdin: 'attach:', stdout: `jsonfile://${logPath}`, stderr: `file://${errFile}` }, ns);
    const att = await Attach.open(attachSock('m1'), { stdin: true, stdout: true, stderr: true, stdin_once: true });
    att.write('typed\n');
    await a.unary(TASKS, 'Start', { container_id: 'm1' }, ns);
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 'm1' }, ns))['exit_status'], 0);
    await att.waitClosed();
    assert.equal(att.text(1), 'in:typed\n');
    assert.equal(att.text(2), 'oops\n');
    assert.deepEqual(readJsonLog(logPath).map((e) => [e.stream, e.log]).sort(), [['stderr', 'oops\n'], ['stdout', 'in:typed\n']]);
    assert.equal(readFileSync(errFile, 'utf8'), 'oops\n');
  } finally {
    await remove('m1');
  }

  await container('m2', ['/bin/sleep', '300']);
  try {
    const uri = `jsonfile://${join(dirs.base, 'engine', 'containers', 'm2', 'm2-json.log')}`;
    const bad = [
      { stdout: '/tmp/some-fifo', stderr: uri },
      { stdout: uri, stderr: `${uri}?max-file=2` },
      { stdin: uri },
      { stdout: 'attach:' },
      { stdout: `${uri}?max-size=big` },
    ];
    for (const io of bad) {
      const e = await grpcError(a.unary(TASKS, 'Create', { container_id: 'm2', ...io }, ns));
      assert.equal(e.code, status.INVALID_ARGUMENT, `${JSON.stringify(io)}: ${e.details}`);
    }
    assert.equal((await grpcError(a.unary(TASKS, 'Get', { container_id: 'm2' }, ns))).code, status.NOT_FOUND, 'no task is left by a rejected create');
    assert.ok(!existsSync(join(dirs.state, 'shims', ns, 'm2')));

    await a.unary(TASKS, 'Create', { container_id: 'm2', stdout: uri }, ns);
    await a.unary(TASKS, 'Start', { container_id: 'm2' }, ns);
    const e = await grpcError(a.unary(TASKS, 'Exec', { container_id: 'm2', exec_id: 'ex', stdout: uri, spec: execSpec(['/bin/true']) }, ns));
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.match(e.details, /^stdout: exec ex: jsonfile:\/\/ logs are written for a task's init process only/);
  } finally {
    await remove('m2');
  }
});

test('attach before start: every byte of the output, stdcopy-framed, stdout and stderr apart; the connection ends with the output', async () => {
  const a = client();
  const lines = Array.from({ length: 3000 }, (_, i) => `line${i}\n`).join('');
  await container('a1', ['/bin/sh', '-c', 'echo first; i=0; while [ $i -lt 3000 ]; do echo line$i; i=$((i+1)); done; echo last >&2']);
  try {
    await a.unary(TASKS, 'Create', { container_id: 'a1' }, ns);
    const att = await Attach.open(attachSock('a1'), { stdout: true, stderr: true });
    const onlyErr = await Attach.open(attachSock('a1'), { stderr: true });
    assert.equal(att.terminal, false);
    await a.unary(TASKS, 'Start', { container_id: 'a1' }, ns);
    await att.waitClosed();
    await onlyErr.waitClosed();
    assert.equal(att.text(1), `first\n${lines}`);
    assert.equal(att.text(2), 'last\n');
    assert.deepEqual([...new Set(onlyErr.frames.map((f) => f.stream))], [2]);
    assert.equal(onlyErr.text(2), 'last\n');
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 'a1' }, ns))['exit_status'], 0);
  } finally {
    await remove('a1');
  }

  // A process that writes one line and exits at once.
  await container('a2', ['/bin/echo', 'hello']);
  try {
    await a.unary(TASKS, 'Create', { container_id: 'a2' }, ns);
    const att = await Attach.open(attachSock('a2'), { stdout: true, stderr: true });
    await a.unary(TASKS, 'Start', { container_id: 'a2' }, ns);
    await att.waitClosed();
    assert.deepEqual(att.frames.map((f) => [f.stream, f.data.toString('utf8')]), [[1, 'hello\n']]);
  } finally {
    await remove('a2');
  }
});

test('cat with attach: stdin echoes what the attach client writes and exits when stdin_once closes it', async () => {
  const a = client();
  await container('c1', ['/bin/cat']);
  try {
    await a.unary(TASKS, 'Create', { container_id: 'c1', stdin: 'attach:' }, ns);
    const att = await Attach.open(attachSock('c1'), { stdin: true, stdout: true, stderr: true, stdin_once: true });
    att.write('before start\n');
    const reader = await Attach.open(attachSock('c1'), { stdout: true });
    await assert.rejects(Attach.open(attachSock('c1'), { stdin: true }), /another client is attached to stdin/);
    await a.unary(TASKS, 'Start', { container_id: 'c1' }, ns);
    await until('the early input echoed', () => att.text(1) === 'before start\n');
    att.write('hello\n');
    await until('hello echoed', () => att.text(1) === 'before start\nhello\n');
    const big = 'z'.repeat(200_000);
    att.write(big);
    await until('200 kB echoed', () => att.text(1).length === 'before start\nhello\n'.length + big.length);
    const st = (await a.unary(TASKS, 'Get', { container_id: 'c1' }, ns))['process'] as Msg;
    assert.deepEqual([st['status'], st['stdin']], ['RUNNING', 'attach:']);
    att.endInput();
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 'c1' }, ns))['exit_status'], 0, 'cat saw the end of its input');
    await att.waitClosed();
    await reader.waitClosed();
    assert.equal(reader.text(1), att.text(1), 'every reader gets the same output');
  } finally {
    await remove('c1');
  }

  // Without stdin_once, a client going away leaves stdin open for the next one.
  await container('c2', ['/bin/cat']);
  try {
    await a.unary(TASKS, 'Create', { container_id: 'c2', stdin: 'attach:' }, ns);
    await a.unary(TASKS, 'Start', { container_id: 'c2' }, ns);
    const first = await Attach.open(attachSock('c2'), { stdin: true, stdout: true });
    first.write('one\n');
    await until('one echoed', () => first.text(1) === 'one\n');
    first.destroy();
    await first.waitClosed();
    const second = await Attach.open(attachSock('c2'), { stdin: true, stdout: true, stdin_once: true });
    second.write('two\n');
    await until('two echoed', () => second.text(1) === 'two\n');
    second.endInput();
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 'c2' }, ns))['exit_status'], 0);
  } finally {
    await remove('c2');
  }
});

test('an exec with attach: stdin, attached before it starts; with and without a terminal', async () => {
  const a = client();
  await container('e1', ['/bin/sleep', '300']);
  try {
    await a.unary(TASKS, 'Create', { container_id: 'e1' }, ns);
    await a.unary(TASKS, 'Start', { container_id: 'e1' }, ns);

    await a.unary(TASKS, 'Exec', { container_id: 'e1', exec_id: 'x1', stdin: 'attach:', spec: execSpec(['/bin/sh', '-c', 'read x; echo "got:$x"; cat; echo end >&2']) }, ns);
    const att = await Attach.open(attachSock('e1'), { exec_id: 'x1', stdin: true, stdout: true, stderr: true, stdin_once: true });
    att.write('early\n');
    await a.unary(TASKS, 'Start', { container_id: 'e1', exec_id: 'x1' }, ns);
    await until('the exec read its early input', () => att.text(1) === 'got:early\n');
    att.write('more\n');
    await until('more echoed', () => att.text(1) === 'got:early\nmore\n');
    att.endInput();
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 'e1', exec_id: 'x1' }, ns))['exit_status'], 0);
    await att.waitClosed();
    assert.equal(att.text(2), 'end\n');
    const got = (await a.unary(TASKS, 'Get', { container_id: 'e1', exec_id: 'x1' }, ns))['process'] as Msg;
    assert.equal(got['stdin'], 'attach:');
    await a.unary(TASKS, 'DeleteProcess', { container_id: 'e1', exec_id: 'x1' }, ns);

    // Output only, nothing lost from the start.
    await a.unary(TASKS, 'Exec', { container_id: 'e1', exec_id: 'x2', spec: execSpec(['/bin/sh', '-c', 'echo a; echo b >&2; seq 1 2000']) }, ns);
    const out = await Attach.open(attachSock('e1'), { exec_id: 'x2', stdout: true, stderr: true });
    await a.unary(TASKS, 'Start', { container_id: 'e1', exec_id: 'x2' }, ns);
    await out.waitClosed();
    assert.equal(out.text(1), `a\n${Array.from({ length: 2000 }, (_, i) => `${i + 1}\n`).join('')}`);
    assert.equal(out.text(2), 'b\n');
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 'e1', exec_id: 'x2' }, ns))['exit_status'], 0);
    await a.unary(TASKS, 'DeleteProcess', { container_id: 'e1', exec_id: 'x2' }, ns);

    // A terminal exec: stdin typed before the start waits for its pty; the output is raw.
    // `read` rather than an interactive shell: busybox's line editor asks the terminal for the cursor position
    // (ESC [6n) and would take typed-ahead bytes for the answer.
    await a.unary(TASKS, 'Exec', { container_id: 'e1', exec_id: 'x3', stdin: 'attach:', terminal: true, spec: execSpec(['/bin/sh', '-c', 'read cmd; eval "$cmd"']) }, ns);
    const tty = await Attach.open(attachSock('e1'), { exec_id: 'x3', stdin: true, stdout: true, stderr: true });
    assert.equal(tty.terminal, true);
    tty.write('tty; echo tty-$((6*7)); exit 3\n');
    await a.unary(TASKS, 'Start', { container_id: 'e1', exec_id: 'x3' }, ns);
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 'e1', exec_id: 'x3' }, ns))['exit_status'], 3);
    await tty.waitClosed();
    const shown = tty.raw.toString('utf8');
    assert.match(shown, /\/dev\/pts\/\d+/);
    assert.match(shown, /tty-42/);
    assert.equal(tty.frames.length, 0);
    assert.notEqual(tty.raw[0], 1, 'no stdcopy header');
    await a.unary(TASKS, 'DeleteProcess', { container_id: 'e1', exec_id: 'x3' }, ns);

    // An exec that fails to start ends its attach clients.
    await a.unary(TASKS, 'Exec', { container_id: 'e1', exec_id: 'x4', stdin: 'attach:', spec: execSpec(['/no/such/binary']) }, ns);
    const failed = await Attach.open(attachSock('e1'), { exec_id: 'x4', stdin: true, stdout: true, stderr: true });
    await assert.rejects(a.unary(TASKS, 'Start', { container_id: 'e1', exec_id: 'x4' }, ns), /no\/such\/binary/);
    await failed.waitClosed();
  } finally {
    await remove('e1');
  }
});

test('a terminal task through attach: raw output, typed input, ^D for stdin_once', async () => {
  const a = client();
  await container('t1', ['/bin/sh'], true);
  try {
    await a.unary(TASKS, 'Create', { container_id: 't1', stdin: 'attach:', terminal: true }, ns);
    const att = await Attach.open(attachSock('t1'), { stdin: true, stdout: true, stderr: true });
    assert.equal(att.terminal, true);
    await a.unary(TASKS, 'Start', { container_id: 't1' }, ns);
    att.write('tty; echo x-$((2*21)); exit 4\n');
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 't1' }, ns))['exit_status'], 4);
    await att.waitClosed();
    const shown = att.raw.toString('utf8');
    assert.match(shown, /\/dev\/pts\/\d+/);
    assert.match(shown, /x-42/);
    assert.equal(att.frames.length, 0);
  } finally {
    await remove('t1');
  }

  await container('t2', ['/bin/cat'], true);
  try {
    await a.unary(TASKS, 'Create', { container_id: 't2', stdin: 'attach:', terminal: true }, ns);
    await a.unary(TASKS, 'Start', { container_id: 't2' }, ns);
    const att = await Attach.open(attachSock('t2'), { stdin: true, stdout: true, stdin_once: true });
    att.write('typed\n');
    await until('the pty echoed the line and cat repeated it', () => (att.raw.toString('utf8').match(/typed/g) ?? []).length === 2);
    att.endInput();
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 't2' }, ns))['exit_status'], 0, 'cat ended on ^D');
  } finally {
    await remove('t2');
  }
});

test('a supervisor restart (kill -9) under a running jsonfile task: the log goes on, io is kept, attach still works', async () => {
  const a0 = client();
  const logPath = join(dirs.base, 'engine', 'containers', 'r1', 'r1-json.log');
  const uri = `jsonfile://${logPath}?max-size=100000&max-file=2`;
  await container('r1', ['/bin/sh', '-c', 'i=0; while [ ! -e /tmp/r1-stop ]; do echo tick$i; i=$((i+1)); sleep 0.02; done; echo bye']);
  const ticks = (): number => (existsSync(logPath) ? readJsonLog(logPath).length : 0);
  try {
    await a0.unary(TASKS, 'Create', { container_id: 'r1', stdin: 'attach:', stdout: uri, stderr: uri }, ns);
    await a0.unary(TASKS, 'Start', { container_id: 'r1' }, ns);
    await until('a few lines logged', () => ticks() >= 5);
    api?.close();
    api = undefined;
    await daemon?.kill9();
    const down = ticks();
    await until('lines logged while the supervisor is down', () => ticks() >= down + 10);
    daemon = await startDaemon(dirs);
    api = new Api(dirs.address);
    const a = client();
    const got = (await a.unary(TASKS, 'Get', { container_id: 'r1' }, ns))['process'] as Msg;
    assert.deepEqual([got['status'], got['stdin'], got['stdout'], got['stderr']], ['RUNNING', 'attach:', uri, uri]);
    const att = await Attach.open(attachSock('r1'), { stdout: true });
    await until('attach gets ticks after the restart', () => /tick\d+\n/.test(att.text(1)));
    const up = ticks();
    await until('lines logged after the restart', () => ticks() >= up + 10);
    spawnSync('touch', [join(rootfs, 'tmp', 'r1-stop')]);
    assert.equal((await a.unary(TASKS, 'Wait', { container_id: 'r1' }, ns))['exit_status'], 0);
    await att.waitClosed();
    const log = readJsonLog(logPath).map((e) => e.log);
    assert.equal(log[log.length - 1], 'bye\n');
    assert.deepEqual(log.slice(0, -1), Array.from({ length: log.length - 1 }, (_, i) => `tick${i}\n`), 'every line once, in order');
  } finally {
    await remove('r1');
  }
});
