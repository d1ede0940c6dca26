/**
 * Containers: Docker's container model on top of the supervisor.
 *
 *   create   record (SQLite) + rootfs snapshot prepared on the image's chain ID
 *            + the supervisor's container (spec rewritten at each start)
 *   start    spec from the config → Tasks.Create (the shim writes the
 *            json-file log) → pending attaches join at the shim → Tasks.Start
 *   exit     the supervisor's /tasks/exit event → Tasks.Delete, state, waiters,
 *            restart policy or auto-remove
 *   remove   task, supervisor container, snapshot, directory, record
 *
 * Reads (list, inspect) come from memory and never wait on a shim or a lock.
 * Transitions of one container are serialised; waiting for an exit is not
 * done under that lock.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { BerthError, ErrorKind, failedPrecondition, invalid, isKind, notFound } from '@berth/base';
import type { Spec } from '@berth/spec';
import { SERVICES, shimDirFor } from '@berth/supervisor';
import type { Engine } from '../engine.js';
import { SNAPSHOTTER } from '../engine.js';
import { HttpStatus, conflict } from '../server/errors.js';
import type { EngineStore } from '../store.js';
import { connectShim, parseDetachKeys, relay } from './attach.js';
import type { AttachStreams } from './attach.js';
import { MIN_MEMORY, mergeImageConfig, networkMode, parseCreateBody, parseHostConfig } from './config.js';
import type { EndpointSettings, HostConfig, NetworkingConfig } from './config.js';
import { readRootfsFile } from './layered.js';
import type { RootfsMount } from './layered.js';
import { VALID_NAME, randomName } from './names.js';
import { ZERO_TIME, initialState, rfc3339Nano } from './record.js';
import type { ContainerRecord } from './record.js';
import { execProcess, prepareStart } from './start.js';
import type { ExecOptions } from './start.js';
import type { EngineHooks, NetworkAttachment } from './hooks.js';
import { buildResources } from './spec.js';

const SPEC_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';
const PROCESS_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/Process';

export type WaitCondition = 'not-running' | 'next-exit' | 'removed';

interface Waiter {
  readonly condition: WaitCondition;
  resolve(r: { StatusCode: number; Error: { Message: string } | null }): void;
}

interface PendingAttach {
  readonly streams: AttachStreams;
  readonly client: Duplex;
  readonly head: Buffer;
  readonly detachKeys: Buffer | undefined;
  readonly done: (how: string) => void;
}

interface Run {
  /** Resolves when the exit has been fully handled. */
  readonly exited: Promise<void>;
  resolve(): void;
  startedAtMs: number;
}

export interface ExecRecord {
  ID: string;
  ContainerID: string;
  Running: boolean;
  ExitCode: number | null;
  Pid: number;
  OpenStdin: boolean;
  OpenStderr: boolean;
  OpenStdout: boolean;
  CanRemove: boolean;
  DetachKeys: string;
  ProcessConfig: { tty: boolean; entrypoint: string; arguments: string[]; privileged: boolean; user: string };
  berth: { env: string[]; workingDir: string; stdinOnce: boolean; started: boolean; exited: Promise<void>; resolve: () => void; consoleSize?: { height: number; width: number }; resizePending?: boolean };
}

export class ContainerService {
  private readonly byId = new Map<string, ContainerRecord>();
  private readonly names = new Map<string, string>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly pending = new Map<string, PendingAttach[]>();
  private readonly runs = new Map<string, Run>();
  private readonly oom = new Set<string>();
  readonly execs = new Map<string, ExecRecord>();
  private readonly restartTimers = new Map<string, NodeJS.Timeout>();
  private closing = false;

  /** Networking and volumes, set by the daemon before it serves. */
  hooks: EngineHooks = {};

  constructor(private readonly engine: Engine, private readonly store: EngineStore) {
    for (const c of store.loadContainers<ContainerRecord>()) {
      this.byId.set(c.Id, c);
      this.names.set(c.Name.slice(1), c.Id);
    }
  }

  get client() {
    return this.engine.client;
  }

  containerDir(id: string): string {
    return join(this.engine.paths.dataRoot, 'containers', id);
  }

  /** All containers (a snapshot of the list). */
  all(): ContainerRecord[] {
    return [...this.byId.values()];
  }

  /** By name, full ID or unique ID prefix; Docker's 404 otherwise. */
  find(ref: string): ContainerRecord {
    const r = ref.startsWith('/') ? ref.slice(1) : ref;
    const byName = this.names.get(r);
    if (byName !== undefined) {
      const c = this.byId.get(byName);
      if (c !== undefined) return c;
    }
    const exact = this.byId.get(r);
    if (exact !== undefined) return exact;
    if (r !== '' && /^[0-9a-f]+$/.test(r)) {
      const hits = [...this.byId.keys()].filter((id) => id.startsWith(r));
      if (hits.length === 1) return this.byId.get(hits[0] ?? '') as ContainerRecord;
      if (hits.length > 1) throw invalid(`multiple IDs found with provided prefix: ${r}`);
    }
    throw notFound(`No such container: ${ref}`);
  }

  imageInUse(imageId: string): { containerId: string; running: boolean } | undefined {
    let found: { containerId: string; running: boolean } | undefined;
    for (const c of this.byId.values()) {
      if (c.Image !== imageId) continue;
      if (c.State.Running) return { containerId: c.Id, running: true };
      found ??= { containerId: c.Id, running: false };
    }
    return found;
  }

  private save(c: ContainerRecord): void {
    this.store.putContainer(c.Id, c.Name.slice(1), c);
  }

  private async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(id, tail);
    try {
      return await next;
    } finally {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    }
  }

  private event(c: ContainerRecord, action: string, extra: Record<string, string> = {}): void {
    const attrs: Record<string, string> = { image: c.Config.Image ?? '', name: c.Name.slice(1), ...extra };
    for (const [k, v] of Object.entries(c.Config.Labels ?? {})) attrs[k] = v;
    this.engine.events.emit('container', action, c.Id, attrs);
  }

  // ---- create ----

  async create(body: unknown, name: string | undefined, apiVersion: string): Promise<{ Id: string; Warnings: string[] }> {
    const req = parseCreateBody(body, apiVersion);
    if (name !== undefined && name !== '') {
      if (!VALID_NAME.test(name)) throw invalid(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    }
    const wanted = name === undefined || name === '' ? undefined : name.replace(/^\//, '');
    if (wanted !== undefined) this.checkNameFree(wanted);
    const imageRef = req.config.Image ?? '';
    if (imageRef === '') throw invalid('no image specified');
    const img = await this.engine.images.resolve(imageRef);
    await this.engine.images.ensureUnpacked(img);
    const config = mergeImageConfig(req.config, img.config);
    const id = randomBytes(32).toString('hex');
    const cname = wanted ?? randomName((n) => this.names.has(n));
    this.checkNameFree(cname);
    // Defaults stored as dockerd stores them (clients read them back from inspect).
    const host: HostConfig = {
      ...req.hostConfig,
      LogConfig: { Type: req.hostConfig.LogConfig?.Type || 'json-file', Config: req.hostConfig.LogConfig?.Config ?? {} },
      RestartPolicy: { Name: req.hostConfig.RestartPolicy?.Name || 'no', MaximumRetryCount: req.hostConfig.RestartPolicy?.MaximumRetryCount ?? 0 },
    };
    validateHostConfigForEngine(host);
    const dir = this.containerDir(id);
    const entry = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
    if (entry.length === 0) throw invalid('no command specified');
    const now = new Date();
    const c: ContainerRecord = {
      Id: id,
      Name: `/${cname}`,
      Created: rfc3339Nano(now),
      Path: entry[0] ?? '',
      Args: entry.slice(1),
      State: initialState(),
      Image: img.id,
      ResolvConfPath: join(dir, 'resolv.conf'),
      HostnamePath: join(dir, 'hostname'),
      HostsPath: join(dir, 'hosts'),
      LogPath: host.LogConfig?.Type === 'none' ? '' : join(dir, `${id}-json.log`),
      RestartCount: 0,
      Driver: 'overlay2',
      Platform: 'linux',
      MountLabel: '',
      ProcessLabel: '',
      AppArmorProfile: '',
      ExecIDs: null,
      HostConfig: host,
      Mounts: [],
      Config: { ...config, Hostname: config.Hostname !== undefined && config.Hostname !== '' ? config.Hostname : id.slice(0, 12), Image: imageRef },
      NetworkSettings: networkSettings(host, req.networkingConfig.EndpointsConfig),
      berth: { chainId: img.chainId, manuallyStopped: false, everStarted: false, anonymousVolumes: [] },
    };
    // Reserve the name before any await that could let another create take it.
    this.names.set(cname, id);
    this.byId.set(id, c);
    let snapshot = false;
    let supervisorContainer = false;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o710 });
      // The supervisor's container first: it holds the snapshot key as a GC root, so that a
      // collection between the two calls cannot take the freshly prepared snapshot.
      await this.client.call(SERVICES.containers, 'Create', {
        container: {
          id, image: img.name ?? imageRef, runtime: { name: 'io.containerd.runc.v2' },
          spec: { type_url: SPEC_TYPE, value: Buffer.from('{"ociVersion":"1.2.0"}') },
          snapshotter: SNAPSHOTTER, snapshot_key: id, labels: { 'com.docker/engine.bundle.path': dir },
        },
      });
      supervisorContainer = true;
      await this.client.call(SERVICES.snapshots, 'Prepare', {
        snapshotter: SNAPSHOTTER, key: id, parent: img.chainId, labels: {},
      });
      snapshot = true;
      this.save(c);
    } catch (e) {
      this.names.delete(cname);
      this.byId.delete(id);
      if (supervisorContainer) await this.client.call(SERVICES.containers, 'Delete', { id }).catch(() => undefined);
      if (snapshot) await this.client.call(SERVICES.snapshots, 'Remove', { snapshotter: SNAPSHOTTER, key: id }).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    this.event(c, 'create');
    return { Id: id, Warnings: [] };
  }

  private checkNameFree(name: string): void {
    const other = this.names.get(name);
    if (other !== undefined) {
      throw conflict(`Conflict. The container name "/${name}" is already in use by container "${other}". You have to remove (or rename) that container to be able to reuse that name.`);
    }
  }

  // ---- start ----

  async start(ref: string): Promise<void> {
    const c = this.find(ref);
    await this.locked(c.Id, async () => {
      if (c.State.Paused) throw conflict('cannot start a paused container, try unpause instead');
      if (c.State.Running) throw new HttpStatus(304);
      if (c.State.Status === 'removing' || !this.byId.has(c.Id)) throw notFound(`No such container: ${ref}`);
      c.berth.manuallyStopped = false;
      await this.startLocked(c);
    }).catch(async (e: unknown) => {
      // As dockerd: a --rm container that cannot start is removed (its `removed` waiters learn of it).
      if (c.HostConfig.AutoRemove === true && this.byId.has(c.Id) && !c.State.Running) {
        await this.remove(c.Id, { force: true, volumes: true }).catch(() => undefined);
      }
      throw e;
    });
  }

  private async startLocked(c: ContainerRecord): Promise<void> {
    try {
      await this.startTask(c);
    } catch (e) {
      // Clients attached for this start (docker run, start -a) learn of it from the start's error.
      const list = this.pending.get(c.Id) ?? [];
      this.pending.delete(c.Id);
      for (const p of list) {
        p.client.end();
        p.done('failed');
      }
      throw e;
    }
  }

  private async startTask(c: ContainerRecord): Promise<void> {
    const timer = this.restartTimers.get(c.Id);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.restartTimers.delete(c.Id);
    }
    const { mounts } = await this.client.call<{ mounts: RootfsMount[] }>(SERVICES.snapshots, 'Mounts', { snapshotter: SNAPSHOTTER, key: c.Id });
    let spec: Spec;
    let mountPoints;
    let net: NetworkAttachment = {};
    try {
      if (this.hooks.network !== undefined) net = await this.hooks.network.setup(c);
      // As dockerd does: a container on another's network namespace takes its host and domain name.
      const mode = networkMode(c.HostConfig.NetworkMode);
      if (mode.kind === 'container') {
        const other = this.find(mode.ref);
        c.Config = { ...c.Config, Hostname: other.Config.Hostname ?? c.Config.Hostname ?? '', Domainname: other.Config.Domainname ?? '' };
      }
      ({ spec, mountPoints } = await prepareStart(c, {
        dataRoot: this.engine.paths.dataRoot,
        containerDir: this.containerDir(c.Id),
        readFile: (p: string) => readRootfsFile(mounts, p),
        lookupContainer: (ref: string) => this.find(ref),
        network: net,
        mounts,
        ...(this.hooks.volumes !== undefined ? { volumes: this.hooks.volumes } : {}),
      }));
    } catch (e) {
      await this.hooks.network?.teardown(c).catch(() => undefined);
      this.recordStartError(c, e);
      throw e;
    }
    c.Mounts = mountPoints;
    this.startedWith.set(c.Id, { spec, mounts });
    c.berth.cgroupsPath = spec.linux?.cgroupsPath ?? '';
    await this.client.call(SERVICES.containers, 'Update', {
      container: { id: c.Id, spec: { type_url: SPEC_TYPE, value: Buffer.from(specJSON(spec)) } },
      update_mask: { paths: ['spec'] },
    });
    const logUri = c.LogPath === '' ? '' : jsonFileUri(c.LogPath, c.HostConfig.LogConfig?.Config ?? {});
    const createTask = (): Promise<{ pid: number }> => this.client.call<{ pid: number }>(SERVICES.tasks, 'Create', {
      container_id: c.Id, rootfs: mounts,
      stdin: c.Config.OpenStdin === true ? 'attach:' : '', stdout: logUri, stderr: logUri,
      terminal: c.Config.Tty === true,
    });
    let pid: number;
    try {
      let created: { pid: number };
      try {
        created = await createTask();
      } catch (e) {
        // A stopped task left from before (an exit the engine did not see through): delete it and create again.
        if (!isKind(e, ErrorKind.AlreadyExists)) throw e;
        await this.client.call(SERVICES.tasks, 'Delete', { container_id: c.Id }).catch(() => undefined);
        created = await createTask();
      }
      pid = created.pid;
    } catch (e) {
      await this.hooks.network?.teardown(c).catch(() => undefined);
      this.recordStartError(c, e);
      throw startError(e);
    }
    let resolveRun!: () => void;
    const exited = new Promise<void>((r) => { resolveRun = r; });
    this.runs.set(c.Id, { exited, resolve: resolveRun, startedAtMs: Date.now() });
    this.oom.delete(c.Id);
    await this.joinPendingAttaches(c);
    try {
      await this.client.call(SERVICES.tasks, 'Start', { container_id: c.Id });
    } catch (e) {
      this.runs.delete(c.Id);
      resolveRun();
      await this.client.call(SERVICES.tasks, 'Delete', { container_id: c.Id }).catch(() => undefined);
      await this.hooks.network?.teardown(c).catch(() => undefined);
      this.recordStartError(c, e);
      throw startError(e);
    }
    c.State = {
      ...c.State, Status: 'running', Running: true, Paused: false, Restarting: false, OOMKilled: false, Dead: false,
      Pid: pid, ExitCode: 0, Error: '', StartedAt: rfc3339Nano(), FinishedAt: ZERO_TIME,
    };
    if (c.Config.Healthcheck !== undefined && !(c.Config.Healthcheck.Test?.[0] === 'NONE')) {
      c.State.Health = { Status: 'starting', FailingStreak: 0, Log: [] };
    }
    c.berth.everStarted = true;
    this.save(c);
    this.event(c, 'start');
    if (c.State.Health !== undefined) this.scheduleHealth(c, true);
  }

  // ---- health checks ----

  private readonly healthTimers = new Map<string, NodeJS.Timeout>();

  private scheduleHealth(c: ContainerRecord, first: boolean): void {
    const hc = c.Config.Healthcheck;
    if (hc === undefined) return;
    const ns = (v: number | undefined, d: number): number => (v === undefined || v === 0 ? d : v / 1e6);
    const startedMs = Date.parse(c.State.StartedAt);
    const inStart = Date.now() - startedMs < ns(hc.StartPeriod, 0);
    const delay = first || inStart ? ns(hc.StartInterval, 5000) : ns(hc.Interval, 30_000);
    const t = setTimeout(() => {
      this.healthTimers.delete(c.Id);
      void this.probeHealth(c).finally(() => {
        if (c.State.Running && !this.closing && this.byId.has(c.Id)) this.scheduleHealth(c, false);
      });
    }, Math.min(delay, ns(hc.Interval, 30_000)));
    t.unref();
    this.healthTimers.set(c.Id, t);
  }

  private async probeHealth(c: ContainerRecord): Promise<void> {
    const hc = c.Config.Healthcheck;
    const h = c.State.Health;
    if (hc === undefined || h === undefined || !c.State.Running || c.State.Paused) return;
    const test = hc.Test ?? [];
    const shell = c.Config.Shell !== undefined && c.Config.Shell.length > 0 ? c.Config.Shell : ['/bin/sh', '-c'];
    const args = test[0] === 'CMD-SHELL' ? [...shell, test.slice(1).join(' ')] : test[0] === 'CMD' ? test.slice(1) : test;
    if (args.length === 0) return;
    const timeoutMs = hc.Timeout !== undefined && hc.Timeout > 0 ? hc.Timeout / 1e6 : 30_000;
    const start = rfc3339Nano();
    let exitCode: number;
    let output: string;
    try {
      ({ exitCode, output } = await this.execCapture(c, args, timeoutMs));
    } catch (e) {
      exitCode = -1;
      output = e instanceof Error ? e.message : String(e);
    }
    if (!c.State.Running) return;
    h.Log.push({ Start: start, End: rfc3339Nano(), ExitCode: exitCode, Output: output.slice(0, 4096) });
    if (h.Log.length > 5) h.Log.splice(0, h.Log.length - 5);
    const before = h.Status;
    if (exitCode === 0) {
      h.Status = 'healthy';
      h.FailingStreak = 0;
    } else {
      const inStart = Date.now() - Date.parse(c.State.StartedAt) < (hc.StartPeriod ?? 0) / 1e6;
      if (!inStart || h.Status === 'healthy') {
        h.FailingStreak++;
        if (h.FailingStreak >= (hc.Retries !== undefined && hc.Retries > 0 ? hc.Retries : 3)) h.Status = 'unhealthy';
      }
    }
    this.save(c);
    if (h.Status !== before) this.event(c, `health_status: ${h.Status}`);
  }

  /** Run a command in the container and collect its output (health checks). */
  async execCapture(c: ContainerRecord, args: readonly string[], timeoutMs: number): Promise<{ exitCode: number; output: string }> {
    const id = randomBytes(32).toString('hex');
    let resolve!: () => void;
    const exited = new Promise<void>((r) => { resolve = r; });
    const ex: ExecRecord = {
      ID: id, ContainerID: c.Id, Running: false, ExitCode: null, Pid: 0, OpenStdin: false, OpenStdout: true, OpenStderr: true,
      CanRemove: false, DetachKeys: '',
      ProcessConfig: { tty: false, entrypoint: args[0] ?? '', arguments: args.slice(1), privileged: false, user: '' },
      berth: { env: [], workingDir: '', stdinOnce: false, started: true, exited, resolve },
    };
    this.execs.set(id, ex);
    try {
      const proc = await this.processFor(c, { user: '', env: [], workingDir: '', tty: false, privileged: false, args });
      await this.client.call(SERVICES.tasks, 'Exec', {
        container_id: c.Id, exec_id: id, stdin: '', stdout: '', stderr: '', terminal: false,
        spec: { type_url: PROCESS_TYPE, value: Buffer.from(JSON.stringify(proc)) },
      });
      const sh = await connectShim(this.attachSocket(c.Id), { execId: id, stdin: false, stdout: true, stderr: true, stdinOnce: false });
      const chunks: Buffer[] = [sh.rest];
      sh.socket.on('data', (b: Buffer) => chunks.push(b));
      sh.socket.resume();
      await this.client.call(SERVICES.tasks, 'Start', { container_id: c.Id, exec_id: id });
      ex.Running = true;
      const timedOut = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), timeoutMs).unref())]);
      if (timedOut) {
        await this.client.call(SERVICES.tasks, 'Kill', { container_id: c.Id, exec_id: id, signal: 9, all: false }).catch(() => undefined);
        await exited;
        sh.socket.destroy();
        return { exitCode: -1, output: `Health check exceeded timeout (${timeoutMs / 1000}s)` };
      }
      await new Promise<void>((r) => { if (sh.socket.destroyed || sh.socket.readableEnded) r(); else { sh.socket.once('close', () => r()); setTimeout(r, 1000).unref(); } });
      sh.socket.destroy();
      return { exitCode: ex.ExitCode ?? -1, output: unframe(Buffer.concat(chunks)) };
    } finally {
      this.execs.delete(id);
    }
  }

  private recordStartError(c: ContainerRecord, e: unknown): void {
    const msg = e instanceof Error ? e.message : String(e);
    c.State.Error = msg;
    c.State.ExitCode = /no such file or directory|not found|ENOENT/i.test(msg) ? 127 : /permission denied|EACCES/i.test(msg) ? 126 : 128;
    this.save(c);
  }

  private async joinPendingAttaches(c: ContainerRecord): Promise<void> {
    const list = this.pending.get(c.Id) ?? [];
    this.pending.delete(c.Id);
    await Promise.all(list.map(async (p) => {
      try {
        const sh = await connectShim(this.attachSocket(c.Id), p.streams);
        void relay(p.client, p.head, sh.socket, sh.rest, p.streams.stdin, p.detachKeys).then(p.done);
      } catch (e) {
        this.engine.log.warn('attach at start failed', { id: c.Id, error: e instanceof Error ? e.message : String(e) });
        p.client.destroy();
        p.done('failed');
      }
    }));
  }

  attachSocket(id: string): string {
    return join(shimDirFor(dirname(this.engine.paths.shims), this.client.namespace, id), 'attach.sock');
  }

  // ---- exit ----

  /** A task's exit as the supervisor reports it. */
  async taskExited(containerId: string, execId: string, exitStatus: number, exitedAt: string | undefined): Promise<void> {
    if (execId !== '' && execId !== containerId) {
      const ex = this.execs.get(execId);
      if (ex !== undefined && ex.ContainerID === containerId) {
        ex.Running = false;
        ex.ExitCode = exitStatus;
        await this.client.call(SERVICES.tasks, 'DeleteProcess', { container_id: containerId, exec_id: execId }).catch(() => undefined);
        ex.berth.resolve();
      }
      return;
    }
    const c = this.byId.get(containerId);
    if (c === undefined) return;
    await this.locked(c.Id, async () => {
      if (!c.State.Running) return;
      await this.client.call(SERVICES.tasks, 'Delete', { container_id: c.Id }).catch((e: unknown) => {
        if (!isKind(e, ErrorKind.NotFound)) this.engine.log.warn('deleting an exited task', { id: c.Id, error: String(e) });
      });
      await this.hooks.network?.teardown(c).catch((e: unknown) => {
        this.engine.log.warn('network teardown failed', { id: c.Id, error: e instanceof Error ? e.message : String(e) });
      });
      const run = this.runs.get(c.Id);
      this.runs.delete(c.Id);
      this.startedWith.delete(c.Id);
      c.State = {
        ...c.State, Status: 'exited', Running: false, Paused: false, Restarting: false, Pid: 0, ExitCode: exitStatus,
        OOMKilled: this.oom.has(c.Id), FinishedAt: exitedAt ?? rfc3339Nano(),
      };
      const ht = this.healthTimers.get(c.Id);
      if (ht !== undefined) {
        clearTimeout(ht);
        this.healthTimers.delete(c.Id);
      }
      if (c.State.Health !== undefined) c.State.Health.Status = 'unhealthy';
      for (const ex of this.execs.values()) {
        if (ex.ContainerID === c.Id && ex.Running) {
          ex.Running = false;
          ex.berth.resolve();
        }
      }
      this.save(c);
      this.event(c, 'die', { exitCode: String(exitStatus) });
      this.notify(c.Id, ['not-running', 'next-exit'], exitStatus);
      run?.resolve();
      if (this.closing) return;
      const delay = this.restartDelay(c, run);
      if (delay !== undefined) {
        c.RestartCount++;
        c.State.Status = 'restarting';
        c.State.Restarting = true;
        this.save(c);
        const t = setTimeout(() => {
          this.restartTimers.delete(c.Id);
          void this.locked(c.Id, async () => {
            if (!c.State.Restarting || !this.byId.has(c.Id)) return;
            try {
              await this.startLocked(c);
            } catch (e) {
              c.State.Restarting = false;
              c.State.Status = 'exited';
              this.save(c);
              this.engine.log.warn('restart failed', { id: c.Id, error: e instanceof Error ? e.message : String(e) });
            }
          });
        }, delay);
        this.restartTimers.set(c.Id, t);
        return;
      }
      if (c.HostConfig.AutoRemove === true) {
        setImmediate(() => void this.remove(c.Id, { force: true, volumes: true }).catch(() => undefined));
      }
    });
  }

  oomKilled(containerId: string): void {
    if (this.byId.has(containerId)) {
      this.oom.add(containerId);
      const c = this.byId.get(containerId);
      if (c !== undefined) this.event(c, 'oom');
    }
  }

  /** The delay before a restart the policy asks for, or undefined. */
  private restartDelay(c: ContainerRecord, run: Run | undefined): number | undefined {
    const p = c.HostConfig.RestartPolicy;
    const name = p?.Name ?? 'no';
    if (name === '' || name === 'no') return undefined;
    if (c.berth.manuallyStopped) return undefined;
    if (name === 'on-failure') {
      if (c.State.ExitCode === 0) return undefined;
      const max = p?.MaximumRetryCount ?? 0;
      if (max > 0 && c.RestartCount >= max) return undefined;
    }
    const ranMs = run === undefined ? 0 : Date.now() - run.startedAtMs;
    if (ranMs >= 10_000) return 100;
    return Math.min(60_000, 100 * 2 ** Math.min(c.RestartCount, 10));
  }

  private notify(id: string, conditions: WaitCondition[], code: number, error?: string): void {
    const list = this.waiters.get(id);
    if (list === undefined) return;
    const keep: Waiter[] = [];
    for (const w of list) {
      if (conditions.includes(w.condition)) w.resolve({ StatusCode: code, Error: error === undefined ? null : { Message: error } });
      else keep.push(w);
    }
    if (keep.length === 0) this.waiters.delete(id);
    else this.waiters.set(id, keep);
  }

  // ---- wait, stop, kill, restart ----

  /** Register a wait now; the promise resolves at the condition. */
  wait(ref: string, condition: WaitCondition): Promise<{ StatusCode: number; Error: { Message: string } | null }> {
    const c = this.find(ref);
    if (condition === 'not-running' && !c.State.Running && !c.State.Restarting) {
      return Promise.resolve({ StatusCode: c.State.ExitCode, Error: null });
    }
    return new Promise((resolve) => {
      const list = this.waiters.get(c.Id) ?? [];
      list.push({ condition, resolve });
      this.waiters.set(c.Id, list);
    });
  }

  async kill(ref: string, signal: string | undefined): Promise<void> {
    const c = this.find(ref);
    if (!c.State.Running) throw conflict(`Cannot kill container: ${ref}: container ${c.Id} is not running`);
    const sig = signalNumber(signal ?? 'KILL');
    if (sig === 9 || sig === 15) c.berth.manuallyStopped = true;
    await this.client.call(SERVICES.tasks, 'Kill', { container_id: c.Id, exec_id: '', signal: sig, all: sig === 9 });
    this.event(c, 'kill', { signal: String(sig) });
    if (sig === 9) {
      // As dockerd: a SIGKILL answers once the container is gone (up to 10 s), so that a remove can follow.
      const run = this.runs.get(c.Id);
      if (run !== undefined) await Promise.race([run.exited, new Promise<void>((r) => setTimeout(r, 10_000).unref())]);
    }
  }

  async stop(ref: string, signal: string | undefined, timeout: number | undefined): Promise<void> {
    const c = this.find(ref);
    const timer = this.restartTimers.get(c.Id);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.restartTimers.delete(c.Id);
      c.State.Restarting = false;
      c.State.Status = 'exited';
      c.berth.manuallyStopped = true;
      this.save(c);
      return;
    }
    if (!c.State.Running) throw new HttpStatus(304);
    c.berth.manuallyStopped = true;
    this.save(c);
    await this.stopRunning(c, signal, timeout);
    this.event(c, 'stop');
  }

  private async stopRunning(c: ContainerRecord, signal: string | undefined, timeout: number | undefined): Promise<void> {
    const run = this.runs.get(c.Id);
    const sig = signalNumber(signal ?? c.Config.StopSignal ?? 'SIGTERM');
    const secs = timeout ?? c.Config.StopTimeout ?? 10;
    if (c.State.Paused) await this.client.call(SERVICES.tasks, 'Resume', { container_id: c.Id }).catch(() => undefined);
    if (secs !== 0) {
      await this.client.call(SERVICES.tasks, 'Kill', { container_id: c.Id, exec_id: '', signal: sig, all: false }).catch(ignoreNotFound);
      this.event(c, 'kill', { signal: String(sig) });
      if (run === undefined) return;
      const gone = secs < 0
        ? await run.exited.then(() => true)
        : await Promise.race([run.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), secs * 1000).unref())]);
      if (gone) return;
    }
    await this.client.call(SERVICES.tasks, 'Kill', { container_id: c.Id, exec_id: '', signal: 9, all: true }).catch(ignoreNotFound);
    this.event(c, 'kill', { signal: '9' });
    await run?.exited;
  }

  async restart(ref: string, signal: string | undefined, timeout: number | undefined): Promise<void> {
    const c = this.find(ref);
    if (c.State.Running) {
      c.berth.manuallyStopped = true;
      await this.stopRunning(c, signal, timeout);
    }
    await this.locked(c.Id, async () => {
      c.berth.manuallyStopped = false;
      if (!c.State.Running) await this.startLocked(c);
    });
    this.event(c, 'restart');
  }

  async pause(ref: string): Promise<void> {
    const c = this.find(ref);
    if (!c.State.Running) throw conflict(`Container ${c.Id} is not running`);
    if (c.State.Paused) throw conflict(`Container ${c.Id} is already paused`);
    await this.client.call(SERVICES.tasks, 'Pause', { container_id: c.Id });
    c.State.Paused = true;
    c.State.Status = 'paused';
    this.save(c);
    this.event(c, 'pause');
  }

  async unpause(ref: string): Promise<void> {
    const c = this.find(ref);
    if (!c.State.Paused) throw conflict(`Container ${c.Id} is not paused`);
    await this.client.call(SERVICES.tasks, 'Resume', { container_id: c.Id });
    c.State.Paused = false;
    c.State.Status = 'running';
    this.save(c);
    this.event(c, 'unpause');
  }

  // ---- update ----

  /** `docker update`: resources (applied to a running container's cgroup at once) and the restart policy. */
  async update(ref: string, body: Record<string, unknown>): Promise<{ Warnings: string[] }> {
    const c = this.find(ref);
    const upd = parseHostConfig(body, 'UpdateConfig');
    const next: HostConfig = { ...c.HostConfig };
    for (const [k, v] of Object.entries(upd)) {
      if (v === undefined || v === null || k === 'RestartPolicy') continue;
      if ((typeof v === 'number' && v === 0) || (typeof v === 'string' && v === '') || (Array.isArray(v) && v.length === 0)) continue;
      (next as Record<string, unknown>)[k] = v;
    }
    if (upd.RestartPolicy !== undefined && (upd.RestartPolicy.Name ?? '') !== '') {
      if (c.HostConfig.AutoRemove === true && upd.RestartPolicy.Name !== 'no') {
        throw invalid('Restart policy cannot be updated because AutoRemove is enabled for the container');
      }
      next.RestartPolicy = upd.RestartPolicy;
    }
    if ((next.Memory ?? 0) > 0 && (next.Memory ?? 0) < MIN_MEMORY) throw invalid('Minimum memory limit allowed is 6MB');
    if ((next.MemorySwap ?? 0) > 0 && (next.Memory ?? 0) > 0 && (next.MemorySwap ?? 0) < (next.Memory ?? 0)) {
      throw invalid('Minimum memoryswap limit should be larger than memory limit, see usage');
    }
    if (c.State.Running) {
      const resources = buildResources(next);
      await this.client.call(SERVICES.tasks, 'Update', {
        container_id: c.Id,
        resources: { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from(JSON.stringify(resources)) },
      });
    }
    c.HostConfig = next;
    this.save(c);
    this.event(c, 'update');
    return { Warnings: [] };
  }

  // ---- remove, rename ----

  async remove(ref: string, opts: { force: boolean; volumes: boolean }): Promise<void> {
    const c = this.find(ref);
    if (c.State.Running && !opts.force) {
      throw conflict(`cannot remove container "${c.Name}": container is ${c.State.Paused ? 'paused' : 'running'}: stop the container before removing or force remove`);
    }
    if (c.State.Status === 'removing') throw conflict(`removal of container ${c.Id} is already in progress`);
    const timer = this.restartTimers.get(c.Id);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.restartTimers.delete(c.Id);
    }
    c.berth.manuallyStopped = true;
    if (c.State.Running) await this.stopRunning(c, 'SIGKILL', 0);
    await this.locked(c.Id, async () => {
      if (!this.byId.has(c.Id)) return;
      c.State.Status = 'removing';
      await this.client.call(SERVICES.tasks, 'Delete', { container_id: c.Id }).catch(ignoreNotFound);
      await this.client.call(SERVICES.containers, 'Delete', { id: c.Id }).catch(ignoreNotFound);
      await this.client.call(SERVICES.snapshots, 'Remove', { snapshotter: SNAPSHOTTER, key: c.Id }).catch(ignoreNotFound);
      await this.hooks.network?.teardown(c).catch(() => undefined);
      await this.hooks.network?.removed?.(c).catch(() => undefined);
      await this.hooks.volumes?.removed(c, opts.volumes).catch((e: unknown) => {
        this.engine.log.warn('removing the container\'s volumes failed', { id: c.Id, error: e instanceof Error ? e.message : String(e) });
      });
      rmSync(this.containerDir(c.Id), { recursive: true, force: true });
      this.store.deleteContainer(c.Id);
      this.startedWith.delete(c.Id);
      this.byId.delete(c.Id);
      if (this.names.get(c.Name.slice(1)) === c.Id) this.names.delete(c.Name.slice(1));
      for (const [eid, ex] of this.execs) if (ex.ContainerID === c.Id) this.execs.delete(eid);
      this.event(c, 'destroy');
      this.notify(c.Id, ['not-running', 'next-exit', 'removed'], c.State.ExitCode);
    });
  }

  rename(ref: string, newName: string): void {
    const c = this.find(ref);
    const n = newName.replace(/^\//, '');
    if (n === '') throw invalid('Neither old nor new names may be empty');
    if (!VALID_NAME.test(n)) throw invalid(`Invalid container name (${n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    if (c.Name.slice(1) === n) throw invalid('Renaming a container with the same name as its current name');
    this.checkNameFree(n);
    const old = c.Name.slice(1);
    this.names.delete(old);
    this.names.set(n, c.Id);
    c.Name = `/${n}`;
    this.save(c);
    this.event(c, 'rename', { oldName: `/${old}` });
  }

  // ---- attach, resize ----

  /**
   * Attach a hijacked client. A container that has not started yet is joined
   * when it starts (so `docker run` sees every byte); a running one at once.
   */
  async attach(ref: string, client: Duplex, head: Buffer, streams: Omit<AttachStreams, 'execId'>, detachKeys: string | undefined): Promise<void> {
    const c = this.find(ref);
    const keys = parseDetachKeys(detachKeys);
    // As dockerd: StdinOnce closes stdin when the client's input ends, but never a terminal's
    // (detaching from `run -it` leaves the shell running).
    const s: AttachStreams = { ...streams, execId: '', stdin: streams.stdin && c.Config.OpenStdin === true, stdinOnce: c.Config.StdinOnce === true && c.Config.Tty !== true };
    if (c.State.Running) {
      const sh = await connectShim(this.attachSocket(c.Id), s);
      const how = await relay(client, head, sh.socket, sh.rest, s.stdin, keys);
      if (how === 'detached') this.event(c, 'detach');
      return;
    }
    await new Promise<void>((resolve) => {
      const list = this.pending.get(c.Id) ?? [];
      list.push({ streams: s, client, head, detachKeys: keys, done: () => resolve() });
      this.pending.set(c.Id, list);
      client.once('close', () => {
        const l = this.pending.get(c.Id);
        if (l !== undefined) {
          const rest = l.filter((p) => p.client !== client);
          if (rest.length === 0) this.pending.delete(c.Id);
          else this.pending.set(c.Id, rest);
        }
        resolve();
      });
    });
  }

  async resize(ref: string, execId: string, h: number, w: number): Promise<void> {
    const c = this.find(ref);
    if (!c.State.Running) throw conflict(`Container ${c.Id} is not running`);
    await this.client.call(SERVICES.tasks, 'ResizePty', { container_id: c.Id, exec_id: execId, width: w, height: h });
  }

  // ---- exec ----

  createExec(ref: string, body: Record<string, unknown>): string {
    const c = this.find(ref);
    if (!c.State.Running) throw conflict(`container ${c.Id} is not running`);
    if (c.State.Paused) throw conflict(`Container ${c.Id} is paused, unpause the container before exec`);
    const cmd = body['Cmd'];
    if (!Array.isArray(cmd) || cmd.length === 0 || !cmd.every((x) => typeof x === 'string')) throw invalid('No exec command specified');
    const str = (k: string): string => {
      const v = body[k];
      if (v === undefined || v === null) return '';
      if (typeof v !== 'string') throw invalid(`${k}: must be a string`);
      return v;
    };
    const bool = (k: string): boolean => {
      const v = body[k];
      if (v === undefined || v === null) return false;
      if (typeof v !== 'boolean') throw invalid(`${k}: must be a boolean`);
      return v;
    };
    const env = body['Env'];
    if (env !== undefined && env !== null && (!Array.isArray(env) || !env.every((x) => typeof x === 'string'))) throw invalid('Env: must be a list of strings');
    const cs = body['ConsoleSize'];
    let consoleSize: { height: number; width: number } | undefined;
    if (cs !== undefined && cs !== null) {
      if (!Array.isArray(cs) || cs.length !== 2 || !cs.every((n) => Number.isInteger(n) && n >= 0)) throw invalid('ConsoleSize: must be [height, width]');
      if (cs[0] > 0 && cs[1] > 0) consoleSize = { height: cs[0] as number, width: cs[1] as number };
    }
    const id = randomBytes(32).toString('hex');
    let resolve!: () => void;
    const exited = new Promise<void>((r) => { resolve = r; });
    const args = cmd as string[];
    this.execs.set(id, {
      ID: id, ContainerID: c.Id, Running: false, ExitCode: null, Pid: 0,
      OpenStdin: bool('AttachStdin'), OpenStdout: bool('AttachStdout'), OpenStderr: bool('AttachStderr'), CanRemove: false,
      DetachKeys: str('DetachKeys'),
      ProcessConfig: { tty: bool('Tty'), entrypoint: args[0] ?? '', arguments: args.slice(1), privileged: bool('Privileged'), user: str('User') },
      berth: { env: (env as string[] | undefined) ?? [], workingDir: str('WorkingDir'), stdinOnce: true, started: false, exited, resolve, ...(consoleSize !== undefined ? { consoleSize } : {}) },
    });
    c.ExecIDs = [...(c.ExecIDs ?? []), id];
    this.event(c, `exec_create: ${args.join(' ')}`, { execID: id });
    return id;
  }

  findExec(id: string): ExecRecord {
    const e = this.execs.get(id);
    if (e === undefined) throw notFound(`No such exec instance: ${id}`);
    return e;
  }

  /** Start an exec; with a client, relay its stdio until it ends. */
  async startExec(id: string, client: { stream: Duplex; head: Buffer } | undefined, tty: boolean | undefined): Promise<void> {
    const ex = this.findExec(id);
    if (ex.berth.started) throw conflict(`Error: Exec command ${id} has already run`);
    const c = this.byId.get(ex.ContainerID);
    if (c === undefined || !c.State.Running) throw conflict(`container ${ex.ContainerID} is not running`);
    ex.berth.started = true;
    if (tty !== undefined) ex.ProcessConfig.tty = tty;
    const proc = await this.processFor(c, {
      user: ex.ProcessConfig.user, env: ex.berth.env, workingDir: ex.berth.workingDir, tty: ex.ProcessConfig.tty,
      privileged: ex.ProcessConfig.privileged, args: [ex.ProcessConfig.entrypoint, ...ex.ProcessConfig.arguments],
    });
    if (ex.ProcessConfig.tty && ex.berth.consoleSize !== undefined) proc.consoleSize = ex.berth.consoleSize;
    const withStdin = client !== undefined && ex.OpenStdin;
    await this.client.call(SERVICES.tasks, 'Exec', {
      container_id: c.Id, exec_id: id, stdin: withStdin ? 'attach:' : '', stdout: '', stderr: '',
      terminal: ex.ProcessConfig.tty, spec: { type_url: PROCESS_TYPE, value: Buffer.from(JSON.stringify(proc)) },
    });
    let relayed: Promise<unknown> = Promise.resolve();
    if (client !== undefined) {
      const sh = await connectShim(this.attachSocket(c.Id), {
        execId: id, stdin: withStdin, stdout: ex.OpenStdout, stderr: ex.OpenStderr, stdinOnce: true,
      });
      relayed = relay(client.stream, client.head, sh.socket, sh.rest, withStdin, parseDetachKeys(ex.DetachKeys || undefined), () => ex.berth.exited);
    }
    try {
      const started = await this.client.call<{ pid: number }>(SERVICES.tasks, 'Start', { container_id: c.Id, exec_id: id });
      ex.Pid = started.pid;
      ex.Running = true;
      const size = ex.berth.consoleSize;
      if (ex.berth.resizePending === true && ex.ProcessConfig.tty && size !== undefined) {
        await this.client.call(SERVICES.tasks, 'ResizePty', { container_id: c.Id, exec_id: id, width: size.width, height: size.height }).catch(() => undefined);
      }
    } catch (e) {
      ex.Running = false;
      ex.ExitCode = 126;
      await this.client.call(SERVICES.tasks, 'DeleteProcess', { container_id: c.Id, exec_id: id }).catch(() => undefined);
      ex.berth.resolve();
      throw startError(e);
    }
    this.event(c, `exec_start: ${[ex.ProcessConfig.entrypoint, ...ex.ProcessConfig.arguments].join(' ')}`, { execID: id });
    await relayed;
    if (client !== undefined) await ex.berth.exited;
  }

  /** What each running container was started with: execs and health checks build their process from it. */
  private readonly startedWith = new Map<string, { spec: Spec; mounts: RootfsMount[] }>();

  /** An exec's OCI process (the spec and rootfs mounts asked of the supervisor only after an engine restart). */
  private async processFor(c: ContainerRecord, o: Omit<ExecOptions, 'readFile'>): Promise<NonNullable<Spec['process']>> {
    let r = this.startedWith.get(c.Id);
    if (r === undefined) {
      const { mounts } = await this.client.call<{ mounts: RootfsMount[] }>(SERVICES.snapshots, 'Mounts', { snapshotter: SNAPSHOTTER, key: c.Id });
      const cspec = await this.client.call<{ container: { spec: { value: Buffer } } }>(SERVICES.containers, 'Get', { id: c.Id });
      r = { spec: JSON.parse(cspec.container.spec.value.toString()) as Spec, mounts };
      this.startedWith.set(c.Id, r);
    }
    const mounts = r.mounts;
    return execProcess(c, r.spec, { ...o, readFile: (p: string) => readRootfsFile(mounts, p) });
  }

  // ---- daemon start and stop ----

  /**
   * Bring the records in line with the supervisor after a (re)start: running
   * tasks are kept, exits that happened meanwhile are handled, containers
   * with an `always`/`unless-stopped` policy are started.
   */
  async reconcile(): Promise<void> {
    for (const c of this.byId.values()) {
      if (c.State.Status === 'removing') {
        await this.remove(c.Id, { force: true, volumes: false }).catch(() => undefined);
        continue;
      }
      if (!c.State.Running && !c.State.Restarting) continue;
      let proc: { status: string; exit_status: number; exited_at?: { seconds: number; nanos: number } } | undefined;
      try {
        const r = await this.client.call<{ process: typeof proc }>(SERVICES.tasks, 'Get', { container_id: c.Id });
        proc = r.process;
      } catch (e) {
        if (!isKind(e, ErrorKind.NotFound)) throw e;
      }
      if (proc !== undefined && (proc.status === 'RUNNING' || proc.status === 'PAUSED')) {
        let resolve!: () => void;
        const exited = new Promise<void>((r) => { resolve = r; });
        this.runs.set(c.Id, { exited, resolve, startedAtMs: Date.now() });
        c.State.Paused = proc.status === 'PAUSED';
        c.State.Status = c.State.Paused ? 'paused' : 'running';
        this.save(c);
        continue;
      }
      const code = proc === undefined ? 255 : proc.exit_status;
      if (c.State.Restarting) {
        c.State.Running = true;
      }
      c.State.Running = true;
      await this.taskExited(c.Id, c.Id, code, undefined);
    }
    for (const c of this.byId.values()) {
      const policy = c.HostConfig.RestartPolicy?.Name ?? 'no';
      if (c.State.Running || c.State.Restarting) continue;
      if ((policy === 'always' || (policy === 'unless-stopped' && !c.berth.manuallyStopped)) && c.berth.everStarted) {
        await this.locked(c.Id, () => this.startLocked(c)).catch((e: unknown) => {
          this.engine.log.warn('restarting a container on daemon start failed', { id: c.Id, error: e instanceof Error ? e.message : String(e) });
        });
      }
    }
  }

  close(): void {
    this.closing = true;
    for (const t of this.healthTimers.values()) clearTimeout(t);
    this.healthTimers.clear();
    for (const t of this.restartTimers.values()) clearTimeout(t);
    this.restartTimers.clear();
  }
}

const U64_MAX_MARK = '\u0000u64max';

/** The spec as JSON, with 2^64-1 (unlimited rlimits) written exactly, as Go runtimes parse it. */
export function specJSON(spec: unknown): string {
  const text = JSON.stringify(spec, (_k, v: unknown) => (typeof v === 'number' && v >= 2 ** 64 - 1 ? U64_MAX_MARK : v));
  return text.split(JSON.stringify(U64_MAX_MARK)).join('18446744073709551615');
}

function ignoreNotFound(e: unknown): void {
  if (!isKind(e, ErrorKind.NotFound)) throw e;
}

/** Errors of a start, in Docker's words where it has them. */
function startError(e: unknown): BerthError {
  // errno texts as Go prints them (clients look for "no such file or directory").
  const msg = (e instanceof Error ? e.message : String(e)).replace(/\bE[A-Z]+ \(([^)]*)\)/g, (_m, t: string) => t.toLowerCase());
  if (/executable file not found|no such file or directory|ENOENT/i.test(msg) && /exec/i.test(msg)) {
    return new BerthError(ErrorKind.InvalidArgument, `failed to create task for container: ${msg}`, { cause: e });
  }
  if (/permission denied/i.test(msg)) return new BerthError(ErrorKind.InvalidArgument, msg, { cause: e });
  return e instanceof BerthError ? new BerthError(e.kind, msg, { cause: e }) : failedPrecondition(msg, e);
}

/** The payloads of stdcopy frames, concatenated. */
function unframe(b: Buffer): string {
  const out: Buffer[] = [];
  let off = 0;
  while (off + 8 <= b.length) {
    const len = b.readUInt32BE(off + 4);
    out.push(b.subarray(off + 8, off + 8 + len));
    off += 8 + len;
  }
  return Buffer.concat(out).toString('utf8');
}

const SIGNALS: Record<string, number> = {
  HUP: 1, INT: 2, QUIT: 3, ILL: 4, TRAP: 5, ABRT: 6, IOT: 6, BUS: 7, FPE: 8, KILL: 9, USR1: 10, SEGV: 11, USR2: 12,
  PIPE: 13, ALRM: 14, TERM: 15, STKFLT: 16, CHLD: 17, CONT: 18, STOP: 19, TSTP: 20, TTIN: 21, TTOU: 22, URG: 23,
  XCPU: 24, XFSZ: 25, VTALRM: 26, PROF: 27, WINCH: 28, IO: 29, POLL: 29, PWR: 30, SYS: 31,
};

/** A signal by name (`SIGTERM`, `TERM`), number, or `RTMIN+n`. */
export function signalNumber(s: string): number {
  const t = s.trim().toUpperCase();
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    if (n < 1 || n > 64) throw invalid(`Invalid signal: ${s}`);
    return n;
  }
  const name = t.startsWith('SIG') ? t.slice(3) : t;
  const n = SIGNALS[name];
  if (n !== undefined) return n;
  const rt = /^RTMIN(?:\+(\d+))?$/.exec(name);
  if (rt !== null) return 34 + Number(rt[1] ?? 0);
  throw invalid(`Invalid signal: ${s}`);
}

function jsonFileUri(path: string, opts: Record<string, string>): string {
  const q = new URLSearchParams();
  const size = opts['max-size'];
  if (size !== undefined && size !== '' && size !== '-1') q.set('max-size', String(parseSize(size)));
  const files = opts['max-file'];
  if (files !== undefined && files !== '') q.set('max-file', files);
  const qs = q.toString();
  return `jsonfile://${path}${qs === '' ? '' : `?${qs}`}`;
}

/** Docker's sizes: `10m`, `1g`, `512k`, plain bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$/i.exec(s.trim());
  if (m === null) throw invalid(`invalid size: '${s}'`);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };
  return Math.floor(Number(m[1]) * (mult[(m[2] ?? '').toLowerCase()] ?? 1));
}

function validateHostConfigForEngine(host: HostConfig): void {
  const driver = host.LogConfig?.Type ?? 'json-file';
  if (driver !== 'json-file' && driver !== 'none' && driver !== '') {
    throw invalid(`failed to create container: logger: no log driver named '${driver}' is registered`);
  }
  const opts = host.LogConfig?.Config ?? {};
  for (const k of Object.keys(opts)) {
    if (!['max-size', 'max-file', 'compress', 'labels', 'env', 'env-regex', 'tag'].includes(k)) throw invalid(`unknown log opt '${k}' for json-file log driver`);
  }
  if (opts['max-size'] !== undefined) parseSize(opts['max-size']);
  if (opts['max-file'] !== undefined && !/^[1-9]\d*$/.test(opts['max-file'])) throw invalid(`invalid value for max-file: ${opts['max-file']}`);
}

function networkSettings(host: HostConfig, endpoints: NetworkingConfig['EndpointsConfig']): Record<string, unknown> {
  const mode = host.NetworkMode ?? 'default';
  const name = mode === 'default' || mode === '' ? 'bridge' : mode;
  const ep = endpoints?.[name] ?? (name === 'bridge' ? endpoints?.['default'] : undefined);
  // Other networks named in the create body are joined at start too, as dockerd does.
  const extra: Record<string, unknown> = {};
  for (const [n, e] of Object.entries(endpoints ?? {})) {
    if (n === name || (name === 'bridge' && n === 'default') || e === undefined || e === null) continue;
    extra[n] = endpointSettings(e);
  }
  return {
    Bridge: '', SandboxID: '', SandboxKey: '', HairpinMode: false, LinkLocalIPv6Address: '', LinkLocalIPv6PrefixLen: 0,
    Ports: {}, SecondaryIPAddresses: null, SecondaryIPv6Addresses: null, EndpointID: '', Gateway: '', GlobalIPv6Address: '',
    GlobalIPv6PrefixLen: 0, IPAddress: '', IPPrefixLen: 0, IPv6Gateway: '', MacAddress: '',
    Networks: name.startsWith('container:') || name === 'host' || name === 'none' ? (name === 'host' || name === 'none' ? { [name]: endpointSettings(ep ?? {}) } : {}) : {
      [name]: endpointSettings(ep ?? {}),
      ...extra,
    },
  };
}

/** An endpoint as inspect shows it, with what the create body asked for (address, aliases). */
function endpointSettings(e: EndpointSettings): Record<string, unknown> {
  return {
    IPAMConfig: e.IPAMConfig ?? null, Links: e.Links ?? null, Aliases: e.Aliases ?? null, MacAddress: e.MacAddress ?? '',
    NetworkID: '', EndpointID: '', Gateway: '', IPAddress: '', IPPrefixLen: 0, IPv6Gateway: '', GlobalIPv6Address: '',
    GlobalIPv6PrefixLen: 0, DriverOpts: e.DriverOpts ?? null, DNSNames: null,
  };
}

/** Write a small file of the container's directory (hosts, hostname, resolv.conf). */
export function writeContainerFile(path: string, content: string): void {
  writeFileSync(path, content, { mode: 0o644 });
}

export function containerDirExists(dir: string): boolean {
  return existsSync(dir);
}
