// The content store: blobs addressed by digest, written through resumable,
// verified ingests (see local.ts for the layout on disk).
export type {
  CommitOptions, ContentDescriptor, ContentInfo, ContentIngester, ContentProvider, ContentReader, ContentStatus, ContentStore,
  ContentWriter, ContentWriterOptions,
} from './types.js';
export { isContentDigest, parseContentDigest } from './digest.js';
export type { ParsedContentDigest } from './digest.js';
export { CONTENT_CHUNK, LocalContentStore } from './local.js';
export { readBlob, writeBlob } from './write-blob.js';
export type { BlobSource, WriteBlobOptions } from './write-blob.js';
