import { openSync, readSync, closeSync, unlinkSync, readFileSync, statSync, constants as fsc } from 'node:fs';
import { resolve, join } from 'node:path';
import {
  Logger, writeFileAtomic, notFound, invalid, failedPrecondition, errnoCode, validateContainerId, BerthError,
} from '@berth/base';
import { parseSpec } from '@berth/spec';
import type { Spec, Process, LinuxResources } from '@berth/spec';
import { planExec } from '../plan/index.js';
import { startExecutor } from '../executor/index.js';
import { StateStore, statusOf, ociState, hookState, startTimeOf } from './state.js';
import type { ContainerRecord, OciState } from './state.js';
import { assertCan } from './lifecycle.js';
import type { Status } from './lifecycle.js';
import { runHooks } from './hooks.js';
import { processAlive, waitGone, sleep } from './proc.js';
import { openCgroup, isFrozen } from './cgroup.js';
import { prepareContainer } from './prepare.js';
import { apparmorEnabled, selinuxEnabled } from './host.js';
import type { CgroupManager } from '@berth/cgroups';

export interface CreateOptions {
  bundle: string;
  pidFile?: string | undefined;
  consoleSocket?: string | undefined;
  noPivot?: boolean;
  noNewKeyring?: boolean;
  preserveFds?: number;
  /** Keep the executor as the container's parent and resolve `exited` with its status (runc run). */
  wait?: boolean;
}

export interface ExecOptions {
  detach?: boolean;
  pidFile?: string | undefined;
  consoleSocket?: string | undefined;
  preserveFds?: number;
  ignorePaused?: boolean;
}

export interface Created {
  record: ContainerRecord;
  /** Only with wait: the container process's exit status (128+signal when killed). */
  exited?: Promise<number>;
  executorPid?: number;
}

const SIGKILL = 9;

/** berth-runc's operations over the state directory; the CLI is a thin layer over this. */
export class Runtime {
  readonly store: StateStore;
  constructor(readonly root: string, readonly log: Logger = new Logger()) {
    this.store = new StateStore(root);
  }

  private cgroupOf(rec: ContainerRecord): Promise<CgroupManager> {
    return openCgroup(rec.cgroup);
  }

  async status(rec: ContainerRecord): Promise<Status> {
    const s = statusOf(rec, this.store);
    if (s !== 'running') return s;
    return (await isFrozen(await this.cgroupOf(rec)).catch(() => false)) ? 'paused' : 'running';
  }

  load(id: string): ContainerRecord {
    validateContainerId(id);
    return this.store.load(id);
  }

  async state(id: string): Promise<OciState> {
    const rec = this.load(id);
    return ociState(rec, await this.status(rec));
  }

  async list(): Promise<OciState[]> {
    const out: OciState[] = [];
    for (const id of this.store.ids()) {
      try {
        const rec = this.store.load(id);
        out.push(ociState(rec, await this.status(rec), ownerOf(this.store.dir(id))));
      } catch (e) {
        this.log.warn(`skipping container ${id}: ${(e as Error).message}`);
      }
    }
    return out;
  }

  async create(id: string, o: CreateOptions): Promise<Created> {
    validateContainerId(id);
    const bundle = resolve(o.bundle);
    const spec = readBundleSpec(bundle);
    if (!spec.process) throw invalid('process: the container has no process to run');
    if (spec.process.terminal && !o.consoleSocket && !o.wait) {
      throw invalid('cannot allocate tty if runc will detach without setting console socket');
    }
    if (!spec.process.terminal && o.consoleSocket) {
      throw invalid('cannot use console socket if runc will not detach or allocate tty');
    }
    const rootfs = resolve(bundle, spec.root?.path ?? 'rootfs');
    if (!isDir(rootfs)) throw invalid(`rootfs (${rootfs}) does not exist or is not a directory`);

    let cg: CgroupManager | undefined;
    let pid = 0;
    let reserved = false;
    try {
      const prepared = await prepareContainer(this.store, id, spec, {
        bundle,
        rootfs,
        consoleSocket: o.consoleSocket,
        consoleRelay: Boolean(spec.process.terminal && !o.consoleSocket && o.wait),
        noPivot: o.noPivot ?? false,
        noNewKeyring: o.noNewKeyring ?? false,
        preserveFds: o.preserveFds ?? 0,
        wait: o.wait ?? false,
      });
      reserved = true;
      cg = prepared.cgroup;
      const { record: rec, plan } = prepared;
      const handle = await startExecutor(plan, {
        preserveFds: o.preserveFds ?? 0,
        onMessage: (m) => {
          if (m.type === 'pid') pid = rec.pid = m.pid;
          else this.log.debug('executor', m as unknown as Record<string, unknown>);
        },
        onHook: async () => {
          const st = hookState(rec, 'creating');
          await runHooks('prestart', spec.hooks?.prestart, st);
          await runHooks('createRuntime', spec.hooks?.createRuntime, st);
          return st;
        },
      });
      pid = rec.pid = handle.pid;
      rec.pidStartTime = startTimeOf(pid);
      this.store.save(rec);
      if (o.pidFile) writeFileAtomic(resolve(o.pidFile), String(pid), 0o644, { durable: false });
      const created: Created = { record: rec };
      if (o.wait) {
        created.exited = handle.exited;
        if (handle.executor.pid !== undefined) created.executorPid = handle.executor.pid;
      }
      return created;
    } catch (e) {
      if (pid > 0) {
        try { process.kill(pid, SIGKILL); } catch { /* already gone */ }
        await waitGone(pid, undefined, 2000);
      }
      if (cg) await cg.destroy().catch(() => undefined);
      if (reserved) this.store.remove(id);
      throw e;
    }
  }

  async start(id: string): Promise<void> {
    const rec = this.load(id);
    assertCan('start', await this.status(rec), id);
    const fifo = this.store.fifoPath(id);
    let fd: number;
    try {
      fd = openSync(fifo, fsc.O_RDONLY | fsc.O_NONBLOCK);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') throw failedPrecondition('cannot start an already running container');
      throw e;
    }
    try {
      await readFifo(fd, rec);
    } catch (e) {
      // A failed start (a startContainer hook, the exec itself): the init process is on its way
      // out; the error is reported once it is gone, so that the container reads as stopped.
      if (!(await waitGone(rec.pid, rec.pidStartTime, 2_000))) {
        try { process.kill(rec.pid, SIGKILL); } catch { /* gone */ }
        await waitGone(rec.pid, rec.pidStartTime, 5_000);
      }
      throw e;
    } finally {
      closeSync(fd);
    }
    try { unlinkSync(fifo); } catch { /* another start won */ }
    rec.started = true;
    this.store.save(rec);
    try {
      await runHooks('poststart', rec.config.hooks?.poststart, hookState(rec, 'running'));
    } catch (e) {
      this.log.warn((e as Error).message);
    }
  }

  async kill(id: string, signal: number, all: boolean): Promise<void> {
    const rec = this.load(id);
    assertCan('kill', await this.status(rec), id);
    if (all) return (await this.cgroupOf(rec)).killAll(signal);
    try {
      process.kill(rec.pid, signal);
    } catch (e) {
      if (errnoCode(e) === 'ESRCH') throw failedPrecondition('container not running');
      throw e;
    }
  }

  async delete(id: string, force: boolean): Promise<void> {
    validateContainerId(id);
    if (!this.store.exists(id)) {
      if (force) { this.store.remove(id); return; }
      throw notFound('container does not exist');
    }
    const rec = this.store.load(id);
    const status = await this.status(rec);
    if (!force) assertCan('delete', status, id);
    const cg = await this.cgroupOf(rec);
    if (status !== 'stopped') {
      await cg.killAll(SIGKILL).catch(() => undefined);
      try { process.kill(rec.pid, SIGKILL); } catch { /* gone */ }
      if (status === 'paused') await cg.thaw().catch(() => undefined);
      if (!(await waitGone(rec.pid, rec.pidStartTime, 10_000))) {
        throw failedPrecondition(`container ${id} did not stop after SIGKILL`);
      }
    }
    await cg.destroy();
    this.store.remove(id);
    try {
      await runHooks('poststop', rec.config.hooks?.poststop, hookState(rec, 'stopped'));
    } catch (e) {
      this.log.warn((e as Error).message);
    }
  }

  async exec(id: string, proc: Process, o: ExecOptions): Promise<{ pid: number; exited?: Promise<number> }> {
    const rec = this.load(id);
    const status = await this.status(rec);
    if (!(status === 'paused' && o.ignorePaused)) assertCan('exec', status, id);
    if (proc.terminal && o.detach && !o.consoleSocket) {
      throw invalid('cannot allocate tty if runc will detach without setting console socket');
    }
    if (!proc.terminal && o.consoleSocket) {
      throw invalid('cannot use console socket if runc will not detach or allocate tty');
    }
    const cg = await this.cgroupOf(rec);
    const plan = planExec(proc, {
      containerPid: rec.pid,
      containerId: id,
      namespaces: rec.namespaces,
      config: rec.config,
      cgroupProcsFiles: cg.procsFiles(),
      consoleSocket: o.consoleSocket,
      consoleRelay: Boolean(proc.terminal && !o.consoleSocket && !o.detach),
      preserveFds: o.preserveFds ?? 0,
      wait: !o.detach,
      apparmorEnabled: apparmorEnabled(),
      selinuxEnabled: selinuxEnabled(),
    });
    const handle = await startExecutor(plan, {
      preserveFds: o.preserveFds ?? 0,
      onMessage: (m) => this.log.debug('executor', m as unknown as Record<string, unknown>),
    });
    if (o.pidFile) writeFileAtomic(resolve(o.pidFile), String(handle.pid), 0o644, { durable: false });
    return o.detach ? { pid: handle.pid } : { pid: handle.pid, exited: handle.exited };
  }

  async pause(id: string): Promise<void> {
    const rec = this.load(id);
    assertCan('pause', await this.status(rec), id);
    await (await this.cgroupOf(rec)).freeze();
  }

  async resume(id: string): Promise<void> {
    const rec = this.load(id);
    assertCan('resume', await this.status(rec), id);
    await (await this.cgroupOf(rec)).thaw();
  }

  async pids(id: string): Promise<number[]> {
    const rec = this.load(id);
    assertCan('ps', await this.status(rec), id);
    return (await this.cgroupOf(rec)).pids();
  }

  async stats(id: string): Promise<unknown> {
    const rec = this.load(id);
    assertCan('events', await this.status(rec), id);
    return (await this.cgroupOf(rec)).stats();
  }

  /** How many processes the OOM killer has killed in the container's cgroup. */
  async oomCount(id: string): Promise<number> {
    return (await this.cgroupOf(this.load(id))).oomCount();
  }

  async update(id: string, resources: LinuxResources): Promise<void> {
    const rec = this.load(id);
    assertCan('update', await this.status(rec), id);
    await (await this.cgroupOf(rec)).apply(resources);
    const linux = rec.config.linux ?? {};
    linux.resources = mergeResources(linux.resources ?? {}, resources);
    rec.config.linux = linux;
    this.store.save(rec);
  }
}

/**
 * Read the exec fifo to its end. The container's process writes "0" when
 * start opens the fifo, and keeps the write end open until execve: a clean
 * EOF after the "0" means the process runs; any text after it is the failure
 * that stopped it (a startContainer hook, execve itself).
 */
async function readFifo(fd: number, rec: ContainerRecord): Promise<void> {
  const buf = Buffer.alloc(4096);
  const got: Buffer[] = [];
  let started = false;
  let delay = 1;
  for (;;) {
    let n = -1;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch (e) {
      if (errnoCode(e) !== 'EAGAIN') throw e;
    }
    if (n > 0) {
      got.push(Buffer.from(buf.subarray(0, n)));
      started = true;
      delay = 1;
      continue;
    }
    if (n === 0 && started) break; // the writer closed: exec happened or it failed
    if (n === 0 && !processAlive(rec.pid, rec.pidStartTime)) {
      throw failedPrecondition('cannot start a container that has stopped');
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 20);
  }
  const text = Buffer.concat(got).toString('utf8');
  if (text !== '0') {
    throw failedPrecondition(`unable to start container process: ${text.startsWith('0') ? text.slice(1) : text}`);
  }
}

function readBundleSpec(bundle: string): Spec {
  const path = join(bundle, 'config.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') throw notFound(`JSON specification file ${path} not found`);
    throw invalid(`open ${path}: ${(e as Error).message}`, e);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw invalid(`${path}: invalid JSON: ${(e as Error).message}`, e);
  }
  try {
    return parseSpec(json);
  } catch (e) {
    if (e instanceof BerthError) throw invalid(`${path}: ${e.message}`, e);
    throw e;
  }
}

function isDir(p: string): boolean {
  try { return statSync(p).isDirectory(); } catch { return false; }
}

function ownerOf(path: string): string {
  try {
    const uid = statSync(path).uid;
    if (uid === 0) return 'root';
    const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.split(':')[2] === String(uid));
    return line?.split(':')[0] ?? '#' + uid;
  } catch {
    return '';
  }
}

function mergeResources(base: LinuxResources, upd: LinuxResources): LinuxResources {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(upd)) {
    if (v === undefined) continue;
    const prev = out[k];
    out[k] = prev && typeof prev === 'object' && !Array.isArray(prev) && typeof v === 'object' && !Array.isArray(v)
      ? { ...(prev as object), ...(v as object) }
      : v;
  }
  return out as LinuxResources;
}
