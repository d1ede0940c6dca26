import { spawn } from 'node:child_process';
import { failedPrecondition } from '@berth/base';
import type { Hook } from '@berth/spec';

/**
 * Run hooks in the runtime's namespace (prestart, createRuntime, poststart,
 * poststop), one after the other, each with the state JSON on stdin and its
 * timeout honoured. The first failure stops the rest and is returned.
 */
export async function runHooks(kind: string, hooks: Hook[] | undefined, state: string): Promise<void> {
  for (const h of hooks ?? []) await runHook(kind, h, state);
}

export function runHook(kind: string, h: Hook, state: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = h.args && h.args.length > 0 ? h.args : [h.path];
    const child = spawn(h.path, args.slice(1), {
      argv0: args[0] ?? h.path,
      env: Object.fromEntries((h.env ?? []).map((e) => {
        const i = e.indexOf('=');
        return i < 0 ? [e, ''] : [e.slice(0, i), e.slice(i + 1)];
      })),
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    let timedOut = false;
    const timer = h.timeout && h.timeout > 0
      ? setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, h.timeout * 1000)
      : undefined;
    child.stderr?.on('data', (d: Buffer) => { if (stderr.length < 4096) stderr += d.toString(); });
    child.stdin?.on('error', () => { /* a hook need not read its stdin */ });
    child.stdin?.end(state);
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(failedPrecondition(`${kind} hook ${h.path}: ${e.message}`, e));
    });
    child.on('close', (code, sig) => {
      if (timer) clearTimeout(timer);
      if (timedOut) return reject(failedPrecondition(`${kind} hook ${h.path}: timed out after ${h.timeout}s`));
      if (code === 0) return resolve();
      const why = sig ? `killed by ${sig}` : `exit status ${code}`;
      const detail = stderr.trim() ? `, stderr: ${stderr.trim()}` : '';
      reject(failedPrecondition(`${kind} hook ${h.path} failed: ${why}${detail}`));
    });
  });
}
