// `GET /containers/{id}/top` as dockerd does it: the host's `ps` with the
// caller's arguments, its rows kept for the container's processes only.
import { execFile } from 'node:child_process';
import { internal, invalid } from '@berth/base';
import { openCgroup } from '@berth/cgroups';
import type { CgroupLayout, OpenCgroupOptions } from '@berth/cgroups';

export interface TopResult {
  Titles: string[];
  Processes: string[][];
}

/** The `ps_args` query parameter's default. */
export const DEFAULT_PS_ARGS = '-ef';

/** Fields split at ASCII whitespace only, as docker splits them (a title or name may hold other spaces). */
const fields = (line: string): string[] => line.split(/[ \t\n\v\f\r]+/).filter((f) => f !== '');

/** ps options that would rename the PID column are refused, as docker refuses them. */
export function validatePsArgs(psArgs: string): void {
  for (const m of psArgs.matchAll(/\s+(\S*)=\s*(PID\S*)/g)) {
    const [, key = '', value = ''] = m;
    if (key !== 'pid') throw invalid(`specifying "${key}=${value}" is not allowed`);
  }
}

/**
 * The output of `ps` to the rows of the given pids: the titles are the first
 * line's fields; a row has as many fields as there are titles, the last one
 * (the command) keeping its spaces.
 */
export function parsePsOutput(output: string, pids: readonly number[]): TopResult {
  const lines = output.split('\n');
  const titles = fields(lines[0] ?? '');
  const pidIndex = titles.indexOf('PID');
  if (pidIndex < 0) throw internal("Couldn't find PID field in ps output");
  const want = new Set(pids);
  const processes: string[][] = [];
  for (const line of lines.slice(1)) {
    const f = fields(line);
    if (f.length === 0) continue;
    const text = f[pidIndex];
    const pid = Number(text);
    if (text === undefined || !/^\d+$/.test(text)) throw internal(`Unexpected pid '${text ?? ''}': invalid pid in ps output`);
    if (!want.has(pid)) continue;
    const row = f.slice(0, titles.length - 1);
    row.push(f.slice(titles.length - 1).join(' '));
    processes.push(row);
  }
  return { Titles: titles, Processes: processes };
}

interface PsRun {
  ok: boolean;
  stdout: string;
  stderr: string;
  error: string;
}

function runPs(args: string[]): Promise<PsRun> {
  return new Promise((resolve) => {
    execFile('ps', args, { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err === null) {
        resolve({ ok: true, stdout, stderr, error: '' });
        return;
      }
      const code = (err as { code?: unknown }).code;
      const error = typeof code === 'number' ? `exit status ${code}` : err.message;
      resolve({ ok: false, stdout, stderr, error });
    });
  });
}

/**
 * `docker top`: runs `ps <psArgs> -q <pids>` (only the container's
 * processes, quick), or, when ps refuses -q with those options, `ps <psArgs>`
 * and filters its rows.
 */
export async function top(pids: number[], psArgs: string): Promise<TopResult> {
  const argsText = psArgs.trim() === '' ? DEFAULT_PS_ARGS : psArgs;
  validatePsArgs(argsText);
  const args = argsText.split(' ').filter((a) => a !== '');
  let run: PsRun | undefined;
  if (pids.length > 0) {
    run = await runPs([...args, '-q', pids.join(',')]);
    if (!run.ok) run = undefined;
  }
  run ??= await runPs(args);
  if (!run.ok) throw internal(`ps: ${run.error}: ${run.stderr.trim()}`);
  return parsePsOutput(run.stdout, pids);
}

export interface ContainerPidsOptions {
  /** The container id, which names the cgroup when cgroupsPath is empty. */
  containerId?: string;
  /** The cgroup layout (default: this host's). */
  layout?: CgroupLayout;
}

/**
 * The processes of a container: every pid in the cgroup.procs of its cgroup
 * and of the cgroups below it (v1: in the pids hierarchy, or the first one
 * mounted; v2: the unified one), sorted. None when the cgroup is gone.
 */
export async function containerPids(cgroupsPath: string, opts: ContainerPidsOptions = {}): Promise<number[]> {
  const o: OpenCgroupOptions = { cgroupsPath, containerId: opts.containerId ?? '' };
  if (opts.layout !== undefined) o.layout = opts.layout;
  return (await openCgroup(o)).pids();
}
