/**
 * The tasks of every namespace: one berth-shim per task, the supervisor's
 * view of each process (kept current from the shim's events, so reads never
 * wait on a shim), and the task events. On start, every shim left in
 * <state>/shims/<ns>/<id>/ is reconnected and the exits that happened while
 * the supervisor was away are collected and published.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '@berth/base';
import {
  BerthError, ErrorKind, alreadyExists, failedPrecondition, invalid, notFound, notImplemented, unavailable, writeFileAtomic,
} from '@berth/base';
import { hostCgroupLayout, resolveCgroupPaths, warmCgroupMigration } from '@berth/cgroups';
import type { CgroupManager, CgroupPaths, CgroupStats } from '@berth/cgroups';
import { openCgroup } from '@berth/runtime';
import { parseProcess, parseResources, parseSpec } from '@berth/spec';
import type { Spec } from '@berth/spec';
import type { EventExchange } from '../events/exchange.js';
import type { MetadataStore } from '../metadata/store.js';
import type { Protos } from '../protos.js';
import { now, validateIdentifier } from '../wire.js';
import type { AnyMessage, Timestamp } from '../wire.js';
import {
  loadTaskRecord, mountRootfs, prepareStdio, runcOptions, saveTaskRecord, shimStdio, bundlesDir, stdioArgs, taskPaths, unmountRootfs, writeBundle,
} from './bundle.js';
import type { ExecRecord, Mount, Stdio, TaskRecord } from './bundle.js';
import { cleanupFast, hasHooks, liveInitPid, prepareFastCreate, recordCreated, recordStarted, shimCgroupDir, writeExecPlan } from './fastpath.js';
import type { FastCreate } from './fastpath.js';
import { ShimClient, parseShimTime, startShim } from './shim.js';
import type { ShimEvent, ShimMessage } from './shim.js';
import { assertTask } from './state.js';
import type { TaskStatus } from './state.js';

const run = promisify(execFile);

export interface Binaries {
  readonly shim: string;
  readonly executor: string;
  readonly berthRunc: string;
}

export interface TaskManagerOptions {
  readonly state: string;
  readonly protos: Protos;
  readonly events: EventExchange;
  readonly store: MetadataStore;
  readonly log: Logger;
  readonly binaries: Binaries;
}

export interface CreateTask {
  containerId: string;
  rootfs: Mount[];
  io: Stdio;
  checkpoint: boolean;
  options: AnyMessage | undefined;
}

/** A process as the supervisor sees it. */
export interface ProcView {
  containerId: string;
  execId: string;
  pid: number;
  status: TaskStatus;
  io: Stdio;
  exitStatus: number;
  exitedAt: Timestamp | undefined;
}

export interface ExitInfo {
  pid: number;
  exitStatus: number;
  exitedAt: Timestamp | undefined;
}

class Proc {
  pid = 0;
  status: 'CREATED' | 'RUNNING' | 'STOPPED' = 'CREATED';
  exitCode = 0;
  exitedAt: Timestamp | undefined;
  readonly exited: Promise<void>;
  private done!: () => void;

  constructor(readonly execId: string, readonly io: Stdio) {
    this.exited = new Promise((resolve) => { this.done = resolve; });
  }

  /** Record the exit once; false if it was already known. */
  exit(code: number, at: Timestamp | undefined, pid?: number): boolean {
    if (this.status === 'STOPPED') return false;
    this.status = 'STOPPED';
    this.exitCode = code;
    this.exitedAt = at ?? now();
    if (pid !== undefined && pid > 0) this.pid = pid;
    this.done();
    return true;
  }
}

class Task {
  shim: ShimClient | undefined;
  readonly init: Proc;
  readonly execs = new Map<string, Proc>();
  deleting = false;

  constructor(readonly rec: TaskRecord) {
    this.init = new Proc('', rec.io);
  }

  get status(): TaskStatus {
    if (this.init.status === 'RUNNING' && this.rec.paused) return 'PAUSED';
    return this.init.status;
  }

  proc(execId: string): Proc {
    if (execId === '') return this.init;
    const p = this.execs.get(execId);
    if (p === undefined) throw notFound(`process ${execId} does not exist`);
    return p;
  }

  connected(): ShimClient {
    if (this.shim === undefined || !this.shim.alive) {
      throw unavailable(`the shim of task ${this.rec.id} is not reachable (${this.rec.shimDir})`);
    }
    return this.shim;
  }
}

function num(m: ShimMessage, key: string): number {
  const v = m[key];
  return typeof v === 'number' ? v : 0;
}

function statusFromShim(s: unknown): 'CREATED' | 'RUNNING' | 'STOPPED' {
  if (s === 'running') return 'RUNNING';
  if (s === 'created' || s === 'creating') return 'CREATED';
  return 'STOPPED';
}

function readExitFile(path: string): { pid: number; code: number; at: Timestamp | undefined } | undefined {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    return {
      pid: typeof v['pid'] === 'number' ? v['pid'] : 0,
      code: typeof v['exit_code'] === 'number' ? v['exit_code'] : 255,
      at: parseShimTime(v['exited_at']),
    };
  } catch {
    return undefined;
  }
}

function specFrom(any: AnyMessage, id: string): { spec: Spec; json: Buffer } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(any.value.toString('utf8'));
  } catch (e) {
    throw invalid(`container ${id}: its spec is not JSON: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  return { spec: parseSpec(parsed), json: any.value };
}

export class TaskManager {
  private readonly tasks = new Map<string, Task>();
  private readonly reserved = new Set<string>();
  private readonly restoredExits: { t: Task; p: Proc }[] = [];
  private closed = false;

  constructor(private readonly o: TaskManagerOptions) {}

  private key(ns: string, id: string): string {
    return `${ns}/${id}`;
  }

  private get(ns: string, id: string): Task {
    const t = this.tasks.get(this.key(ns, id));
    if (t === undefined) throw notFound(`no running task found: task ${id} not found`);
    return t;
  }

  // ---- events ----

  private publish(ns: string, topic: string, type: string, payload: Record<string, unknown>): void {
    try {
      this.o.events.publish(ns, topic, `containerd.events.${type}`, payload);
    } catch (e) {
      this.o.log.warn('publishing task event', { topic, error: e instanceof Error ? e.message : String(e) });
    }
  }

  private publishExit(t: Task, p: Proc): void {
    this.publish(t.rec.namespace, '/tasks/exit', 'TaskExit', {
      container_id: t.rec.id, id: p.execId === '' ? t.rec.id : p.execId, pid: p.pid, exit_status: p.exitCode, exited_at: p.exitedAt ?? null,
    });
    if (p.execId === '' && !t.rec.exitPublished) {
      t.rec.exitPublished = true;
      t.rec.paused = false;
      this.save(t);
    }
  }

  private save(t: Task): void {
    try {
      if (existsSync(t.rec.bundle)) saveTaskRecord(t.rec);
    } catch (e) {
      this.o.log.warn('saving task record', { id: t.rec.id, error: e instanceof Error ? e.message : String(e) });
    }
  }

  private onShimEvent(t: Task, e: ShimEvent): void {
    switch (e.event) {
      case 'exit': {
        const p = e.execId === '' ? t.init : t.execs.get(e.execId);
        if (p === undefined) return;
        if (p.exit(e.exitCode, e.exitedAt, e.pid)) this.publishExit(t, p);
        return;
      }
      case 'exec_started': {
        const p = t.execs.get(e.execId);
        if (p !== undefined && e.pid > 0) p.pid = e.pid;
        this.publish(t.rec.namespace, '/tasks/exec-started', 'TaskExecStarted', { container_id: t.rec.id, exec_id: e.execId, pid: e.pid });
        return;
      }
      case 'oom':
        this.publish(t.rec.namespace, '/tasks/oom', 'TaskOOM', { container_id: t.rec.id });
        return;
      default:
        return;
    }
  }

  private async attach(t: Task, shim: ShimClient): Promise<void> {
    t.shim = shim;
    await shim.subscribe((e) => this.onShimEvent(t, e), () => {
      if (t.shim === shim) t.shim = undefined;
      if (!t.deleting && !this.closed) this.o.log.warn('lost the connection to a shim', { id: t.rec.id, dir: t.rec.shimDir });
    });
  }

  // ---- create ----

  async create(ns: string, req: CreateTask): Promise<{ pid: number }> {
    const id = req.containerId;
    validateIdentifier(id);
    if (req.checkpoint) throw notImplemented('checkpoint is not supported');
    const key = this.key(ns, id);
    if (this.tasks.has(key) || this.reserved.has(key)) throw alreadyExists(`task ${id}`);
    const container = this.o.store.getContainer(ns, id);
    this.reserved.add(key);
    try {
      return await this.createReserved(ns, id, req, container.runtime.name, container.runtime.options, container.spec);
    } finally {
      this.reserved.delete(key);
    }
  }

  private async createReserved(ns: string, id: string, req: CreateTask, runtimeName: string,
    runtimeOptions: AnyMessage | undefined, specAny: AnyMessage): Promise<{ pid: number }> {
    const { spec, json } = specFrom(specAny, id);
    const opts = runcOptions(this.o.protos, runtimeName, runtimeOptions, req.options);
    const paths = taskPaths(this.o.state, ns, id);
    if (existsSync(join(paths.shimDir, 'control.sock'))) throw alreadyExists(`task ${id}`);
    const stdio = shimStdio(req.io, { kind: 'init' });
    const terminal = req.io.terminal;

    let mode: TaskRecord['mode'] = 'fast';
    let runtime: TaskRecord['runtime'];
    if (opts.binaryName !== '' || hasHooks(spec)) {
      mode = 'runtime';
      runtime = {
        binary: opts.binaryName !== '' ? opts.binaryName : this.o.binaries.berthRunc,
        args: opts.systemdCgroup ? ['--systemd-cgroup'] : [],
        root: opts.root !== '' ? opts.root : paths.runcRoot,
      };
    }

    writeBundle(paths.bundle, json);
    let mounted = 0;
    let fast: FastCreate | undefined;
    let shimStarted = false;
    let shim: ShimClient | undefined;
    const rec: TaskRecord = {
      version: 1,
      namespace: ns,
      id,
      bundle: paths.bundle,
      shimDir: paths.shimDir,
      mode,
      runtime,
      runcRoot: paths.runcRoot,
      cgroup: undefined,
      rootfsMounts: 0,
      rootfsMountList: req.rootfs,
      io: req.io,
      paused: false,
      execs: {},
      exitPublished: false,
      createdAt: now(),
    };
    try {
      mounted = mountRootfs(join(paths.bundle, 'rootfs'), req.rootfs);
      rec.rootfsMounts = mounted;
      mkdirSync(paths.shimDir, { recursive: true, mode: 0o700 });
      prepareStdio(stdio);
      const args = ['--id', id, '--namespace', ns, '--bundle', paths.bundle, '--state-dir', paths.shimDir];
      if (mode === 'fast') {
        fast = await prepareFastCreate(spec, {
          id, bundle: paths.bundle, shimDir: paths.shimDir, runcRoot: paths.runcRoot,
          terminal: terminal && spec.process?.terminal === true, noPivot: opts.noPivotRoot, noNewKeyring: opts.noNewKeyring,
        });
        rec.cgroup = fast.cgroup.paths;
        args.push('--executor', this.o.binaries.executor, '--plan', fast.planFile, '--exec-fifo', fast.execFifo);
      } else if (runtime !== undefined) {
        rec.cgroup = opts.systemdCgroup ? undefined : await this.cgroupPathsOf(spec, id);
        args.push('--runtime', runtime.binary);
        for (const a of runtime.args) args.push('--runtime-arg', a);
        args.push('--runtime-root', runtime.root);
      }
      // The container joins its cgroup in a few milliseconds: let the kernel's
      // migration lock warm up meanwhile (after our own cgroup writes, which it would hold up).
      void warmCgroupMigration();
      const cgDir = rec.cgroup === undefined ? undefined : shimCgroupDir(rec.cgroup);
      if (cgDir !== undefined) args.push('--cgroup', cgDir);
      if (terminal) args.push('--terminal');
      args.push(...stdioArgs(stdio));
      saveTaskRecord(rec);

      await startShim(this.o.binaries.shim, args, paths.shimDir);
      shimStarted = true;
      shim = await ShimClient.connect(paths.shimDir);
      const t = new Task(rec);
      await this.attach(t, shim);
      let created: ShimMessage;
      try {
        created = await shim.request('create');
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        throw failedPrecondition(`failed to create task ${id}: ${msg}`, e);
      }
      const pid = num(created, 'pid');
      t.init.pid = pid;
      if (fast !== undefined) recordCreated(fast, pid);
      this.tasks.set(this.key(ns, id), t);
      this.publish(ns, '/tasks/create', 'TaskCreate', {
        container_id: id,
        bundle: paths.bundle,
        rootfs: req.rootfs,
        io: { stdin: req.io.stdin, stdout: req.io.stdout, stderr: req.io.stderr, terminal },
        checkpoint: '',
        pid,
      });
      return { pid };
    } catch (e) {
      if (shim !== undefined) {
        await shim.request('delete').catch(() => undefined);
        shim.close();
      } else if (shimStarted) {
        this.killShim(paths.shimDir);
      }
      if (fast !== undefined) await cleanupFast(paths.runcRoot, id, fast.cgroup.paths).catch(() => undefined);
      try { unmountRootfs(join(paths.bundle, 'rootfs'), mounted); } catch { /* reported by the original error */ }
      rmSync(paths.bundle, { recursive: true, force: true });
      rmSync(paths.shimDir, { recursive: true, force: true });
      throw e;
    }
  }

  private async cgroupPathsOf(spec: Spec, id: string): Promise<CgroupPaths | undefined> {
    try {
      const layout = await hostCgroupLayout();
      const p = spec.linux?.cgroupsPath;
      return resolveCgroupPaths(layout, p !== undefined && p !== '' ? { cgroupsPath: p, containerId: id } : { containerId: id });
    } catch {
      return undefined;
    }
  }

  /** A shim that started but cannot be talked to: end it by the pid it wrote. */
  private killShim(shimDir: string): void {
    try {
      const pid = Number(readFileSync(join(shimDir, 'shim.pid'), 'utf8'));
      if (Number.isInteger(pid) && pid > 1) process.kill(pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }

  // ---- lifecycle ----

  async start(ns: string, id: string, execId: string): Promise<{ pid: number }> {
    const t = this.get(ns, id);
    const p = t.proc(execId);
    if (execId === '') assertTask('start', t.status);
    else assertTask('start', p.status, 'process');
    let r: ShimMessage;
    try {
      r = await t.connected().request('start', { exec_id: execId });
    } catch (e) {
      // An exec that failed to start is over: its waiters learn it.
      if (execId !== '' && !(e instanceof BerthError && e.kind === ErrorKind.Unavailable)) p.exit(255, now());
      throw e;
    }
    const pid = num(r, 'pid');
    p.pid = pid;
    if (p.status === 'CREATED') p.status = 'RUNNING';
    if (execId === '') {
      if (t.rec.mode === 'fast') {
        try { recordStarted(t.rec.runcRoot, id); } catch (e) { this.o.log.warn('state.json', { id, error: String(e) }); }
      }
      this.publish(ns, '/tasks/start', 'TaskStart', { container_id: id, pid });
    }
    return { pid };
  }

  async delete(ns: string, id: string): Promise<ExitInfo> {
    const t = this.get(ns, id);
    assertTask('delete', t.status);
    if (t.deleting) throw failedPrecondition(`task ${id} is being deleted`);
    t.deleting = true;
    try {
      let pid = t.init.pid;
      if (t.shim !== undefined && t.shim.alive) {
        try {
          const r = await t.shim.request('delete');
          if (typeof r['exit_code'] === 'number') t.init.exit(r['exit_code'], parseShimTime(r['exited_at']), num(r, 'pid'));
          pid = num(r, 'pid') || pid;
        } catch (e) {
          // The shim ends right after answering a delete: a lost connection then is success.
          if (!(e instanceof BerthError && e.kind === ErrorKind.Unavailable)) throw e;
        }
        t.shim?.close();
      } else {
        await this.cleanupWithoutShim(t);
      }
      if (t.init.status !== 'STOPPED') t.init.exit(137, now());
      for (const p of t.execs.values()) p.exit(137, now());
      if (t.rec.mode === 'fast') await cleanupFast(t.rec.runcRoot, id, t.rec.cgroup);
      unmountRootfs(join(t.rec.bundle, 'rootfs'), t.rec.rootfsMounts);
      rmSync(t.rec.bundle, { recursive: true, force: true });
      rmSync(t.rec.shimDir, { recursive: true, force: true });
      this.tasks.delete(this.key(ns, id));
      const exit: ExitInfo = { pid, exitStatus: t.init.exitCode, exitedAt: t.init.exitedAt };
      this.publish(ns, '/tasks/delete', 'TaskDelete', {
        container_id: id, pid, exit_status: exit.exitStatus, exited_at: exit.exitedAt ?? null, id,
      });
      return exit;
    } catch (e) {
      t.deleting = false;
      throw e;
    }
  }

  /** The shim is gone: make sure the container is too (runtime delete, or its init pid). */
  private async cleanupWithoutShim(t: Task): Promise<void> {
    const rt = t.rec.runtime;
    if (rt !== undefined) {
      await run(rt.binary, [...rt.args, '--root', rt.root, 'delete', '--force', t.rec.id]).catch(() => undefined);
    } else {
      const pid = liveInitPid(t.rec.runcRoot, t.rec.id);
      if (pid !== undefined) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
  }

  async deleteProcess(ns: string, id: string, execId: string): Promise<ExitInfo> {
    const t = this.get(ns, id);
    if (execId === '') throw invalid('exec_id must be set to delete a process; delete the task instead');
    const p = t.proc(execId);
    assertTask('delete', p.status, 'process');
    const r = await t.connected().request('delete', { exec_id: execId });
    if (typeof r['exit_code'] === 'number') p.exit(r['exit_code'], parseShimTime(r['exited_at']), num(r, 'pid'));
    t.execs.delete(execId);
    delete t.rec.execs[execId];
    this.save(t);
    rmSync(join(t.rec.shimDir, `exec-${execId}.plan`), { force: true });
    rmSync(join(t.rec.shimDir, `exec-${execId}.process.json`), { force: true });
    return { pid: p.pid, exitStatus: p.exitCode, exitedAt: p.exitedAt };
  }

  view(ns: string, id: string, execId: string): ProcView {
    const t = this.get(ns, id);
    const p = t.proc(execId);
    return this.viewOf(t, p);
  }

  private viewOf(t: Task, p: Proc): ProcView {
    return {
      containerId: t.rec.id,
      execId: p.execId,
      pid: p.pid,
      status: p.execId === '' ? t.status : p.status,
      io: p.io,
      exitStatus: p.exitCode,
      exitedAt: p.status === 'STOPPED' ? p.exitedAt : undefined,
    };
  }

  list(ns: string): ProcView[] {
    const out: ProcView[] = [];
    for (const t of this.tasks.values()) if (t.rec.namespace === ns) out.push(this.viewOf(t, t.init));
    return out.sort((a, b) => a.containerId.localeCompare(b.containerId));
  }

  async kill(ns: string, id: string, execId: string, signal: number, all: boolean): Promise<void> {
    const t = this.get(ns, id);
    const p = t.proc(execId);
    if (p.status === 'STOPPED' && !all) throw notFound('process already finished');
    await t.connected().request('kill', { exec_id: execId, signal: signal === 0 ? 15 : signal, all });
  }

  async exec(ns: string, id: string, execId: string, io: Stdio, processSpec: AnyMessage | undefined): Promise<void> {
    const t = this.get(ns, id);
    try {
      validateIdentifier(execId);
    } catch (e) {
      throw invalid(`exec id: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    if (t.execs.has(execId)) throw alreadyExists(`id ${execId}`);
    assertTask('exec', t.status);
    if (processSpec === undefined) throw invalid('spec must be set: the process to execute');
    let json: unknown;
    try {
      json = JSON.parse(processSpec.value.toString('utf8'));
    } catch (e) {
      throw invalid(`exec spec is not JSON: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    const proc = parseProcess(json);
    proc.terminal = io.terminal;
    const stdio = shimStdio(io, { kind: 'exec', execId });
    const shim = t.connected();
    prepareStdio(stdio);
    let file: string;
    if (t.rec.mode === 'fast') {
      file = await writeExecPlan(t.rec.runcRoot, id, execId, proc, t.rec.shimDir);
    } else {
      file = join(t.rec.shimDir, `exec-${execId}.process.json`);
      writeFileAtomic(file, JSON.stringify(proc), 0o600, { durable: false });
    }
    await shim.request('exec', {
      exec_id: execId,
      [t.rec.mode === 'fast' ? 'plan' : 'process']: file,
      terminal: io.terminal,
      stdin: stdio.stdinFifo !== undefined || stdio.stdinOpen,
      stdin_fifo: stdio.stdinFifo,
      stdout_fifo: stdio.stdoutFifo,
      stderr_fifo: stdio.stderrFifo,
    });
    t.execs.set(execId, new Proc(execId, io));
    const er: ExecRecord = { ...io, file };
    t.rec.execs[execId] = er;
    this.save(t);
    this.publish(ns, '/tasks/exec-added', 'TaskExecAdded', { container_id: id, exec_id: execId });
  }

  async resize(ns: string, id: string, execId: string, width: number, height: number): Promise<void> {
    const t = this.get(ns, id);
    const p = t.proc(execId);
    const status = execId === '' ? t.status : p.status;
    assertTask('resize', status, execId === '' ? 'task' : 'process');
    // As containerd: resizing the terminal of a process that has exited does nothing.
    if (status === 'STOPPED') return;
    await t.connected().request('resize', { exec_id: execId, rows: height, cols: width });
  }

  async closeIO(ns: string, id: string, execId: string, stdin: boolean): Promise<void> {
    const t = this.get(ns, id);
    t.proc(execId);
    if (stdin) await t.connected().request('close_stdin', { exec_id: execId });
  }

  private async runtimeCommand(t: Task, command: string): Promise<void> {
    const rt = t.rec.runtime;
    if (rt === undefined) throw failedPrecondition(`task ${t.rec.id} has no runtime to ${command} it`);
    try {
      await run(rt.binary, [...rt.args, '--root', rt.root, command, t.rec.id], { timeout: 30_000 });
    } catch (e) {
      const stderr = typeof e === 'object' && e !== null && 'stderr' in e ? String((e as { stderr: unknown }).stderr).trim() : '';
      throw failedPrecondition(`${rt.binary} ${command} ${t.rec.id}: ${stderr || (e instanceof Error ? e.message : String(e))}`, e);
    }
  }

  private async cgroupOf(t: Task): Promise<CgroupManager> {
    if (t.rec.cgroup === undefined) throw failedPrecondition(`task ${t.rec.id}: its cgroup is not known (systemd cgroups)`);
    return openCgroup(t.rec.cgroup);
  }

  async pause(ns: string, id: string): Promise<void> {
    const t = this.get(ns, id);
    assertTask('pause', t.status);
    if (t.rec.mode === 'fast') await (await this.cgroupOf(t)).freeze();
    else await this.runtimeCommand(t, 'pause');
    t.rec.paused = true;
    this.save(t);
    this.publish(ns, '/tasks/paused', 'TaskPaused', { container_id: id });
  }

  async resume(ns: string, id: string): Promise<void> {
    const t = this.get(ns, id);
    assertTask('resume', t.status);
    if (t.rec.mode === 'fast') await (await this.cgroupOf(t)).thaw();
    else await this.runtimeCommand(t, 'resume');
    t.rec.paused = false;
    this.save(t);
    this.publish(ns, '/tasks/resumed', 'TaskResumed', { container_id: id });
  }

  /** Every pid in the task's cgroup, with the exec id of those that are exec processes. */
  async pids(ns: string, id: string): Promise<{ pid: number; execId: string }[]> {
    const t = this.get(ns, id);
    if (t.status === 'STOPPED') return [];
    const pids = await (await this.cgroupOf(t)).pids();
    const execOf = new Map<number, string>();
    for (const p of t.execs.values()) if (p.status === 'RUNNING' && p.pid > 0) execOf.set(p.pid, p.execId);
    return pids.map((pid) => ({ pid, execId: execOf.get(pid) ?? '' }));
  }

  async update(ns: string, id: string, resources: AnyMessage | undefined): Promise<void> {
    const t = this.get(ns, id);
    assertTask('update', t.status);
    if (resources === undefined) return;
    let json: unknown;
    try {
      json = JSON.parse(resources.value.toString('utf8'));
    } catch (e) {
      throw invalid(`resources are not JSON: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    await (await this.cgroupOf(t)).apply(parseResources(json, 'resources'));
  }

  async stats(ns: string, id: string): Promise<CgroupStats> {
    const t = this.get(ns, id);
    return (await this.cgroupOf(t)).stats();
  }

  async wait(ns: string, id: string, execId: string, signal: AbortSignal): Promise<ExitInfo> {
    const t = this.get(ns, id);
    const p = t.proc(execId);
    if (p.status !== 'STOPPED') {
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => reject(new BerthError(ErrorKind.Canceled, 'wait: the client went away'));
        if (signal.aborted) { onAbort(); return; }
        signal.addEventListener('abort', onAbort, { once: true });
        void p.exited.then(() => { signal.removeEventListener('abort', onAbort); resolve(); });
      });
    }
    return { pid: p.pid, exitStatus: p.exitCode, exitedAt: p.exitedAt };
  }

  // ---- restart ----

  /** Take back every task whose bundle (and so shim directory) is left from a previous run. */
  async restore(): Promise<void> {
    const root = bundlesDir(this.o.state);
    let namespaces: string[];
    try {
      namespaces = readdirSync(root);
    } catch {
      return;
    }
    const jobs: Promise<void>[] = [];
    for (const ns of namespaces) {
      let ids: string[];
      try {
        ids = readdirSync(join(root, ns));
      } catch {
        continue;
      }
      for (const id of ids) {
        if (existsSync(join(taskPaths(this.o.state, ns, id).shimDir))) jobs.push(this.restoreOne(ns, id));
      }
    }
    await Promise.all(jobs);
  }

  private async restoreOne(ns: string, id: string): Promise<void> {
    const paths = taskPaths(this.o.state, ns, id);
    let rec: TaskRecord | undefined;
    try {
      rec = loadTaskRecord(paths.bundle);
    } catch (e) {
      this.o.log.warn('unreadable task record', { ns, id, error: e instanceof Error ? e.message : String(e) });
    }
    if (rec === undefined) {
      this.o.log.warn('shim directory without a task record; left alone', { dir: paths.shimDir });
      return;
    }
    const t = new Task(rec);
    for (const [execId, er] of Object.entries(rec.execs)) t.execs.set(execId, new Proc(execId, er));
    this.tasks.set(this.key(ns, id), t);
    let shim: ShimClient | undefined;
    try {
      shim = await ShimClient.connect(paths.shimDir);
      await this.attach(t, shim);
    } catch (e) {
      this.o.log.warn('the shim of a task is gone', { ns, id, error: e instanceof Error ? e.message : String(e) });
      shim = undefined;
    }
    if (shim === undefined) {
      const ex = readExitFile(join(paths.shimDir, 'exit'));
      t.init.status = 'RUNNING';
      if (ex !== undefined) t.init.exit(ex.code, ex.at, ex.pid);
      else t.init.exit(255, now());
      for (const p of t.execs.values()) p.exit(255, now());
    } else {
      for (const p of [t.init, ...t.execs.values()]) {
        try {
          const st = await shim.request('state', { exec_id: p.execId });
          p.pid = num(st, 'pid');
          const status = statusFromShim(st['status']);
          if (status === 'STOPPED') {
            p.status = 'RUNNING';
            p.exit(typeof st['exit_code'] === 'number' ? st['exit_code'] : 255, parseShimTime(st['exited_at']));
            if (p.execId !== '') this.restoredExits.push({ t, p });
          } else if (p.status !== 'STOPPED') {
            p.status = status;
          }
        } catch (e) {
          if (p.execId !== '') {
            t.execs.delete(p.execId);
            delete t.rec.execs[p.execId];
          }
          this.o.log.warn('process state from the shim', { ns, id, exec: p.execId, error: e instanceof Error ? e.message : String(e) });
        }
      }
    }
    if (t.init.status === 'STOPPED' && !rec.exitPublished) this.restoredExits.push({ t, p: t.init });
    this.o.log.info('task restored', { ns, id, status: t.status, pid: t.init.pid });
  }

  /**
   * Publish /tasks/exit for the exits that happened while the supervisor was
   * away. Called a little after start, once clients have had the chance to
   * subscribe again (Wait, Get and List know these exits from the start).
   */
  publishRestoredExits(): void {
    for (const { t, p } of this.restoredExits.splice(0)) {
      if (this.tasks.get(this.key(t.rec.namespace, t.rec.id)) !== t) continue;
      if (p.execId === '' && t.rec.exitPublished) continue;
      this.publishExit(t, p);
    }
  }

  /** Let go of the shims; the containers keep running. */
  close(): void {
    this.closed = true;
    for (const t of this.tasks.values()) t.shim?.close();
  }
}
