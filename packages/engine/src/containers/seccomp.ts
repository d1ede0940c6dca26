/**
 * Seccomp in Docker's terms: the Docker profile format (what `--security-opt
 * seccomp=<file>` sends), Docker's default profile, and the conversion into
 * the OCI `linux.seccomp` section for one container, which keeps only the
 * rules whose `includes` hold and whose `excludes` do not, judged against the
 * container's capabilities, the host's architecture and kernel version.
 */
import { arch as hostArch, release } from 'node:os';
import { invalid } from '@berth/base';
import {
  SECCOMP_ACTIONS, SECCOMP_ARCHES, SECCOMP_FLAGS, SECCOMP_OPERATORS,
} from '@berth/spec';
import type {
  LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArch, LinuxSeccompArg, LinuxSeccompFlag, LinuxSeccompOperator, LinuxSyscall,
} from '@berth/spec';

export interface DockerSeccompFilter {
  /** Go architecture names (amd64, arm64, s390x...). */
  arches?: string[];
  caps?: string[];
  minKernel?: string;
}

export interface DockerSeccompSyscall {
  name?: string;
  names?: string[];
  action: LinuxSeccompAction;
  args?: LinuxSeccompArg[];
  errnoRet?: number;
  comment?: string;
  includes?: DockerSeccompFilter;
  excludes?: DockerSeccompFilter;
}

export interface DockerSeccompArchMap {
  architecture: LinuxSeccompArch;
  subArchitectures: LinuxSeccompArch[] | null;
}

export interface DockerSeccompProfile {
  defaultAction: LinuxSeccompAction;
  defaultErrnoRet?: number;
  architectures?: LinuxSeccompArch[];
  archMap?: DockerSeccompArchMap[];
  flags?: LinuxSeccompFlag[];
  listenerPath?: string;
  listenerMetadata?: string;
  syscalls?: DockerSeccompSyscall[];
}

/** Allowed for every container. */
const ALLOWED: readonly string[] = [
  'accept', 'accept4', 'access', 'adjtimex', 'alarm', 'bind', 'brk', 'cachestat', 'capget', 'capset',
  'chdir', 'chmod', 'chown', 'chown32', 'clock_adjtime', 'clock_adjtime64', 'clock_getres',
  'clock_getres_time64', 'clock_gettime', 'clock_gettime64', 'clock_nanosleep', 'clock_nanosleep_time64',
  'close', 'close_range', 'connect', 'copy_file_range', 'creat', 'dup', 'dup2', 'dup3', 'epoll_create',
  'epoll_create1', 'epoll_ctl', 'epoll_ctl_old', 'epoll_pwait', 'epoll_pwait2', 'epoll_wait',
  'epoll_wait_old', 'eventfd', 'eventfd2', 'execve', 'execveat', 'exit', 'exit_group', 'faccessat',
  'faccessat2', 'fadvise64', 'fadvise64_64', 'fallocate', 'fanotify_mark', 'fchdir', 'fchmod', 'fchmodat',
  'fchmodat2', 'fchown', 'fchown32', 'fchownat', 'fcntl', 'fcntl64', 'fdatasync', 'fgetxattr', 'flistxattr',
  'flock', 'fork', 'fremovexattr', 'fsetxattr', 'fstat', 'fstat64', 'fstatat64', 'fstatfs', 'fstatfs64',
  'fsync', 'ftruncate', 'ftruncate64', 'futex', 'futex_requeue', 'futex_time64', 'futex_wait', 'futex_waitv',
  'futex_wake', 'futimesat', 'getcpu', 'getcwd', 'getdents', 'getdents64', 'getegid', 'getegid32', 'geteuid',
  'geteuid32', 'getgid', 'getgid32', 'getgroups', 'getgroups32', 'getitimer', 'getpeername', 'getpgid',
  'getpgrp', 'getpid', 'getppid', 'getpriority', 'getrandom', 'getresgid', 'getresgid32', 'getresuid',
  'getresuid32', 'getrlimit', 'get_robust_list', 'getrusage', 'getsid', 'getsockname', 'getsockopt',
  'get_thread_area', 'gettid', 'gettimeofday', 'getuid', 'getuid32', 'getxattr', 'getxattrat',
  'inotify_add_watch', 'inotify_init', 'inotify_init1', 'inotify_rm_watch', 'io_cancel', 'ioctl',
  'io_destroy', 'io_getevents', 'io_pgetevents', 'io_pgetevents_time64', 'ioprio_get', 'ioprio_set',
  'io_setup', 'io_submit', 'ipc', 'kill', 'landlock_add_rule', 'landlock_create_ruleset',
  'landlock_restrict_self', 'lchown', 'lchown32', 'lgetxattr', 'link', 'linkat', 'listen', 'listmount',
  'listxattr', 'listxattrat', 'llistxattr', '_llseek', 'lremovexattr', 'lseek', 'lsetxattr', 'lstat',
  'lstat64', 'madvise', 'map_shadow_stack', 'membarrier', 'memfd_create', 'memfd_secret', 'mincore', 'mkdir',
  'mkdirat', 'mknod', 'mknodat', 'mlock', 'mlock2', 'mlockall', 'mmap', 'mmap2', 'mprotect', 'mq_getsetattr',
  'mq_notify', 'mq_open', 'mq_timedreceive', 'mq_timedreceive_time64', 'mq_timedsend', 'mq_timedsend_time64',
  'mq_unlink', 'mremap', 'mseal', 'msgctl', 'msgget', 'msgrcv', 'msgsnd', 'msync', 'munlock', 'munlockall',
  'munmap', 'name_to_handle_at', 'nanosleep', 'newfstatat', '_newselect', 'open', 'openat', 'openat2',
  'pause', 'pidfd_open', 'pidfd_send_signal', 'pipe', 'pipe2', 'pkey_alloc', 'pkey_free', 'pkey_mprotect',
  'poll', 'ppoll', 'ppoll_time64', 'prctl', 'pread64', 'preadv', 'preadv2', 'prlimit64', 'process_mrelease',
  'pselect6', 'pselect6_time64', 'pwrite64', 'pwritev', 'pwritev2', 'read', 'readahead', 'readlink',
  'readlinkat', 'readv', 'recv', 'recvfrom', 'recvmmsg', 'recvmmsg_time64', 'recvmsg', 'remap_file_pages',
  'removexattr', 'removexattrat', 'rename', 'renameat', 'renameat2', 'restart_syscall', 'riscv_hwprobe',
  'rmdir', 'rseq', 'rt_sigaction', 'rt_sigpending', 'rt_sigprocmask', 'rt_sigqueueinfo', 'rt_sigreturn',
  'rt_sigsuspend', 'rt_sigtimedwait', 'rt_sigtimedwait_time64', 'rt_tgsigqueueinfo', 'sched_getaffinity',
  'sched_getattr', 'sched_getparam', 'sched_get_priority_max', 'sched_get_priority_min',
  'sched_getscheduler', 'sched_rr_get_interval', 'sched_rr_get_interval_time64', 'sched_setaffinity',
  'sched_setattr', 'sched_setparam', 'sched_setscheduler', 'sched_yield', 'seccomp', 'select', 'semctl',
  'semget', 'semop', 'semtimedop', 'semtimedop_time64', 'send', 'sendfile', 'sendfile64', 'sendmmsg',
  'sendmsg', 'sendto', 'setfsgid', 'setfsgid32', 'setfsuid', 'setfsuid32', 'setgid', 'setgid32', 'setgroups',
  'setgroups32', 'setitimer', 'setpgid', 'setpriority', 'setregid', 'setregid32', 'setresgid', 'setresgid32',
  'setresuid', 'setresuid32', 'setreuid', 'setreuid32', 'setrlimit', 'set_robust_list', 'setsid',
  'setsockopt', 'set_thread_area', 'set_tid_address', 'setuid', 'setuid32', 'setxattr', 'setxattrat',
  'shmat', 'shmctl', 'shmdt', 'shmget', 'shutdown', 'sigaltstack', 'signalfd', 'signalfd4', 'sigprocmask',
  'sigreturn', 'socketcall', 'socketpair', 'splice', 'stat', 'stat64', 'statfs', 'statfs64', 'statmount',
  'statx', 'symlink', 'symlinkat', 'sync', 'sync_file_range', 'syncfs', 'sysinfo', 'tee', 'tgkill', 'time',
  'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime', 'timer_gettime64', 'timer_settime',
  'timer_settime64', 'timerfd_create', 'timerfd_gettime', 'timerfd_gettime64', 'timerfd_settime',
  'timerfd_settime64', 'times', 'tkill', 'truncate', 'truncate64', 'ugetrlimit', 'umask', 'uname', 'unlink',
  'unlinkat', 'uretprobe', 'utime', 'utimensat', 'utimensat_time64', 'utimes', 'vfork', 'vmsplice', 'wait4',
  'waitid', 'waitpid', 'write', 'writev',
];

/** Allowed with CAP_SYS_ADMIN. */
const SYS_ADMIN: readonly string[] = [
  'bpf', 'clone', 'clone3', 'fanotify_init', 'fsconfig', 'fsmount', 'fsopen', 'fspick', 'lookup_dcookie',
  'lsm_get_self_attr', 'lsm_list_modules', 'lsm_set_self_attr', 'mount', 'mount_setattr', 'move_mount',
  'open_tree', 'perf_event_open', 'quotactl', 'quotactl_fd', 'setdomainname', 'sethostname', 'setns',
  'syslog', 'umount', 'umount2', 'unshare',
];

const EPERM = 1;
const ENOSYS = 38;
/** CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (and NEWTIME): refused without CAP_SYS_ADMIN. */
const CLONE_NAMESPACE_FLAGS = 2114060288;

const allow = (names: string[], more: Partial<DockerSeccompSyscall> = {}): DockerSeccompSyscall => ({ names, action: 'SCMP_ACT_ALLOW', ...more });
const withCap = (cap: string, names: string[]): DockerSeccompSyscall => allow(names, { includes: { caps: [cap] } });
const onArches = (arches: string[], names: string[]): DockerSeccompSyscall => allow(names, { includes: { arches } });
const personality = (value: number): DockerSeccompSyscall => allow(['personality'], { args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] });

/** Docker's default seccomp profile: refuse (EPERM) what is not listed. */
export const DEFAULT_SECCOMP_PROFILE: DockerSeccompProfile = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: EPERM,
  archMap: [
    { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
    { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
    { architecture: 'SCMP_ARCH_MIPS64', subArchitectures: ['SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64N32'] },
    { architecture: 'SCMP_ARCH_MIPS64N32', subArchitectures: ['SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64'] },
    { architecture: 'SCMP_ARCH_MIPSEL64', subArchitectures: ['SCMP_ARCH_MIPSEL', 'SCMP_ARCH_MIPSEL64N32'] },
    { architecture: 'SCMP_ARCH_MIPSEL64N32', subArchitectures: ['SCMP_ARCH_MIPSEL', 'SCMP_ARCH_MIPSEL64'] },
    { architecture: 'SCMP_ARCH_S390X', subArchitectures: ['SCMP_ARCH_S390'] },
    { architecture: 'SCMP_ARCH_RISCV64', subArchitectures: null },
  ],
  syscalls: [
    allow([...ALLOWED]),
    allow(['process_vm_readv', 'process_vm_writev', 'ptrace'], { includes: { minKernel: '4.8' } }),
    // Any socket family but AF_VSOCK.
    allow(['socket'], { args: [{ index: 0, value: 40, op: 'SCMP_CMP_NE' }] }),
    // PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query (0xffffffff).
    personality(0),
    personality(8),
    personality(131072),
    personality(131080),
    personality(4294967295),
    onArches(['ppc64le'], ['sync_file_range2', 'swapcontext']),
    onArches(['arm', 'arm64'], ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls']),
    onArches(['amd64', 'x32'], ['arch_prctl']),
    onArches(['amd64', 'x32', 'x86'], ['modify_ldt']),
    onArches(['s390', 's390x'], ['s390_pci_mmio_read', 's390_pci_mmio_write', 's390_runtime_instr']),
    onArches(['riscv64'], ['riscv_flush_icache']),
    withCap('CAP_DAC_READ_SEARCH', ['open_by_handle_at']),
    withCap('CAP_SYS_ADMIN', [...SYS_ADMIN]),
    // Without CAP_SYS_ADMIN, clone may not make namespaces (flags are argument 0, argument 1 on s390).
    allow(['clone'], {
      args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, op: 'SCMP_CMP_MASKED_EQ' }],
      excludes: { caps: ['CAP_SYS_ADMIN'], arches: ['s390', 's390x'] },
    }),
    allow(['clone'], {
      args: [{ index: 1, value: CLONE_NAMESPACE_FLAGS, op: 'SCMP_CMP_MASKED_EQ' }],
      includes: { arches: ['s390', 's390x'] },
      excludes: { caps: ['CAP_SYS_ADMIN'] },
    }),
    // clone3's flags are in memory where seccomp cannot see them: ENOSYS makes libc fall back to clone.
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS, excludes: { caps: ['CAP_SYS_ADMIN'] } },
    withCap('CAP_SYS_BOOT', ['reboot']),
    withCap('CAP_SYS_CHROOT', ['chroot']),
    withCap('CAP_SYS_MODULE', ['delete_module', 'init_module', 'finit_module']),
    withCap('CAP_SYS_PACCT', ['acct']),
    withCap('CAP_SYS_PTRACE', ['kcmp', 'pidfd_getfd', 'process_madvise', 'process_vm_readv', 'process_vm_writev', 'ptrace']),
    withCap('CAP_SYS_RAWIO', ['iopl', 'ioperm']),
    withCap('CAP_SYS_TIME', ['settimeofday', 'stime', 'clock_settime', 'clock_settime64']),
    withCap('CAP_SYS_TTY_CONFIG', ['vhangup']),
    withCap('CAP_SYS_NICE', ['get_mempolicy', 'mbind', 'set_mempolicy', 'set_mempolicy_home_node']),
    withCap('CAP_SYSLOG', ['syslog']),
    withCap('CAP_BPF', ['bpf']),
    withCap('CAP_PERFMON', ['perf_event_open']),
  ],
};

// ---------------------------------------------------------------- architectures

/** Go's GOARCH for Node's, uname's or Go's own architecture name. */
export function goArch(name: string): string {
  const map: Record<string, string> = {
    x64: 'amd64', x86_64: 'amd64', amd64: 'amd64', ia32: '386', i386: '386', i686: '386', '386': '386', x86: '386',
    arm64: 'arm64', aarch64: 'arm64', arm: 'arm', armv7l: 'arm', s390x: 's390x', s390: 's390',
    ppc64: 'ppc64le', ppc64le: 'ppc64le', riscv64: 'riscv64', mips64el: 'mips64le', mips64le: 'mips64le',
    mips64: 'mips64', mipsel: 'mipsle', mipsle: 'mipsle', mips: 'mips', loong64: 'loong64', loongarch64: 'loong64',
  };
  return map[name] ?? name;
}

const SCMP_FOR_GO: Record<string, LinuxSeccompArch> = {
  '386': 'SCMP_ARCH_X86', amd64: 'SCMP_ARCH_X86_64', arm: 'SCMP_ARCH_ARM', arm64: 'SCMP_ARCH_AARCH64',
  mips: 'SCMP_ARCH_MIPS', mips64: 'SCMP_ARCH_MIPS64', mips64le: 'SCMP_ARCH_MIPSEL64', mipsle: 'SCMP_ARCH_MIPSEL',
  ppc64le: 'SCMP_ARCH_PPC64LE', s390: 'SCMP_ARCH_S390', s390x: 'SCMP_ARCH_S390X', riscv64: 'SCMP_ARCH_RISCV64',
  loong64: 'SCMP_ARCH_LOONGARCH64',
};

/** Whether kernel release `a` (e.g. "6.1.0-18-amd64") is at least `min` ("4.8"). */
export function kernelAtLeast(a: string, min: string): boolean {
  const parse = (v: string): number[] => (/^(\d+)(?:\.(\d+))?/.exec(v) ?? []).slice(1, 3).map((n) => Number.parseInt(n ?? '0', 10) || 0);
  const [a0 = 0, a1 = 0] = parse(a);
  const [b0 = 0, b1 = 0] = parse(min);
  return a0 !== b0 ? a0 > b0 : a1 >= b1;
}

// ---------------------------------------------------------------- conversion

/**
 * The OCI seccomp section for a container with the given capabilities (its
 * bounding set, `CAP_` names) on an architecture (Node's, Go's or uname's name;
 * default this machine's) and kernel release (default this machine's).
 */
export function dockerProfileToOci(
  profile: DockerSeccompProfile,
  caps: readonly string[],
  arch: string = hostArch(),
  kernel: string = release(),
): LinuxSeccomp {
  const goa = goArch(arch);
  const scmp = SCMP_FOR_GO[goa];
  if ((profile.architectures ?? []).length > 0 && (profile.archMap ?? []).length > 0) {
    throw invalid("both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'");
  }
  const out: LinuxSeccomp = { defaultAction: profile.defaultAction };
  if (profile.defaultErrnoRet !== undefined) out.defaultErrnoRet = profile.defaultErrnoRet;
  const arches: LinuxSeccompArch[] = [...(profile.architectures ?? [])];
  for (const m of profile.archMap ?? []) {
    if (m.architecture === scmp) arches.push(m.architecture, ...(m.subArchitectures ?? []));
  }
  if (arches.length > 0) out.architectures = arches;
  if ((profile.flags ?? []).length > 0) out.flags = [...(profile.flags ?? [])];
  if (profile.listenerPath !== undefined && profile.listenerPath !== '') out.listenerPath = profile.listenerPath;
  if (profile.listenerMetadata !== undefined && profile.listenerMetadata !== '') out.listenerMetadata = profile.listenerMetadata;
  const capSet = new Set(caps);
  const syscalls: LinuxSyscall[] = [];
  for (const call of profile.syscalls ?? []) {
    if (call.name !== undefined && call.name !== '' && (call.names ?? []).length > 0) throw invalid("use either 'name' or 'names'");
    const names = call.name !== undefined && call.name !== '' ? [call.name] : [...(call.names ?? [])];
    const ex = call.excludes;
    if (ex) {
      if ((ex.arches ?? []).includes(goa)) continue;
      if ((ex.caps ?? []).some((c) => capSet.has(c))) continue;
      if (ex.minKernel !== undefined && ex.minKernel !== '' && kernelAtLeast(kernel, ex.minKernel)) continue;
    }
    const inc = call.includes;
    if (inc) {
      if ((inc.arches ?? []).length > 0 && !(inc.arches ?? []).includes(goa)) continue;
      if (!(inc.caps ?? []).every((c) => capSet.has(c))) continue;
      if (inc.minKernel !== undefined && inc.minKernel !== '' && !kernelAtLeast(kernel, inc.minKernel)) continue;
    }
    const rule: LinuxSyscall = { names, action: call.action };
    if (call.errnoRet !== undefined) rule.errnoRet = call.errnoRet;
    if ((call.args ?? []).length > 0) rule.args = (call.args ?? []).map((a) => ({ ...a }));
    syscalls.push(rule);
  }
  if (syscalls.length > 0) out.syscalls = syscalls;
  return out;
}

// ---------------------------------------------------------------- parsing a user's profile

type Obj = Record<string, unknown>;

function fail(why: string): Error {
  return invalid(`Decoding seccomp profile failed: ${why}`);
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function oneOf<T extends string>(v: unknown, set: readonly T[], what: string): T {
  if (typeof v !== 'string' || !(set as readonly string[]).includes(v)) throw fail(`invalid ${what} ${JSON.stringify(v)}`);
  return v as T;
}

function uint(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw fail(`${what} must be an unsigned integer, got ${JSON.stringify(v)}`);
  return v;
}

function strings(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw fail(`${what} must be a list of strings`);
  return v as string[];
}

function filter(v: unknown, what: string): DockerSeccompFilter | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) throw fail(`${what} must be an object`);
  const f: DockerSeccompFilter = {};
  const arches = strings(v['arches'], `${what}.arches`);
  const caps = strings(v['caps'], `${what}.caps`);
  if (arches.length > 0) f.arches = arches;
  if (caps.length > 0) f.caps = caps;
  const mk = v['minKernel'];
  if (mk !== undefined && mk !== null && mk !== '') {
    if (typeof mk !== 'string' || !/^\d+\.\d+$/.test(mk)) throw fail(`${what}.minKernel: invalid kernel version ${JSON.stringify(mk)}`);
    f.minKernel = mk;
  }
  return f;
}

/** Parses a Docker seccomp profile (JSON text), `Decoding seccomp profile failed: ...` when malformed. */
export function parseDockerSeccompProfile(text: string): DockerSeccompProfile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw fail(err instanceof Error ? err.message : String(err));
  }
  if (!isObj(raw)) throw fail('the profile is not a JSON object');
  const p: DockerSeccompProfile = { defaultAction: oneOf(raw['defaultAction'], SECCOMP_ACTIONS, 'defaultAction') };
  if (raw['defaultErrnoRet'] !== undefined && raw['defaultErrnoRet'] !== null) p.defaultErrnoRet = uint(raw['defaultErrnoRet'], 'defaultErrnoRet');
  const arches = strings(raw['architectures'], 'architectures').map((a) => oneOf(a, SECCOMP_ARCHES, 'architecture'));
  if (arches.length > 0) p.architectures = arches;
  const am = raw['archMap'];
  if (am !== undefined && am !== null) {
    if (!Array.isArray(am)) throw fail('archMap must be a list');
    p.archMap = am.map((m, i) => {
      if (!isObj(m)) throw fail(`archMap[${i}] must be an object`);
      const subs = m['subArchitectures'];
      return {
        architecture: oneOf(m['architecture'], SECCOMP_ARCHES, 'architecture'),
        subArchitectures: subs === null || subs === undefined ? null : strings(subs, `archMap[${i}].subArchitectures`).map((a) => oneOf(a, SECCOMP_ARCHES, 'architecture')),
      };
    });
  }
  const flags = strings(raw['flags'], 'flags').map((f) => oneOf(f, SECCOMP_FLAGS, 'flag'));
  if (flags.length > 0) p.flags = flags;
  for (const k of ['listenerPath', 'listenerMetadata'] as const) {
    const v = raw[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string') throw fail(`${k} must be a string`);
    p[k] = v;
  }
  const sc = raw['syscalls'];
  if (sc !== undefined && sc !== null) {
    if (!Array.isArray(sc)) throw fail('syscalls must be a list');
    p.syscalls = sc.map((s, i) => {
      const w = `syscalls[${i}]`;
      if (!isObj(s)) throw fail(`${w} must be an object`);
      const call: DockerSeccompSyscall = { action: oneOf(s['action'], SECCOMP_ACTIONS, `${w}.action`) };
      const name = s['name'];
      if (name !== undefined && name !== null && name !== '') {
        if (typeof name !== 'string') throw fail(`${w}.name must be a string`);
        call.name = name;
      }
      const names = strings(s['names'], `${w}.names`);
      if (names.length > 0) call.names = names;
      if (call.name !== undefined && call.names !== undefined) throw invalid("use either 'name' or 'names'");
      if (s['errnoRet'] !== undefined && s['errnoRet'] !== null) call.errnoRet = uint(s['errnoRet'], `${w}.errnoRet`);
      const args = s['args'];
      if (args !== undefined && args !== null) {
        if (!Array.isArray(args)) throw fail(`${w}.args must be a list`);
        call.args = args.map((a, j) => {
          if (!isObj(a)) throw fail(`${w}.args[${j}] must be an object`);
          const arg: LinuxSeccompArg = {
            index: uint(a['index'], `${w}.args[${j}].index`),
            value: uint(a['value'] ?? 0, `${w}.args[${j}].value`),
            op: oneOf<LinuxSeccompOperator>(a['op'], SECCOMP_OPERATORS, `${w}.args[${j}].op`),
          };
          if (a['valueTwo'] !== undefined && a['valueTwo'] !== null && a['valueTwo'] !== 0) arg.valueTwo = uint(a['valueTwo'], `${w}.args[${j}].valueTwo`);
          return arg;
        });
      }
      if (typeof s['comment'] === 'string') call.comment = s['comment'];
      const inc = filter(s['includes'], `${w}.includes`);
      const exc = filter(s['excludes'], `${w}.excludes`);
      if (inc !== undefined) call.includes = inc;
      if (exc !== undefined) call.excludes = exc;
      return call;
    });
  }
  return p;
}
