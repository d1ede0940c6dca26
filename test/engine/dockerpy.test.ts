/**
 * berthd driven by docker-py (Debian's python3-docker, `import docker`):
 * each case is a python script that talks to an isolated berthd through
 * `docker.DockerClient`, records what it saw as JSON, and the assertions
 * are made here on those facts.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useEngine } from './_engine.js';

const { dirs } = useEngine();

/** Shared head of every script: the client, a result dict, helpers. */
const PRELUDE = String.raw`
import io, json, os, re, sys, tarfile, time
import docker
from docker.errors import APIError, ContainerError, NotFound

client = docker.DockerClient(base_url='unix://' + os.environ['BERTH_SOCK'], version='auto', timeout=60)
api = client.api
r = {}

def err(f):
    """The error f raises, as {type, status}; None if it does not."""
    try:
        f()
    except APIError as e:
        return {'type': type(e).__name__, 'status': e.status_code, 'msg': str(e.explanation)}
    except Exception as e:
        return {'type': type(e).__name__, 'status': None, 'msg': str(e)}
    return None

def until(pred, secs=15):
    end = time.time() + secs
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False

def cleanup(*names):
    for n in names:
        try:
            client.containers.get(n).remove(force=True)
        except NotFound:
            pass
`;

let seq = 0;

/** Run a script (after PRELUDE) with python3; its last stdout line is the JSON of `r`. */
function py(body: string): Record<string, unknown> {
  const file = join(dirs.base, `case${++seq}.py`);
  writeFileSync(file, `${PRELUDE}\n${body}\nprint(json.dumps(r))\n`);
  const res = spawnSync('python3', [file], {
    encoding: 'utf8', timeout: 180_000,
    env: { ...process.env, BERTH_SOCK: dirs.socket, PYTHONDONTWRITEBYTECODE: '1' },
  });
  if (res.error) throw res.error;
  if (res.status !== 0) throw new Error(`python exited ${String(res.status ?? res.signal)}:\n${res.stderr}\n${res.stdout}`);
  const last = res.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as Record<string, unknown>;
}

const TS_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z /;

test('ping, version and info', () => {
  const r = py(String.raw`
r['ping'] = client.ping()
v = client.version()
r['api'] = v['ApiVersion']
r['os'] = v['Os']
r['negotiated'] = api.api_version
info = client.info()
r['ncpu'] = info['NCPU']
r['images'] = info['Images']
r['mem'] = info['MemTotal']
`);
  assert.equal(r['ping'], true);
  assert.equal(r['api'], '1.50');
  assert.equal(r['os'], 'linux');
  assert.equal(r['negotiated'], '1.50', 'version=auto settles on the server version');
  assert.ok((r['ncpu'] as number) >= 1);
  assert.ok((r['images'] as number) >= 1, 'the built-in busybox');
  assert.ok((r['mem'] as number) > 0);
});

test('containers.run in the foreground: output, env, workdir, user, remove, errors', () => {
  const r = py(String.raw`
before = len(client.containers.list(all=True))
r['out'] = client.containers.run('busybox', 'sh -c "echo hi; echo err >&2"', remove=True).decode()
r['err_only'] = client.containers.run('busybox', ['sh', '-c', 'echo hi; echo err >&2'], stdout=False, stderr=True, remove=True).decode()
r['env_wd_user'] = client.containers.run('busybox', ['sh', '-c', 'echo $FOO; pwd; id -u; id -g'],
    environment={'FOO': 'bar'}, working_dir='/tmp', user='1000:1001', remove=True).decode()
r['env_list'] = client.containers.run('busybox', ['sh', '-c', 'echo $A-$B'], environment=['A=1', 'B=2'], remove=True).decode()
try:
    client.containers.run('busybox', ['sh', '-c', 'echo boom >&2; exit 3'], name='dp-fail', remove=True)
    r['fail'] = None
except ContainerError as e:
    r['fail'] = {'code': e.exit_status, 'stderr': e.stderr.decode()}
r['removed_all'] = len(client.containers.list(all=True)) == before
# without remove the exited container stays, with its name and labels
out = client.containers.run('busybox', 'echo kept', name='dp-kept', labels={'team': 'a'})
c = client.containers.get('dp-kept')
r['kept'] = {'out': out.decode(), 'status': c.status, 'code': c.attrs['State']['ExitCode'], 'labels': c.labels, 'name': c.name}
c.remove()
r['kept_gone'] = err(lambda: client.containers.get('dp-kept'))['type']
`);
  assert.equal(r['out'], 'hi\n');
  assert.equal(r['err_only'], 'err\n');
  assert.equal(r['env_wd_user'], 'bar\n/tmp\n1000\n1001\n');
  assert.equal(r['env_list'], '1-2\n');
  assert.deepEqual(r['fail'], { code: 3, stderr: 'boom\n' });
  assert.equal(r['removed_all'], true, 'remove=True left no container behind');
  assert.deepEqual(r['kept'], { out: 'kept\n', status: 'exited', code: 0, labels: { team: 'a' }, name: 'dp-kept' });
  assert.equal(r['kept_gone'], 'NotFound');
});

test('detached run: attrs, reload, status, logs (tail, timestamps, stream, follow), wait', () => {
  const r = py(String.raw`
try:
    c = client.containers.run('busybox', ['sh', '-c', 'echo a; echo b >&2; echo c; trap "echo bye; exit 0" TERM; while true; do sleep 0.1; done'],
        detach=True, name='dp-det', labels={'k': 'v', 'tier': 'web'}, environment={'GREETING': 'hi'})
    r['initial_status'] = c.status
    c.reload()
    r['status'] = c.status
    r['name'] = c.name
    r['labels'] = c.labels
    r['id_ok'] = re.fullmatch('[0-9a-f]{64}', c.id) is not None and c.short_id == c.id[:12]
    st = c.attrs['State']
    r['running'] = st['Running']
    r['pid_on_host'] = st['Pid'] > 0 and os.path.exists('/proc/%d' % st['Pid'])
    r['env_has'] = 'GREETING=hi' in c.attrs['Config']['Env']
    r['image_tags'] = c.image.tags
    r['log_config'] = c.attrs['HostConfig']['LogConfig']['Type']
    until(lambda: c.logs().count(b'\n') >= 3)
    r['logs'] = c.logs().decode()
    r['stdout_only'] = c.logs(stderr=False).decode()
    r['stderr_only'] = c.logs(stdout=False).decode()
    r['tail1'] = c.logs(tail=1).decode()
    r['ts'] = c.logs(timestamps=True).decode().splitlines()
    r['stream'] = [x.decode() for x in c.logs(stream=True, follow=False)]
    c.stop(timeout=5)
    c.reload()
    r['after_stop'] = {'status': c.status, 'code': c.attrs['State']['ExitCode'], 'running': c.attrs['State']['Running']}
    r['wait'] = c.wait()
    r['logs_after'] = c.logs().decode()
    f = client.containers.run('busybox', ['sh', '-c', 'for i in 1 2 3; do echo $i; sleep 0.2; done; exit 5'], detach=True, name='dp-follow')
    r['follow'] = b''.join(f.logs(stream=True, follow=True)).decode()
    r['follow_wait'] = f.wait(timeout=10)
    r['attach_logs'] = f.attach(logs=True, stream=False).decode()
finally:
    cleanup('dp-det', 'dp-follow')
`);
  assert.equal(r['initial_status'], 'created', 'the object run returns was inspected before start');
  assert.equal(r['status'], 'running');
  assert.equal(r['name'], 'dp-det');
  assert.deepEqual(r['labels'], { k: 'v', tier: 'web' });
  assert.equal(r['id_ok'], true);
  assert.equal(r['running'], true);
  assert.equal(r['pid_on_host'], true);
  assert.equal(r['env_has'], true);
  assert.deepEqual(r['image_tags'], ['busybox:latest']);
  assert.equal(r['log_config'], 'json-file');
  // stdout and stderr interleave by arrival; each keeps its own order.
  assert.deepEqual((r['logs'] as string).split('\n').filter((l) => l !== '').sort(), ['a', 'b', 'c']);
  assert.equal(r['stdout_only'], 'a\nc\n');
  assert.equal(r['stderr_only'], 'b\n');
  assert.match(r['tail1'] as string, /^[bc]\n$/);
  const ts = r['ts'] as string[];
  assert.equal(ts.length, 3);
  for (const l of ts) assert.match(l, TS_LINE);
  assert.deepEqual(ts.map((l) => l.replace(TS_LINE, '')).sort(), ['a', 'b', 'c']);
  assert.deepEqual((r['stream'] as string[]).join('').split('\n').filter((l) => l !== '').sort(), ['a', 'b', 'c']);
  assert.deepEqual(r['after_stop'], { status: 'exited', code: 0, running: false });
  assert.deepEqual(r['wait'], { StatusCode: 0, Error: null });
  assert.match(r['logs_after'] as string, /bye\n$/);
  assert.equal(r['follow'], '1\n2\n3\n');
  assert.deepEqual(r['follow_wait'], { StatusCode: 5, Error: null });
  assert.equal(r['attach_logs'], '1\n2\n3\n', 'attach with logs=1 stream=0 replays the log and ends');
});

test('containers.run auto_remove: the container is gone after it exits', () => {
  const r = py(String.raw`
c = client.containers.run('busybox', ['sh', '-c', 'exit 0'], detach=True, auto_remove=True, name='dp-auto')
r['auto_remove_attr'] = c.attrs['HostConfig'].get('AutoRemove')
r['gone'] = until(lambda: err(lambda: client.containers.get('dp-auto')) is not None)
r['err'] = err(lambda: client.containers.get('dp-auto'))
`);
  assert.equal(r['auto_remove_attr'], true);
  assert.equal(r['gone'], true);
  assert.equal((r['err'] as { type: string; status: number }).type, 'NotFound');
  assert.equal((r['err'] as { type: string; status: number }).status, 404);
});

test('containers.list: all and filters on status, label, name', () => {
  const r = py(String.raw`
try:
    client.containers.run('busybox', ['sleep', '60'], detach=True, name='dp-l-run', labels={'grp': 'x', 'role': 'a'})
    client.containers.run('busybox', ['sleep', '60'], detach=True, name='dp-l-paused', labels={'grp': 'x'}).pause()
    ex = client.containers.run('busybox', ['true'], detach=True, name='dp-l-exited', labels={'grp': 'y'})
    ex.wait()
    client.containers.create('busybox', ['true'], name='dp-l-created')
    names = lambda **kw: sorted(c.name for c in client.containers.list(**kw) if c.name.startswith('dp-l-'))
    r['default'] = names()
    r['all'] = names(all=True)
    r['running'] = names(filters={'status': 'running'})
    r['paused'] = names(filters={'status': 'paused'})
    r['exited'] = names(all=True, filters={'status': 'exited'})
    r['created'] = names(all=True, filters={'status': 'created'})
    r['label_kv'] = names(all=True, filters={'label': 'grp=x'})
    r['label_k'] = names(all=True, filters={'label': 'role'})
    r['label_two'] = names(all=True, filters={'label': ['grp=x', 'role=a']})
    r['name'] = names(all=True, filters={'name': 'dp-l-ex'})
    r['limit'] = len(client.containers.list(all=True, limit=2))
    r['ids_short'] = all(len(c.id) == 64 for c in client.containers.list(all=True, sparse=True))
    r['paused_status'] = client.containers.get('dp-l-paused').status
finally:
    try:
        client.containers.get('dp-l-paused').unpause()
    except APIError:
        pass
    cleanup('dp-l-run', 'dp-l-paused', 'dp-l-exited', 'dp-l-created')
`);
  assert.deepEqual(r['default'], ['dp-l-paused', 'dp-l-run'], 'running and paused, as dockerd lists without all');
  assert.deepEqual(r['all'], ['dp-l-created', 'dp-l-exited', 'dp-l-paused', 'dp-l-run']);
  assert.deepEqual(r['running'], ['dp-l-run']);
  assert.deepEqual(r['paused'], ['dp-l-paused']);
  assert.deepEqual(r['exited'], ['dp-l-exited']);
  assert.deepEqual(r['created'], ['dp-l-created']);
  assert.deepEqual(r['label_kv'], ['dp-l-paused', 'dp-l-run']);
  assert.deepEqual(r['label_k'], ['dp-l-run']);
  assert.deepEqual(r['label_two'], ['dp-l-run']);
  assert.deepEqual(r['name'], ['dp-l-exited']);
  assert.equal(r['limit'], 2);
  assert.equal(r['ids_short'], true);
  assert.equal(r['paused_status'], 'paused');
});

test('stop, kill, restart, pause, unpause, rename, remove', () => {
  const r = py(String.raw`
try:
    c = client.containers.run('busybox', ['sleep', '300'], detach=True, name='dp-life')
    pid0 = c.attrs['State']['Pid']
    c.pause(); c.reload()
    r['paused'] = [c.status, c.attrs['State']['Paused']]
    r['exec_paused'] = err(lambda: c.exec_run('true'))
    c.unpause(); c.reload()
    r['unpaused'] = [c.status, c.attrs['State']['Paused']]
    c.restart(timeout=1); c.reload()
    pid1 = c.attrs['State']['Pid']
    r['restarted'] = [c.status, pid1 != pid0, pid1 > 0, os.path.exists('/proc/%d' % pid1), os.path.exists('/proc/%d' % pid0)]
    c.rename('dp-life2'); c.reload()
    r['renamed'] = [c.name, err(lambda: client.containers.get('dp-life'))['type'], client.containers.get('dp-life2').id == c.id]
    t0 = time.time(); c.stop(timeout=1); took = time.time() - t0
    c.reload()
    # sleep as PID 1 ignores TERM: stop waits the timeout, then kills
    r['stopped'] = [c.status, c.attrs['State']['ExitCode'], took >= 0.9]
    r['stop_again'] = err(lambda: c.stop())
    c.start(); c.reload()
    r['started_again'] = c.status
    u = client.containers.run('busybox', ['sh', '-c', 'trap "exit 42" USR1; while true; do sleep 0.1; done'], detach=True, name='dp-usr1')
    time.sleep(0.3)
    u.kill(signal='SIGUSR1')
    r['usr1_wait'] = u.wait(timeout=10)
    u.reload()
    r['usr1_state'] = [u.status, u.attrs['State']['ExitCode']]
    c.kill()
    # dockerd answers a SIGKILL once the container is down: remove works at once
    r['remove_after_kill'] = err(lambda: c.remove())
    r['gone'] = err(lambda: client.containers.get(c.id))['status']
    d = client.containers.run('busybox', ['sleep', '300'], detach=True, name='dp-life3')
    r['remove_running'] = err(lambda: d.remove())
    d.remove(force=True)
    r['forced_gone'] = err(lambda: d.reload())['type']
    r['kill_stopped'] = err(lambda: client.containers.create('busybox', 'true', name='dp-life4').kill())
finally:
    cleanup('dp-life', 'dp-life2', 'dp-life3', 'dp-life4', 'dp-usr1')
`);
  assert.deepEqual(r['paused'], ['paused', true]);
  assert.equal((r['exec_paused'] as { status: number }).status, 409);
  assert.deepEqual(r['unpaused'], ['running', false]);
  assert.deepEqual(r['restarted'], ['running', true, true, true, false]);
  assert.deepEqual(r['renamed'], ['dp-life2', 'NotFound', true]);
  assert.deepEqual(r['stopped'], ['exited', 137, true]);
  assert.equal(r['stop_again'], null, 'stopping a stopped container is no error (304)');
  assert.equal(r['started_again'], 'running');
  assert.deepEqual(r['usr1_wait'], { StatusCode: 42, Error: null });
  assert.deepEqual(r['usr1_state'], ['exited', 42]);
  assert.equal(r['remove_after_kill'], null);
  assert.equal(r['gone'], 404);
  assert.equal((r['remove_running'] as { status: number }).status, 409);
  assert.equal(r['forced_gone'], 'NotFound');
  assert.equal((r['kill_stopped'] as { status: number }).status, 409);
});

test('exec_run: exit code, output, environment, workdir, user, demux, stream', () => {
  const r = py(String.raw`
try:
    c = client.containers.run('busybox', ['sleep', '120'], detach=True, name='dp-exec', environment={'BASE': 'b'})
    res = c.exec_run(['sh', '-c', 'echo $BASE-$X; pwd; id -u; exit 4'], environment={'X': 'y'}, workdir='/etc', user='1000')
    r['full'] = [res.exit_code, res.output.decode()]
    res = c.exec_run('echo plain')
    r['plain'] = [res.exit_code, res.output.decode()]
    codes = []
    for i in range(5):
        codes.append(c.exec_run(['sh', '-c', 'exit %d' % (i + 1)]).exit_code)
    r['codes'] = codes
    res = c.exec_run(['sh', '-c', 'echo o; echo e >&2'], demux=True)
    r['demux'] = [res.exit_code, res.output[0].decode(), res.output[1].decode()]
    res = c.exec_run(['sh', '-c', 'echo o'], demux=True)
    r['demux_no_err'] = [res.output[0].decode(), res.output[1]]
    res = c.exec_run(['sh', '-c', 'echo 1; sleep 0.3; echo 2'], stream=True)
    r['stream'] = [res.exit_code, [x.decode() for x in res.output]]
    res = c.exec_run(['sh', '-c', 'echo o; sleep 0.2; echo e >&2'], stream=True, demux=True)
    r['stream_demux'] = [[None if a is None else a.decode(), None if b is None else b.decode()] for a, b in res.output]
    res = c.exec_run('sh -c "echo out; echo err >&2"', stderr=False)
    r['no_stderr'] = res.output.decode()
    res = c.exec_run('/no/such/binary')
    r['missing'] = [res.exit_code, res.output.decode()]
    ids = c.attrs['ExecIDs']
    c.reload()
    r['exec_ids'] = len(c.attrs['ExecIDs'] or []) > len(ids or [])
finally:
    cleanup('dp-exec')
`);
  assert.deepEqual(r['full'], [4, 'b-y\n/etc\n1000\n']);
  assert.deepEqual(r['plain'], [0, 'plain\n']);
  assert.deepEqual(r['codes'], [1, 2, 3, 4, 5], 'the exit code is there as soon as the output ends');
  assert.deepEqual(r['demux'], [0, 'o\n', 'e\n']);
  assert.deepEqual(r['demux_no_err'], ['o\n', null]);
  const s = r['stream'] as [unknown, string[]];
  assert.equal(s[0], null, 'a streamed exec has no exit code yet');
  assert.equal(s[1].join(''), '1\n2\n');
  assert.deepEqual(r['stream_demux'], [['o\n', null], [null, 'e\n']]);
  assert.equal(r['no_stderr'], 'out\n');
  const m = r['missing'] as [number, string];
  assert.equal(m[0], 126);
  assert.match(m[1], /no such file or directory/i);
  assert.equal(r['exec_ids'], true);
});

test('top, stats, diff and export', () => {
  const r = py(String.raw`
try:
    c = client.containers.run('busybox', ['sleep', '120'], detach=True, name='dp-views')
    c.reload()
    pid = c.attrs['State']['Pid']
    t = c.top()
    r['top_titles'] = t['Titles']
    r['top_pids'] = [p[t['Titles'].index('PID')] for p in t['Processes']]
    r['top_cmd'] = [p[t['Titles'].index('CMD')] for p in t['Processes']]
    r['pid'] = str(pid)
    t = c.top(ps_args='-o pid,comm')
    r['top_args'] = [t['Titles'], [p[1] for p in t['Processes']]]
    s = c.stats(stream=False)
    r['stats'] = {'name': s['name'], 'id': s['id'], 'mem': s['memory_stats']['usage'], 'pids': s['pids_stats']['current'],
                  'cpu': s['cpu_stats']['cpu_usage']['total_usage'], 'read': s['read']}
    s2 = next(c.stats(decode=True, stream=True))
    r['stats_stream_keys'] = all(k in s2 for k in ('cpu_stats', 'memory_stats', 'pids_stats', 'read'))
    r['exec'] = c.exec_run(['sh', '-c', 'echo marked > /marker; rm /bin/vi; mkdir -p /data/sub; touch /data/sub/f']).exit_code
    r['diff'] = sorted([d['Path'], d['Kind']] for d in c.diff())
    tf = tarfile.open(fileobj=io.BytesIO(b''.join(c.export())))
    names = set(n.rstrip('/') for n in tf.getnames())
    r['export'] = {'busybox': 'bin/busybox' in names, 'marker': tf.extractfile('marker').read().decode(),
                   'vi_gone': 'bin/vi' in names, 'nested': 'data/sub/f' in names, 'sh': 'bin/sh' in names}
    c.stop(timeout=0)
    r['top_stopped'] = err(lambda: c.top())
    s = c.stats(stream=False)
    r['stats_stopped'] = [s['pids_stats'].get('current', 0), s['memory_stats'].get('usage', 0)]
finally:
    cleanup('dp-views')
`);
  for (const col of ['UID', 'PID', 'PPID', 'CMD']) assert.ok((r['top_titles'] as string[]).includes(col), col);
  assert.deepEqual(r['top_pids'], [r['pid']]);
  assert.deepEqual(r['top_cmd'], ['sleep 120']);
  assert.deepEqual(r['top_args'], [['PID', 'COMMAND'], ['sleep']]);
  const st = r['stats'] as { name: string; id: string; mem: number; pids: number; cpu: number; read: string };
  assert.equal(st.name, '/dp-views');
  assert.match(st.id, /^[0-9a-f]{64}$/);
  assert.ok(st.mem > 0, 'memory usage from the cgroup');
  assert.equal(st.pids, 1);
  assert.ok(st.cpu > 0);
  assert.ok(!Number.isNaN(Date.parse(st.read)));
  assert.equal(r['stats_stream_keys'], true);
  assert.equal(r['exec'], 0);
  const diff = r['diff'] as [string, number][];
  for (const d of [['/marker', 1], ['/bin/vi', 2], ['/data', 1], ['/data/sub', 1], ['/data/sub/f', 1], ['/bin', 0]] as const) {
    assert.ok(diff.some(([p, k]) => p === d[0] && k === d[1]), `diff has ${d[0]} kind ${d[1]}: ${JSON.stringify(diff)}`);
  }
  assert.deepEqual(r['export'], { busybox: true, marker: 'marked\n', vi_gone: false, nested: true, sh: true });
  assert.equal((r['top_stopped'] as { status: number }).status, 409);
  assert.deepEqual(r['stats_stopped'], [0, 0]);
});

test('images: list, get, attrs, history, tag, remove', () => {
  const r = py(String.raw`
r['list'] = sorted(t for i in client.images.list() for t in i.tags)
img = client.images.get('busybox')
r['tags'] = img.tags
r['id'] = img.id
r['short_id'] = img.short_id
r['attrs'] = {k: img.attrs.get(k) for k in ('Architecture', 'Os', 'RepoTags')}
r['cmd'] = img.attrs['Config']['Cmd']
r['same'] = client.images.get(img.id).id == img.id and client.images.get('busybox:latest').id == img.id
h = img.history()
r['history'] = [len(h), h[0]['Id'] == img.id, 'busybox:latest' in (h[0]['Tags'] or [])]
r['tag'] = img.tag('dp/box', 'v1')
img.reload()
r['tags_after'] = sorted(img.tags)
r['by_new_tag'] = client.images.get('dp/box:v1').id == img.id
r['list_name'] = [sorted(i.tags) for i in client.images.list(name='dp/box')]
c = client.containers.run('dp/box:v1', ['echo', 'via tag'], remove=True)
r['run_new_tag'] = c.decode()
client.images.remove('dp/box:v1')
r['removed'] = err(lambda: client.images.get('dp/box:v1'))['type']
r['still'] = client.images.get('busybox').id == img.id
r['missing'] = err(lambda: client.images.get('no-such-image:1'))
`);
  assert.ok((r['list'] as string[]).includes('busybox:latest'));
  assert.deepEqual(r['tags'], ['busybox:latest']);
  assert.match(r['id'] as string, /^sha256:[0-9a-f]{64}$/);
  assert.equal(r['short_id'], (r['id'] as string).slice(0, 19));
  assert.deepEqual(r['attrs'], { Architecture: 'amd64', Os: 'linux', RepoTags: ['busybox:latest'] });
  assert.deepEqual(r['cmd'], ['sh']);
  assert.equal(r['same'], true);
  assert.deepEqual(r['history'], [1, true, true]);
  assert.equal(r['tag'], true);
  assert.deepEqual(r['tags_after'], ['busybox:latest', 'dp/box:v1']);
  assert.equal(r['by_new_tag'], true);
  assert.deepEqual(r['list_name'], [['busybox:latest', 'dp/box:v1']]);
  assert.equal(r['run_new_tag'], 'via tag\n');
  assert.equal(r['removed'], 'ImageNotFound');
  assert.equal(r['still'], true);
  assert.equal((r['missing'] as { type: string; status: number }).type, 'ImageNotFound');
  assert.equal((r['missing'] as { type: string; status: number }).status, 404);
});

test('low-level APIClient: create_container, attach_socket, start, stdin, wait', () => {
  const r = py(String.raw`
from docker.utils.socket import frames_iter, next_frame_header, read_exactly
try:
    ct = api.create_container('busybox', ['sh', '-c', 'tr a-z A-Z; echo done >&2; exit 7'], stdin_open=True, name='dp-low',
        environment={'Z': '1'}, labels={'low': '1'}, host_config=api.create_host_config(auto_remove=False))
    r['warnings'] = ct.get('Warnings')
    r['id'] = re.fullmatch('[0-9a-f]{64}', ct['Id']) is not None
    sock = api.attach_socket(ct['Id'], params={'stdin': 1, 'stdout': 1, 'stderr': 1, 'stream': 1})
    api.start(ct['Id'])
    raw = sock._sock
    raw.sendall(b'hello berth\n')
    raw.shutdown(1)
    frames = []
    while True:
        stream, size = next_frame_header(raw)
        if size < 0:
            break
        frames.append([stream, read_exactly(raw, size).decode()])
    raw.close()
    r['frames'] = frames
    r['wait'] = api.wait(ct['Id'], timeout=15)
    ins = api.inspect_container(ct['Id'])
    r['inspect'] = [ins['State']['Status'], ins['State']['ExitCode'], ins['Config']['Labels'], 'Z=1' in ins['Config']['Env'], ins['Name']]
    api.remove_container(ct['Id'])
    r['removed'] = err(lambda: api.inspect_container(ct['Id']))['status']
finally:
    cleanup('dp-low')
`);
  assert.deepEqual(r['warnings'], [], 'Warnings is a list, never null (spec: x-nullable false)');
  assert.equal(r['id'], true);
  const frames = r['frames'] as [number, string][];
  assert.equal(frames.filter(([s]) => s === 1).map(([, t]) => t).join(''), 'HELLO BERTH\n');
  assert.equal(frames.filter(([s]) => s === 2).map(([, t]) => t).join(''), 'done\n');
  assert.deepEqual(r['wait'], { StatusCode: 7, Error: null });
  assert.deepEqual(r['inspect'], ['exited', 7, { low: '1' }, true, '/dp-low']);
  assert.equal(r['removed'], 404);
});
