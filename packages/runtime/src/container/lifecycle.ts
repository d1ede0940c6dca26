import { failedPrecondition } from '@berth/base';

/** OCI container statuses (runtime.md "State"). */
export type Status = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export type Operation = 'start' | 'kill' | 'delete' | 'exec' | 'pause' | 'resume' | 'update' | 'ps' | 'events';

/**
 * The transition table: in which statuses an operation may run. Messages are
 * runc's, so tools that match on them keep working.
 */
const allowed: Record<Operation, Partial<Record<Status, true>>> = {
  start: { created: true },
  kill: { created: true, running: true, paused: true },
  delete: { created: true, stopped: true },
  exec: { created: true, running: true },
  pause: { running: true },
  resume: { paused: true },
  update: { created: true, running: true, paused: true },
  ps: { created: true, running: true, paused: true },
  events: { created: true, running: true, paused: true },
};

function refusal(op: Operation, status: Status, id: string): string {
  switch (op) {
    case 'start':
      if (status === 'stopped') return 'cannot start a container that has stopped';
      return `cannot start an already ${status} container`;
    case 'kill':
      return 'container not running';
    case 'delete':
      return `cannot delete container ${id} that is not stopped: ${status}`;
    case 'exec':
      if (status === 'paused') return 'cannot exec in a paused container (use --ignore-paused to override)';
      return `cannot exec in a ${status} container`;
    case 'pause':
      return status === 'paused' ? 'container already paused' : 'container not running';
    case 'resume':
      return 'container not paused';
    default:
      return `container ${id} is ${status}`;
  }
}

export function canDo(op: Operation, status: Status): boolean {
  return allowed[op][status] === true;
}

/** Throw FailedPrecondition with a sentence a user understands when op is not allowed. */
export function assertCan(op: Operation, status: Status, id: string): void {
  if (!canDo(op, status)) throw failedPrecondition(refusal(op, status, id));
}
