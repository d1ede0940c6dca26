/**
 * Where networking and volumes plug into a container's life, so that each
 * lives in its own module: the container service calls these at the points
 * named, and knows nothing else of networks or volume storage.
 */
import type { ContainerRecord } from './record.js';
import type { MountRequest } from './mounts.js';
import type { RootfsMount } from './layered.js';

/** What a container's network setup gives its start. */
export interface NetworkAttachment {
  /** A network namespace to join (a bind-mounted path); absent: the spec's default for the mode. */
  readonly netnsPath?: string;
  /** The container's addresses (its name resolves to them in /etc/hosts). */
  readonly addresses?: readonly string[];
  /** Nameservers for /etc/resolv.conf instead of the host's (an embedded DNS server). */
  readonly dns?: readonly string[];
  /** `host-gateway` for --add-host. */
  readonly hostGateway?: readonly string[];
}

export interface NetworkHooks {
  /** Before the task is created (the network namespace and its interfaces made, ports published). */
  setup(c: ContainerRecord): Promise<NetworkAttachment>;
  /** After the task is gone (exit, failed start, remove); must be idempotent. */
  teardown(c: ContainerRecord): Promise<void>;
  /** The container is removed: forget it everywhere (after teardown). */
  removed?(c: ContainerRecord): Promise<void>;
}

/** What a volume's resolution may use beyond the mount itself. */
export interface VolumeResolveOptions {
  /** The rootfs snapshot's mounts of the container being started: the copy-up source. */
  readonly rootfs?: readonly RootfsMount[];
  /** The container an anonymous volume belongs to when it is not `c` (--volumes-from). */
  readonly owner?: ContainerRecord;
}

export interface VolumeHooks {
  /**
   * The host directory of a volume mount, made on first use, mounted (driver
   * options) and filled from the image at the mount's destination when empty (copy-up).
   */
  resolve(c: ContainerRecord, m: MountRequest, opts: VolumeResolveOptions): Promise<{ name: string; hostPath: string }>;
  /** The container is removed; with `anonymous`, its anonymous volumes go too. */
  removed(c: ContainerRecord, removeAnonymous: boolean): Promise<void>;
}

export interface EngineHooks {
  network?: NetworkHooks;
  volumes?: VolumeHooks;
}
