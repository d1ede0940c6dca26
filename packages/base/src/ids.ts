import { randomBytes } from 'node:crypto';
import { invalid } from './errors.js';

/** A 64-hex-digit random id, as Docker and containerd use. */
export function newId(): string {
  return randomBytes(32).toString('hex');
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,1023}$/;

/** Container ids as runc accepts them: no slashes, no dot-dot, not empty. */
export function validateContainerId(id: string): void {
  if (!ID_RE.test(id) || id === '.' || id === '..') {
    throw invalid(`invalid container id format: ${JSON.stringify(id)}`);
  }
}
