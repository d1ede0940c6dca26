/** Opening a snapshotter by name. */
import { invalid } from '@berth/base';
import { NativeSnapshotter } from './native.js';
import { OverlaySnapshotter } from './overlay.js';
import type { Snapshotter } from './types.js';

export const SNAPSHOTTER_KINDS = ['overlayfs', 'native'] as const;
export type SnapshotterKind = (typeof SNAPSHOTTER_KINDS)[number];

/** Open (creating if needed) a snapshotter of the given kind rooted at root. */
export async function openSnapshotter(kind: string, root: string): Promise<Snapshotter> {
  switch (kind) {
    case 'overlayfs': return OverlaySnapshotter.open(root);
    case 'native': return NativeSnapshotter.open(root);
    default: throw invalid(`snapshotter ${JSON.stringify(kind)}: unknown (known: ${SNAPSHOTTER_KINDS.join(', ')})`);
  }
}
