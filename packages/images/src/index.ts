// @berth/images: what berth-containerd needs for images, as libraries it wires
// into containerd's services. Each part has its own index.
export * from './content/index.js';
export * from './archive/index.js';
export * from './snapshots/index.js';
export * from './registry/index.js';
