/**
 * The one place where Berth's error kinds become gRPC status codes, as
 * containerd's errgrpc maps its errdefs. Messages get containerd's suffix
 * (`container "x": not found`) unless the thrower already wrote it.
 */
import { status } from '@grpc/grpc-js';
import { BerthError, Bug, ErrorKind } from '@berth/base';

interface Mapping {
  readonly code: status;
  /** The text containerd's errdefs append to a wrapped error. */
  readonly suffix: string;
}

const MAPPINGS: Readonly<Record<ErrorKind, Mapping>> = {
  InvalidArgument: { code: status.INVALID_ARGUMENT, suffix: 'invalid argument' },
  NotFound: { code: status.NOT_FOUND, suffix: 'not found' },
  AlreadyExists: { code: status.ALREADY_EXISTS, suffix: 'already exists' },
  FailedPrecondition: { code: status.FAILED_PRECONDITION, suffix: 'failed precondition' },
  // containerd maps ErrConflict (and ErrNotModified) to FailedPrecondition.
  Conflict: { code: status.FAILED_PRECONDITION, suffix: 'conflict' },
  PermissionDenied: { code: status.PERMISSION_DENIED, suffix: 'permission denied' },
  Unavailable: { code: status.UNAVAILABLE, suffix: 'unavailable' },
  NotImplemented: { code: status.UNIMPLEMENTED, suffix: 'not implemented' },
  DeadlineExceeded: { code: status.DEADLINE_EXCEEDED, suffix: 'context deadline exceeded' },
  Canceled: { code: status.CANCELLED, suffix: 'context canceled' },
  ResourceExhausted: { code: status.RESOURCE_EXHAUSTED, suffix: 'resource exhausted' },
  Internal: { code: status.INTERNAL, suffix: 'internal' },
};

export interface GrpcError {
  code: status;
  details: string;
}

/** The gRPC status for any thrown value; unknown errors become UNKNOWN, bugs INTERNAL. */
export function toGrpcError(err: unknown): GrpcError {
  if (err instanceof BerthError) {
    const m = MAPPINGS[err.kind];
    const msg = err.message;
    const details = msg === '' ? m.suffix : msg.endsWith(`: ${m.suffix}`) || msg === m.suffix ? msg : `${msg}: ${m.suffix}`;
    return { code: m.code, details };
  }
  if (err instanceof Bug) return { code: status.INTERNAL, details: err.message };
  if (err instanceof Error) return { code: status.UNKNOWN, details: err.message };
  return { code: status.UNKNOWN, details: String(err) };
}

/** Whether the error is one a client caused (logged at debug) rather than ours (logged as an error). */
export function isClientError(err: unknown): boolean {
  return err instanceof BerthError && err.kind !== ErrorKind.Internal;
}
