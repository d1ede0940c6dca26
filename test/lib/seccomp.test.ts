import test from 'node:test';
import assert from 'node:assert/strict';
import { dockerToOci, loadDockerProfile } from './seccomp.js';
import type { DockerSeccompProfile } from './seccomp.js';
import type { OciSeccomp } from './oci.js';
import { DEFAULT_CAPS } from './oci.js';

const allowed = (p: OciSeccomp, name: string): boolean =>
  (p.syscalls ?? []).some((s) => s.action === 'SCMP_ACT_ALLOW' && s.names.includes(name) && !s.args);

const sample: DockerSeccompProfile = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: 1,
  archMap: [
    { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
    { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
  ],
  syscalls: [
    { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
    { names: ['unshare', 'mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
    { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 2114060288, op: 'SCMP_CMP_MASKED_EQ' }], excludes: { caps: ['CAP_SYS_ADMIN'], arches: ['s390x'] } },
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38, excludes: { caps: ['CAP_SYS_ADMIN'] } },
    { names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32'] } },
    { names: ['ptrace'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4.8' } },
  ],
};

test('keeps only the native architecture and its sub-architectures', () => {
  assert.deepEqual(dockerToOci(sample, { caps: [], arch: 'amd64', kernel: '6.1.0' }).architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  assert.deepEqual(dockerToOci(sample, { caps: [], arch: 'arm64', kernel: '6.1.0' }).architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
});

test('includes.caps needs every cap; excludes.caps drops the rule when any is held', () => {
  const plain = dockerToOci(sample, { caps: DEFAULT_CAPS, arch: 'amd64', kernel: '6.1.0' });
  assert.equal(allowed(plain, 'unshare'), false);
  assert.ok(plain.syscalls?.some((s) => s.names.includes('clone') && s.args?.[0]?.op === 'SCMP_CMP_MASKED_EQ'));
  assert.deepEqual(plain.syscalls?.find((s) => s.names.includes('clone3')), { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
  const admin = dockerToOci(sample, { caps: [...DEFAULT_CAPS, 'CAP_SYS_ADMIN'], arch: 'amd64', kernel: '6.1.0' });
  assert.equal(allowed(admin, 'unshare'), true);
  assert.ok(!admin.syscalls?.some((s) => s.names.includes('clone') && s.args), 'the restricted clone rule is gone');
  assert.ok(!admin.syscalls?.some((s) => s.names.includes('clone3')));
});

test('arches and minKernel filter rules; args get valueTwo 0', () => {
  const amd = dockerToOci(sample, { caps: [], arch: 'amd64', kernel: '4.4.0' });
  assert.equal(allowed(amd, 'arch_prctl'), true);
  assert.equal(allowed(amd, 'ptrace'), false, 'ptrace needs kernel 4.8');
  assert.equal(amd.syscalls?.find((s) => s.names.includes('clone'))?.args?.[0]?.valueTwo, 0);
  const arm = dockerToOci(sample, { caps: [], arch: 'arm64', kernel: '5.10' });
  assert.equal(allowed(arm, 'arch_prctl'), false);
  assert.equal(allowed(arm, 'ptrace'), true);
  assert.equal(arm.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(arm.defaultErrnoRet, 1);
});

test('the shipped default profile converts: keyctl and unshare denied, read allowed', () => {
  const p = dockerToOci(loadDockerProfile(), { caps: DEFAULT_CAPS, arch: 'amd64', kernel: '6.1.0' });
  assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(allowed(p, 'read'), true);
  assert.equal(allowed(p, 'unshare'), false);
  assert.equal(allowed(p, 'keyctl'), false);
  assert.equal(allowed(p, 'reboot'), false);
});
