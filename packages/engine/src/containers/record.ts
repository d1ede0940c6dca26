/**
 * A container as the engine keeps it: Docker's inspect shape (so that
 * `GET /containers/{id}/json` is a copy, never a computation that waits),
 * plus the few fields of the engine's own.
 */
import type { ContainerConfig, HostConfig } from './config.js';

export type ContainerStatus = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';

export interface HealthLog {
  Start: string;
  End: string;
  ExitCode: number;
  Output: string;
}

export interface Health {
  Status: 'starting' | 'healthy' | 'unhealthy' | 'none';
  FailingStreak: number;
  Log: HealthLog[];
}

export interface ContainerState {
  Status: ContainerStatus;
  Running: boolean;
  Paused: boolean;
  Restarting: boolean;
  OOMKilled: boolean;
  Dead: boolean;
  Pid: number;
  ExitCode: number;
  Error: string;
  StartedAt: string;
  FinishedAt: string;
  Health?: Health;
}

export interface MountPoint {
  Type: 'bind' | 'volume' | 'tmpfs';
  Name?: string;
  Source: string;
  Destination: string;
  Driver?: string;
  Mode: string;
  RW: boolean;
  Propagation: string;
}

export interface ContainerRecord {
  Id: string;
  /** With the leading slash, as Docker's inspect. */
  Name: string;
  Created: string;
  Path: string;
  Args: string[];
  State: ContainerState;
  /** The image ID (`sha256:…`). */
  Image: string;
  ResolvConfPath: string;
  HostnamePath: string;
  HostsPath: string;
  LogPath: string;
  RestartCount: number;
  Driver: string;
  Platform: string;
  MountLabel: string;
  ProcessLabel: string;
  AppArmorProfile: string;
  ExecIDs: string[] | null;
  HostConfig: HostConfig;
  Mounts: MountPoint[];
  Config: ContainerConfig;
  NetworkSettings: Record<string, unknown>;
  /** Engine's own: the image's chain ID the rootfs snapshot was prepared on. */
  berth: {
    chainId: string;
    /** The user stopped it (restart policies other than `always` leave it stopped). */
    manuallyStopped: boolean;
    /** It has been started at least once (unless-stopped on daemon start). */
    everStarted: boolean;
    /** Anonymous volumes created for it (removed with `rm -v`). */
    anonymousVolumes: string[];
    /** linux.cgroupsPath of the spec it last started with. */
    cgroupsPath?: string;
  };
}

export const ZERO_TIME = '0001-01-01T00:00:00Z';

/** Time as Docker prints it: RFC 3339 with nanoseconds. */
export function rfc3339Nano(d: Date = new Date(), extraNanos = 0): string {
  const iso = d.toISOString(); // 2026-11-22T22:33:44.123Z
  const ms = iso.slice(20, 23);
  const ns = String(extraNanos).padStart(6, '0').slice(0, 6);
  return `${iso.slice(0, 19)}.${ms}${ns}Z`;
}

/** Nanoseconds since the epoch of an RFC 3339 time (0 for the zero time). */
export function parseTimeNano(s: string): number {
  if (s === '' || s.startsWith('0001-')) return 0;
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(s);
  if (m === null) return Date.parse(s) * 1e6;
  const base = Date.parse(`${m[1] ?? ''}Z`);
  const frac = (m[2] ?? '').padEnd(9, '0').slice(0, 9);
  return base * 1e6 + Number(frac);
}

export function initialState(): ContainerState {
  return {
    Status: 'created', Running: false, Paused: false, Restarting: false, OOMKilled: false, Dead: false,
    Pid: 0, ExitCode: 0, Error: '', StartedAt: ZERO_TIME, FinishedAt: ZERO_TIME,
  };
}
