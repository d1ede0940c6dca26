/**
 * OCI seccomp (linux.seccomp) -> seccomp_* plan records, with runc's rules:
 * SCMP_ACT_KILL is KILL_THREAD; errno and trace actions return EPERM
 * unless errnoRet says otherwise; a rule whose action and errno equal the
 * default is dropped (libseccomp refuses it); a rule that tests one
 * argument index more than once becomes one rule per test (libseccomp
 * cannot AND two tests of the same argument).
 */
import { notImplemented } from '@berth/base';
import type {
  LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArch, LinuxSeccompArg, LinuxSeccompOperator,
} from '@berth/spec';
import type { PlanRecord, SeccompAction, SeccompArg, SeccompOp } from './types.js';

const EPERM = 1;

const ACTIONS: Record<LinuxSeccompAction, SeccompAction> = {
  SCMP_ACT_KILL: 'kill_thread',
  SCMP_ACT_KILL_THREAD: 'kill_thread',
  SCMP_ACT_KILL_PROCESS: 'kill_process',
  SCMP_ACT_TRAP: 'trap',
  SCMP_ACT_ERRNO: 'errno',
  SCMP_ACT_TRACE: 'trace',
  SCMP_ACT_ALLOW: 'allow',
  SCMP_ACT_LOG: 'log',
  SCMP_ACT_NOTIFY: 'notify',
};

/** libseccomp's names for the architectures (seccomp_arch_resolve_name). */
export const SECCOMP_ARCH_NAMES: Record<LinuxSeccompArch, string> = {
  SCMP_ARCH_X86: 'x86',
  SCMP_ARCH_X86_64: 'x86_64',
  SCMP_ARCH_X32: 'x32',
  SCMP_ARCH_ARM: 'arm',
  SCMP_ARCH_AARCH64: 'aarch64',
  SCMP_ARCH_LOONGARCH64: 'loongarch64',
  SCMP_ARCH_M68K: 'm68k',
  SCMP_ARCH_MIPS: 'mips',
  SCMP_ARCH_MIPS64: 'mips64',
  SCMP_ARCH_MIPS64N32: 'mips64n32',
  SCMP_ARCH_MIPSEL: 'mipsel',
  SCMP_ARCH_MIPSEL64: 'mipsel64',
  SCMP_ARCH_MIPSEL64N32: 'mipsel64n32',
  SCMP_ARCH_PPC: 'ppc',
  SCMP_ARCH_PPC64: 'ppc64',
  SCMP_ARCH_PPC64LE: 'ppc64le',
  SCMP_ARCH_S390: 's390',
  SCMP_ARCH_S390X: 's390x',
  SCMP_ARCH_SH: 'sh',
  SCMP_ARCH_SHEB: 'sheb',
  SCMP_ARCH_PARISC: 'parisc',
  SCMP_ARCH_PARISC64: 'parisc64',
  SCMP_ARCH_RISCV64: 'riscv64',
};

const OPS: Record<LinuxSeccompOperator, SeccompOp> = {
  SCMP_CMP_NE: 'NE',
  SCMP_CMP_LT: 'LT',
  SCMP_CMP_LE: 'LE',
  SCMP_CMP_EQ: 'EQ',
  SCMP_CMP_GE: 'GE',
  SCMP_CMP_GT: 'GT',
  SCMP_CMP_MASKED_EQ: 'MASKED_EQ',
};

const U64_MAX = 2n ** 64n - 1n;
const u64 = (v: number): bigint => {
  const b = BigInt(v);
  return b > U64_MAX ? U64_MAX : b;
};

function action(a: LinuxSeccompAction, where: string): SeccompAction {
  if (a === 'SCMP_ACT_NOTIFY') {
    throw notImplemented(`${where}: SCMP_ACT_NOTIFY (seccomp user notification) is not supported yet`);
  }
  return ACTIONS[a];
}

/** The errno an action returns: errno and trace default to EPERM, others carry none. */
function errnoFor(a: SeccompAction, errnoRet: number | undefined): number {
  return a === 'errno' || a === 'trace' ? (errnoRet ?? EPERM) : 0;
}

function arg(a: LinuxSeccompArg): SeccompArg {
  return { index: a.index, op: OPS[a.op], value: u64(a.value), valueTwo: u64(a.valueTwo ?? 0) };
}

/** Translate a seccomp config into its plan records (seccomp_late is the caller's choice). */
export function seccompRecords(sc: LinuxSeccomp, where = 'linux.seccomp'): PlanRecord[] {
  if (sc.listenerPath !== undefined && sc.listenerPath !== '') {
    throw notImplemented(`${where}.listenerPath: seccomp user notification is not supported yet`);
  }
  const out: PlanRecord[] = [];
  const defAction = action(sc.defaultAction, `${where}.defaultAction`);
  const defErrno = errnoFor(defAction, sc.defaultErrnoRet);
  out.push({ tag: 'seccomp_default', action: defAction, errno: defErrno });
  for (const a of sc.architectures ?? []) out.push({ tag: 'seccomp_arch', name: SECCOMP_ARCH_NAMES[a] });
  for (const f of sc.flags ?? []) out.push({ tag: 'seccomp_flag', name: f });
  (sc.syscalls ?? []).forEach((call, i) => {
    const act = action(call.action, `${where}.syscalls[${i}].action`);
    const errno = errnoFor(act, call.errnoRet);
    if (act === defAction && errno === defErrno) return;
    const args = (call.args ?? []).map(arg);
    const indexes = new Set(args.map((a) => a.index));
    // Same index twice: one rule per test, so that any of them matches.
    const groups = indexes.size < args.length ? args.map((a) => [a]) : [args];
    for (const name of call.names) {
      for (const g of groups) out.push({ tag: 'seccomp_rule', action: act, errno, syscall: name, args: g });
    }
  });
  return out;
}
