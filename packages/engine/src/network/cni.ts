/**
 * A CNI client: runs a plugin binary with CNI_COMMAND and friends in its
 * environment and the network configuration on stdin (CNI spec 1.0.0), and
 * parses its result or error.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, ErrorKind, failedPrecondition } from '@berth/base';

export const CNI_VERSION = '1.0.0';

/** Where Debian's containernetworking-plugins are; BERTH_CNI_PATH overrides. */
export function cniPath(): string {
  return process.env['BERTH_CNI_PATH'] ?? '/usr/lib/cni';
}

export interface CniInterface {
  readonly name: string;
  readonly mac?: string;
  readonly sandbox?: string;
}

export interface CniResult {
  readonly cniVersion?: string;
  readonly interfaces?: readonly CniInterface[];
  readonly ips?: readonly { interface?: number; address: string; gateway?: string }[];
  readonly routes?: readonly { dst: string; gw?: string }[];
}

export interface CniRequest {
  readonly command: 'ADD' | 'DEL' | 'CHECK';
  readonly containerId: string;
  /** The namespace path; empty on a DEL whose namespace is gone. */
  readonly netns: string;
  readonly ifname: string;
  /** The network configuration (its `type` names the plugin). */
  readonly config: Record<string, unknown> & { type: string; name: string };
}

export async function cniExec(req: CniRequest): Promise<CniResult> {
  const dir = cniPath();
  const bin = join(dir, req.config.type);
  if (!existsSync(bin)) throw failedPrecondition(`CNI plugin ${req.config.type} not found in ${dir} (install containernetworking-plugins)`);
  const conf = { cniVersion: CNI_VERSION, ...req.config };
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: req.command, CNI_CONTAINERID: req.containerId, CNI_NETNS: req.netns,
    CNI_IFNAME: req.ifname, CNI_PATH: dir,
  };
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(bin, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.once('error', reject);
    child.once('close', (c) => resolve({ code: c ?? 1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    child.stdin.end(JSON.stringify(conf));
  });
  const what = `CNI ${req.command} of ${req.config.type} (network ${req.config.name}, interface ${req.ifname})`;
  if (code !== 0) {
    let msg = stderr.trim() || stdout.trim();
    try {
      const e = JSON.parse(stdout) as { msg?: string; details?: string };
      msg = [e.msg, e.details].filter((x) => x !== undefined && x !== '').join(': ');
    } catch {
      /* not JSON */
    }
    throw new BerthError(ErrorKind.Internal, `${what} failed: ${msg}`);
  }
  if (req.command !== 'ADD' || stdout.trim() === '') return {};
  try {
    return JSON.parse(stdout) as CniResult;
  } catch (e) {
    throw new BerthError(ErrorKind.Internal, `${what}: unreadable result: ${stdout.slice(0, 200)}`, { cause: e });
  }
}
