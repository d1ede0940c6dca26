import { readFileSync } from 'node:fs';

/** Fields of /proc/<pid>/stat we care about; undefined when the process is gone. */
export interface ProcStat {
  state: string;
  ppid: number;
  startTime: string;
}

export function procStat(pid: number): ProcStat | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm may contain spaces and parentheses: fields start after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  const ppid = rest[1];
  const startTime = rest[19];
  if (state === undefined || ppid === undefined || startTime === undefined) return undefined;
  return { state, ppid: Number(ppid), startTime };
}

/** True when pid is alive (not a zombie) and, if given, started at startTime (no pid reuse). */
export function processAlive(pid: number, startTime?: string): boolean {
  const st = procStat(pid);
  if (!st) return false;
  if (st.state === 'Z' || st.state === 'X') return false;
  if (startTime !== undefined && st.startTime !== startTime) return false;
  return true;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Wait until the process is gone (or a zombie), up to timeoutMs; returns whether it is gone. */
export async function waitGone(pid: number, startTime: string | undefined, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  while (processAlive(pid, startTime)) {
    if (Date.now() > deadline) return false;
    await sleep(delay);
    delay = Math.min(delay * 2, 50);
  }
  return true;
}
