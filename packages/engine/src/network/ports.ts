/**
 * Published ports: HostConfig.PortBindings (and -P's PublishAllPorts over
 * ExposedPorts) turned into host port mappings, host ports chosen (ranges,
 * ephemeral ports) and checked free, and NetworkSettings.Ports as Docker
 * shows it.
 */
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { BerthError, ErrorKind, invalid } from '@berth/base';

export interface PortRequest {
  readonly proto: 'tcp' | 'udp';
  readonly containerPort: number;
  /** '' for every address. */
  readonly hostIp: string;
  /** [low, high]; [0, 0] for an ephemeral port. */
  readonly hostRange: readonly [number, number];
}

export interface PortMapping {
  readonly proto: 'tcp' | 'udp';
  readonly containerPort: number;
  readonly hostIp: string;
  readonly hostPort: number;
}

type Bindings = Record<string, readonly { HostIp?: string; HostPort?: string }[] | null>;

function splitKey(key: string): { ports: [number, number]; proto: 'tcp' | 'udp' } {
  const [p = '', proto = 'tcp'] = key.split('/');
  if (proto !== 'tcp' && proto !== 'udp') throw invalid(`invalid proto: ${proto} (tcp and udp are supported)`);
  return { ports: parseRange(p, `port ${key}`), proto };
}

function parseRange(s: string, what: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s);
  if (m === null) throw invalid(`invalid ${what}: ${JSON.stringify(s)}`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo > 65535 || hi > 65535 || hi < lo) throw invalid(`invalid ${what}: ${JSON.stringify(s)}`);
  return [lo, hi];
}

/** The mappings a container asks for. */
export function portRequests(bindings: Bindings | undefined, exposed: Record<string, unknown> | undefined, publishAll: boolean): PortRequest[] {
  const out: PortRequest[] = [];
  const bound = new Set<string>();
  for (const [key, list] of Object.entries(bindings ?? {})) {
    const { ports, proto } = splitKey(key);
    for (let cp = ports[0]; cp <= ports[1]; cp++) {
      bound.add(`${cp}/${proto}`);
      for (const b of list ?? []) {
        const hp = b.HostPort ?? '';
        let range: [number, number] = hp === '' ? [0, 0] : parseRange(hp, `host port ${hp}`);
        // A range of container ports against a range of host ports maps them one to one.
        if (ports[1] > ports[0] && range[1] - range[0] === ports[1] - ports[0] && range[0] !== 0) {
          const h = range[0] + (cp - ports[0]);
          range = [h, h];
        }
        out.push({ proto, containerPort: cp, hostIp: b.HostIp ?? '', hostRange: range });
      }
    }
  }
  if (publishAll) {
    for (const key of Object.keys(exposed ?? {})) {
      const { ports, proto } = splitKey(key);
      for (let cp = ports[0]; cp <= ports[1]; cp++) {
        if (bound.has(`${cp}/${proto}`)) continue;
        out.push({ proto, containerPort: cp, hostIp: '', hostRange: [0, 0] });
      }
    }
  }
  return out;
}

function sameAddress(a: string, b: string): boolean {
  const any = (x: string) => x === '' || x === '0.0.0.0';
  return any(a) || any(b) || a === b;
}

/** Whether the host lets us bind the port (nothing else listens there). */
export function bindable(proto: 'tcp' | 'udp', ip: string, port: number): Promise<number | undefined> {
  const host = ip === '' ? '0.0.0.0' : ip;
  return new Promise((resolve) => {
    if (proto === 'udp') {
      const s = createSocket('udp4');
      s.once('error', () => { s.close(); resolve(undefined); });
      s.bind(port, host, () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
      return;
    }
    const srv = createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen({ port, host, exclusive: true }, () => {
      const a = srv.address();
      const p = typeof a === 'object' && a !== null ? a.port : undefined;
      srv.close(() => resolve(p));
    });
  });
}

function allocated(hostIp: string, hostPort: number): BerthError {
  return new BerthError(ErrorKind.Conflict, `Bind for ${hostIp === '' ? '0.0.0.0' : hostIp}:${hostPort} failed: port is already allocated`);
}

/**
 * Host ports for the requests: fixed ones checked against `inUse` (the
 * engine's other mappings) and the host; ephemeral ones from the kernel.
 */
export async function allocatePorts(reqs: readonly PortRequest[], inUse: readonly PortMapping[]): Promise<PortMapping[]> {
  const taken: PortMapping[] = [...inUse];
  const out: PortMapping[] = [];
  const clash = (proto: string, ip: string, port: number): boolean =>
    taken.some((t) => t.proto === proto && t.hostPort === port && sameAddress(t.hostIp, ip));
  for (const r of reqs) {
    let port: number | undefined;
    if (r.hostRange[0] === 0) {
      for (let i = 0; i < 20 && port === undefined; i++) {
        const p = await bindable(r.proto, r.hostIp, 0);
        if (p !== undefined && !clash(r.proto, r.hostIp, p)) port = p;
      }
      if (port === undefined) throw new BerthError(ErrorKind.ResourceExhausted, 'no free ephemeral host port');
    } else {
      for (let p = r.hostRange[0]; p <= r.hostRange[1] && port === undefined; p++) {
        if (clash(r.proto, r.hostIp, p)) continue;
        if (await bindable(r.proto, r.hostIp, p) !== undefined) port = p;
      }
      if (port === undefined) throw allocated(r.hostIp, r.hostRange[0]);
    }
    const m: PortMapping = { proto: r.proto, containerPort: r.containerPort, hostIp: r.hostIp, hostPort: port };
    taken.push(m);
    out.push(m);
  }
  return out;
}

/** NetworkSettings.Ports: every exposed or published port, with its host bindings or null. */
export function portsView(exposed: Record<string, unknown> | undefined, mappings: readonly PortMapping[]): Record<string, { HostIp: string; HostPort: string }[] | null> {
  const out: Record<string, { HostIp: string; HostPort: string }[] | null> = {};
  for (const key of Object.keys(exposed ?? {})) {
    const { ports, proto } = splitKey(key);
    for (let p = ports[0]; p <= ports[1]; p++) out[`${p}/${proto}`] = null;
  }
  for (const m of mappings) {
    const key = `${m.containerPort}/${m.proto}`;
    const list = out[key] ?? [];
    list.push({ HostIp: m.hostIp === '' ? '0.0.0.0' : m.hostIp, HostPort: String(m.hostPort) });
    out[key] = list;
  }
  return out;
}
