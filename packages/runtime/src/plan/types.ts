/**
 * The executor plan: pure data, the whole contract between the TypeScript
 * planner and the C executor. See native/executor/PLAN.md for the meaning of
 * each record and the stage order the executor follows.
 */

export type NamespaceType = 'user' | 'mnt' | 'pid' | 'net' | 'ipc' | 'uts' | 'cgroup' | 'time';
export type CapSet = 'bounding' | 'effective' | 'permitted' | 'inheritable' | 'ambient';
export type SeccompAction =
  | 'kill_process' | 'kill_thread' | 'trap' | 'errno' | 'trace' | 'allow' | 'log' | 'notify';
export type SeccompOp = 'NE' | 'LT' | 'LE' | 'EQ' | 'GE' | 'GT' | 'MASKED_EQ';
export type HookEvent = 'createContainer' | 'startContainer';

export interface SeccompArg {
  index: number;
  op: SeccompOp;
  value: bigint;
  valueTwo: bigint;
}

export type PlanRecord =
  | { tag: 'version'; version: 1 }
  | { tag: 'ns'; type: NamespaceType; path: string }
  | { tag: 'uidmap' | 'gidmap'; container: number; host: number; size: number }
  | { tag: 'setgroups'; value: 'deny' }
  | { tag: 'cgroup_join'; file: string }
  /** A BPF_PROG_TYPE_CGROUP_DEVICE program (struct bpf_insn records, hex) attached to the cgroup2 directory `dir`. */
  | { tag: 'device_filter'; dir: string; program: string }
  | { tag: 'hostname' | 'domainname'; name: string }
  | { tag: 'rootfs'; path: string }
  | { tag: 'rootfs_propagation'; flags: number }
  | {
      tag: 'mount';
      source: string;
      target: string;
      fstype: string;
      flags: number;
      data: string;
      mkdir: 'dir' | 'file' | 'none';
      propagation: number;
    }
  | {
      tag: 'device';
      path: string;
      type: 'c' | 'b' | 'p' | 'u';
      major: number;
      minor: number;
      mode: number;
      uid: number;
      gid: number;
    }
  | { tag: 'device_bind'; path: string }
  | { tag: 'symlink'; target: string; linkpath: string }
  | { tag: 'no_pivot' }
  | { tag: 'mask'; path: string }
  | { tag: 'readonly'; path: string }
  | { tag: 'rootfs_readonly' }
  | { tag: 'sysctl'; key: string; value: string }
  | { tag: 'rlimit'; resource: number; soft: bigint; hard: bigint }
  | { tag: 'oom_score_adj'; value: number }
  | { tag: 'personality'; domain: number }
  | { tag: 'umask'; mode: number }
  | { tag: 'user'; uid: number; gid: number }
  | { tag: 'additional_gids'; gids: number[] }
  | { tag: 'caps'; set: CapSet; mask: bigint }
  | { tag: 'no_new_privs' }
  | { tag: 'seccomp_default'; action: SeccompAction; errno: number }
  | { tag: 'seccomp_arch'; name: string }
  | { tag: 'seccomp_flag'; name: string }
  | { tag: 'seccomp_rule'; action: SeccompAction; errno: number; syscall: string; args: SeccompArg[] }
  | { tag: 'seccomp_late' }
  | { tag: 'apparmor'; profile: string }
  | { tag: 'selinux_label'; label: string }
  | { tag: 'keyring'; name: string }
  | { tag: 'console_socket'; path: string }
  | { tag: 'console_relay' }
  | { tag: 'console_size'; rows: number; cols: number }
  | { tag: 'exec_fifo'; path: string }
  | { tag: 'hook_sync'; event: 'createRuntime' }
  | { tag: 'hook'; event: HookEvent; path: string; timeout: number; args: string[]; env: string[] }
  | { tag: 'state'; json: string }
  | { tag: 'preserve_fds'; n: number }
  | { tag: 'cwd'; path: string }
  | { tag: 'env'; value: string }
  | { tag: 'args'; args: string[] }
  | { tag: 'wait' };

export type Plan = PlanRecord[];

/** Messages the executor writes on the sync fd (one JSON object per line). */
export type ExecutorMessage =
  | { type: 'stage'; stage: string; errno: number }
  | { type: 'pid'; pid: number }
  | { type: 'hook'; event: string }
  | { type: 'ready' }
  | { type: 'error'; stage: string; errno: number; message: string };
