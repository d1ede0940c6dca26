import type { CgroupManager } from '@berth/cgroups';
import type { Spec } from '@berth/spec';
import { planCreate } from '../plan/index.js';
import type { Plan } from '../plan/index.js';
import { createCgroup, cgroupMountInfo, containerDeviceFilter } from './cgroup.js';
import { apparmorEnabled, selinuxEnabled } from './host.js';
import { hookState } from './state.js';
import type { ContainerRecord, StateStore } from './state.js';

export interface PrepareOptions {
  /** Absolute bundle directory and root filesystem. */
  bundle: string;
  rootfs: string;
  consoleSocket?: string | undefined;
  consoleRelay?: boolean;
  noPivot?: boolean;
  noNewKeyring?: boolean;
  preserveFds?: number;
  wait?: boolean;
}

export interface Prepared {
  cgroup: CgroupManager;
  /** The state record to save once the executor reported the pid. */
  record: ContainerRecord;
  plan: Plan;
  execFifo: string;
}

/**
 * What creating a container takes before anything runs, the same for
 * `berth-runc create` and the supervisor's fast path: the id reserved in the
 * state store, the cgroup made with its resources, the state record and the
 * executor's plan. Undone if it fails half-way; afterwards the caller owns
 * the cgroup and the reserved id.
 */
export async function prepareContainer(store: StateStore, id: string, spec: Spec, o: PrepareOptions): Promise<Prepared> {
  store.reserve(id);
  let cg: CgroupManager | undefined;
  try {
    cg = await createCgroup(spec.linux?.cgroupsPath, id, spec.linux?.resources, spec.linux?.devices);
    const execFifo = store.fifoPath(id);
    const record: ContainerRecord = {
      version: 1,
      id,
      bundle: o.bundle,
      rootfs: o.rootfs,
      pid: 0,
      pidStartTime: '',
      created: new Date().toISOString(),
      annotations: spec.annotations ?? {},
      config: spec,
      cgroup: cg.paths,
      namespaces: (spec.linux?.namespaces ?? []).map((n) => n.type),
    };
    const plan = planCreate(spec, {
      bundle: o.bundle,
      containerId: id,
      execFifo,
      consoleSocket: o.consoleSocket,
      consoleRelay: o.consoleRelay ?? false,
      noPivot: o.noPivot ?? false,
      noNewKeyring: o.noNewKeyring ?? false,
      preserveFds: o.preserveFds ?? 0,
      cgroupProcsFiles: cg.procsFiles(),
      cgroupMounts: cgroupMountInfo(cg),
      deviceFilter: containerDeviceFilter(cg, spec.linux?.resources, spec.linux?.devices),
      wait: o.wait ?? false,
      hookState: hookState(record, 'creating'),
      apparmorEnabled: apparmorEnabled(),
      selinuxEnabled: selinuxEnabled(),
    });
    return { cgroup: cg, record, plan, execFifo };
  } catch (e) {
    if (cg !== undefined) await cg.destroy().catch(() => undefined);
    store.remove(id);
    throw e;
  }
}
