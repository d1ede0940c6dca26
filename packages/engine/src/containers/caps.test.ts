import test from 'node:test';
import assert from 'node:assert/strict';
import { ALL_CAPABILITIES, DEFAULT_CAPABILITIES, hostCapabilities, normalizeCapabilities, tweakCapabilities } from './caps.js';

test('normalizeCapabilities: any case, with or without CAP_, ALL kept', () => {
  assert.deepEqual(normalizeCapabilities(['net_admin', 'CAP_SYS_TIME', 'Sys_Ptrace', 'all']), ['CAP_NET_ADMIN', 'CAP_SYS_TIME', 'CAP_SYS_PTRACE', 'ALL']);
  assert.throws(() => normalizeCapabilities(['CAP_FLY']), { message: 'unknown capability: "CAP_FLY"' });
});

test('tweakCapabilities: Docker rules', () => {
  const all = ALL_CAPABILITIES;
  const cases: Array<[string, string[], string[], boolean, string[]]> = [
    ['defaults', [], [], false, [...DEFAULT_CAPABILITIES]],
    ['privileged', ['NET_ADMIN'], ['ALL'], true, [...all]],
    ['drop some, add some', ['NET_ADMIN'], ['chown', 'CAP_KILL'], false,
      [...DEFAULT_CAPABILITIES.filter((c) => c !== 'CAP_CHOWN' && c !== 'CAP_KILL'), 'CAP_NET_ADMIN']],
    ['drop ALL, add some', ['CHOWN', 'SETUID'], ['ALL'], false, ['CAP_CHOWN', 'CAP_SETUID']],
    ['add ALL, drop some', ['ALL'], ['SYS_ADMIN'], false, all.filter((c) => c !== 'CAP_SYS_ADMIN')],
    ['adding one already there', ['CHOWN'], [], false, [...DEFAULT_CAPABILITIES]],
  ];
  for (const [name, add, drop, priv, want] of cases) assert.deepEqual(tweakCapabilities(DEFAULT_CAPABILITIES, add, drop, priv, all), want, name);
});

test('hostCapabilities: what this kernel knows', () => {
  const caps = hostCapabilities();
  assert.equal(caps[0], 'CAP_CHOWN');
  assert.ok(caps.includes('CAP_SYS_ADMIN'));
  assert.ok(caps.length <= ALL_CAPABILITIES.length);
});
