/**
 * What the API's route modules are given: the supervisor client (in the
 * engine's containerd namespace), the engine's directories, its event bus
 * and logger, and the services of each area.
 */
import type { Logger } from '@berth/base';
import type { ContainerdClient } from '@berth/supervisor';
import type { EventBus } from './events.js';
import type { ImageResolver } from './images/types.js';

/** The containerd namespace the engine keeps its objects in. */
export const ENGINE_NAMESPACE = 'berth';

/** The snapshotter containers' root filesystems live in. */
export const SNAPSHOTTER = 'overlayfs';

export interface EnginePaths {
  /** --data-root: persistent engine data (metadata, container dirs, volumes). */
  readonly dataRoot: string;
  /** --exec-root: sockets, runtime state. */
  readonly execRoot: string;
  /** Where the supervisor keeps each task's shim directory (`<shims>/<ns>/<id>/attach.sock`). */
  readonly shims: string;
}

export interface Engine {
  readonly client: ContainerdClient;
  readonly paths: EnginePaths;
  readonly log: Logger;
  readonly events: EventBus;
  readonly images: ImageResolver;
  /** Whether an image (by ID) is used by a container (for rmi's 409). */
  imageInUse(imageId: string): { containerId: string; running: boolean } | undefined;
}
