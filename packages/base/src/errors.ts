/**
 * The closed set of error kinds used across Berth. Every layer throws
 * BerthError with one of these kinds; the boundaries translate them once
 * (gRPC codes in the supervisor, HTTP statuses in the engine, exit codes
 * in the command lines). A broken invariant is a Bug, never one of the
 * input kinds.
 */
export const ErrorKind = {
  InvalidArgument: 'InvalidArgument',
  NotFound: 'NotFound',
  AlreadyExists: 'AlreadyExists',
  FailedPrecondition: 'FailedPrecondition',
  Conflict: 'Conflict',
  PermissionDenied: 'PermissionDenied',
  Unavailable: 'Unavailable',
  NotImplemented: 'NotImplemented',
  DeadlineExceeded: 'DeadlineExceeded',
  Canceled: 'Canceled',
  ResourceExhausted: 'ResourceExhausted',
  Internal: 'Internal',
} as const;
export type ErrorKind = (typeof ErrorKind)[keyof typeof ErrorKind];

export class BerthError extends Error {
  readonly kind: ErrorKind;
  override readonly cause?: unknown;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message);
    this.name = `BerthError(${kind})`;
    this.kind = kind;
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/** An invariant of our own code was broken: a bug, not bad input. */
export class Bug extends Error {
  constructor(message: string) {
    super(`internal error: ${message}`);
    this.name = 'Bug';
  }
}

export const invalid = (msg: string, cause?: unknown): BerthError =>
  new BerthError(ErrorKind.InvalidArgument, msg, { cause });
export const notFound = (msg: string, cause?: unknown): BerthError =>
  new BerthError(ErrorKind.NotFound, msg, { cause });
export const alreadyExists = (msg: string, cause?: unknown): BerthError =>
  new BerthError(ErrorKind.AlreadyExists, msg, { cause });
export const failedPrecondition = (msg: string, cause?: unknown): BerthError =>
  new BerthError(ErrorKind.FailedPrecondition, msg, { cause });
export const notImplemented = (msg: string, cause?: unknown): BerthError =>
  new BerthError(ErrorKind.NotImplemented, msg, { cause });
export const unavailable = (msg: string, cause?: unknown): BerthError =>
  new BerthError(ErrorKind.Unavailable, msg, { cause });
export const internal = (msg: string, cause?: unknown): BerthError =>
  new BerthError(ErrorKind.Internal, msg, { cause });

export function isKind(err: unknown, kind: ErrorKind): boolean {
  return err instanceof BerthError && err.kind === kind;
}

/** The errno code of a Node system error (ENOENT, EPERM...), if any. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const c = (err as { code: unknown }).code;
    return typeof c === 'string' ? c : undefined;
  }
  return undefined;
}
