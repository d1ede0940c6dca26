import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseSpec } from '@berth/spec';
import type { LinuxSeccomp } from '@berth/spec';
import { seccompRecords } from './seccomp.js';
import type { PlanRecord } from './types.js';

// The reference specs sit beside the repository (this file runs from packages/runtime/dist/plan/).
const PROFILE = fileURLToPath(new URL('../../../../../shared/spec/seccomp/default.json', import.meta.url));

interface DockerRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: unknown[] | null;
  includes?: { arches?: string[]; caps?: string[] };
  excludes?: { arches?: string[]; caps?: string[] };
}
interface DockerProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  archMap: { architecture: string; subArchitectures: string[] | null }[];
  syscalls: DockerRule[];
}

const DEFAULT_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** Docker's profile as the engine hands it to a runtime on amd64 with the default capabilities. */
function dockerToOci(p: DockerProfile): unknown {
  const keep = (r: DockerRule): boolean =>
    (r.includes?.arches === undefined || r.includes.arches.includes('amd64'))
    && (r.includes?.caps === undefined || r.includes.caps.every((c) => DEFAULT_CAPS.includes(c)))
    && !(r.excludes?.arches?.includes('amd64') ?? false)
    && !(r.excludes?.caps?.some((c) => DEFAULT_CAPS.includes(c)) ?? false);
  const amd = p.archMap.find((a) => a.architecture === 'SCMP_ARCH_X86_64');
  return {
    defaultAction: p.defaultAction,
    defaultErrnoRet: p.defaultErrnoRet,
    architectures: [amd?.architecture, ...(amd?.subArchitectures ?? [])],
    syscalls: p.syscalls.filter(keep).map((r) => ({
      names: r.names,
      action: r.action,
      ...(r.errnoRet !== undefined ? { errnoRet: r.errnoRet } : {}),
      ...(r.args ? { args: r.args } : {}),
    })),
  };
}

function profile(): LinuxSeccomp {
  const docker = JSON.parse(readFileSync(PROFILE, 'utf8')) as DockerProfile;
  const spec = parseSpec({
    ociVersion: '1.2.0',
    linux: { seccomp: dockerToOci(docker) },
  });
  const sc = spec.linux?.seccomp;
  assert.ok(sc);
  return sc;
}

test('the default profile translates: default, arches, rule count', () => {
  const recs = seccompRecords(profile());
  assert.deepEqual(recs[0], { tag: 'seccomp_default', action: 'errno', errno: 1 });
  assert.deepEqual(recs.filter((r) => r.tag === 'seccomp_arch'), [
    { tag: 'seccomp_arch', name: 'x86_64' },
    { tag: 'seccomp_arch', name: 'x86' },
    { tag: 'seccomp_arch', name: 'x32' },
  ]);
  // One rule per name (and per test where an argument index repeats); rules
  // equal to the default action are dropped. Counted independently from the file.
  assert.equal(recs.filter((r) => r.tag === 'seccomp_rule').length, 375);
});

test('the default profile translates: known rules', () => {
  const rules = seccompRecords(profile()).filter(
    (r): r is Extract<PlanRecord, { tag: 'seccomp_rule' }> => r.tag === 'seccomp_rule',
  );
  const of = (name: string) => rules.filter((r) => r.syscall === name);
  assert.deepEqual(of('read'), [{ tag: 'seccomp_rule', action: 'allow', errno: 0, syscall: 'read', args: [] }]);
  assert.deepEqual(of('personality').map((r) => r.args), [0n, 8n, 131072n, 131080n, 4294967295n]
    .map((value) => [{ index: 0, op: 'EQ', value, valueTwo: 0n }]));
  assert.deepEqual(of('clone'), [{
    tag: 'seccomp_rule', action: 'allow', errno: 0, syscall: 'clone',
    args: [{ index: 0, op: 'MASKED_EQ', value: 2114060288n, valueTwo: 0n }],
  }]);
  assert.deepEqual(of('clone3'), [{ tag: 'seccomp_rule', action: 'errno', errno: 38, syscall: 'clone3', args: [] }]);
  assert.deepEqual(of('socket'), [{
    tag: 'seccomp_rule', action: 'allow', errno: 0, syscall: 'socket',
    args: [{ index: 0, op: 'NE', value: 40n, valueTwo: 0n }],
  }]);
  // Not allowed without CAP_SYS_ADMIN: no rule, so the default (EPERM) applies.
  assert.deepEqual(of('mount'), []);
  assert.deepEqual(of('reboot'), []);
});

test('seccomp: action names, errno defaults, flags, same-default rules dropped, repeated index split', () => {
  const recs = seccompRecords({
    defaultAction: 'SCMP_ACT_ALLOW',
    flags: ['SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW'],
    architectures: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
    syscalls: [
      { names: ['a'], action: 'SCMP_ACT_KILL' },
      { names: ['b'], action: 'SCMP_ACT_KILL_PROCESS' },
      { names: ['c', 'd'], action: 'SCMP_ACT_ERRNO' },
      { names: ['e'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
      { names: ['f'], action: 'SCMP_ACT_TRACE' },
      { names: ['g'], action: 'SCMP_ACT_LOG' },
      { names: ['h'], action: 'SCMP_ACT_TRAP' },
      { names: ['i'], action: 'SCMP_ACT_ALLOW' },
      { names: ['j'], action: 'SCMP_ACT_ERRNO', args: [
        { index: 1, value: 1, op: 'SCMP_CMP_EQ' }, { index: 2, value: 0xff, valueTwo: 2, op: 'SCMP_CMP_MASKED_EQ' }] },
      { names: ['k'], action: 'SCMP_ACT_ERRNO', args: [
        { index: 0, value: 1, op: 'SCMP_CMP_GT' }, { index: 0, value: 5, op: 'SCMP_CMP_LT' }] },
      { names: ['l'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 18446744073709551615, op: 'SCMP_CMP_LE' }] },
    ],
  });
  const rule = (syscall: string, action: string, errno: number, args: unknown[] = []) =>
    ({ tag: 'seccomp_rule', action, errno, syscall, args });
  assert.deepEqual(recs, [
    { tag: 'seccomp_default', action: 'allow', errno: 0 },
    { tag: 'seccomp_arch', name: 'aarch64' },
    { tag: 'seccomp_arch', name: 'arm' },
    { tag: 'seccomp_flag', name: 'SECCOMP_FILTER_FLAG_LOG' },
    { tag: 'seccomp_flag', name: 'SECCOMP_FILTER_FLAG_SPEC_ALLOW' },
    rule('a', 'kill_thread', 0),
    rule('b', 'kill_process', 0),
    rule('c', 'errno', 1),
    rule('d', 'errno', 1),
    rule('e', 'errno', 38),
    rule('f', 'trace', 1),
    rule('g', 'log', 0),
    rule('h', 'trap', 0),
    rule('j', 'errno', 1, [{ index: 1, op: 'EQ', value: 1n, valueTwo: 0n }, { index: 2, op: 'MASKED_EQ', value: 255n, valueTwo: 2n }]),
    rule('k', 'errno', 1, [{ index: 0, op: 'GT', value: 1n, valueTwo: 0n }]),
    rule('k', 'errno', 1, [{ index: 0, op: 'LT', value: 5n, valueTwo: 0n }]),
    rule('l', 'errno', 1, [{ index: 0, op: 'LE', value: 2n ** 64n - 1n, valueTwo: 0n }]),
  ]);
});

test('seccomp: defaultErrnoRet, and an errno rule equal to the default is dropped', () => {
  const recs = seccompRecords({
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 38,
    syscalls: [
      { names: ['x'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
      { names: ['y'], action: 'SCMP_ACT_ERRNO' },
    ],
  });
  assert.deepEqual(recs, [
    { tag: 'seccomp_default', action: 'errno', errno: 38 },
    { tag: 'seccomp_rule', action: 'errno', errno: 1, syscall: 'y', args: [] },
  ]);
});
