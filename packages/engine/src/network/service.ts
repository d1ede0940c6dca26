/**
 * Networks: Docker's network model on the host's kernel.
 *
 *   network   a row of net_networks; a bridge network owns a Linux bridge
 *             (made at create, at daemon start for the default `bridge`)
 *   endpoint  a container on a network while it runs: a veth into the
 *             container's namespace made by the CNI `bridge` plugin, its
 *             address from our IPAM (a net_endpoints row is the lease),
 *             handed to the plugin through the `static` IPAM plugin, its
 *             MAC address made from it as Docker does (02:42:<address>)
 *   sandbox   the container's namespace, bind-mounted at <exec-root>/netns/<id>
 *   rules     iptables chains of this instance, rewritten from the rows when
 *             networks change (isolation, internal, masquerade, published
 *             ports); a container adds and deletes only its own DNAT rules
 *
 * Everything lives in the kernel and the database, so a berthd restart keeps
 * running containers connected.
 *
 * Two kinds of lock: the engine-wide one (`serial`) covers what is decided
 * from the rows (networks, address and port leases, the rules) and is held
 * only for that; the one of each container (`byContainer`) orders a
 * container's setup, teardown, connect and disconnect. The slow part of a
 * container's setup and teardown (the namespace, the CNI plugins) runs under
 * its own lock only, so that containers start and stop concurrently. Locks are
 * taken in that order (container, then engine-wide), never the other way.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, ErrorKind, invalid, notFound } from '@berth/base';
import type { Logger } from '@berth/base';
import { networkMode } from '../containers/config.js';
import type { NetworkAttachment, NetworkHooks } from '../containers/hooks.js';
import type { ContainerRecord } from '../containers/record.js';
import { rfc3339Nano } from '../containers/record.js';
import { conflict } from '../server/errors.js';
import type { EngineStore } from '../store.js';
import { cniExec } from './cni.js';
import { applyRules, changePorts, removeRules } from './firewall.js';
import type { FwPort } from './firewall.js';
import { cidrString, contains, hostNetworks, intToIp, ipToInt, isIPv4, macOf, nextFree, overlaps, parseCidr, pickSubnet } from './ip.js';
import type { Cidr } from './ip.js';
import { createNetns, ensureBridge, linkExists, removeLink, removeNetns } from './netns.js';
import { allocatePorts, portRequests, portsView } from './ports.js';
import type { PortMapping } from './ports.js';
import { NetworkStore } from './store.js';
import { DnsServer, resolvConfNameservers } from './dns.js';
import type { Endpoint, IpamConfig, NetworkRecord } from './store.js';

export type { NetworkRecord, Endpoint } from './store.js';

const DEFAULT_EXEC_ROOT = '/run/berth';
const MTU_OPT = 'com.docker.network.driver.mtu';
const BRIDGE_OPT = 'com.docker.network.bridge.name';
const KNOWN_OPTS = new Set([MTU_OPT, BRIDGE_OPT, 'com.docker.network.bridge.enable_ip_masquerade', 'com.docker.network.bridge.enable_icc',
  'com.docker.network.bridge.host_binding_ipv4', 'com.docker.network.bridge.default_bridge', 'com.docker.network.container_iface_prefix']);

/** What the service needs of the containers. */
export interface ContainerLookup {
  find(ref: string): ContainerRecord;
  all(): ContainerRecord[];
}

export interface NetworkServiceOptions {
  readonly dataRoot: string;
  readonly execRoot: string;
  readonly log: Logger;
  readonly store: EngineStore;
  readonly containers: ContainerLookup;
}

/** A short tag of this engine instance (its exec root), in chain and bridge names. */
export function instanceTag(execRoot: string): string {
  return createHash('sha256').update(execRoot).digest('hex').slice(0, 6);
}

function forbidden(msg: string): BerthError {
  return new BerthError(ErrorKind.PermissionDenied, msg);
}

type Json = Record<string, unknown>;

function str(o: Json, k: string, path: string): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(`${path}.${k}: must be a string`);
  return v;
}

function strMap(o: Json, k: string, path: string): Record<string, string> {
  const v = o[k];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid(`${path}.${k}: must be an object of strings`);
  const out: Record<string, string> = {};
  for (const [kk, vv] of Object.entries(v as Json)) {
    if (typeof vv !== 'string') throw invalid(`${path}.${k}.${kk}: must be a string`);
    out[kk] = vv;
  }
  return out;
}

function obj(v: unknown): Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : {};
}

export class NetworkService implements NetworkHooks {
  private readonly db: NetworkStore;
  private readonly tag: string;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly containerChains = new Map<string, Promise<unknown>>();
  private dns: DnsServer | undefined;

  private constructor(private readonly o: NetworkServiceOptions) {
    this.db = new NetworkStore(join(o.dataRoot, 'engine.db'));
    this.tag = instanceTag(o.execRoot);
  }

  static async open(o: NetworkServiceOptions): Promise<NetworkService> {
    const s = new NetworkService(o);
    try {
      await s.serial(() => s.init());
    } catch (e) {
      s.db.close();
      throw e;
    }
    return s;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** One container's network changes, one at a time. */
  private byContainer<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const next = (this.containerChains.get(id) ?? Promise.resolve()).then(fn, fn);
    const tail = next.then(() => undefined, () => undefined);
    this.containerChains.set(id, tail);
    void tail.then(() => {
      if (this.containerChains.get(id) === tail) this.containerChains.delete(id);
    });
    return next;
  }

  private netnsPath(id: string): string {
    return join(this.o.execRoot, 'netns', id);
  }

  private defaultBridgeName(): string {
    return this.o.execRoot === DEFAULT_EXEC_ROOT ? 'berth0' : `berth-${this.tag}`;
  }

  // ---- start and stop ----

  private async init(): Promise<void> {
    const nets = this.db.networks();
    const eps = this.db.endpoints();
    const builtin = (name: string, driver: NetworkRecord['Driver']): NetworkRecord => ({
      Name: name, Id: randomBytes(32).toString('hex'), Created: rfc3339Nano(), Scope: 'local', Driver: driver,
      EnableIPv4: true, EnableIPv6: false, IPAM: { Driver: 'default', Options: null, Config: [] }, Internal: false,
      Attachable: false, Ingress: false, ConfigFrom: { Network: '' }, ConfigOnly: false, Options: {}, Labels: {},
      berth: { bridge: '', builtin: true },
    });
    for (const [name, driver] of [['host', 'host'], ['none', 'null']] as const) {
      if (!nets.some((n) => n.Name === name)) this.db.putNetwork(builtin(name, driver));
    }
    let def = nets.find((n) => n.Name === 'bridge');
    const bridge = this.defaultBridgeName();
    const ownBridges = new Set(nets.map((n) => n.berth.bridge).filter((b) => b !== ''));
    ownBridges.add(bridge);
    const hostNets = hostNetworks(ownBridges);
    const others = nets.filter((n) => n.Name !== 'bridge').flatMap((n) => n.IPAM.Config.map((c) => parseCidr(c.Subnet)));
    const collides = (s: Cidr): boolean => hostNets.some((h) => overlaps(h, s)) || others.some((h) => overlaps(h, s));
    const inUse = def !== undefined && eps.some((e) => e.networkId === def?.Id);
    if (def === undefined || (!inUse && collides(parseCidr(def.IPAM.Config[0]?.Subnet ?? '0.0.0.0/0')))) {
      const offset = this.o.execRoot === DEFAULT_EXEC_ROOT ? 0 : parseInt(this.tag, 16) % 97;
      const subnet = pickSubnet([...hostNets, ...others], offset);
      if (subnet === undefined) throw new BerthError(ErrorKind.ResourceExhausted, 'no free subnet for the default bridge network: every pool collides with a route');
      const rec = def ?? builtin('bridge', 'bridge');
      rec.IPAM.Config = [{ Subnet: cidrString(subnet), Gateway: intToIp(subnet.base + 1) }];
      rec.Options = { 'com.docker.network.bridge.default_bridge': 'true', [BRIDGE_OPT]: bridge, [MTU_OPT]: '1500' };
      rec.berth = { bridge, builtin: true };
      this.db.putNetwork(rec);
      def = rec;
    }
    for (const n of this.db.networks()) await this.ensureBridge(n);
    await this.applyRules();
    let upstream: string[] = [];
    try {
      upstream = resolvConfNameservers(readFileSync('/etc/resolv.conf', 'utf8'));
    } catch {
      /* no host resolvers: local names only */
    }
    this.dns = new DnsServer({
      lookup: (name, networkId) => this.lookupName(name, networkId),
      reverse: (ip, networkId) => this.reverseName(ip, networkId),
      upstream, log: this.o.log,
    });
    for (const n of this.db.networks()) await this.dnsUp(n);
  }

  /** User-defined networks get the embedded DNS server on their gateway. */
  private async dnsUp(n: NetworkRecord): Promise<void> {
    const gw = n.IPAM.Config[0]?.Gateway;
    if (this.dns === undefined || n.berth.builtin || n.Driver !== 'bridge' || gw === undefined || this.dnsBound(n)) return;
    await this.dns.addListener({ address: gw, port: 53, networkId: n.Id, networkName: n.Name }).catch((e: unknown) => {
      this.o.log.warn('the embedded DNS server cannot listen on the network', { network: n.Name, error: e instanceof Error ? e.message : String(e) });
    });
  }

  private async dnsDown(n: NetworkRecord): Promise<void> {
    const gw = n.IPAM.Config[0]?.Gateway;
    if (this.dns !== undefined && gw !== undefined) await this.dns.removeListener(gw, 53);
  }

  private dnsBound(n: NetworkRecord): boolean {
    return this.dns?.listeners().some((l) => l.networkId === n.Id) ?? false;
  }

  private namesOf(e: Endpoint): string[] {
    try {
      const c = this.o.containers.find(e.containerId);
      return [c.Name.slice(1), c.Id.slice(0, 12), ...(c.Config.Hostname !== undefined ? [c.Config.Hostname] : []), ...e.aliases].map((x) => x.toLowerCase());
    } catch {
      return [];
    }
  }

  private lookupName(name: string, networkId: string): string[] | undefined {
    const n = name.toLowerCase();
    const hits = this.db.endpoints().filter((e) => e.networkId === networkId && this.namesOf(e).includes(n)).map((e) => e.address);
    return hits.length > 0 ? hits : undefined;
  }

  private reverseName(ip: string, networkId: string): string | undefined {
    const e = this.db.endpoints().find((x) => x.networkId === networkId && x.address === ip);
    return e === undefined ? undefined : this.namesOf(e)[0];
  }

  /**
   * Stop serving; the kernel state stays for the running containers. With
   * nothing attached, every bridge and rule of the engine goes (they are made
   * again at the next start), so that a stopped engine leaves nothing behind.
   */
  async close(): Promise<void> {
    await this.dns?.close().catch(() => undefined);
    await Promise.all([...this.containerChains.values()]);
    await this.serial(async () => {
      if (this.db.endpoints().length > 0) return;
      for (const n of this.db.networks()) if (n.Driver === 'bridge') await removeLink(n.berth.bridge);
      await removeRules(this.tag);
    }).catch((e: unknown) => this.o.log.warn('network cleanup on stop failed', { error: e instanceof Error ? e.message : String(e) }));
    this.db.close();
  }

  private async ensureBridge(n: NetworkRecord): Promise<void> {
    if (n.Driver !== 'bridge') return;
    const cfg = n.IPAM.Config[0];
    if (cfg === undefined) return;
    await ensureBridge(n.berth.bridge, `${cfg.Gateway}/${parseCidr(cfg.Subnet).prefix}`, n.berth.mtu);
  }

  /**
   * Add or delete the DNAT rules of these endpoints' published ports (their
   * rows already put or deleted); when that cannot be done (a chain or rule
   * missing), the chains are rewritten whole from the rows. Under `serial`.
   */
  private async portRules(op: 'add' | 'delete', eps: readonly Endpoint[]): Promise<void> {
    const ports = eps.flatMap(fwPorts);
    if (ports.length === 0) return;
    try {
      await changePorts(this.tag, op, ports);
    } catch (e) {
      this.o.log.warn('changing the published ports\' rules failed; rewriting the engine\'s rules', { error: e instanceof Error ? e.message : String(e) });
      await this.applyRules();
    }
  }

  private async applyRules(): Promise<void> {
    const nets = this.db.networks().filter((n) => n.Driver === 'bridge' && linkExists(n.berth.bridge));
    const ports = this.db.endpoints().flatMap(fwPorts);
    await applyRules(this.tag, {
      networks: nets.map((n) => ({ bridge: n.berth.bridge, subnet: n.IPAM.Config[0]?.Subnet ?? '', internal: n.Internal })),
      ports,
    });
  }

  // ---- lookups ----

  /** By full ID, name, or unique ID prefix. */
  find(ref: string): NetworkRecord {
    const all = this.db.networks();
    const hit = all.find((n) => n.Id === ref) ?? all.find((n) => n.Name === ref);
    if (hit !== undefined) return hit;
    const pre = ref === '' ? [] : all.filter((n) => n.Id.startsWith(ref));
    if (pre.length === 1 && pre[0] !== undefined) return pre[0];
    if (pre.length > 1) throw invalid(`network ${ref} is ambiguous (${pre.length} matches found based on ID prefix)`);
    throw notFound(`network ${ref} not found`);
  }

  /** Docker's inspect shape. */
  inspect(n: NetworkRecord): Json {
    const containers: Json = {};
    for (const e of this.db.endpoints()) {
      if (e.networkId !== n.Id) continue;
      let name = '';
      try {
        name = this.o.containers.find(e.containerId).Name.slice(1);
      } catch {
        /* being removed */
      }
      containers[e.containerId] = { Name: name, EndpointID: e.endpointId, MacAddress: e.mac, IPv4Address: `${e.address}/${e.prefix}`, IPv6Address: '' };
    }
    const { berth: _own, ...rest } = n;
    void _own;
    return { ...rest, Containers: containers };
  }

  list(filters: Map<string, string[]>): Json[] {
    const allowed = new Set(['driver', 'id', 'label', 'name', 'scope', 'type', 'dangling']);
    for (const k of filters.keys()) if (!allowed.has(k)) throw invalid(`invalid filter '${k}'`);
    for (const t of filters.get('type') ?? []) if (t !== 'custom' && t !== 'builtin') throw invalid(`invalid filter: 'type'='${t}'`);
    const eps = this.db.endpoints();
    return this.db.networks().filter((n) => {
      const any = (k: string, pred: (v: string) => boolean): boolean => {
        const vs = filters.get(k);
        return vs === undefined || vs.some(pred);
      };
      if (!any('driver', (v) => n.Driver === v)) return false;
      if (!any('id', (v) => n.Id.includes(v))) return false;
      if (!any('name', (v) => n.Name.includes(v))) return false;
      if (!any('scope', (v) => v === 'local')) return false;
      if (!any('type', (v) => (v === 'builtin') === n.berth.builtin)) return false;
      if (!any('dangling', (v) => (v === 'true' || v === '1') === (!n.berth.builtin && !eps.some((e) => e.networkId === n.Id)))) return false;
      const labels = filters.get('label');
      if (labels !== undefined && !labels.every((l) => {
        const i = l.indexOf('=');
        return i < 0 ? l in n.Labels : n.Labels[l.slice(0, i)] === l.slice(i + 1);
      })) return false;
      return true;
    }).map((n) => this.inspect(n));
  }

  // ---- create, remove, prune ----

  create(body: Json): Promise<{ Id: string; Warning: string }> {
    return this.serial(() => this.createLocked(body));
  }

  private async createLocked(body: Json): Promise<{ Id: string; Warning: string }> {
    const name = str(body, 'Name', 'NetworkCreateRequest') ?? '';
    if (name === '') throw invalid('network name must not be empty');
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name)) throw invalid(`invalid network name ${JSON.stringify(name)}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    const all = this.db.networks();
    if (all.some((n) => n.Name === name)) throw conflict(`network with name ${name} already exists`);
    const driver = str(body, 'Driver', 'NetworkCreateRequest') ?? 'bridge';
    if (driver === 'host' || driver === 'null') throw forbidden(`only one instance of "${driver}" network is allowed`);
    if (driver !== 'bridge' && driver !== '') throw notFound(`plugin "${driver}" not found`);
    if (body['EnableIPv6'] === true) throw invalid('IPv6 networks are not supported by this engine');
    const options = strMap(body, 'Options', 'NetworkCreateRequest');
    for (const k of Object.keys(options)) {
      if (k.startsWith('com.docker.network.') && !KNOWN_OPTS.has(k)) throw invalid(`unsupported network option ${k}`);
    }
    let mtu: number | undefined;
    if (options[MTU_OPT] !== undefined) {
      mtu = Number(options[MTU_OPT]);
      if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw invalid(`invalid MTU ${JSON.stringify(options[MTU_OPT])}: must be between 68 and 65535`);
    }
    const id = randomBytes(32).toString('hex');
    const bridge = options[BRIDGE_OPT] ?? `br-${id.slice(0, 12)}`;
    if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(bridge)) throw invalid(`invalid bridge name ${JSON.stringify(bridge)}`);
    if (all.some((n) => n.berth.bridge === bridge) || linkExists(bridge)) throw conflict(`bridge name ${bridge} is already in use`);

    const ipam = obj(body['IPAM']);
    const cfgs = Array.isArray(ipam['Config']) ? (ipam['Config'] as unknown[]).map(obj) : [];
    if (cfgs.length > 1) throw invalid('only one IPAM configuration per network is supported');
    const ours = all.flatMap((n) => n.IPAM.Config.map((c) => parseCidr(c.Subnet)));
    let cfg: IpamConfig;
    const want = cfgs[0];
    const subnetStr = want === undefined ? undefined : str(want, 'Subnet', 'IPAM.Config');
    if (want !== undefined && subnetStr !== undefined && subnetStr !== '') {
      if (subnetStr.includes(':')) throw invalid('IPv6 subnets are not supported by this engine');
      const subnet = parseCidr(subnetStr, true);
      if (subnet.prefix > 30) throw invalid(`subnet ${subnetStr} is too small`);
      if (ours.some((o) => overlaps(o, subnet))) throw forbidden('invalid pool request: Pool overlaps with other one on this address space');
      const gw = str(want, 'Gateway', 'IPAM.Config') ?? '';
      if (gw !== '' && (!isIPv4(gw) || !contains(subnet, ipToInt(gw)))) throw invalid(`no matching subnet for gateway ${gw}`);
      const range = str(want, 'IPRange', 'IPAM.Config') ?? '';
      if (range !== '') {
        const r = parseCidr(range, true);
        if (!contains(subnet, r.base) || r.prefix < subnet.prefix) throw invalid(`no matching subnet for range ${range}`);
      }
      cfg = { Subnet: cidrString(subnet), Gateway: gw !== '' ? gw : intToIp(subnet.base + 1), ...(range !== '' ? { IPRange: range } : {}) };
    } else {
      const subnet = pickSubnet([...hostNetworks(new Set(all.map((n) => n.berth.bridge))), ...ours], 1);
      if (subnet === undefined) throw new BerthError(ErrorKind.ResourceExhausted, 'could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network');
      cfg = { Subnet: cidrString(subnet), Gateway: intToIp(subnet.base + 1) };
    }
    const rec: NetworkRecord = {
      Name: name, Id: id, Created: rfc3339Nano(), Scope: 'local', Driver: 'bridge', EnableIPv4: true, EnableIPv6: false,
      IPAM: { Driver: 'default', Options: Object.keys(strMap(ipam, 'Options', 'IPAM')).length > 0 ? strMap(ipam, 'Options', 'IPAM') : {}, Config: [cfg] },
      Internal: body['Internal'] === true, Attachable: body['Attachable'] === true, Ingress: false, ConfigFrom: { Network: '' },
      ConfigOnly: false, Options: options, Labels: strMap(body, 'Labels', 'NetworkCreateRequest'),
      berth: { bridge, ...(mtu !== undefined ? { mtu } : {}), builtin: false },
    };
    try {
      await this.ensureBridge(rec);
      this.db.putNetwork(rec);
      await this.applyRules();
      await this.dnsUp(rec);
    } catch (e) {
      this.db.deleteNetwork(id);
      await removeLink(bridge);
      throw e;
    }
    return { Id: id, Warning: '' };
  }

  remove(ref: string): Promise<void> {
    return this.serial(async () => {
      const n = this.find(ref);
      if (n.berth.builtin) throw forbidden(`${n.Name} is a pre-defined network and cannot be removed`);
      if (this.db.endpoints().some((e) => e.networkId === n.Id)) throw conflict(`error while removing network: network ${n.Name} id ${n.Id} has active endpoints`);
      await this.dnsDown(n);
      this.db.deleteNetwork(n.Id);
      await removeLink(n.berth.bridge);
      await this.applyRules();
    });
  }

  prune(filters: Map<string, string[]>): Promise<{ NetworksDeleted: string[] }> {
    for (const k of filters.keys()) if (k !== 'until' && k !== 'label' && k !== 'label!') throw invalid(`invalid filter '${k}'`);
    return this.serial(async () => {
      const eps = this.db.endpoints();
      const until = (filters.get('until') ?? []).map(untilMs);
      const deleted: string[] = [];
      for (const n of this.db.networks()) {
        if (n.berth.builtin || eps.some((e) => e.networkId === n.Id)) continue;
        if (until.some((u) => Date.parse(n.Created) >= u)) continue;
        const has = (l: string): boolean => {
          const i = l.indexOf('=');
          return i < 0 ? l in n.Labels : n.Labels[l.slice(0, i)] === l.slice(i + 1);
        };
        if (!(filters.get('label') ?? []).every(has)) continue;
        if ((filters.get('label!') ?? []).some(has)) continue;
        await this.dnsDown(n);
        this.db.deleteNetwork(n.Id);
        await removeLink(n.berth.bridge);
        deleted.push(n.Name);
      }
      if (deleted.length > 0) await this.applyRules();
      return { NetworksDeleted: deleted };
    });
  }

  // ---- connect, disconnect ----

  async connect(ref: string, body: Json): Promise<void> {
    this.find(ref);
    const c = this.o.containers.find(str(body, 'Container', 'NetworkConnectRequest') ?? '');
    await this.byContainer(c.Id, () => this.serial(async () => {
      const n = this.find(ref);
      const mode = networkMode(c.HostConfig.NetworkMode);
      if (n.Driver === 'host' || mode.kind === 'host') throw forbidden('container cannot be disconnected from host network or connected to host network');
      if (n.Driver === 'null' || mode.kind === 'none') throw forbidden('container cannot be connected to multiple networks with one of the networks in private (none) mode');
      if (mode.kind === 'container') throw forbidden('container sharing network namespace with another container or host cannot be connected to any other network');
      const nets = this.networksOf(c);
      if (n.Name in nets) throw forbidden(`endpoint with name ${c.Name.slice(1)} already exists in network ${n.Name}`);
      const ec = obj(body['EndpointConfig']);
      const ipamCfg = obj(ec['IPAMConfig']);
      const ip = str(ipamCfg, 'IPv4Address', 'EndpointConfig.IPAMConfig') ?? '';
      if (ip !== '') this.checkRequestedIp(n, ip);
      const aliases = Array.isArray(ec['Aliases']) ? (ec['Aliases'] as unknown[]).filter((a): a is string => typeof a === 'string') : [];
      nets[n.Name] = { ...emptyEndpointView(), IPAMConfig: ip !== '' ? { IPv4Address: ip } : null, Aliases: aliases.length > 0 ? aliases : null, NetworkID: n.Id };
      if (c.State.Running && existsSync(this.netnsPath(c.Id))) {
        let ep: Endpoint | undefined;
        try {
          const used = new Set(this.db.endpoints().filter((e) => e.containerId === c.Id).map((e) => e.ifname));
          let i = 0;
          while (used.has(`eth${i}`)) i++;
          ep = await this.lease(c, n, `eth${i}`);
          await this.plug(c, n, ep, false);
        } catch (e) {
          if (ep !== undefined) {
            await this.unplug(c, n, ep);
            await this.release(c, [ep]).catch(() => undefined);
          }
          delete nets[n.Name];
          throw e;
        }
      }
      this.saveContainer(c);
    }));
  }

  async disconnect(ref: string, body: Json): Promise<void> {
    this.find(ref);
    const cref = str(body, 'Container', 'NetworkDisconnectRequest') ?? '';
    let c: ContainerRecord;
    try {
      c = this.o.containers.find(cref);
    } catch (e) {
      // Forced: a container that is gone leaves its endpoint behind; clean it.
      if (body['Force'] !== true) throw e;
      await this.serial(async () => {
        const n = this.find(ref);
        const gone = this.db.endpoints().filter((x) => x.networkId === n.Id && (x.containerId === cref || x.containerId.startsWith(cref)));
        for (const ep of gone) this.db.deleteEndpoint(ep.networkId, ep.containerId);
        await this.portRules('delete', gone);
      });
      return;
    }
    const cc = c;
    await this.byContainer(cc.Id, async () => {
      const n = this.find(ref);
      if (n.Driver === 'host') throw forbidden('container cannot be disconnected from host network or connected to host network');
      const nets = this.networksOf(cc);
      if (!(n.Name in nets)) throw forbidden(`container ${cc.Id} is not connected to network ${n.Name}`);
      const ep = this.db.endpoints().find((e) => e.networkId === n.Id && e.containerId === cc.Id);
      if (ep !== undefined) {
        await this.unplug(cc, n, ep);
        await this.serial(() => this.release(cc, [ep]));
      }
      delete nets[n.Name];
      this.saveContainer(cc);
    });
  }

  private checkRequestedIp(n: NetworkRecord, ip: string): void {
    if (n.Name === 'bridge') throw forbidden('user specified IP address is supported on user defined networks only');
    const cfg = n.IPAM.Config[0];
    if (cfg === undefined) throw forbidden('user specified IP address is supported only when connecting to networks with user configured subnets');
    if (!isIPv4(ip)) throw invalid(`invalid IPv4 address: ${ip}`);
    if (!contains(parseCidr(cfg.Subnet), ipToInt(ip))) throw forbidden(`no configured subnet or ip-range contain the IP address ${ip}`);
  }

  private saveContainer(c: ContainerRecord): void {
    if (c.State.Status === 'removing') return;
    try {
      this.o.containers.find(c.Id);
    } catch {
      return;
    }
    this.o.store.putContainer(c.Id, c.Name.slice(1), c);
  }

  private networksOf(c: ContainerRecord): Record<string, Json> {
    const ns = c.NetworkSettings;
    const nets = obj(ns['Networks']);
    ns['Networks'] = nets;
    return nets as Record<string, Json>;
  }

  // ---- the container hooks ----

  setup(c: ContainerRecord): Promise<NetworkAttachment> {
    return this.byContainer(c.Id, () => this.setupContainer(c));
  }

  private async setupContainer(c: ContainerRecord): Promise<NetworkAttachment> {
    const mode = networkMode(c.HostConfig.NetworkMode);
    const ns = c.NetworkSettings;
    const nets = this.networksOf(c);
    const def = this.find('bridge');
    const hostGateway = def.IPAM.Config[0] !== undefined ? [def.IPAM.Config[0].Gateway] : [];
    if (mode.kind === 'container') return {};
    const path = this.netnsPath(c.Id);
    const loopback = (): Promise<unknown> => cniExec({ command: 'ADD', containerId: c.Id, netns: path, ifname: 'lo', config: { name: 'loopback', type: 'loopback' } });
    if (mode.kind === 'host' || mode.kind === 'none') {
      const n = this.find(mode.kind);
      ns['Networks'] = { [n.Name]: { ...emptyEndpointView(), ...obj(nets[n.Name]), NetworkID: n.Id } };
      if (mode.kind === 'host') return { hostGateway };
      // `none`: a namespace of its own with only the loopback, up, as Docker gives it.
      await createNetns(path);
      await loopback();
      ns['SandboxKey'] = path;
      return { netnsPath: path };
    }
    const primary = mode.kind !== 'network' || mode.name === 'default' ? 'bridge' : mode.name;
    const names = Object.keys(nets);
    const order = names.includes(primary) ? [primary, ...names.filter((x) => x !== primary)] : names;
    // The namespace is made while the leases (addresses, host ports and their rules) are decided.
    const [made, leased] = await Promise.allSettled([createNetns(path), this.serial(() => this.leaseAll(c, order.map((name) => this.find(name))))]);
    if (made.status === 'rejected') throw made.reason;
    if (leased.status === 'rejected') throw leased.reason;
    const endpoints = leased.value;
    // The loopback and each network's veth: independent plugin runs, all at once.
    const plugged = await Promise.allSettled([loopback(), ...endpoints.map(({ n, ep }, i) => this.plug(c, n, ep, i === 0))]);
    for (const r of plugged) if (r.status === 'rejected') throw r.reason;
    const first = endpoints[0];
    ns['Ports'] = portsView(c.Config.ExposedPorts, first?.ep.ports ?? []);
    ns['SandboxID'] = c.Id;
    ns['SandboxKey'] = path;
    const dns = first !== undefined && this.dnsBound(first.n) ? [first.n.IPAM.Config[0]?.Gateway ?? ''] : [];
    return { netnsPath: path, addresses: endpoints.map(({ ep }) => ep.address), hostGateway, ...(dns.length > 0 ? { dns } : {}) };
  }

  /** The container's address on each network, and its published ports on the first, with their rules. Under `serial`. */
  private async leaseAll(c: ContainerRecord, records: readonly NetworkRecord[]): Promise<{ n: NetworkRecord; ep: Endpoint }[]> {
    const out: { n: NetworkRecord; ep: Endpoint }[] = [];
    for (const [i, n] of records.entries()) out.push({ n, ep: await this.lease(c, n, `eth${i}`) });
    const first = out[0];
    if (first === undefined || first.n.Internal) return out;
    const reqs = portRequests(c.HostConfig.PortBindings, c.Config.ExposedPorts, c.HostConfig.PublishAllPorts === true);
    if (reqs.length === 0) return out;
    const inUse: PortMapping[] = this.db.endpoints().filter((e) => e.containerId !== c.Id).flatMap((e) => e.ports);
    try {
      first.ep.ports = await allocatePorts(reqs, inUse);
    } catch (e) {
      if (e instanceof BerthError && /already allocated/.test(e.message)) {
        throw new BerthError(e.kind, `driver failed programming external connectivity on endpoint ${c.Name.slice(1)} (${first.ep.endpointId}): ${e.message}`);
      }
      throw e;
    }
    this.db.putEndpoint(first.ep);
    await this.portRules('add', [first.ep]);
    return out;
  }

  /** Lease an address on the network (the row is the lease). Under `serial`. */
  private async lease(c: ContainerRecord, n: NetworkRecord, ifname: string): Promise<Endpoint> {
    if (n.Driver !== 'bridge') throw forbidden(`network ${n.Name} cannot be joined with other networks`);
    const cfg = n.IPAM.Config[0];
    if (cfg === undefined) throw invalid(`network ${n.Name} has no IPAM configuration`);
    // Made at network create and engine start; made again only if it went away since.
    if (!linkExists(n.berth.bridge)) await this.ensureBridge(n);
    const view = obj(this.networksOf(c)[n.Name]);
    const subnet = parseCidr(cfg.Subnet);
    const others = this.db.endpoints().filter((e) => e.networkId === n.Id && e.containerId !== c.Id);
    const taken = new Set(others.map((e) => ipToInt(e.address)));
    taken.add(ipToInt(cfg.Gateway));
    const wanted = str(obj(view['IPAMConfig']), 'IPv4Address', 'IPAMConfig') ?? '';
    let ip: number;
    if (wanted !== '') {
      this.checkRequestedIp(n, wanted);
      ip = ipToInt(wanted);
      if (taken.has(ip)) throw forbidden(`Address already in use: ${wanted} on network ${n.Name}`);
    } else {
      const next = nextFree(subnet, cfg.IPRange !== undefined ? parseCidr(cfg.IPRange) : undefined, taken);
      if (next === undefined) throw new BerthError(ErrorKind.ResourceExhausted, `no available IPv4 addresses on network ${n.Name}`);
      ip = next;
    }
    const aliases = Array.isArray(view['Aliases']) ? (view['Aliases'] as unknown[]).filter((a): a is string => typeof a === 'string') : [];
    const ep: Endpoint = {
      networkId: n.Id, containerId: c.Id, endpointId: randomBytes(32).toString('hex'), address: intToIp(ip), prefix: subnet.prefix,
      gateway: cfg.Gateway, mac: macOf(ip), ifname, aliases, ports: [],
    };
    this.db.putEndpoint(ep);
    return ep;
  }

  /** Plug a leased endpoint: a veth into the bridge and the namespace (CNI ADD); fill the endpoint's view. */
  private async plug(c: ContainerRecord, n: NetworkRecord, ep: Endpoint, primary: boolean): Promise<void> {
    const result = await cniExec({ command: 'ADD', containerId: c.Id, netns: this.netnsPath(c.Id), ifname: ep.ifname, config: this.cniConfig(n, ep, primary) });
    const mac = result.interfaces?.find((x) => x.name === ep.ifname && x.sandbox !== undefined)?.mac;
    if (mac !== undefined && mac !== ep.mac) {
      // A plugin that chose its own.
      ep.mac = mac;
      this.db.putEndpoint(ep);
    }
    const nets = this.networksOf(c);
    const view = obj(nets[n.Name]);
    const isDefault = n.Name === 'bridge';
    nets[n.Name] = {
      ...emptyEndpointView(), ...view,
      NetworkID: n.Id, EndpointID: ep.endpointId, Gateway: ep.gateway, IPAddress: ep.address, IPPrefixLen: ep.prefix, MacAddress: ep.mac,
      Aliases: ep.aliases.length > 0 ? ep.aliases : null,
      DNSNames: isDefault ? null : [c.Name.slice(1), c.Id.slice(0, 12), ...ep.aliases],
    };
    if (isDefault) {
      Object.assign(c.NetworkSettings, { EndpointID: ep.endpointId, Gateway: ep.gateway, IPAddress: ep.address, IPPrefixLen: ep.prefix, MacAddress: ep.mac });
    }
  }

  private cniConfig(n: NetworkRecord, ep: Endpoint, primary: boolean): Record<string, unknown> & { type: string; name: string } {
    return {
      name: `berth-${n.Id.slice(0, 12)}`, type: 'bridge', bridge: n.berth.bridge, isGateway: true, ipMasq: false, hairpinMode: true,
      ...(n.berth.mtu !== undefined ? { mtu: n.berth.mtu } : {}),
      ...(ep.mac !== '' ? { runtimeConfig: { mac: ep.mac } } : {}),
      ipam: {
        type: 'static',
        addresses: [{ address: `${ep.address}/${ep.prefix}`, gateway: ep.gateway }],
        routes: primary && !n.Internal ? [{ dst: '0.0.0.0/0', gw: ep.gateway }] : [],
      },
    };
  }

  /** Take an endpoint's veth away (CNI DEL); a failure is logged, the lease goes anyway. */
  private async unplug(c: ContainerRecord, n: NetworkRecord | undefined, ep: Endpoint): Promise<void> {
    if (n === undefined) return;
    const path = this.netnsPath(c.Id);
    await cniExec({ command: 'DEL', containerId: c.Id, netns: existsSync(path) ? path : '', ifname: ep.ifname, config: this.cniConfig(n, ep, false) })
      .catch((e: unknown) => this.o.log.warn('CNI DEL failed', { id: c.Id, network: n.Name, error: e instanceof Error ? e.message : String(e) }));
  }

  /** Give the leases back (rows, and the DNAT rules of their ports); clear the endpoints' views. Under `serial` when there are ports. */
  private async release(c: ContainerRecord, eps: readonly Endpoint[]): Promise<void> {
    for (const ep of eps) this.db.deleteEndpoint(ep.networkId, ep.containerId);
    const nets = this.db.networks();
    for (const ep of eps) {
      const n = nets.find((x) => x.Id === ep.networkId);
      if (n === undefined) continue;
      const view = this.networksOf(c)[n.Name];
      if (view !== undefined) Object.assign(view, { EndpointID: '', Gateway: '', IPAddress: '', IPPrefixLen: 0, MacAddress: '', DNSNames: null });
      if (n.Name === 'bridge') Object.assign(c.NetworkSettings, { EndpointID: '', Gateway: '', IPAddress: '', IPPrefixLen: 0, MacAddress: '' });
    }
    await this.portRules('delete', eps);
  }

  teardown(c: ContainerRecord): Promise<void> {
    return this.byContainer(c.Id, async () => {
      const eps = this.db.endpoints().filter((e) => e.containerId === c.Id);
      if (eps.length > 0) {
        const nets = this.db.networks();
        await Promise.all(eps.map((ep) => this.unplug(c, nets.find((x) => x.Id === ep.networkId), ep)));
        // Without published ports, giving the leases back is a few row deletions, atomic on their own.
        const release = (): Promise<void> => this.release(c, eps);
        await (eps.some((e) => e.ports.length > 0) ? this.serial(release) : release());
      }
      await removeNetns(this.netnsPath(c.Id));
      Object.assign(c.NetworkSettings, { Ports: {}, SandboxID: '', SandboxKey: '' });
    });
  }

  async removed(c: ContainerRecord): Promise<void> {
    await this.teardown(c);
  }

  /** Endpoints of a network (for name resolution). */
  endpointsOf(networkId: string): Endpoint[] {
    return this.db.endpoints().filter((e) => e.networkId === networkId);
  }

  /** All networks. */
  networks(): NetworkRecord[] {
    return this.db.networks();
  }
}

/** An endpoint's published ports as DNAT rules see them. */
function fwPorts(e: Endpoint): FwPort[] {
  return e.ports.map((p) => ({ proto: p.proto, hostIp: p.hostIp, hostPort: p.hostPort, containerIp: e.address, containerPort: p.containerPort }));
}

function emptyEndpointView(): Json {
  return {
    IPAMConfig: null, Links: null, Aliases: null, MacAddress: '', DriverOpts: null, GwPriority: 0, NetworkID: '', EndpointID: '',
    Gateway: '', IPAddress: '', IPPrefixLen: 0, IPv6Gateway: '', GlobalIPv6Address: '', GlobalIPv6PrefixLen: 0, DNSNames: null,
  };
}

/** Docker's `until` filter: a timestamp or a duration before now. */
function untilMs(u: string): number {
  const d = /^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$/.exec(u);
  if (d !== null) {
    const mult: Record<string, number> = { ns: 1e-6, us: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
    return Date.now() - Number(d[1]) * (mult[d[2] ?? 's'] ?? 1000);
  }
  if (/^\d+(\.\d+)?$/.test(u)) return Number(u) * 1000;
  const t = Date.parse(u);
  if (Number.isNaN(t)) throw invalid(`invalid filter 'until=${u}'`);
  return t;
}
