/**
 * Converts a Docker seccomp profile (the format of spec/seccomp/default.json) into
 * the OCI form for config.json, the way Docker does it for a container: only the
 * native architecture and its sub-architectures, and only the rules whose
 * `includes` hold and whose `excludes` do not, judged against the container's
 * capability set, architecture and kernel version.
 */
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';

import { invalid } from '@berth/base';
import type { OciSeccomp, OciSeccompArg, OciSeccompSyscall } from './oci.js';

interface DockerArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

interface DockerFilter {
  caps?: string[];
  arches?: string[];
  minKernel?: string;
}

interface DockerSyscall {
  names: string[];
  action: string;
  args?: DockerArg[] | null;
  errnoRet?: number;
  includes?: DockerFilter;
  excludes?: DockerFilter;
}

export interface DockerSeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  archMap?: Array<{ architecture: string; subArchitectures: string[] | null }>;
  syscalls: DockerSyscall[];
}

export interface ConvertOptions {
  /** The container's capabilities (Docker judges rules against the bounding set). */
  readonly caps: readonly string[];
  /** Go architecture name as Docker uses it: amd64, arm64... (default: this machine's). */
  readonly arch?: string;
  /** Kernel release such as "6.1.0" (default: this machine's). */
  readonly kernel?: string;
}

const GO_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', s390x: 's390x', ppc64: 'ppc64le', riscv64: 'riscv64' };
const SCMP_ARCH: Record<string, string> = {
  amd64: 'SCMP_ARCH_X86_64',
  arm64: 'SCMP_ARCH_AARCH64',
  s390x: 'SCMP_ARCH_S390X',
  riscv64: 'SCMP_ARCH_RISCV64',
};

/** Docker's default profile, from the reference specs beside the repository (this file runs from test/dist/lib/). */
export const DEFAULT_SECCOMP_PATH: string = fileURLToPath(new URL('../../../../shared/spec/seccomp/default.json', import.meta.url));

export function loadDockerProfile(path: string = DEFAULT_SECCOMP_PATH): DockerSeccompProfile {
  const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (typeof value !== 'object' || value === null || !Array.isArray((value as { syscalls?: unknown }).syscalls)) {
    throw invalid(`${path}: not a Docker seccomp profile (no syscalls array)`);
  }
  return value as DockerSeccompProfile;
}

function kernelAtLeast(kernel: string, min: string): boolean {
  const parse = (v: string): number[] => v.split(/[.-]/).slice(0, 2).map((n) => parseInt(n, 10) || 0);
  const [a0 = 0, a1 = 0] = parse(kernel);
  const [b0 = 0, b1 = 0] = parse(min);
  return a0 !== b0 ? a0 > b0 : a1 >= b1;
}

function applies(rule: DockerSyscall, caps: readonly string[], arch: string, kernel: string): boolean {
  const inc = rule.includes ?? {};
  const exc = rule.excludes ?? {};
  if (inc.caps && inc.caps.length > 0 && !inc.caps.every((c) => caps.includes(c))) return false;
  if (inc.arches && inc.arches.length > 0 && !inc.arches.includes(arch)) return false;
  if (inc.minKernel && !kernelAtLeast(kernel, inc.minKernel)) return false;
  if (exc.caps && exc.caps.some((c) => caps.includes(c))) return false;
  if (exc.arches && exc.arches.includes(arch)) return false;
  return true;
}

export function dockerToOci(profile: DockerSeccompProfile, opts: ConvertOptions): OciSeccomp {
  const arch = opts.arch ?? GO_ARCH[process.arch] ?? process.arch;
  const kernel = opts.kernel ?? release();
  const native = SCMP_ARCH[arch];
  const architectures: string[] = [];
  for (const m of profile.archMap ?? []) {
    if (m.architecture === native) architectures.push(m.architecture, ...(m.subArchitectures ?? []));
  }
  const syscalls: OciSeccompSyscall[] = [];
  for (const rule of profile.syscalls) {
    if (!applies(rule, opts.caps, arch, kernel)) continue;
    const out: OciSeccompSyscall = { names: [...rule.names], action: rule.action };
    if (rule.errnoRet !== undefined) out.errnoRet = rule.errnoRet;
    if (rule.args && rule.args.length > 0) {
      out.args = rule.args.map((a): OciSeccompArg => ({ index: a.index, value: a.value, valueTwo: a.valueTwo ?? 0, op: a.op }));
    }
    syscalls.push(out);
  }
  const result: OciSeccomp = { defaultAction: profile.defaultAction, architectures, syscalls };
  if (profile.defaultErrnoRet !== undefined) result.defaultErrnoRet = profile.defaultErrnoRet;
  return result;
}

/** The default profile (spec/seccomp/default.json) for a container with these capabilities. */
export function defaultSeccomp(caps: readonly string[]): OciSeccomp {
  return dockerToOci(loadDockerProfile(), { caps });
}

