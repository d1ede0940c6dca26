/**
 * The content store's interfaces, as containerd's content package has them:
 * a Provider reads committed blobs, an Ingester writes new ones through a
 * Writer (by ref, resumable), a Manager lists, labels and deletes them.
 *
 * Two implementations: the local store (blobs on disk, shared by every
 * namespace, no labels) and, in the supervisor, the namespaced view over it
 * whose labels and visibility live in the metadata database.
 */
import type { Readable } from 'node:stream';

/** What is needed to name and verify a blob (an OCI descriptor has these and more). */
export interface ContentDescriptor {
  readonly digest: string;
  readonly size: number;
}

export interface ContentInfo {
  readonly digest: string;
  readonly size: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly labels: Readonly<Record<string, string>>;
}

/** An ingest in progress (or left behind by an interrupted one). */
export interface ContentStatus {
  readonly ref: string;
  /** Bytes written so far: where the next write must start. */
  readonly offset: number;
  /** The expected total size; 0 when unknown. */
  readonly total: number;
  /** The expected digest; "" when unknown. */
  readonly expected: string;
  readonly startedAt: Date;
  readonly updatedAt: Date;
}

export interface ContentWriterOptions {
  /** Names the ingest; opening the same ref again resumes it. */
  readonly ref: string;
  /** Expected size (0 or absent: unknown); writes past it are refused. */
  readonly total?: number;
  /** Expected digest ("" or absent: unknown). */
  readonly expected?: string;
  /**
   * When another writer holds the ref: wait for it to finish (true) or fail
   * at once with Unavailable "ref ... locked" (false, the default).
   */
  readonly wait?: boolean;
  /** Gives up waiting for the lock when aborted. */
  readonly signal?: AbortSignal;
}

export interface CommitOptions {
  readonly labels?: Readonly<Record<string, string>>;
}

/**
 * One open ingest. It holds the ref's lock until commit(), close() or a
 * failed commit; the ingest itself stays on disk until commit or abort.
 */
export interface ContentWriter {
  readonly ref: string;
  status(): ContentStatus;
  /** The digest of the bytes written so far. */
  digest(): string;
  /**
   * Append data. With an offset: it must be the current offset, or 0 to
   * start over (the ingest is truncated first); anything else is refused.
   */
  write(data: Uint8Array, offset?: number): Promise<void>;
  /** Drop everything written (only size 0 is supported, as containerd). */
  truncate(size: number): Promise<void>;
  /**
   * Verify (size when > 0, digest when not "") and store the blob under its
   * digest. A mismatch is FailedPrecondition and commits nothing (the ingest
   * stays, for abort or a truncating rewrite). A blob already present is
   * AlreadyExists. Either way the writer is closed afterwards.
   */
  commit(size: number, expected: string, opts?: CommitOptions): Promise<ContentInfo>;
  /** Release the lock and the file; the ingest stays resumable. */
  close(): Promise<void>;
}

/** Random access to one committed blob. */
export interface ContentReader {
  readonly size: number;
  /** Up to `length` bytes at `offset` (fewer only at the end of the blob). */
  readAt(offset: number, length: number): Promise<Buffer>;
  /** The bytes from offset (default 0), length bytes (default: to the end), in chunks. */
  stream(offset?: number, length?: number): Readable;
  close(): Promise<void>;
}

export interface ContentProvider {
  info(digest: string): Promise<ContentInfo>;
  reader(digest: string): Promise<ContentReader>;
}

export interface ContentIngester {
  info(digest: string): Promise<ContentInfo>;
  writer(opts: ContentWriterOptions): Promise<ContentWriter>;
  status(ref: string): Promise<ContentStatus>;
  listStatuses(match?: (s: ContentStatus) => boolean): Promise<ContentStatus[]>;
  /** Remove an ingest (NotFound when there is none; Unavailable while a writer holds it). */
  abort(ref: string): Promise<void>;
}

export interface ContentStore extends ContentProvider, ContentIngester {
  list(match?: (info: ContentInfo) => boolean): Promise<ContentInfo[]>;
  /**
   * Change labels. No paths (or "labels"): replaced; "labels.<k>": that one
   * label set, or removed when absent or "". Other paths are InvalidArgument.
   */
  update(digest: string, labels: Readonly<Record<string, string>>, paths: readonly string[]): Promise<ContentInfo>;
  delete(digest: string): Promise<void>;
}
