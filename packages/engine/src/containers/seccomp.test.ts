import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BerthError } from '@berth/base';
import type { LinuxSeccomp } from '@berth/spec';
import { DEFAULT_CAPABILITIES } from './caps.js';
import { DEFAULT_SECCOMP_PROFILE, dockerProfileToOci, goArch, kernelAtLeast, parseDockerSeccompProfile } from './seccomp.js';

/** Docker's published default profile, where the reference specs are checked out beside the repository. */
const REFERENCE = fileURLToPath(new URL('../../../../../shared/spec/seccomp/default.json', import.meta.url));

const caps = [...DEFAULT_CAPABILITIES];

function ruleFor(s: LinuxSeccomp, name: string): Array<{ action: string; args?: unknown; errnoRet?: number }> {
  return (s.syscalls ?? []).filter((r) => r.names.includes(name)).map((r) => ({ action: r.action, ...(r.args ? { args: r.args } : {}), ...(r.errnoRet !== undefined ? { errnoRet: r.errnoRet } : {}) }));
}

test('the default profile is Docker\'s (same rules as the reference default.json)', { skip: !existsSync(REFERENCE) && 'reference specs not present' }, () => {
  const ref = JSON.parse(readFileSync(REFERENCE, 'utf8')) as Record<string, unknown>;
  const strip = (p: unknown): unknown => JSON.parse(JSON.stringify(p, (k, v: unknown) => (k === 'comment' ? undefined : v)));
  assert.deepEqual(strip(DEFAULT_SECCOMP_PROFILE), strip(ref));
});

test('dockerProfileToOci: default profile for a default container on x86_64', () => {
  const s = dockerProfileToOci(DEFAULT_SECCOMP_PROFILE, caps, 'x64', '6.1.0-18-amd64');
  assert.equal(s.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(s.defaultErrnoRet, 1);
  assert.deepEqual(s.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  const allowedNames = new Set((s.syscalls ?? []).filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names));
  for (const n of ['read', 'write', 'execve', 'arch_prctl', 'modify_ldt', 'chroot', 'ptrace', 'socket', 'clone', 'personality']) assert.ok(allowedNames.has(n), n);
  for (const n of ['mount', 'unshare', 'setns', 'reboot', 'bpf', 'open_by_handle_at', 'init_module', 'swapon', 'keyctl', 'riscv_flush_icache', 'breakpoint']) {
    assert.ok(!allowedNames.has(n), n);
  }
  assert.deepEqual(ruleFor(s, 'clone'), [{ action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 2114060288, op: 'SCMP_CMP_MASKED_EQ' }] }]);
  assert.deepEqual(ruleFor(s, 'clone3'), [{ action: 'SCMP_ACT_ERRNO', errnoRet: 38 }]);
  assert.deepEqual(ruleFor(s, 'socket'), [{ action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 40, op: 'SCMP_CMP_NE' }] }]);
  assert.equal(ruleFor(s, 'personality').length, 5);
});

test('dockerProfileToOci: capabilities, architectures and kernel versions decide', () => {
  const admin = dockerProfileToOci(DEFAULT_SECCOMP_PROFILE, [...caps, 'CAP_SYS_ADMIN', 'CAP_SYS_TIME'], 'amd64', '6.1.0');
  assert.deepEqual(ruleFor(admin, 'clone'), [{ action: 'SCMP_ACT_ALLOW' }], 'plain clone allowed, no argument filter');
  assert.deepEqual(ruleFor(admin, 'clone3'), [{ action: 'SCMP_ACT_ALLOW' }]);
  assert.ok(ruleFor(admin, 'mount').length === 1 && ruleFor(admin, 'clock_settime').length === 1);
  const arm = dockerProfileToOci(DEFAULT_SECCOMP_PROFILE, caps, 'aarch64', '6.1.0');
  assert.deepEqual(arm.architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
  assert.equal(ruleFor(arm, 'arch_prctl').length, 0);
  assert.equal(ruleFor(arm, 'breakpoint').length, 1);
  const s390 = dockerProfileToOci(DEFAULT_SECCOMP_PROFILE, caps, 's390x', '6.1.0');
  assert.deepEqual(ruleFor(s390, 'clone'), [{ action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 2114060288, op: 'SCMP_CMP_MASKED_EQ' }] }]);
  const oldKernel = dockerProfileToOci(DEFAULT_SECCOMP_PROFILE, caps, 'amd64', '4.4.0');
  assert.equal(ruleFor(oldKernel, 'ptrace').length, 0, 'ptrace needs 4.8 without CAP_SYS_PTRACE');
  const unknownArch = dockerProfileToOci(DEFAULT_SECCOMP_PROFILE, caps, 'sparc64', '6.1.0');
  assert.equal(unknownArch.architectures, undefined);
});

test('user profiles: parsed and converted', () => {
  const p = parseDockerSeccompProfile(JSON.stringify({
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [
      { name: 'mkdir', action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
      { names: ['chmod'], action: 'SCMP_ACT_ERRNO', args: [{ index: 1, value: 511, op: 'SCMP_CMP_EQ' }], excludes: { caps: ['CAP_FOWNER'] } },
    ],
  }));
  assert.deepEqual(dockerProfileToOci(p, caps, 'amd64', '6.1'), {
    defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }],
  });
  const bad: Array<[string, string]> = [
    ['not json', 'Decoding seccomp profile failed: '],
    ['[]', 'Decoding seccomp profile failed: the profile is not a JSON object'],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"ALLOW"}]}', 'Decoding seccomp profile failed: invalid syscalls[0].action "ALLOW"'],
    ['{"defaultAction":"SCMP_ACT_ALLOW","architectures":["x86"]}', 'Decoding seccomp profile failed: invalid architecture "x86"'],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"EQ"}]}]}', 'Decoding seccomp profile failed: invalid syscalls[0].args[0].op "EQ"'],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ALLOW"}]}', "use either 'name' or 'names'"],
  ];
  for (const [text, msg] of bad) {
    assert.throws(() => parseDockerSeccompProfile(text), (e: unknown) => e instanceof BerthError && e.message.startsWith(msg), msg);
  }
  assert.throws(() => dockerProfileToOci({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86'], archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: null }] }, caps),
    { message: "both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'" });
});

test('architecture names and kernel versions', () => {
  assert.equal(goArch('x64'), 'amd64');
  assert.equal(goArch('x86_64'), 'amd64');
  assert.equal(goArch('aarch64'), 'arm64');
  assert.equal(kernelAtLeast('6.1.0-18-amd64', '4.8'), true);
  assert.equal(kernelAtLeast('4.8.0', '4.8'), true);
  assert.equal(kernelAtLeast('4.7.10', '4.8'), false);
  assert.equal(kernelAtLeast('3.19', '4.8'), false);
});
