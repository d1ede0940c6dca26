import test from 'node:test';
import assert from 'node:assert/strict';
import {
  BuildArgs,
  Lexer,
  NO_VARS,
  StageScope,
  expandInstruction,
  globalScope,
  lookupEnvList,
  lookupIn,
} from './expand.js';
import { parseDockerfile } from './parser.js';
import type { ArgInstruction, Instruction } from './parser.js';

const vars = lookupIn(new Map<string, string>([
  ['FOO', '/bar'],
  ['EMPTY', ''],
  ['SPACED', 'a  b c'],
  ['X', 'x'],
  ['Y', 'y'],
  ['DIRPATH', '/path'],
]));

test('processWord: substitution, quotes and escapes', () => {
  const cases: [string, string][] = [
    ['$FOO', '/bar'],
    ['${FOO}', '/bar'],
    ['${FOO}_bar', '/bar_bar'],
    ['$FOO_bar', ''],
    ['$FOO/x', '/bar/x'],
    ['\\$FOO', '$FOO'],
    ['\\${FOO}', '${FOO}'],
    ["'$FOO'", '$FOO'],
    ['"$FOO"', '/bar'],
    ['"${FOO}"x', '/barx'],
    ["'a \"b\" c'", 'a "b" c'],
    ['"a \'b\' c"', "a 'b' c"],
    ['"a \\" b"', 'a " b'],
    ['"a \\$FOO b"', 'a $FOO b'],
    ['"a \\\\ b"', 'a \\ b'],
    ['"a \\n b"', 'a \\n b'],
    ['a\\ b', 'a b'],
    ['a\\nb', 'anb'],
    ['trailing\\', 'trailing'],
    ['$', '$'],
    ['a$', 'a$'],
    ['$ x', '$ x'],
    ['$1', ''],
    ['$-', ''],
    ['${UNSET}', ''],
    ['$UNSET', ''],
    // ${VAR:-word}: unset or empty → word
    ['${UNSET:-def}', 'def'],
    ['${EMPTY:-def}', 'def'],
    ['${FOO:-def}', '/bar'],
    // ${VAR-word}: unset → word
    ['${UNSET-def}', 'def'],
    ['${EMPTY-def}', ''],
    ['${FOO-def}', '/bar'],
    // ${VAR:+word}: set and non-empty → word
    ['${UNSET:+alt}', ''],
    ['${EMPTY:+alt}', ''],
    ['${FOO:+alt}', 'alt'],
    // ${VAR+word}: set → word
    ['${UNSET+alt}', ''],
    ['${EMPTY+alt}', 'alt'],
    ['${FOO+alt}', 'alt'],
    // words may hold variables, quotes, escapes
    ['${UNSET:-$FOO}', '/bar'],
    ['${UNSET:-${X}y}', 'xy'],
    ['${UNSET:-${UNSET2:-deep}}', 'deep'],
    ['${UNSET:-"a b"}', 'a b'],
    ['${UNSET:-a\\}b}', 'a}b'],
    ['${FOO:?must be set}', '/bar'],
    ['x${X}${Y}$X$Y', 'xxyxy'],
    ['${CONT_IMG_VER:-v1.0.0}', 'v1.0.0'],
    ['${username:-some_user}', 'some_user'],
  ];
  const lex = new Lexer();
  for (const [word, want] of cases) assert.equal(lex.processWord(word, vars), want, word);
});

test('processWord errors', () => {
  const cases: [string, string][] = [
    ['${', "syntax error: missing '}'"],
    ['${}', 'syntax error: bad substitution'],
    ['${:}', 'syntax error: bad substitution'],
    ['${{X}}', 'syntax error: bad substitution'],
    ['${X', "syntax error: missing '}'"],
    ['${X:-abc', "syntax error: missing '}'"],
    ['${X:=y}', 'unsupported modifier (=) in substitution'],
    ['${X=y}', "missing ':' in substitution"],
    ['"abc', 'unexpected end of statement while looking for matching double-quote'],
    ["'abc", 'unexpected end of statement while looking for matching single-quote'],
    ['${UNSET:?}', 'UNSET: is not allowed to be unset'],
    ['${EMPTY:?need it}', 'EMPTY: need it'],
    ['${UNSET?gone}', 'UNSET: gone'],
  ];
  const lex = new Lexer();
  for (const [word, msg] of cases) assert.throws(() => lex.processWord(word, vars), { message: msg }, word);
  // Nesting is bounded: no stack overflow on hostile input.
  const deep = `${'${A:-'.repeat(100_000)}x${'}'.repeat(100_000)}`;
  assert.throws(() => lex.processWord(deep, NO_VARS), { message: 'syntax error: substitutions nested too deeply' });
  const ok = `${'${A:-'.repeat(30)}x${'}'.repeat(30)}`;
  assert.equal(lex.processWord(ok, NO_VARS), 'x');
});

test('processWords: splitting', () => {
  const cases: [string, string[]][] = [
    ['a b  c', ['a', 'b', 'c']],
    ['$SPACED', ['a', 'b', 'c']],
    ['"$SPACED"', ['a  b c']],
    ["'$SPACED'", ['$SPACED']],
    ['x$SPACED', ['xa', 'b', 'c']],
    ['a\\ b c', ['a b', 'c']],
    ['"" x', ['x']],
    ['', []],
    ['$EMPTY', []],
    ['80/tcp ${P:-443/udp}', ['80/tcp', '443/udp']],
  ];
  const lex = new Lexer();
  for (const [word, want] of cases) assert.deepEqual(lex.processWords(word, vars), want, word);
});

test('backtick escape, raw modes, matches', () => {
  const bt = new Lexer('`');
  assert.equal(bt.processWord('c:\\path\\$FOO', vars), 'c:\\path\\/bar');
  assert.equal(bt.processWord('`$FOO', vars), '$FOO');
  assert.equal(bt.processWord('"a `" b"', vars), 'a " b');
  const raw = new Lexer('\\', { rawQuotes: true, rawEscapes: true });
  assert.equal(raw.processWord('echo "hello ${X}" \\$Y \'$Y\'', vars), 'echo "hello x" \\$Y \'$Y\'');
  const skip = new Lexer('\\', { skipUnsetEnv: true });
  assert.equal(skip.processWord('$UNSET ${UNSET} ${UNSET:-d} $X', vars), '$UNSET ${UNSET} ${UNSET:-d} x');
  const r = new Lexer().run('$X ${UNSET:-$Y} $NOPE', vars);
  assert.deepEqual([...r.matched].sort(), ['X', 'Y']);
  assert.deepEqual([...r.unmatched].sort(), ['NOPE', 'UNSET']);
});

function stageOf(text: string, buildArgs: Record<string, string> = {}): {
  out: Instruction[];
  scope: StageScope;
  args: BuildArgs;
  globals: Map<string, string | undefined>;
} {
  const df = parseDockerfile(text);
  const args = new BuildArgs(buildArgs);
  const first = df.instructions.findIndex((i) => i.kind === 'FROM');
  const globals = globalScope(df.instructions.slice(0, first) as ArgInstruction[], args, df.directives.escape);
  const scope = new StageScope(args, globals, [], df.directives.escape);
  const out = df.instructions.slice(first).map((i) => (i.kind === 'FROM' ? expandInstruction(i, (n) => globals.get(n)) : scope.apply(i)));
  return { out, scope, args, globals };
}

const field = (i: Instruction | undefined): unknown => {
  switch (i?.kind) {
    case 'WORKDIR': return i.path;
    case 'USER': return i.user;
    case 'FROM': return i.image;
    case 'STOPSIGNAL': return i.signal;
    case 'EXPOSE': return i.ports;
    case 'VOLUME': return i.paths;
    case 'ENV':
    case 'LABEL': return i.pairs.map((p) => `${p.key}=${p.value}`);
    case 'COPY':
    case 'ADD': return [...i.sources.map((s) => (s.kind === 'path' ? s.path : s.content)), i.dest];
    case 'RUN':
    case 'CMD': return i.command.args;
    default: return i?.kind;
  }
};

test('environment replacement: the reference examples', () => {
  // WORKDIR ${FOO} → /bar; ADD . $FOO → /bar; COPY \$FOO /quux → $FOO /quux
  const a = stageOf('FROM busybox\nENV FOO=/bar\nWORKDIR ${FOO}\nADD . $FOO\nCOPY \\$FOO /quux\n');
  assert.deepEqual(a.out.slice(2).map(field), ['/bar', ['.', '/bar'], ['$FOO', '/quux']]);
  // One value per variable for the whole instruction.
  const b = stageOf('FROM busybox\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n');
  assert.deepEqual(b.scope.envList(), ['abc=bye', 'def=hello', 'ghi=bye']);
  // ENV values lose their quotes and escapes.
  const c = stageOf('FROM a\nENV MY_NAME="John Doe" MY_DOG=Rex\\ The\\ Dog \\\n    MY_CAT=fluffy\nENV ONE TWO= THREE=world\nENV MY_VAR my-value\n');
  assert.deepEqual(c.scope.envList(), ['MY_NAME=John Doe', 'MY_DOG=Rex The Dog', 'MY_CAT=fluffy', 'ONE=TWO= THREE=world', 'MY_VAR=my-value']);
  // LABEL example and the labels shown by docker inspect.
  const d = stageOf([
    'FROM a',
    'LABEL "com.example.vendor"="ACME Incorporated"',
    'LABEL com.example.label-with-value="foo"',
    'LABEL version="1.0"',
    'LABEL description="This text illustrates \\',
    'that label-values can span multiple lines."',
    'LABEL multi.label1="value1" \\',
    '      multi.label2="value2" \\',
    '      other="value3"',
  ].join('\n'));
  assert.deepEqual(d.out.slice(1).flatMap((i) => field(i) as string[]), [
    'com.example.vendor=ACME Incorporated',
    'com.example.label-with-value=foo',
    'version=1.0',
    'description=This text illustrates that label-values can span multiple lines.',
    'multi.label1=value1',
    'multi.label2=value2',
    'other=value3',
  ]);
  // WORKDIR uses variables set in the Dockerfile; the unset $DIRNAME is empty
  // (Docker's result; the reference's prose shows it unexpanded).
  const e = stageOf('FROM a\nENV DIRPATH=/path\nWORKDIR $DIRPATH/$DIRNAME\n');
  assert.equal(field(e.out[2]), '/path/');
  // Single quotes keep the variable in LABEL.
  const f = stageOf("FROM a\nENV E=x\nLABEL example=\"foo-$E\" raw='foo-$E'\n");
  assert.deepEqual(field(f.out[2]), ['example=foo-x', 'raw=foo-$E']);
});

test('which instructions expand', () => {
  const s = stageOf([
    'FROM a',
    'ENV P=8080 V=/v U=app S=SIGKILL D=/dst C=1000 M=755',
    'EXPOSE $P ${Q:-9090/udp}',
    'VOLUME $V /other',
    'VOLUME ["$V"]',
    'USER $U',
    'STOPSIGNAL $S',
    'COPY --chown=$C --chmod=$M src $D',
    'RUN echo $P',
    'CMD echo $P',
    'ENTRYPOINT ["echo", "$P"]',
    'ONBUILD COPY $V /x',
    'HEALTHCHECK CMD echo $P',
    'SHELL ["/bin/sh", "-c", "$P"]',
    'MAINTAINER $U',
  ].join('\n'));
  const [, , expose, vol, vol2, user, sig, copy, run, cmd, ep, onb, hc, shell, mt] = s.out;
  assert.deepEqual(field(expose), ['8080', '9090/udp']);
  assert.deepEqual(field(vol), ['/v', '/other']);
  assert.deepEqual(field(vol2), ['/v']);
  assert.equal(field(user), 'app');
  assert.equal(field(sig), 'SIGKILL');
  assert.deepEqual(field(copy), ['src', '/dst']);
  assert.ok(copy?.kind === 'COPY');
  assert.deepEqual([copy.chown, copy.chmod], ['1000', '755']);
  assert.deepEqual(field(run), ['echo $P']);
  assert.deepEqual(field(cmd), ['echo $P']);
  assert.ok(ep?.kind === 'ENTRYPOINT');
  assert.deepEqual(ep.command.args, ['echo', '$P']);
  assert.ok(onb?.kind === 'ONBUILD');
  assert.equal(onb.expression, 'COPY $V /x');
  assert.ok(hc?.kind === 'HEALTHCHECK');
  assert.deepEqual(hc.test, ['CMD-SHELL', 'echo $P']);
  assert.ok(shell?.kind === 'SHELL');
  assert.deepEqual(shell.shell, ['/bin/sh', '-c', '$P']);
  assert.ok(mt?.kind === 'MAINTAINER');
  assert.equal(mt.maintainer, '$U');
});

test('COPY heredoc content expansion', () => {
  const s = stageOf(['FROM alpine', 'ARG FOO=bar', 'COPY <<-EOT /script.sh', '  echo "hello ${FOO}" \\$X', 'EOT',
    'COPY <<-"EOT" /script2.sh', '  echo "hello ${FOO}"', 'EOT'].join('\n'));
  assert.deepEqual(field(s.out[2]), ['  echo "hello bar" \\$X\n', '/script.sh']);
  assert.deepEqual(field(s.out[3]), ['  echo "hello ${FOO}"\n', '/script2.sh']);
});

test('ARG scope: the reference examples', () => {
  // Line 2 falls back, line 4 sees the build arg.
  const a = stageOf('FROM busybox\nUSER ${username:-some_user}\nARG username\nUSER $username\n', { username: 'what_user' });
  assert.deepEqual([field(a.out[1]), field(a.out[3])], ['some_user', 'what_user']);
  // ENV wins over ARG.
  const b = stageOf('FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=v1.0.0\nRUN echo $CONT_IMG_VER\n', { CONT_IMG_VER: 'v2.0.1' });
  assert.equal(b.scope.lookup('CONT_IMG_VER'), 'v1.0.0');
  assert.deepEqual(b.scope.runArgs(), { env: [], history: [] });
  // ENV from ARG with a default.
  const tpl = 'FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\nRUN echo $CONT_IMG_VER\n';
  assert.equal(stageOf(tpl, { CONT_IMG_VER: 'v2.0.1' }).scope.lookup('CONT_IMG_VER'), 'v2.0.1');
  assert.equal(stageOf(tpl).scope.lookup('CONT_IMG_VER'), 'v1.0.0');
  // ARG before FROM: in FROM lines only, unless redeclared.
  const c = stageOf('ARG  CODE_VERSION=latest\nFROM base:${CODE_VERSION}\nCMD  /code/run-app\n');
  assert.equal(field(c.out[0]), 'base:latest');
  const d = stageOf('ARG VERSION=latest\nFROM busybox:$VERSION\nARG VERSION\nWORKDIR /$VERSION\n');
  assert.deepEqual([field(d.out[0]), field(d.out[2])], ['busybox:latest', '/latest']);
  const e = stageOf('ARG VERSION=latest\nFROM busybox:$VERSION\nWORKDIR /v$VERSION\n');
  assert.equal(field(e.out[1]), '/v');
  const f = stageOf('ARG VERSION=latest\nFROM busybox:$VERSION\nARG VERSION\nWORKDIR /$VERSION\n', { VERSION: '1.36' });
  assert.deepEqual([field(f.out[0]), field(f.out[2])], ['busybox:1.36', '/1.36']);
  // A stage default beats the global default; a build arg beats both.
  const g = stageOf('ARG V=global\nFROM a\nARG V=stage\nWORKDIR /$V\n');
  assert.equal(field(g.out[2]), '/stage');
  assert.equal(field(stageOf('ARG V=global\nFROM a\nARG V=stage\nWORKDIR /$V\n', { V: 'cli' }).out[2]), '/cli');
  // Defaults expand with what is in scope; several ARGs per line.
  const h = stageOf('FROM a\nARG A=1 B=${A}2 C\nWORKDIR /$A/$B/${C:-none}\n');
  assert.equal(field(h.out[2]), '/1/12/none');
  assert.deepEqual(h.scope.runArgs(), { env: ['A=1', 'B=12'], history: ['A=1', 'B=12'] });
  // Global args see earlier global args and builtins.
  const args = new BuildArgs({});
  const gs = globalScope(parseDockerfile('ARG A=1\nARG B=${A}x\nARG P=$TARGETPLATFORM\n').instructions as ArgInstruction[], args, '\\',
    { TARGETPLATFORM: 'linux/amd64' });
  assert.deepEqual([gs.get('A'), gs.get('B'), gs.get('P')], ['1', '1x', 'linux/amd64']);
});

test('fork carries ENV and ARG to a stage based on this one', () => {
  const s = stageOf('FROM a AS base\nARG X=1\nENV Y=2\n');
  const child = s.scope.fork();
  assert.equal(child.lookup('X'), '1');
  assert.equal(child.lookup('Y'), '2');
  child.setEnv([{ key: 'Z', value: '3' }]);
  assert.equal(s.scope.lookup('Z'), undefined);
  const img = new StageScope(new BuildArgs(), new Map(), ['PATH=/usr/bin:/bin', 'EMPTY'], '\\');
  assert.equal(img.lookup('PATH'), '/usr/bin:/bin');
  assert.equal(new Lexer().processWord('$PATH:/x', img.lookup), '/usr/bin:/bin:/x');
  assert.equal(img.lookup('EMPTY'), '');
  assert.equal(lookupEnvList(['A=b=c'])('A'), 'b=c');
});

test('proxy args and unconsumed build args', () => {
  const given = { HTTP_PROXY: 'http://user:pass@proxy', no_proxy: 'localhost', foo: '1', bar: '2', used: '3' };
  const s = stageOf('FROM ubuntu\nARG used\nRUN echo "Hello World"\n', given);
  assert.deepEqual(s.scope.runArgs(), {
    env: ['HTTP_PROXY=http://user:pass@proxy', 'no_proxy=localhost', 'used=3'],
    history: ['used=3'],
  });
  assert.deepEqual(s.args.unconsumed(), ['bar', 'foo']);
  assert.equal(s.args.warning(), '[Warning] One or more build-args [bar foo] were not consumed');
  // Proxy args are not expanded without ARG; declared, they are in history.
  assert.equal(new Lexer().processWord('${HTTP_PROXY:-none}', s.scope.lookup), 'none');
  const d = stageOf('FROM ubuntu\nARG HTTP_PROXY\n', { HTTP_PROXY: 'http://p' });
  assert.deepEqual(d.scope.runArgs(), { env: ['HTTP_PROXY=http://p'], history: ['HTTP_PROXY=http://p'] });
  assert.equal(d.args.warning(), undefined);
  // Consumed by a global ARG only counts too.
  const g = stageOf('ARG foo\nFROM a\n', { foo: 'x' });
  assert.equal(g.args.warning(), undefined);
  // A build arg given without value declares nothing but counts as given.
  const n = new BuildArgs({ nov: undefined });
  assert.equal(n.has('nov'), false);
  assert.deepEqual(n.unconsumed(), ['nov']);
  const none = stageOf('FROM a\nARG nov=dflt\nWORKDIR /$nov\n');
  assert.equal(field(none.out[2]), '/dflt');
});

test('expandInstruction leaves RUN, CMD, ENTRYPOINT, ONBUILD alone and reports bad syntax', () => {
  const df = parseDockerfile('FROM a\nRUN echo ${\nCMD ${\nWORKDIR ${\nUSER "unterminated\n');
  const [, run, cmd, wd, user] = df.instructions;
  assert.ok(run !== undefined && cmd !== undefined && wd !== undefined && user !== undefined);
  assert.equal(expandInstruction(run, NO_VARS), run);
  assert.equal(expandInstruction(cmd, NO_VARS), cmd);
  assert.throws(() => expandInstruction(wd, NO_VARS), { message: "syntax error: missing '}'" });
  assert.throws(() => expandInstruction(user, NO_VARS), /matching double-quote/);
});
