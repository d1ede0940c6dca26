/**
 * What the probe (native/probe, /probe in the built-in rootfs) prints, typed.
 */
import { invalid } from '@berth/base';

export interface CapSet {
  hex: string;
  names: string[];
}

export type RlimitValue = number | 'unlimited';

export interface ProbeMount {
  id: number;
  parent: number;
  root: string;
  target: string;
  options: string;
  propagation: string[];
  fstype: string;
  source: string;
  superOptions: string;
}

export interface ProbeFacts {
  ids?: { uid: number; gid: number; euid: number; egid: number; groups: number[] };
  caps?: { effective: CapSet; permitted: CapSet; inheritable: CapSet; bounding: CapSet; ambient: CapSet };
  rlimits?: Record<string, { soft: RlimitValue; hard: RlimitValue }>;
  seccomp?: { mode: number; filters: number };
  nnp?: boolean;
  mounts?: ProbeMount[];
  ns?: Record<string, string>;
  cwd?: string | null;
  fds?: Array<{ fd: number; target: string }>;
  hostname?: string;
  domainname?: string;
  env?: string[];
  umask?: number;
  oom_score_adj?: number | null;
  personality?: number;
  cgroup?: Array<{ hierarchy: number; controllers: string; path: string }>;
  pid?: number;
  ppid?: number;
  tty?: Record<'stdin' | 'stdout' | 'stderr', { isatty: boolean; name: string | null; winsize?: { rows: number; cols: number } }>;
  sysctl?: { key: string; value: string | null; error?: string };
}

/** `probe try`, `probe write`, `probe fork` results. */
export interface ProbeResult {
  ok: boolean;
  errno: number;
  error: string;
}

export interface ProbeRead extends ProbeResult {
  size?: number;
  content?: string;
}

export interface ProbeFork extends ProbeResult {
  forked: number;
}

export interface ProbeExeWatch {
  seen: Array<{ pid: number; exe: string }>;
  writable: Array<{ pid: number; exe: string; dev: number; ino: number; nlink: number }>;
}

/** Parses the probe's JSON object (the last non-empty line of its output). */
export function probe<T = ProbeFacts>(output: string): T {
  const lines = output.split('\n').filter((l) => l.trim() !== '');
  const last = lines[lines.length - 1];
  if (last === undefined) throw invalid('probe printed nothing');
  let value: unknown;
  try {
    value = JSON.parse(last);
  } catch (err) {
    throw invalid(`probe output is not JSON: ${last.slice(0, 500)}`, err);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(`probe output is not a JSON object: ${last.slice(0, 500)}`);
  }
  return value as T;
}

/** The mount at target (the last one, as it is the visible one), if any. */
export function mountAt(facts: ProbeFacts, target: string): ProbeMount | undefined {
  const all = (facts.mounts ?? []).filter((m) => m.target === target);
  return all[all.length - 1];
}

/** Whether a comma-separated option list holds an option. */
export function hasOption(options: string, opt: string): boolean {
  return options.split(',').includes(opt);
}
