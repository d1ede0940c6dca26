/**
 * The task and process lifecycle: one transition table. A task's init process
 * is CREATED after Create, RUNNING after Start, PAUSED while frozen, STOPPED
 * once it has exited; an exec process goes CREATED, RUNNING, STOPPED. An
 * operation not allowed in a state is a FailedPrecondition with a sentence.
 */
import { failedPrecondition } from '@berth/base';

/** containerd.v1.types.Status names. */
export type TaskStatus = 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED';

export type TaskOperation = 'start' | 'exec' | 'pause' | 'resume' | 'delete' | 'update' | 'resize' | 'kill';

const ALLOWED: Readonly<Record<TaskOperation, readonly TaskStatus[]>> = {
  start: ['CREATED'],
  exec: ['RUNNING'],
  pause: ['RUNNING'],
  resume: ['PAUSED'],
  delete: ['CREATED', 'STOPPED'],
  update: ['CREATED', 'RUNNING', 'PAUSED'],
  resize: ['CREATED', 'RUNNING', 'PAUSED', 'STOPPED'],
  kill: ['CREATED', 'RUNNING', 'PAUSED', 'STOPPED'],
};

const VERB: Readonly<Record<TaskOperation, string>> = {
  start: 'start',
  exec: 'exec in',
  pause: 'pause',
  resume: 'resume',
  delete: 'delete',
  update: 'update',
  resize: 'resize the terminal of',
  kill: 'kill',
};

export function canDo(op: TaskOperation, status: TaskStatus): boolean {
  return ALLOWED[op].includes(status);
}

/** FailedPrecondition "cannot pause a task in paused state" (or "a process" for an exec). */
export function assertTask(op: TaskOperation, status: TaskStatus, what: 'task' | 'process' = 'task'): void {
  if (canDo(op, status)) return;
  const hint = op === 'delete' && status !== 'STOPPED' ? '; kill it first' : '';
  throw failedPrecondition(`cannot ${VERB[op]} a ${what} in ${status.toLowerCase()} state${hint}`);
}
