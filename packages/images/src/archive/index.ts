// Layer archives: a streaming tar reader and writer, decompression (gzip, zstd),
// extraction confined to its directory (applyLayer) and layer making (makeLayer).
export type { TarEntryType } from './_format.js';
export { readTar } from './reader.js';
export type { TarEntry, TarHeader, TarReadOptions } from './reader.js';
export { TarWriter } from './writer.js';
export type { TarWriteEntry, TarWriteResult } from './writer.js';
export {
  compressionOfMediaType,
  detectCompression,
  decompress,
  Meter,
  DEFAULT_MAX_LAYER_BYTES,
} from './compress.js';
export type { Compression, DecompressOptions } from './compress.js';
export { applyEntries, applyLayer } from './apply.js';
export type { ApplyEntriesOptions, ApplyMode, ApplyOptions, ApplyResult, EntryNames } from './apply.js';
export { makeLayer } from './diff.js';
export type { LayerChanges, MakeLayerOptions } from './diff.js';
export { TreeTar, byBytes, devNumbers, statEntry, tarTypeOf } from './tree.js';
// The native addon (native/sys) with the system calls Node lacks, and helpers on it.
export {
  at,
  closeFd,
  getXattr,
  listXattrs,
  openBeneath,
  openDirectory,
  openat2,
  sys,
  sysAddonPath,
} from './_sys.js';
export type { PathArg, Sys, SysConstants } from './_sys.js';
