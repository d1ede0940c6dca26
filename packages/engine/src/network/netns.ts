/**
 * Network namespaces owned by berthd: each one a bind mount of a fresh
 * namespace on <exec-root>/netns/<id>, made by util-linux `unshare --net=<file>`
 * (a child process, since Node's threads cannot unshare), so that it outlives
 * berthd and any OCI runtime can join it by path. Interfaces are made by `ip`.
 */
import { execFile } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { internal } from '@berth/base';

const run = promisify(execFile);

/** Run a host command; its stderr in the error. */
export async function sh(cmd: string, args: readonly string[]): Promise<string> {
  try {
    const r = await run(cmd, [...args], { encoding: 'utf8' });
    return r.stdout;
  } catch (e) {
    const err = e as { stderr?: string; message?: string };
    throw internal(`${cmd} ${args.join(' ')}: ${(err.stderr ?? '').trim() || err.message || String(e)}`, e);
  }
}

export function isMounted(path: string): boolean {
  const mi = readFileSync('/proc/self/mountinfo', 'utf8');
  return mi.split('\n').some((l) => l.split(' ')[4] === path);
}

/** Make the namespace at `path` unless one is already mounted there. */
export async function createNetns(path: string): Promise<void> {
  if (existsSync(path) && isMounted(path)) return;
  mkdirSync(path.slice(0, path.lastIndexOf('/')), { recursive: true, mode: 0o711 });
  closeSync(openSync(path, 'w', 0o444));
  try {
    await sh('unshare', [`--net=${path}`, 'true']);
  } catch (e) {
    rmSync(path, { force: true });
    throw e;
  }
}

/** Unmount and remove; nothing there is fine. */
export async function removeNetns(path: string): Promise<void> {
  if (isMounted(path)) await sh('umount', [path]).catch(() => sh('umount', ['-l', path]));
  rmSync(path, { force: true });
}

export function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** A bridge with the gateway address, up (idempotent). */
export async function ensureBridge(name: string, gatewayCidr: string, mtu: number | undefined): Promise<void> {
  if (!linkExists(name)) {
    await sh('ip', ['link', 'add', 'name', name, 'type', 'bridge']).catch((e: unknown) => {
      if (!linkExists(name)) throw e;
    });
  }
  if (mtu !== undefined) await sh('ip', ['link', 'set', 'dev', name, 'mtu', String(mtu)]);
  const addrs = await sh('ip', ['-4', '-o', 'addr', 'show', 'dev', name]);
  if (!addrs.includes(` ${gatewayCidr} `)) await sh('ip', ['addr', 'add', gatewayCidr, 'dev', name]);
  await sh('ip', ['link', 'set', 'dev', name, 'up']);
  // Published ports reached on 127.0.0.1 are DNATed out of this bridge.
  await sh('sysctl', ['-q', '-w', `net.ipv4.conf.${name}.route_localnet=1`]).catch(() => undefined);
}

export async function removeLink(name: string): Promise<void> {
  if (linkExists(name)) await sh('ip', ['link', 'del', name]).catch(() => undefined);
}
