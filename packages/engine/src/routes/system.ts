/**
 * System endpoints: ping, version, info, events, df.
 */
import { readFileSync } from 'node:fs';
import { cpus, hostname, release, totalmem, arch as osArch } from 'node:os';
import { invalid } from '@berth/base';
import type { Engine } from '../engine.js';
import type { EngineEvent } from '../events.js';
import type { ContainerService } from '../containers/service.js';
import { API_VERSION, MIN_API_VERSION } from '../server/router.js';
import type { Router } from '../server/router.js';

export const ENGINE_VERSION = '0.1.0';

export function goArch(): string {
  const a = osArch();
  return a === 'x64' ? 'amd64' : a === 'ia32' ? '386' : a;
}

function osName(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'));
    if (m?.[1] !== undefined) return m[1];
  } catch {
    /* no os-release */
  }
  return 'Linux';
}

function cgroupVersion(): '1' | '2' {
  try {
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    return /\s\/sys\/fs\/cgroup\s.*\scgroup2\s/.test(mounts) ? '2' : '1';
  } catch {
    return '1';
  }
}

export interface SystemDeps {
  readonly containers: ContainerService;
  readonly imageCount: () => Promise<number>;
  readonly engineId: string;
  readonly runtimePath: string;
  readonly insecureRegistries: readonly string[];
  readonly df: () => Promise<Record<string, unknown>>;
}

export function systemRoutes(router: Router, engine: Engine, deps: SystemDeps): void {
  const ping = (ctx: Parameters<Parameters<Router['get']>[1]>[0]): void => {
    const headers = { 'Cache-Control': 'no-cache, no-store, must-revalidate', Pragma: 'no-cache', 'Builder-Version': '1' };
    if (ctx.req.method === 'HEAD') {
      ctx.send(200, undefined, { ...headers, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': '0' });
      return;
    }
    ctx.send(200, 'OK', headers);
  };
  router.get('/_ping', ping);
  router.head('/_ping', ping);

  router.get('/version', (ctx) => {
    const details = {
      ApiVersion: API_VERSION, Arch: goArch(), BuildTime: '', Experimental: 'false', GitCommit: '', GoVersion: process.version,
      KernelVersion: release(), MinAPIVersion: MIN_API_VERSION, Os: 'linux',
    };
    ctx.send(200, {
      Platform: { Name: 'Berth Engine' },
      Components: [
        { Name: 'Engine', Version: ENGINE_VERSION, Details: details },
        { Name: 'containerd', Version: ENGINE_VERSION, Details: { GitCommit: '' } },
        { Name: 'runc', Version: ENGINE_VERSION, Details: { GitCommit: '' } },
      ],
      Version: ENGINE_VERSION, ApiVersion: API_VERSION, MinAPIVersion: MIN_API_VERSION, GitCommit: '', GoVersion: process.version,
      Os: 'linux', Arch: goArch(), KernelVersion: release(), BuildTime: '',
    });
  });

  router.get('/info', async (ctx) => {
    const all = deps.containers.all();
    const running = all.filter((c) => c.State.Running && !c.State.Paused).length;
    const paused = all.filter((c) => c.State.Paused).length;
    ctx.send(200, {
      ID: deps.engineId,
      Containers: all.length, ContainersRunning: running, ContainersPaused: paused, ContainersStopped: all.length - running - paused,
      Images: await deps.imageCount(),
      Driver: 'overlay2', DriverStatus: [['Backing Filesystem', 'extfs'], ['Supports d_type', 'true']],
      Plugins: { Volume: ['local'], Network: ['bridge', 'host', 'none', 'null'], Authorization: null, Log: ['json-file', 'none'] },
      MemoryLimit: true, SwapLimit: true, KernelMemory: false, KernelMemoryTCP: false, CpuCfsPeriod: true, CpuCfsQuota: true,
      CPUShares: true, CPUSet: true, PidsLimit: true, IPv4Forwarding: true, BridgeNfIptables: false, BridgeNfIp6tables: false,
      Debug: engine.log.level === 'debug', NFd: 0, OomKillDisable: true, NGoroutines: 0, SystemTime: new Date().toISOString(),
      LoggingDriver: 'json-file', CgroupDriver: 'cgroupfs', CgroupVersion: cgroupVersion(), NEventsListener: 0,
      KernelVersion: release(), OperatingSystem: osName(), OSVersion: '', OSType: 'linux', Architecture: osArch() === 'x64' ? 'x86_64' : osArch(),
      IndexServerAddress: 'https://index.docker.io/v1/',
      RegistryConfig: {
        AllowNondistributableArtifactsCIDRs: null, AllowNondistributableArtifactsHostnames: null,
        InsecureRegistryCIDRs: ['127.0.0.0/8'], IndexConfigs: {}, Mirrors: null,
      },
      NCPU: cpus().length, MemTotal: totalmem(), GenericResources: null,
      DockerRootDir: engine.paths.dataRoot, HttpProxy: '', HttpsProxy: '', NoProxy: '', Name: hostname(), Labels: [],
      ExperimentalBuild: false, ServerVersion: ENGINE_VERSION,
      Runtimes: { runc: { path: deps.runtimePath } }, DefaultRuntime: 'runc',
      Swarm: { NodeID: '', NodeAddr: '', LocalNodeState: 'inactive', ControlAvailable: false, Error: '', RemoteManagers: null },
      LiveRestoreEnabled: true, Isolation: '', InitBinary: 'berth-init',
      ContainerdCommit: { ID: '' }, RuncCommit: { ID: '' }, InitCommit: { ID: '' },
      SecurityOptions: ['name=seccomp,profile=builtin'], Warnings: [],
    });
  });

  router.get('/events', (ctx) => {
    const filters = ctx.filters();
    const since = parseEventTime(ctx.str('since'));
    const until = parseEventTime(ctx.str('until'));
    for (const k of filters.keys()) {
      if (!['type', 'event', 'container', 'image', 'label', 'network', 'volume', 'daemon', 'scope', 'plugin', 'node', 'service', 'secret', 'config'].includes(k)) {
        throw invalid(`invalid filter '${k}'`);
      }
    }
    const match = (e: EngineEvent): boolean => matchEvent(e, filters);
    const res = ctx.stream(200, 'application/json');
    const nowNano = Date.now() * 1e6;
    for (const e of engine.events.since(since ?? nowNano)) {
      if (until !== undefined && e.timeNano > until) break;
      if (match(e)) res.write(JSON.stringify(e) + '\n');
    }
    if (until !== undefined && until <= nowNano) {
      res.end();
      return;
    }
    const stop = engine.events.follow((e) => {
      if (until !== undefined && e.timeNano > until) return;
      if (match(e)) res.write(JSON.stringify(e) + '\n');
    });
    let timer: NodeJS.Timeout | undefined;
    if (until !== undefined) timer = setTimeout(() => { stop(); res.end(); }, Math.max(0, (until - nowNano) / 1e6));
    res.on('close', () => {
      stop();
      if (timer !== undefined) clearTimeout(timer);
    });
  });

  router.get('/system/df', async (ctx) => {
    ctx.send(200, await deps.df());
  });
}

/** since/until: unix seconds with an optional fraction (what the CLI sends), as ns. */
export function parseEventTime(s: string | undefined): number | undefined {
  if (s === undefined || s === '') return undefined;
  const m = /^(\d+)(?:\.(\d{1,9}))?$/.exec(s);
  if (m !== null) return Number(m[1]) * 1e9 + Number((m[2] ?? '').padEnd(9, '0'));
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw invalid(`invalid timestamp: ${s}`);
  return t * 1e6;
}

function matchEvent(e: EngineEvent, f: Map<string, string[]>): boolean {
  const types = f.get('type');
  if (types !== undefined && !types.includes(e.Type)) return false;
  const actions = f.get('event');
  if (actions !== undefined && !actions.some((a) => e.Action === a || e.Action.startsWith(`${a}:`))) return false;
  const attrs = e.Actor.Attributes;
  const cont = f.get('container');
  if (cont !== undefined && (e.Type !== 'container' || !cont.some((c) => e.Actor.ID.startsWith(c) || attrs['name'] === c))) return false;
  const img = f.get('image');
  if (img !== undefined && !img.some((i) => attrs['image'] === i || e.Actor.ID === i || (e.Type === 'image' && attrs['name'] === i))) return false;
  const labels = f.get('label');
  if (labels !== undefined && !labels.every((l) => {
    const eq = l.indexOf('=');
    return eq < 0 ? l in attrs : attrs[l.slice(0, eq)] === l.slice(eq + 1);
  })) return false;
  const nets = f.get('network');
  if (nets !== undefined && (e.Type !== 'network' || !nets.some((n) => e.Actor.ID.startsWith(n) || attrs['name'] === n))) return false;
  const vols = f.get('volume');
  if (vols !== undefined && (e.Type !== 'volume' || !vols.includes(e.Actor.ID))) return false;
  const scope = f.get('scope');
  if (scope !== undefined && !scope.includes('local')) return false;
  return true;
}
