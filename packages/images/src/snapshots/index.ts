// Snapshotters: the interface, the overlayfs and native implementations,
// mount helpers and chain IDs.
export type { Mount, SnapshotKind, SnapshotInfo, SnapshotUsage, SnapshotUpdate, Snapshotter } from './types.js';
export { OverlaySnapshotter } from './overlay.js';
export { NativeSnapshotter } from './native.js';
export { mountAll, unmountAll, mountArgs, mountsUnder } from './mount.js';
export { chainId, chainIds } from './chainid.js';
export { diskUsage, copyTree } from './_fs.js';
export { openSnapshotter, SNAPSHOTTER_KINDS } from './open.js';
export type { SnapshotterKind } from './open.js';
