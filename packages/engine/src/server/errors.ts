/**
 * Where Berth's error kinds become HTTP statuses, as dockerd's errdefs do,
 * with Docker's error body `{"message": "..."}`.
 */
import { BerthError, Bug, ErrorKind } from '@berth/base';

const STATUS: Readonly<Record<ErrorKind, number>> = {
  InvalidArgument: 400,
  NotFound: 404,
  AlreadyExists: 409,
  Conflict: 409,
  FailedPrecondition: 409,
  PermissionDenied: 403,
  Unavailable: 503,
  NotImplemented: 501,
  DeadlineExceeded: 500,
  Canceled: 500,
  ResourceExhausted: 500,
  Internal: 500,
};

/** An answer that is not an error in the usual sense (304 Not Modified). */
export class HttpStatus extends Error {
  constructor(readonly status: number, message = '') {
    super(message);
  }
}

export function statusOf(err: unknown): number {
  if (err instanceof HttpStatus) return err.status;
  if (err instanceof BerthError) return STATUS[err.kind];
  return 500;
}

export function messageOf(err: unknown): string {
  if (err instanceof Bug) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

export const conflict = (msg: string, cause?: unknown): BerthError =>
  new BerthError(ErrorKind.Conflict, msg, { cause });
