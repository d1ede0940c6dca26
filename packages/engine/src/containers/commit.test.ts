import test from 'node:test';
import assert from 'node:assert/strict';
import { commitConfig } from './commit.js';
import type { ContainerConfig } from './config.js';

const container: ContainerConfig = {
  Hostname: 'abc', Image: 'busybox', Tty: true,
  Env: ['PATH=/bin', 'A=1'], Cmd: ['sh', '-c', 'x'], WorkingDir: '/w', User: 'u',
  Labels: { l: '1' }, ExposedPorts: { '80/tcp': {} }, StopSignal: 'SIGINT',
};

test('commitConfig keeps the container\'s image fields and drops the rest', () => {
  assert.deepEqual(commitConfig(container, undefined, []), {
    User: 'u', ExposedPorts: { '80/tcp': {} }, Env: ['PATH=/bin', 'A=1'], Cmd: ['sh', '-c', 'x'], WorkingDir: '/w',
    Labels: { l: '1' }, StopSignal: 'SIGINT',
  });
});

test('commitConfig applies changes over the container\'s config', () => {
  const c = commitConfig(container, undefined, ['CMD ["echo","hi"]', 'ENV A=2 B=3', 'EXPOSE 53/udp', 'LABEL m=n', 'VOLUME /data', 'ONBUILD RUN x']);
  assert.deepEqual(c['Cmd'], ['echo', 'hi']);
  assert.deepEqual(c['Env'], ['PATH=/bin', 'A=2', 'B=3']);
  assert.deepEqual(c['ExposedPorts'], { '80/tcp': {}, '53/udp': {} });
  assert.deepEqual(c['Labels'], { l: '1', m: 'n' });
  assert.deepEqual(c['Volumes'], { '/data': {} });
  assert.deepEqual(c['OnBuild'], ['RUN x']);
});

test('commitConfig: ENTRYPOINT without CMD clears the command, as a Dockerfile does', () => {
  const c = commitConfig(container, undefined, ['ENTRYPOINT ["/bin/app"]']);
  assert.deepEqual(c['Entrypoint'], ['/bin/app']);
  assert.equal(c['Cmd'], undefined);
  const d = commitConfig(container, undefined, ['ENTRYPOINT ["/bin/app"]', 'CMD ["-v"]']);
  assert.deepEqual(d['Cmd'], ['-v']);
});

test('commitConfig: a given config is filled from the container where it is unset', () => {
  const c = commitConfig(container, { Env: ['B=1', 'A=9'], Labels: { z: 'y' } }, []);
  assert.deepEqual(c['Env'], ['B=1', 'A=9', 'PATH=/bin']);
  assert.deepEqual(c['Labels'], { l: '1', z: 'y' });
  assert.deepEqual(c['Cmd'], ['sh', '-c', 'x']);
  assert.equal(c['WorkingDir'], '/w');
  assert.equal(c['User'], 'u');
});

test('commitConfig refuses instructions that are not config changes', () => {
  assert.throws(() => commitConfig(container, undefined, ['RUN rm -rf /']), /RUN is not a valid change command/);
});
