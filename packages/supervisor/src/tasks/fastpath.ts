/**
 * The fast path: no runtime process on a container's start path. The
 * supervisor does what `berth-runc create` would: creates the cgroup, the
 * exec fifo and the plan (with the same planner), writes berth-runc's
 * state.json so `berth-runc --root <runcRoot> state/list/kill/delete` see the
 * container; the shim then runs the executor on the plan file.
 */
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '@berth/base';
import type { CgroupManager, CgroupPaths } from '@berth/cgroups';
import {
  StateStore, apparmorEnabled, encodePlan, openCgroup, planExec, prepareContainer, processAlive, selinuxEnabled, startTimeOf,
} from '@berth/runtime';
import type { ContainerRecord as RuncRecord } from '@berth/runtime';
import type { Process, Spec } from '@berth/spec';

/** Whether the config has hooks, which only a runtime runs (the fast path refuses them). */
export function hasHooks(spec: Spec): boolean {
  const h = spec.hooks;
  if (h === undefined) return false;
  return Object.values(h).some((list) => Array.isArray(list) && list.length > 0);
}

/** The cgroup directory the shim watches for OOM kills and kills `all` through. */
export function shimCgroupDir(paths: CgroupPaths): string | undefined {
  return paths.version === 'v2' ? paths.dirs[''] : paths.dirs['memory'] ?? paths.dirs['pids'];
}

export interface FastCreate {
  readonly cgroup: CgroupManager;
  readonly planFile: string;
  readonly execFifo: string;
  readonly record: RuncRecord;
  readonly store: StateStore;
}

export interface FastOptions {
  id: string;
  bundle: string;
  shimDir: string;
  runcRoot: string;
  terminal: boolean;
  noPivot: boolean;
  noNewKeyring: boolean;
}

/** Everything the shim needs for `--executor … --plan … --exec-fifo …`. Undone on failure. */
export async function prepareFastCreate(spec: Spec, o: FastOptions): Promise<FastCreate> {
  const store = new StateStore(o.runcRoot);
  const prepared = await prepareContainer(store, o.id, spec, {
    bundle: o.bundle,
    rootfs: resolve(o.bundle, spec.root?.path ?? 'rootfs'),
    consoleSocket: o.terminal ? join(o.shimDir, 'console.sock') : undefined,
    noPivot: o.noPivot,
    noNewKeyring: o.noNewKeyring,
  });
  try {
    const planFile = join(o.shimDir, 'init.plan');
    writeFileAtomic(planFile, encodePlan(prepared.plan), 0o600, { durable: false });
    return { cgroup: prepared.cgroup, planFile, execFifo: prepared.execFifo, record: prepared.record, store };
  } catch (e) {
    await prepared.cgroup.destroy().catch(() => undefined);
    store.remove(o.id);
    throw e;
  }
}

/** Record the container's pid in berth-runc's state.json once the executor reported it. */
export function recordCreated(f: FastCreate, pid: number): void {
  f.record.pid = pid;
  f.record.pidStartTime = startTimeOf(pid);
  f.store.save(f.record);
}

/** Mark the container started in state.json. */
export function recordStarted(runcRoot: string, id: string): void {
  const store = new StateStore(runcRoot);
  if (!store.exists(id)) return;
  const rec = store.load(id);
  rec.started = true;
  store.save(rec);
}

/** The plan of an exec process, written to <shimDir>/exec-<execId>.plan. */
export async function writeExecPlan(runcRoot: string, id: string, execId: string, proc: Process, shimDir: string): Promise<string> {
  const store = new StateStore(runcRoot);
  const rec = store.load(id);
  const cg = await openCgroup(rec.cgroup);
  const plan = planExec(proc, {
    containerPid: rec.pid,
    containerId: id,
    namespaces: rec.namespaces,
    config: rec.config,
    cgroupProcsFiles: cg.procsFiles(),
    consoleSocket: proc.terminal === true ? join(shimDir, 'console.sock') : undefined,
    apparmorEnabled: apparmorEnabled(),
    selinuxEnabled: selinuxEnabled(),
  });
  const file = join(shimDir, `exec-${execId}.plan`);
  writeFileAtomic(file, encodePlan(plan), 0o600, { durable: false });
  return file;
}

/** The container's init, when it still runs (the same process: its start time is checked). */
export function liveInitPid(runcRoot: string, id: string): number | undefined {
  const store = new StateStore(runcRoot);
  if (!store.exists(id)) return undefined;
  const rec = store.load(id);
  return rec.pid > 0 && processAlive(rec.pid, rec.pidStartTime) ? rec.pid : undefined;
}

/** After the shim's delete: every process gone, the cgroup removed, the state dir removed. */
export async function cleanupFast(runcRoot: string, id: string, cgroup: CgroupPaths | undefined): Promise<void> {
  if (cgroup !== undefined) {
    const cg = await openCgroup(cgroup);
    await cg.killAll(9).catch(() => undefined);
    await cg.thaw().catch(() => undefined);
    await cg.destroy();
  }
  new StateStore(runcRoot).remove(id);
}
