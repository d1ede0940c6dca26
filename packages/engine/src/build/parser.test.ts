import test from 'node:test';
import assert from 'node:assert/strict';
import { BerthError, ErrorKind } from '@berth/base';
import {
  DockerfileError,
  parseDockerfile,
  parseDuration,
  parseHeredocWord,
  parseTrigger,
  splitWords,
} from './parser.js';
import type { Instruction } from './parser.js';

const lines = (...l: string[]): string => `${l.join('\n')}\n`;

function only(text: string): Instruction {
  const df = parseDockerfile(text);
  assert.equal(df.instructions.length, 1, `one instruction in ${JSON.stringify(text)}`);
  return df.instructions[0] as Instruction;
}

function fails(text: string, message: string | RegExp, line?: number): void {
  assert.throws(
    () => parseDockerfile(text),
    (err: unknown) => {
      assert.ok(err instanceof DockerfileError, `DockerfileError for ${JSON.stringify(text)}: ${String(err)}`);
      assert.ok(err instanceof BerthError);
      assert.equal(err.kind, ErrorKind.InvalidArgument);
      if (typeof message === 'string') assert.equal(err.detail, message);
      else assert.match(err.detail, message);
      if (line !== undefined) {
        assert.equal(err.startLine, line);
        assert.ok(err.message.startsWith(`Dockerfile:${line}: `), err.message);
      }
      return true;
    },
  );
}

test('parser directives', () => {
  const cases: [string, string, string | undefined][] = [
    // text, escape, syntax
    [lines('# syntax=docker/dockerfile:1', 'FROM a'), '\\', 'docker/dockerfile:1'],
    [lines('# escape=`', '', 'FROM a'), '`', undefined],
    [lines('# escape=\\', 'FROM a'), '\\', undefined],
    [lines('#escape=`', 'FROM a'), '`', undefined],
    [lines('# escape =`', 'FROM a'), '`', undefined],
    [lines('#\tescape= `', 'FROM a'), '`', undefined],
    [lines('# escape = `', 'FROM a'), '`', undefined],
    [lines('#\t  eScApE=`', 'FROM a'), '`', undefined],
    [lines('# syntax=x', '# escape=`', '# check=skip=all', 'FROM a'), '`', 'x'],
    // after an instruction: a comment
    [lines('FROM a', '# escape=`'), '\\', undefined],
    // after a comment that is not a directive: a comment
    [lines('# About my dockerfile', '# escape=`', 'FROM a'), '\\', undefined],
    // unknown directive ends the directives
    [lines('# unknowndirective=value', '# syntax=value', 'FROM a'), '\\', undefined],
    // after a blank line
    [lines('', '# escape=`', 'FROM a'), '\\', undefined],
  ];
  for (const [text, escape, syntax] of cases) {
    const df = parseDockerfile(text);
    assert.equal(df.directives.escape, escape, text);
    assert.equal(df.directives.syntax, syntax, text);
  }
  assert.equal(parseDockerfile(lines('# check=skip=JSONArgsRecommended;error=true', 'FROM a')).directives.check,
    'skip=JSONArgsRecommended;error=true');
  fails(lines('# escape=\\', '# escape=`', 'FROM a'), 'only one escape parser directive can be used', 2);
  fails(lines('# syntax=a', '# SYNTAX=b'), 'only one syntax parser directive can be used', 2);
  // continuation is not supported in directives: the next line is an instruction
  fails(lines('# direc \\', 'tive=value'), 'unknown instruction: TIVE=VALUE', 2);
  fails(lines('# escape=x', 'FROM a'), "invalid escape token 'x' does not match ` or \\", 1);
});

test('escape character: the reference examples', () => {
  // Default escape: the trailing backslashes join three lines into one COPY.
  const df = parseDockerfile(lines('FROM microsoft/nanoserver', 'COPY testfile.txt c:\\\\', 'RUN dir c:\\'));
  assert.equal(df.instructions.length, 2);
  assert.equal(df.instructions[1]?.original, 'COPY testfile.txt c:\\RUN dir c:');
  // With escape=` each line is an instruction and backslashes are plain.
  const w = parseDockerfile(lines('# escape=`', '', 'FROM microsoft/nanoserver', 'COPY testfile.txt c:\\', 'RUN dir c:\\'));
  assert.deepEqual(w.instructions.map((i) => i.original), [
    'FROM microsoft/nanoserver',
    'COPY testfile.txt c:\\',
    'RUN dir c:\\',
  ]);
  const copy = w.instructions[1];
  assert.ok(copy?.kind === 'COPY');
  assert.equal(copy.dest, 'c:\\');
  const run = w.instructions[2];
  assert.ok(run?.kind === 'RUN');
  assert.deepEqual(run.command, { json: false, args: ['dir c:\\'] });
  // Backtick continues lines when it is the escape.
  const bt = only(lines('# escape=`', 'RUN echo a `', '  b'));
  assert.ok(bt.kind === 'RUN');
  assert.deepEqual(bt.command.args, ['echo a   b']);
  // SHELL example from the reference.
  const sh = parseDockerfile(lines(
    '# escape=`', '', 'FROM microsoft/nanoserver', 'SHELL ["powershell","-command"]',
    'RUN New-Item -ItemType Directory C:\\Example', 'ADD Execute-MyCmdlet.ps1 c:\\example\\',
    "RUN c:\\example\\Execute-MyCmdlet -sample 'hello world'",
  ));
  assert.deepEqual(sh.instructions.map((i) => i.kind), ['FROM', 'SHELL', 'RUN', 'ADD', 'RUN']);
  const add = sh.instructions[3];
  assert.ok(add?.kind === 'ADD');
  assert.deepEqual(add.sources, [{ kind: 'path', path: 'Execute-MyCmdlet.ps1' }]);
  assert.equal(add.dest, 'c:\\example\\');
});

test('comments, whitespace and continuations', () => {
  const cases: [string, string[]][] = [
    [lines('# Comment', "RUN echo 'we are running some # of cool things'"),
      ["echo 'we are running some # of cool things'"]],
    [lines('RUN echo hello \\', '# comment', 'world'), ['echo hello world']],
    [lines('RUN echo hello \\', 'world'), ['echo hello world']],
    [lines('        # this is a comment-line', '    RUN echo hello', 'RUN echo world'), ['echo hello', 'echo world']],
    [lines('RUN echo "\\', '     hello\\', '     world"'), ['echo "     hello     world"']],
    [lines('RUN a \\   ', 'b'), ['a b']],
    [lines('RUN a \\\t', 'b'), ['a b']],
    [lines('RUN a \\', '   # indented comment', 'b'), ['a b']],
    [lines('RUN a \\', '', '   ', 'b'), ['a b']],
    [lines('RUN a # not a comment'), ['a # not a comment']],
    ['RUN a\r\nRUN b\r\n', ['a', 'b']],
    ['\uFEFFRUN a', ['a']],
    [lines('RUN a \\'), ['a']],
    [lines('RUN a \\', '# c1', '# c2'), ['a']],
  ];
  for (const [text, want] of cases) {
    const got = parseDockerfile(text).instructions.map((i) => (i.kind === 'RUN' ? i.command.args[0] : i.kind));
    assert.deepEqual(got, want, JSON.stringify(text));
  }
  const df = parseDockerfile(lines('FROM a', 'RUN a \\', '', 'b'));
  assert.equal(df.warnings.length, 1);
  assert.equal(df.warnings[0]?.line, 2);
  assert.equal(parseDockerfile('').instructions.length, 0);
  assert.equal(parseDockerfile(lines('# only', '', '   ')).instructions.length, 0);
});

test('line numbers and original text', () => {
  const df = parseDockerfile(lines(
    '# syntax=docker/dockerfile:1', // 1
    '', // 2
    'FROM alpine', // 3
    'RUN a \\', // 4
    '  # comment', // 5
    '  b', // 6
    'COPY <<EOF /x', // 7
    'content', // 8
    'EOF', // 9
    'run   c', // 10
  ));
  assert.deepEqual(df.instructions.map((i) => [i.kind, i.startLine, i.endLine, i.original]), [
    ['FROM', 3, 3, 'FROM alpine'],
    ['RUN', 4, 6, 'RUN a   b'],
    ['COPY', 7, 9, 'COPY <<EOF /x'],
    ['RUN', 10, 10, 'run   c'],
  ]);
  fails(lines('FROM a', '', 'FOO bar'), 'unknown instruction: FOO', 3);
  fails(lines('FROM a', 'frob \\', 'x'), 'unknown instruction: FROB', 2);
  const err = (() => {
    try {
      parseDockerfile(lines('FROM a', 'BAD'), { filename: 'build/Dockerfile.dev' });
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(err instanceof DockerfileError);
  assert.equal(err.message, 'build/Dockerfile.dev:2: unknown instruction: BAD');
});

test('exec and shell forms', () => {
  const cases: [string, boolean, string[]][] = [
    ['ENTRYPOINT ["/bin/bash", "-c", "echo hello"]', true, ['/bin/bash', '-c', 'echo hello']],
    ['RUN ["c:\\windows\\system32\\tasklist.exe"]', false, ['["c:\\windows\\system32\\tasklist.exe"]']],
    ['RUN ["c:\\\\windows\\\\system32\\\\tasklist.exe"]', true, ['c:\\windows\\system32\\tasklist.exe']],
    ['RUN [ "echo", "$HOME" ]', true, ['echo', '$HOME']],
    ['RUN [ "sh", "-c", "echo $HOME" ]', true, ['sh', '-c', 'echo $HOME']],
    ['RUN ["powershell", "-command", "Execute-MyCmdlet", "-param1 \\"c:\\\\foo.txt\\""]', true,
      ['powershell', '-command', 'Execute-MyCmdlet', '-param1 "c:\\foo.txt"']],
    ['RUN source $HOME/.bashrc && \\\necho $HOME', false, ['source $HOME/.bashrc && echo $HOME']],
    ['CMD ["a", 1]', false, ['["a", 1]']],
    ['CMD []', true, []],
    ["CMD ['a']", false, ["['a']"]],
    ['CMD [ "unterminated"', false, ['[ "unterminated"']],
    ['cmd echo "x"', false, ['echo "x"']],
    ['ENTRYPOINT exec top -b', false, ['exec top -b']],
  ];
  for (const [text, json, args] of cases) {
    const i = only(text);
    assert.ok(i.kind === 'RUN' || i.kind === 'CMD' || i.kind === 'ENTRYPOINT', text);
    assert.deepEqual(i.command, { json, args }, text);
  }
  fails('RUN', 'RUN requires at least one argument', 1);
  fails('CMD', 'CMD requires at least one argument', 1);
});

test('FROM', () => {
  const cases: [string, Record<string, string>][] = [
    ['FROM busybox', { image: 'busybox' }],
    ['FROM ubuntu AS base', { image: 'ubuntu', name: 'base' }],
    ['from ubuntu as Build-1.x_y', { image: 'ubuntu', name: 'build-1.x_y' }],
    ['FROM --platform=linux/arm64 alpine:3.19 AS b', { image: 'alpine:3.19', name: 'b', platform: 'linux/arm64' }],
    ['FROM --platform=$BUILDPLATFORM golang', { image: 'golang', platform: '$BUILDPLATFORM' }],
    ['FROM base:${CODE_VERSION}', { image: 'base:${CODE_VERSION}' }],
    [`FROM alpine@sha256:${'a'.repeat(64)}`, { image: `alpine@sha256:${'a'.repeat(64)}` }],
    ['FROM scratch', { image: 'scratch' }],
  ];
  for (const [text, want] of cases) {
    const i = only(text);
    assert.ok(i.kind === 'FROM');
    const { kind: _k, startLine: _s, endLine: _e, original: _o, ...rest } = i;
    assert.deepEqual(rest, want, text);
  }
  fails('FROM', 'FROM requires either one or three arguments');
  fails('FROM a b', 'FROM requires either one or three arguments');
  fails('FROM a with b', 'FROM requires either one or three arguments');
  fails('FROM a AS b c', 'FROM requires either one or three arguments');
  fails('FROM a AS 1x', 'invalid name for build stage: "1x", name can\'t start with a number or contain symbols');
  fails('FROM a AS b$', /^invalid name for build stage/);
  fails('FROM --platform a', 'missing a value on flag: platform');
  fails('FROM --plat=x a', 'unknown flag: plat');
});

test('ENV and LABEL', () => {
  const cases: [string, [string, string][]][] = [
    ['ENV MY_NAME="John Doe"', [['MY_NAME', '"John Doe"']]],
    ['ENV MY_DOG=Rex\\ The\\ Dog', [['MY_DOG', 'Rex\\ The\\ Dog']]],
    ['ENV MY_CAT=fluffy', [['MY_CAT', 'fluffy']]],
    ['ENV MY_NAME="John Doe" MY_DOG=Rex\\ The\\ Dog \\\n    MY_CAT=fluffy',
      [['MY_NAME', '"John Doe"'], ['MY_DOG', 'Rex\\ The\\ Dog'], ['MY_CAT', 'fluffy']]],
    ['ENV MY_VAR my-value', [['MY_VAR', 'my-value']]],
    ['ENV ONE TWO= THREE=world', [['ONE', 'TWO= THREE=world']]],
    ['ENV k v with  spaces ', [['k', 'v with  spaces']]],
    ["ENV a='x y' b=\"it's\" c=", [['a', "'x y'"], ['b', '"it\'s"'], ['c', '']]],
    ['ENV a=1=2', [['a', '1=2']]],
    ['ENV abc=bye def=$abc', [['abc', 'bye'], ['def', '$abc']]],
    ['LABEL "com.example.vendor"="ACME Incorporated"', [['"com.example.vendor"', '"ACME Incorporated"']]],
    ['LABEL com.example.label-with-value="foo"', [['com.example.label-with-value', '"foo"']]],
    ['LABEL version="1.0"', [['version', '"1.0"']]],
    ['LABEL description="This text illustrates \\\nthat label-values can span multiple lines."',
      [['description', '"This text illustrates that label-values can span multiple lines."']]],
    ['LABEL multi.label1="value1" multi.label2="value2" other="value3"',
      [['multi.label1', '"value1"'], ['multi.label2', '"value2"'], ['other', '"value3"']]],
    ['LABEL multi.label1="value1" \\\n      multi.label2="value2" \\\n      other="value3"',
      [['multi.label1', '"value1"'], ['multi.label2', '"value2"'], ['other', '"value3"']]],
  ];
  for (const [text, want] of cases) {
    const i = only(text);
    assert.ok(i.kind === 'ENV' || i.kind === 'LABEL', text);
    assert.deepEqual(i.pairs.map((p) => [p.key, p.value]), want, text);
  }
  fails('ENV', 'ENV requires at least one argument');
  fails('ENV =x', 'ENV names can not be blank');
  fails('ENV a=1 =2', 'ENV names can not be blank');
  fails('LABEL =x', 'LABEL names can not be blank');
  fails('ENV a', 'ENV must have two arguments');
  fails('LABEL a', 'LABEL must have two arguments');
  fails('ENV a=1 b', 'Syntax error - can\'t find = in "b". Must be of the form: name=value');
  fails('ENV --x=1 a=b', 'unknown flag: x');
});

test('ARG, EXPOSE, WORKDIR, USER, STOPSIGNAL, MAINTAINER, VOLUME, SHELL', () => {
  const arg = only('ARG user1=someuser buildno=1 plain q="a b" e=');
  assert.ok(arg.kind === 'ARG');
  assert.deepEqual(arg.args, [
    { name: 'user1', default: 'someuser' },
    { name: 'buildno', default: '1' },
    { name: 'plain' },
    { name: 'q', default: '"a b"' },
    { name: 'e', default: '' },
  ]);
  fails('ARG', 'ARG requires at least one argument');
  fails('ARG =1', 'ARG names can not be blank');

  const ex = only('EXPOSE 80/tcp 80/udp  $PORT');
  assert.ok(ex.kind === 'EXPOSE');
  assert.deepEqual(ex.ports, ['80/tcp', '80/udp', '$PORT']);
  fails('EXPOSE', 'EXPOSE requires at least one argument');

  const table: [string, string, string][] = [
    ['WORKDIR /path/to/workdir', 'path', '/path/to/workdir'],
    ['WORKDIR $DIRPATH/$DIRNAME', 'path', '$DIRPATH/$DIRNAME'],
    ['WORKDIR /with space', 'path', '/with space'],
    ['USER patrick', 'user', 'patrick'],
    ['USER 1000:1000', 'user', '1000:1000'],
    ['STOPSIGNAL SIGKILL', 'signal', 'SIGKILL'],
    ['STOPSIGNAL 9', 'signal', '9'],
    ['MAINTAINER SvenDowideit@home.org.au', 'maintainer', 'SvenDowideit@home.org.au'],
    ['MAINTAINER A Person <a@example.com>', 'maintainer', 'A Person <a@example.com>'],
  ];
  for (const [text, field, value] of table) {
    const i = only(text) as unknown as Record<string, unknown>;
    assert.equal(i[field], value, text);
  }
  fails('WORKDIR', 'WORKDIR requires exactly one argument');
  fails('USER', 'USER requires exactly one argument');
  fails('STOPSIGNAL SIGTERM SIGKILL', 'STOPSIGNAL requires exactly one argument');

  const vols: [string, boolean, string[]][] = [
    ['VOLUME ["/data"]', true, ['/data']],
    ['VOLUME ["/var/log/"]', true, ['/var/log/']],
    ['VOLUME /var/log', false, ['/var/log']],
    ['VOLUME /var/log /var/db', false, ['/var/log', '/var/db']],
    ['VOLUME /myvol', false, ['/myvol']],
  ];
  for (const [text, json, paths] of vols) {
    const i = only(text);
    assert.ok(i.kind === 'VOLUME');
    assert.deepEqual([i.json, i.paths], [json, paths], text);
  }
  fails('VOLUME', 'VOLUME requires at least one argument');
  fails('VOLUME [""]', 'VOLUME specified can not be an empty string');

  const sh = only('SHELL ["/bin/bash", "-c"]');
  assert.ok(sh.kind === 'SHELL');
  assert.deepEqual(sh.shell, ['/bin/bash', '-c']);
  const cmd = only('SHELL ["cmd", "/S", "/C"]');
  assert.ok(cmd.kind === 'SHELL');
  assert.deepEqual(cmd.shell, ['cmd', '/S', '/C']);
  fails('SHELL /bin/bash -c', 'SHELL requires the arguments to be in JSON form');
  fails('SHELL []', 'SHELL requires at least one argument');
  fails('SHELL', 'SHELL requires at least one argument');
});

test('COPY and ADD', () => {
  const c = only('COPY --from=build --chown=55:mygroup --chmod=644 --link --parents --exclude=*.txt --exclude=*.md a b /dest/');
  assert.ok(c.kind === 'COPY');
  assert.deepEqual(
    { sources: c.sources, dest: c.dest, from: c.from, chown: c.chown, chmod: c.chmod, link: c.link, parents: c.parents, excludes: c.excludes, json: c.json },
    {
      sources: [{ kind: 'path', path: 'a' }, { kind: 'path', path: 'b' }],
      dest: '/dest/', from: 'build', chown: '55:mygroup', chmod: '644', link: true, parents: true,
      excludes: ['*.txt', '*.md'], json: false,
    },
  );
  const j = only('COPY ["with space.txt", "/dest dir/"]');
  assert.ok(j.kind === 'COPY');
  assert.deepEqual([j.json, j.sources, j.dest], [true, [{ kind: 'path', path: 'with space.txt' }], '/dest dir/']);
  const plain = only('COPY . /app');
  assert.ok(plain.kind === 'COPY');
  assert.equal(plain.link, false);
  assert.equal(plain.from, undefined);
  const quoted = only('COPY --chown="a b" --link=false x y');
  assert.ok(quoted.kind === 'COPY');
  assert.equal(quoted.chown, 'a b');
  assert.equal(quoted.link, false);
  const dashdash = only('COPY -- --weird y');
  assert.ok(dashdash.kind === 'COPY');
  assert.deepEqual(dashdash.sources, [{ kind: 'path', path: '--weird' }]);

  const a = only('ADD --keep-git-dir=true --checksum=sha256:abc --unpack=true --chown=1 https://example.com/x.tar.gz /dl/');
  assert.ok(a.kind === 'ADD');
  assert.deepEqual([a.keepGitDir, a.checksum, a.unpack, a.chown, a.dest], [true, 'sha256:abc', true, '1', '/dl/']);
  const a2 = only('ADD test.txt relativeDir/');
  assert.ok(a2.kind === 'ADD');
  assert.deepEqual([a2.keepGitDir, a2.checksum, a2.unpack], [false, undefined, undefined]);

  fails('COPY only', 'COPY requires at least two arguments, but only one was provided. Destination could not be determined.');
  fails('ADD', 'ADD requires at least two arguments, but only one was provided. Destination could not be determined.');
  fails('COPY --foo a b', 'unknown flag: foo');
  fails('COPY --from a b', 'missing a value on flag: from');
  fails('COPY --from=a --from=b c d', 'duplicate flag specified: from');
  fails('COPY --link=maybe a b', 'expecting boolean value for flag link, not: maybe');
  fails('COPY --link= a b', 'missing a value on flag: link');
  fails('ADD --from=x a b', 'unknown flag: from');
  fails('COPY a <<EOF\nx\nEOF\n', 'COPY cannot accept a heredoc as a destination');
});

test('RUN flags', () => {
  const r = only('RUN --mount=type=cache,target=/root/.cache --mount=type=bind,from=build,target=/b --network=none --security=insecure make');
  assert.ok(r.kind === 'RUN');
  assert.deepEqual(r.mounts, ['type=cache,target=/root/.cache', 'type=bind,from=build,target=/b']);
  assert.equal(r.network, 'none');
  assert.equal(r.security, 'insecure');
  assert.deepEqual(r.command.args, ['make']);
  fails('RUN --network=bridge x', 'unsupported network mode "bridge"');
  fails('RUN --security=x y', 'unsupported security mode "x"');
  fails('RUN --frobnicate x', 'unknown flag: frobnicate');
});

test('HEALTHCHECK', () => {
  const h = only('HEALTHCHECK --interval=5m --timeout=3s \\\n  CMD curl -f http://localhost/ || exit 1');
  assert.ok(h.kind === 'HEALTHCHECK');
  assert.deepEqual(
    [h.test, h.interval, h.timeout, h.startPeriod, h.startInterval, h.retries],
    [['CMD-SHELL', 'curl -f http://localhost/ || exit 1'], 300e9, 3e9, 0, 0, 0],
  );
  const all = only('HEALTHCHECK --interval=1m30s --timeout=10ms --start-period=1.5s --start-interval=2s --retries=5 CMD ["/bin/check", "-x"]');
  assert.ok(all.kind === 'HEALTHCHECK');
  assert.deepEqual(
    [all.test, all.interval, all.timeout, all.startPeriod, all.startInterval, all.retries],
    [['CMD', '/bin/check', '-x'], 90e9, 10e6, 1.5e9, 2e9, 5],
  );
  const none = only('healthcheck none');
  assert.ok(none.kind === 'HEALTHCHECK');
  assert.deepEqual(none.test, ['NONE']);
  const zero = only('HEALTHCHECK --interval=0 CMD true');
  assert.ok(zero.kind === 'HEALTHCHECK');
  assert.equal(zero.interval, 0);
  fails('HEALTHCHECK NONE x', 'HEALTHCHECK NONE takes no arguments');
  fails('HEALTHCHECK --retries=1 NONE', 'HEALTHCHECK NONE takes no options');
  fails('HEALTHCHECK', 'HEALTHCHECK requires at least one argument');
  fails('HEALTHCHECK PING x', 'Unknown type "PING" in HEALTHCHECK (try CMD)');
  fails('HEALTHCHECK CMD', 'Missing command after HEALTHCHECK CMD');
  fails('HEALTHCHECK --retries=-1 CMD x', '--retries cannot be negative (-1)');
  fails('HEALTHCHECK --retries=x CMD x', 'strconv.ParseInt: parsing "x": invalid syntax');
  fails('HEALTHCHECK --interval=1us CMD x', 'Interval "interval" cannot be less than 1ms');
  fails('HEALTHCHECK --timeout=-1s CMD x', 'Interval "timeout" cannot be less than 1ms');
  fails('HEALTHCHECK --interval=5 CMD x', 'time: missing unit in duration "5"');
  fails('HEALTHCHECK --interval=5x CMD x', 'time: unknown unit "x" in duration "5x"');
  fails('HEALTHCHECK --period=5s CMD x', 'unknown flag: period');
});

test('ONBUILD', () => {
  const o = only('ONBUILD ADD . /app/src');
  assert.ok(o.kind === 'ONBUILD');
  assert.equal(o.expression, 'ADD . /app/src');
  assert.equal(o.trigger.kind, 'ADD');
  const r = only('onbuild   RUN /usr/local/bin/python-build --dir /app/src');
  assert.ok(r.kind === 'ONBUILD' && r.trigger.kind === 'RUN');
  assert.equal(r.expression, 'RUN /usr/local/bin/python-build --dir /app/src');
  assert.deepEqual(r.trigger.command.args, ['/usr/local/bin/python-build --dir /app/src']);
  const c = only('ONBUILD COPY --from=build /usr/bin/app /app');
  assert.ok(c.kind === 'ONBUILD' && c.trigger.kind === 'COPY');
  assert.equal(c.trigger.from, 'build');
  fails('ONBUILD ONBUILD RUN x', 'Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
  fails('ONBUILD FROM x', 'FROM isn\'t allowed as an ONBUILD trigger');
  fails('ONBUILD maintainer x', 'MAINTAINER isn\'t allowed as an ONBUILD trigger');
  fails('ONBUILD', 'ONBUILD requires at least one argument');
  fails('ONBUILD FOO x', 'unknown instruction: FOO');
  fails('ONBUILD ENV =1', 'ENV names can not be blank');
  const t = parseTrigger('RUN echo hi');
  assert.equal(t.kind, 'RUN');
  assert.throws(() => parseTrigger('ONBUILD RUN x'), /ONBUILD trigger: Chaining ONBUILD/);
});

test('heredocs: the reference examples', () => {
  const bash = parseDockerfile(lines('# syntax=docker/dockerfile:1', 'FROM debian', 'RUN <<EOT bash',
    '  set -ex', '  apt-get update', '  apt-get install -y vim', 'EOT'));
  const r = bash.instructions[1];
  assert.ok(r?.kind === 'RUN');
  assert.deepEqual(r.command.args, ['<<EOT bash']);
  assert.deepEqual(r.heredocs, [
    { name: 'EOT', expand: true, chomp: false, content: '  set -ex\n  apt-get update\n  apt-get install -y vim\n' },
  ]);
  assert.deepEqual([r.startLine, r.endLine], [3, 7]);

  const py = only(lines('RUN <<EOT', '#!/usr/bin/env python', 'print("hello world")', 'EOT'));
  assert.ok(py.kind === 'RUN');
  assert.equal(py.heredocs[0]?.content, '#!/usr/bin/env python\nprint("hello world")\n');

  const two = only(lines('RUN <<FILE1 cat > file1 && <<FILE2 cat > file2', 'I am', 'first', 'FILE1', 'I am', 'second', 'FILE2'));
  assert.ok(two.kind === 'RUN');
  assert.deepEqual(two.heredocs.map((h) => [h.name, h.content]), [['FILE1', 'I am\nfirst\n'], ['FILE2', 'I am\nsecond\n']]);

  const greet = only(lines('COPY <<EOF greeting.txt', 'hello world', 'EOF'));
  assert.ok(greet.kind === 'COPY');
  assert.deepEqual(greet.sources, [{ kind: 'heredoc', name: 'EOF', content: 'hello world\n', expand: true }]);
  assert.equal(greet.dest, 'greeting.txt');

  const script = only(lines('COPY <<-EOT /script.sh', '  echo "hello ${FOO}"', 'EOT'));
  assert.ok(script.kind === 'COPY');
  assert.deepEqual(script.sources, [{ kind: 'heredoc', name: 'EOT', content: '  echo "hello ${FOO}"\n', expand: true }]);
  const quoted = only(lines('COPY <<-"EOT" /script.sh', '  echo "hello ${FOO}"', 'EOT'));
  assert.ok(quoted.kind === 'COPY');
  assert.deepEqual(quoted.sources, [{ kind: 'heredoc', name: 'EOT', content: '  echo "hello ${FOO}"\n', expand: false }]);
});

test('heredocs: delimiters, tabs, several, not-heredocs', () => {
  const tabs = only(lines('COPY <<-EOT /x', '\t\tindented', '\tEOT'));
  assert.ok(tabs.kind === 'COPY');
  assert.deepEqual(tabs.sources, [{ kind: 'heredoc', name: 'EOT', content: 'indented\n', expand: true }]);
  const runTabs = only(lines('RUN <<-EOT sh', '\techo a', '\t\tEOT'));
  assert.ok(runTabs.kind === 'RUN');
  assert.equal(runTabs.heredocs[0]?.content, '\techo a\n', 'RUN keeps the tabs for the shell');
  // Without "-" a tab-indented delimiter does not end the heredoc.
  fails(lines('RUN <<EOT', '\tEOT'), 'unterminated heredoc EOT', 1);

  const words: [string, ReturnType<typeof parseHeredocWord>][] = [
    ['<<EOF', { name: 'EOF', expand: true, chomp: false }],
    ['<<-EOF', { name: 'EOF', expand: true, chomp: true }],
    ["<<'EOF'", { name: 'EOF', expand: false, chomp: false }],
    ['<<"EOF"', { name: 'EOF', expand: false, chomp: false }],
    ['<<E"O"F', { name: 'EOF', expand: false, chomp: false }],
    ['3<<EOF', { name: 'EOF', expand: true, chomp: false, fd: 3 }],
    ['<<', undefined],
    ['<<-', undefined],
    ['a<<EOF', undefined],
    ['<<<EOF', undefined],
    ['EOF', undefined],
  ];
  for (const [w, want] of words) assert.deepEqual(parseHeredocWord(w), want, w);

  const notHeredoc: string[] = [
    'RUN echo "<<EOF"',
    "RUN echo '<<EOF'",
    'RUN ["sh", "-c", "cat <<EOF"]',
    'RUN echo a<<b',
    'RUN echo \\<<EOF',
    'ENV a=<<EOF',
  ];
  for (const text of notHeredoc) {
    const i = only(lines(text));
    if (i.kind === 'RUN') assert.deepEqual(i.heredocs, [], text);
  }
  const fd = only(lines('RUN 3<<EOF cat /dev/fd/3', 'x', 'EOF'));
  assert.ok(fd.kind === 'RUN');
  assert.equal(fd.heredocs[0]?.fd, 3);
  // Heredoc content is raw: comments, continuations and blank lines kept.
  const raw = only(lines('RUN <<EOF', '# not a comment', 'a \\', '', 'EOF'));
  assert.ok(raw.kind === 'RUN');
  assert.equal(raw.heredocs[0]?.content, '# not a comment\na \\\n\n');
  // Several COPY heredoc sources.
  const many = only(lines('COPY <<A <<B /dir/', 'a', 'A', 'b', 'B'));
  assert.ok(many.kind === 'COPY');
  assert.deepEqual(many.sources.map((s) => (s.kind === 'heredoc' ? [s.name, s.content] : s.path)), [['A', 'a\n'], ['B', 'b\n']]);
  const after = parseDockerfile(lines('FROM a', 'RUN <<EOF', 'x', 'EOF', 'RUN y'));
  assert.deepEqual(after.instructions.map((i) => [i.kind, i.startLine, i.endLine]), [['FROM', 1, 1], ['RUN', 2, 4], ['RUN', 5, 5]]);
});

test('hostile inputs fail cleanly or parse in bounded time', () => {
  fails(lines('FROM a', 'RUN <<EOF', 'never ends'), 'unterminated heredoc EOF', 2);
  fails(lines('FROM a', 'RUN <<A <<B', 'a', 'A', 'b'), 'unterminated heredoc B', 2);
  fails(lines('FROM a', 'RUN echo \0'), 'NUL byte in the Dockerfile', 2);
  fails('FROM a\0b', 'NUL byte in the Dockerfile', 1);

  const huge = 'x'.repeat(4 * 1024 * 1024);
  const big = only(`RUN echo ${huge}`);
  assert.ok(big.kind === 'RUN');
  assert.equal(big.command.args[0]?.length, huge.length + 5);

  const started = Date.now();
  const deep = only(`RUN a \\\n${'b \\\n'.repeat(100_000)}c\n`);
  assert.ok(deep.kind === 'RUN');
  assert.equal(deep.endLine, 100_002);
  assert.ok(Date.now() - started < 10_000);

  const tooBig = 'RUN ' + 'y'.repeat(17 * 1024 * 1024);
  assert.throws(() => parseDockerfile(tooBig), /file is too large/);

  // Many lines of instructions and a large heredoc.
  const body = 'line\n'.repeat(200_000);
  const h = only(`RUN <<EOF\n${body}EOF\n`);
  assert.ok(h.kind === 'RUN');
  assert.equal(h.heredocs[0]?.content.length, body.length);

  // Deeply nested quotes and brackets are just text.
  only(`RUN ${'['.repeat(10_000)}`);
  only(`LABEL a="${'\\"'.repeat(10_000)}"`);
  only(`COPY ["${'a'.repeat(100_000)}", "/"]`);
});

test('splitWords keeps quotes and escapes', () => {
  const cases: [string, string, string[]][] = [
    ['a b  c', '\\', ['a', 'b', 'c']],
    ['a="x y" b', '\\', ['a="x y"', 'b']],
    ["a='x \\' b", '\\', ["a='x \\'", 'b']],
    ['a\\ b c', '\\', ['a\\ b', 'c']],
    ['a`  b', '`', ['a` ', 'b']],
    ['""', '\\', ['""']],
    ['a\\', '\\', ['a']],
    ['"unterminated x', '\\', ['"unterminated x']],
  ];
  for (const [input, esc, want] of cases) assert.deepEqual(splitWords(input, esc), want, input);
});

test('parseDuration is Go time.ParseDuration', () => {
  const ok: [string, number][] = [
    ['0', 0], ['5s', 5e9], ['1m30s', 90e9], ['1.5h', 5400e9], ['300ms', 300e6], ['10us', 10e3],
    ['10µs', 10e3], ['7ns', 7], ['-2s', -2e9], ['+1s', 1e9], ['.5s', 0.5e9], ['1.s', 1e9],
  ];
  for (const [s, want] of ok) assert.equal(parseDuration(s), want, s);
  const bad: [string, string][] = [
    ['', 'time: invalid duration ""'],
    ['s', 'time: invalid duration "s"'],
    ['5', 'time: missing unit in duration "5"'],
    ['5d', 'time: unknown unit "d" in duration "5d"'],
    ['.s', 'time: invalid duration ".s"'],
    ['1s2', 'time: missing unit in duration "1s2"'],
  ];
  for (const [s, msg] of bad) assert.throws(() => parseDuration(s), { message: msg }, s);
});
