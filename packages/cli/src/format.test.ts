import test from 'node:test';
import assert from 'node:assert/strict';
import {
  Template,
  ago,
  bytesSize,
  ellipsis,
  goJson,
  humanDuration,
  humanSize,
  parseFormat,
  parseGoDuration,
  render,
  tabulate,
  timestampArg,
} from './format.js';

test('tabulate pads as tabwriter(minwidth 10, padding 3)', () => {
  assert.equal(tabulate(['CONTAINER ID\tIMAGE\tNAMES', 'abc\tbusybox\tt1']), 'CONTAINER ID   IMAGE     NAMES\nabc            busybox   t1\n');
  assert.equal(tabulate(['A\tB', 'x\ty'], 20), `A${' '.repeat(19)}B\nx${' '.repeat(19)}y\n`);
});

test('human sizes: decimal with precision, binary for memory', () => {
  assert.equal(humanSize(2899120, 3), '2.9MB');
  assert.equal(humanSize(2899120), '2.899MB');
  assert.equal(humanSize(0), '0B');
  assert.equal(humanSize(2048, 3), '2.05kB');
  assert.equal(humanSize(999_999, 3), '1e+03kB');
  assert.equal(bytesSize(1024 * 1024 * 1.5), '1.5MiB');
  assert.equal(bytesSize(643072), '628KiB');
});

test('human durations follow go-units', () => {
  assert.equal(humanDuration(500), 'Less than a second');
  assert.equal(humanDuration(1000), '1 second');
  assert.equal(humanDuration(59_000), '59 seconds');
  assert.equal(humanDuration(61_000), 'About a minute');
  assert.equal(humanDuration(45 * 60_000), '45 minutes');
  assert.equal(humanDuration(70 * 60_000), 'About an hour');
  assert.equal(humanDuration(5 * 3_600_000), '5 hours');
  assert.equal(humanDuration(3 * 86_400_000), '3 days');
  assert.equal(humanDuration(20 * 86_400_000), '2 weeks');
  assert.equal(humanDuration(90 * 86_400_000), '3 months');
  assert.equal(humanDuration(800 * 86_400_000), '2 years');
  assert.equal(ago(100, 103_500), '3 seconds ago');
});

test('durations and time arguments', () => {
  assert.equal(parseGoDuration('1h30m'), 5_400_000);
  assert.equal(parseGoDuration('500ms'), 500);
  assert.equal(parseGoDuration('10'), undefined);
  assert.equal(timestampArg('10m', 1_000_000_000), '999400');
  assert.equal(timestampArg('1700000000'), '1700000000');
  assert.equal(timestampArg('2023-11-14T22:13:20Z'), '1700000000');
  assert.equal(timestampArg('2023-11-14T22:13:20.5Z'), '1700000000.500000000');
  assert.throws(() => timestampArg('yesterday'));
});

test('ellipsis cuts with a trailing ellipsis', () => {
  assert.equal(ellipsis('sleep 1000', 20), 'sleep 1000');
  assert.equal(ellipsis('abcdefghijklmnopqrstuvwxyz', 20), 'abcdefghijklmnopqrs…');
});

test('templates: fields, json, index, range, if/else, pipelines, methods', () => {
  const data = {
    Id: 'abc',
    State: { Status: 'running', Running: true },
    Config: { Env: ['A=1', 'B=2'], Labels: { k: 'v<1>' } },
    Empty: [],
    Label: (k: unknown) => `label:${String(k)}`,
  };
  const t = (s: string): string => new Template(s).execute(data);
  assert.equal(t('{{.State.Status}}'), 'running');
  assert.equal(t('{{json .Config.Labels}}'), '{"k":"v<1>"}');
  assert.equal(t('{{index .Config.Labels "k"}}'), 'v<1>');
  assert.equal(t('{{range .Config.Env}}[{{.}}]{{end}}'), '[A=1][B=2]');
  assert.equal(t('{{range $i, $e := .Config.Env}}{{$i}}={{$e}} {{end}}'), '0=A=1 1=B=2 ');
  assert.equal(t('{{range .Empty}}x{{else}}none{{end}}'), 'none');
  assert.equal(t('{{if .State.Running}}up{{else}}down{{end}}'), 'up');
  assert.equal(t('{{if eq .State.Status "exited"}}a{{else if eq .State.Status "running"}}b{{else}}c{{end}}'), 'b');
  assert.equal(t('{{.Id | upper}}'), 'ABC');
  assert.equal(t('{{join .Config.Env ","}}'), 'A=1,B=2');
  assert.equal(t('{{.Label "x"}}'), 'label:x');
  assert.equal(t('{{.Config.Env}}'), '[A=1 B=2]');
  assert.equal(t('{{.Config.Labels}}'), 'map[k:v<1>]');
  assert.equal(t('{{.Missing}}'), '<no value>');
  assert.equal(t('{{len .Config.Env}} {{printf "%s-%d" .Id 7}}'), '2 abc-7');
  assert.equal(t('a {{- " b " -}} c'), 'a b c');
  assert.equal(t('{{with .State}}{{.Status}}{{end}}'), 'running');
  assert.throws(() => new Template('{{if .X}}'), /unexpected EOF/);
  assert.throws(() => t('{{nosuch .Id}}'), /function "nosuch" not defined/);
});

test('formats: table headers, json, plain templates', () => {
  const rows = [{ ID: 'a1', Names: 'one' }, { ID: 'b2', Names: 'two' }];
  const headers = { ID: 'CONTAINER ID', Names: 'NAMES' };
  assert.equal(render(parseFormat('', 'table {{.ID}}\t{{.Names}}'), rows, headers), 'CONTAINER ID   NAMES\na1             one\nb2             two\n');
  assert.equal(render(parseFormat('{{.ID}}\\t{{.Names}}', ''), rows, headers), 'a1\tone\nb2\ttwo\n');
  assert.equal(render(parseFormat('json', ''), rows.slice(0, 1), headers), '{"ID":"a1","Names":"one"}\n');
  assert.equal(goJson({ a: '<&>' }), '{"a":"\\u003c\\u0026\\u003e"}');
});
