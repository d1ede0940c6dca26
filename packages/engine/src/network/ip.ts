/**
 * IPv4 address math for IPAM: parsing CIDRs, overlap, the next free address
 * of a range, and the choice of a subnet that collides with no route or
 * interface address of the host (a real docker0 may be there).
 */
import { execFileSync } from 'node:child_process';
import { invalid } from '@berth/base';

export interface Cidr {
  /** The network address as an unsigned 32-bit number. */
  readonly base: number;
  readonly prefix: number;
}

export function ipToInt(s: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (m === null) throw invalid(`invalid IPv4 address: ${JSON.stringify(s)}`);
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const o = Number(m[i]);
    if (o > 255) throw invalid(`invalid IPv4 address: ${JSON.stringify(s)}`);
    n = n * 256 + o;
  }
  return n;
}

export function isIPv4(s: string): boolean {
  try {
    ipToInt(s);
    return true;
  } catch {
    return false;
  }
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** `a.b.c.d/n`; with `strict`, host bits must be zero (Docker's subnets). */
export function parseCidr(s: string, strict = false): Cidr {
  const i = s.indexOf('/');
  if (i < 0) throw invalid(`invalid CIDR address: ${s}`);
  const prefix = Number(s.slice(i + 1));
  if (!/^\d{1,2}$/.test(s.slice(i + 1)) || prefix > 32) throw invalid(`invalid CIDR address: ${s}`);
  const addr = ipToInt(s.slice(0, i));
  const base = (addr & mask(prefix)) >>> 0;
  if (strict && base !== addr) throw invalid(`invalid subnet ${s}: it should be ${intToIp(base)}/${prefix}`);
  return { base, prefix };
}

export function cidrString(c: Cidr): string {
  return `${intToIp(c.base)}/${c.prefix}`;
}

export function size(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function contains(c: Cidr, ip: number): boolean {
  return ip >= c.base && ip < c.base + size(c);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + size(b) && b.base < a.base + size(a);
}

/**
 * The first address of `range` (default: the subnet) that is neither the
 * subnet's network or broadcast address, nor in `taken`.
 */
export function nextFree(subnet: Cidr, range: Cidr | undefined, taken: ReadonlySet<number>): number | undefined {
  const r = range ?? subnet;
  const first = subnet.base;
  const last = subnet.base + size(subnet) - 1;
  for (let ip = r.base; ip < r.base + size(r); ip++) {
    if (subnet.prefix < 31 && (ip === first || ip === last)) continue;
    if (!taken.has(ip)) return ip;
  }
  return undefined;
}

/** The host's IPv4 routes and interface addresses as CIDRs (the default route and `exclude`'s devices left out). */
export function hostNetworks(exclude: ReadonlySet<string> = new Set()): Cidr[] {
  const out: Cidr[] = [];
  try {
    const routes = JSON.parse(execFileSync('ip', ['-j', '-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' })) as { dst?: string; type?: string; dev?: string }[];
    for (const r of routes) {
      const dst = r.dst ?? '';
      if (dst === '' || dst === 'default' || r.type === 'broadcast' || r.type === 'local') continue;
      if (dst.startsWith('127.') || exclude.has(r.dev ?? '')) continue;
      out.push(parseCidr(dst.includes('/') ? dst : `${dst}/32`));
    }
    const links = JSON.parse(execFileSync('ip', ['-j', '-4', 'addr'], { encoding: 'utf8' })) as { ifname?: string; addr_info?: { local?: string; prefixlen?: number }[] }[];
    for (const l of links) {
      if (exclude.has(l.ifname ?? '')) continue;
      for (const a of l.addr_info ?? []) {
        if (a.local === undefined || a.local.startsWith('127.')) continue;
        out.push(parseCidr(`${a.local}/${a.prefixlen ?? 32}`));
      }
    }
  } catch {
    /* no iproute2 answer: only the engine's own networks are avoided */
  }
  return out;
}

/** Docker's local address pools: 172.17-31/16, then 192.168.0-240/20, then 10.x/16. */
export function candidateSubnets(): Cidr[] {
  const out: Cidr[] = [];
  for (let b = 17; b <= 31; b++) out.push(parseCidr(`172.${b}.0.0/16`));
  for (let c = 0; c <= 240; c += 16) out.push(parseCidr(`192.168.${c}.0/20`));
  for (let b = 100; b <= 250; b++) out.push(parseCidr(`10.${b}.0.0/16`));
  return out;
}

/**
 * A free subnet from the pools: none of `taken` overlaps it. Scanning starts at
 * `offset` (so that side-by-side engines starting together tend to differ).
 */
export function pickSubnet(taken: readonly Cidr[], offset = 0): Cidr | undefined {
  const all = candidateSubnets();
  for (let i = 0; i < all.length; i++) {
    const c = all[(i + offset) % all.length];
    if (c !== undefined && !taken.some((t) => overlaps(t, c))) return c;
  }
  return undefined;
}

/** Docker's MAC address of an endpoint: 02:42 and the four bytes of its IPv4 address. */
export function macOf(ip: number): string {
  return ['02', '42', ...[24, 16, 8, 0].map((s) => ((ip >>> s) & 255).toString(16).padStart(2, '0'))].join(':');
}
