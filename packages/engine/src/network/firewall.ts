/**
 * The engine's iptables rules, as data: one filter chain (isolation between
 * networks, `internal` networks cut off) and two nat chains (published ports;
 * masquerade of outbound traffic, of 127.0.0.1 and of hairpin connections),
 * all named after the instance's tag, reached by jumps commented
 * `berth:<tag>`. The chains are rewritten whole from the engine's state when
 * networks change and at engine start (`iptables-restore --noflush`), so that
 * they never drift, and removed whole when the engine has nothing left. A
 * container adds and deletes only its own DNAT rules (one small restore), and
 * nothing at all when it publishes no port.
 */
import { spawn } from 'node:child_process';
import { internal } from '@berth/base';
import { sh } from './netns.js';

export interface FwNetwork {
  readonly bridge: string;
  readonly subnet: string;
  readonly internal: boolean;
}

export interface FwPort {
  readonly proto: 'tcp' | 'udp';
  /** '' or 0.0.0.0: every local address. */
  readonly hostIp: string;
  readonly hostPort: number;
  readonly containerIp: string;
  readonly containerPort: number;
}

export interface FwState {
  readonly networks: readonly FwNetwork[];
  readonly ports: readonly FwPort[];
}

export function chainNames(tag: string): { fwd: string; dnat: string; post: string } {
  return { fwd: `BERTH-${tag}-FWD`, dnat: `BERTH-${tag}-DNAT`, post: `BERTH-${tag}-POST` };
}

/** The jumps from built-in chains: [table, chain, rule args]. */
export function jumps(tag: string): [string, string, string[]][] {
  const c = chainNames(tag);
  const cm = ['-m', 'comment', '--comment', `berth:${tag}`];
  return [
    ['filter', 'FORWARD', [...cm, '-j', c.fwd]],
    ['nat', 'PREROUTING', ['-m', 'addrtype', '--dst-type', 'LOCAL', ...cm, '-j', c.dnat]],
    ['nat', 'OUTPUT', ['-m', 'addrtype', '--dst-type', 'LOCAL', ...cm, '-j', c.dnat]],
    ['nat', 'POSTROUTING', [...cm, '-j', c.post]],
  ];
}

/** The iptables-restore input that sets the engine's chains to this state. */
export function renderRules(tag: string, s: FwState): string {
  const c = chainNames(tag);
  const f: string[] = ['*filter', `:${c.fwd} - [0:0]`];
  for (const x of s.networks) {
    for (const y of s.networks) {
      if (y.bridge !== x.bridge) f.push(`-A ${c.fwd} -i ${x.bridge} -o ${y.bridge} -j DROP`);
    }
    if (x.internal) {
      f.push(`-A ${c.fwd} -i ${x.bridge} ! -o ${x.bridge} -j DROP`);
      f.push(`-A ${c.fwd} -o ${x.bridge} ! -i ${x.bridge} -j DROP`);
    }
    f.push(`-A ${c.fwd} -i ${x.bridge} -j ACCEPT`);
    f.push(`-A ${c.fwd} -o ${x.bridge} -j ACCEPT`);
  }
  f.push('COMMIT');
  const n: string[] = ['*nat', `:${c.dnat} - [0:0]`, `:${c.post} - [0:0]`];
  for (const p of s.ports) n.push(`-A ${dnatRule(c.dnat, p)}`);
  for (const x of s.networks) {
    if (!x.internal) n.push(`-A ${c.post} -s ${x.subnet} ! -o ${x.bridge} -j MASQUERADE`);
    n.push(`-A ${c.post} -s 127.0.0.0/8 -o ${x.bridge} -j MASQUERADE`);
    // Hairpin: a container reaching a published port of its own network through a host address.
    if (!x.internal) n.push(`-A ${c.post} -s ${x.subnet} -o ${x.bridge} -m conntrack --ctstate DNAT -j MASQUERADE`);
  }
  n.push('COMMIT');
  return [...f, ...n, ''].join('\n');
}

/** A published port's DNAT rule, without its -A/-D. */
function dnatRule(chain: string, p: FwPort): string {
  const dst = p.hostIp === '' || p.hostIp === '0.0.0.0' ? '' : ` -d ${p.hostIp}/32`;
  return `${chain}${dst} -p ${p.proto} -m ${p.proto} --dport ${p.hostPort} -j DNAT --to-destination ${p.containerIp}:${p.containerPort}`;
}

/** The iptables-restore input adding or deleting these ports' DNAT rules, and nothing else. */
export function renderPortChange(tag: string, op: 'add' | 'delete', ports: readonly FwPort[]): string {
  const chain = chainNames(tag).dnat;
  return ['*nat', ...ports.map((p) => `${op === 'add' ? '-A' : '-D'} ${dnatRule(chain, p)}`), 'COMMIT', ''].join('\n');
}

function restore(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('iptables-restore', ['--noflush', '-w'], { stdio: ['pipe', 'ignore', 'pipe'] });
    const err: Buffer[] = [];
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve();
      else reject(internal(`iptables-restore of the engine's rules failed: ${Buffer.concat(err).toString().trim()}`));
    });
    child.stdin.end(text);
  });
}

/** Set the engine's chains to the state and make sure the jumps are there. */
export async function applyRules(tag: string, s: FwState): Promise<void> {
  await restore(renderRules(tag, s));
  for (const [table, chain, rule] of jumps(tag)) {
    const present = await sh('iptables', ['-w', '-t', table, '-C', chain, ...rule]).then(() => true, () => false);
    if (!present) await sh('iptables', ['-w', '-t', table, '-I', chain, '1', ...rule]);
  }
}

/**
 * Add or delete the DNAT rules of these ports in one transaction; it fails
 * (changing nothing) when the chain is missing or a rule to delete is not
 * there, and the caller then rewrites the chains whole.
 */
export async function changePorts(tag: string, op: 'add' | 'delete', ports: readonly FwPort[]): Promise<void> {
  if (ports.length > 0) await restore(renderPortChange(tag, op, ports));
}

/** Remove the jumps and the chains (idempotent). */
export async function removeRules(tag: string): Promise<void> {
  for (const [table, chain, rule] of jumps(tag)) {
    for (let i = 0; i < 10; i++) {
      const ok = await sh('iptables', ['-w', '-t', table, '-D', chain, ...rule]).then(() => true, () => false);
      if (!ok) break;
    }
  }
  const c = chainNames(tag);
  for (const [table, chain] of [['filter', c.fwd], ['nat', c.dnat], ['nat', c.post]] as const) {
    await sh('iptables', ['-w', '-t', table, '-F', chain]).catch(() => undefined);
    await sh('iptables', ['-w', '-t', table, '-X', chain]).catch(() => undefined);
  }
}
