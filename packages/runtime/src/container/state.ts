import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic, notFound, alreadyExists, validateContainerId, errnoCode, internal } from '@berth/base';
import type { Spec, LinuxNamespaceType } from '@berth/spec';
import type { CgroupPaths } from '@berth/cgroups';
import { processAlive, procStat } from './proc.js';
import type { Status } from './lifecycle.js';

export const OCI_VERSION = '1.2.0';
export const DEFAULT_ROOT = '/run/berth/runc';

/**
 * What berth-runc keeps about a container, in <root>/<id>/state.json. Written
 * atomically; the live status is derived from the process and the exec fifo,
 * never stored (so a crash cannot leave a stale status behind).
 */
export interface ContainerRecord {
  version: 1;
  id: string;
  bundle: string;
  rootfs: string;
  pid: number;
  /** /proc/<pid>/stat start time, to tell our process from a reused pid. */
  pidStartTime: string;
  created: string;
  annotations: Record<string, string>;
  /** The config the container was created from, with resources kept up to date by `update`. */
  config: Spec;
  /** The container's cgroup directories, as resolved at create time. */
  cgroup: CgroupPaths;
  /** Namespace types the container has (OCI names: pid, network, mount...). */
  namespaces: LinuxNamespaceType[];
  /** Set once the container is known to have been started. */
  started?: boolean;
}

export interface OciState {
  ociVersion: string;
  id: string;
  pid: number;
  status: Status;
  bundle: string;
  rootfs: string;
  created: string;
  owner: string;
  annotations?: Record<string, string>;
}

export class StateStore {
  constructor(readonly root: string = DEFAULT_ROOT) {}

  dir(id: string): string {
    validateContainerId(id);
    return join(this.root, id);
  }
  fifoPath(id: string): string {
    return join(this.dir(id), 'exec.fifo');
  }

  /** Reserve the id: creates <root>/<id> exclusively. */
  reserve(id: string): string {
    mkdirSync(this.root, { recursive: true, mode: 0o711 });
    const d = this.dir(id);
    try {
      mkdirSync(d, { mode: 0o711 });
    } catch (e) {
      if (errnoCode(e) === 'EEXIST') throw alreadyExists('container with given ID already exists');
      throw e;
    }
    return d;
  }

  save(rec: ContainerRecord): void {
    // Runtime state lives in /run and describes live processes: atomic, not durable.
    writeFileAtomic(join(this.dir(rec.id), 'state.json'), JSON.stringify(rec), 0o600, { durable: false });
  }

  load(id: string): ContainerRecord {
    let text: string;
    try {
      text = readFileSync(join(this.dir(id), 'state.json'), 'utf8');
    } catch (e) {
      if (errnoCode(e) === 'ENOENT' || errnoCode(e) === 'ENOTDIR') throw notFound('container does not exist');
      throw e;
    }
    try {
      return JSON.parse(text) as ContainerRecord;
    } catch (e) {
      throw internal(`state of container ${id} is unreadable`, e);
    }
  }

  exists(id: string): boolean {
    return existsSync(join(this.dir(id), 'state.json'));
  }

  remove(id: string): void {
    rmSync(this.dir(id), { recursive: true, force: true });
  }

  ids(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.root);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return [];
      throw e;
    }
    return names.filter((n) => {
      try {
        return statSync(join(this.root, n, 'state.json')).isFile();
      } catch {
        return false;
      }
    }).sort();
  }
}

/**
 * Derive the live status as runc does: the process alive (and not a reused
 * pid)? The exec fifo still there? Whether a running container is paused is
 * the caller's to ask of its cgroup.
 */
export function statusOf(rec: ContainerRecord, store: StateStore): Status {
  if (!rec.pid || !processAlive(rec.pid, rec.pidStartTime)) return 'stopped';
  if (existsSync(store.fifoPath(rec.id))) return 'created';
  return 'running';
}

export function ociState(rec: ContainerRecord, status: Status, owner = ''): OciState {
  const s: OciState = {
    ociVersion: OCI_VERSION,
    id: rec.id,
    pid: status === 'stopped' ? 0 : rec.pid,
    status,
    bundle: rec.bundle,
    rootfs: rec.rootfs,
    created: rec.created,
    owner,
  };
  if (Object.keys(rec.annotations).length > 0) s.annotations = rec.annotations;
  return s;
}

/** The state handed to hooks on stdin (runtime.md): no owner, pid as seen from the host. */
export function hookState(rec: ContainerRecord, status: Status): string {
  return JSON.stringify({
    ociVersion: OCI_VERSION,
    id: rec.id,
    status,
    pid: rec.pid,
    bundle: rec.bundle,
    annotations: rec.annotations,
  });
}

export function startTimeOf(pid: number): string {
  return procStat(pid)?.startTime ?? '';
}
