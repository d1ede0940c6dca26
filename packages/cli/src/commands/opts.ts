/**
 * `docker run`/`create` flags and their translation into the Engine API's create
 * body (Config, HostConfig, NetworkingConfig), with docker's parsing of sizes,
 * CPUs, ports, volumes, mounts, ulimits, devices and restart policies.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from '../args.js';
import type { FlagDef, Flags } from '../args.js';
import { StatusError } from '../command.js';
import { parseGoDuration } from '../format.js';

const bad = (msg: string): StatusError => new StatusError(125, msg);

/** `-m, --memory` or `--cpus`: how pflag names a flag in its errors. */
function shown(flag: string): string {
  const d = CREATE_FLAGS.find((f) => f.long === flag);
  return d?.short !== undefined ? `-${d.short}, --${flag}` : `--${flag}`;
}

/** A bad value of a typed flag: reported like a flag parse error (usage, exit 125). */
const badValue = (value: string, flag: string, why: string): UsageError =>
  new UsageError(`invalid argument "${value}" for "${shown(flag)}" flag: ${why}`);

/** docker's NormalizeCapabilities: upper case, `CAP_` prefixed, `ALL` kept. */
export function normalizeCaps(caps: readonly string[]): string[] | null {
  if (caps.length === 0) return null;
  const out: string[] = [];
  for (const c of caps) {
    const u = c.trim().toUpperCase();
    const n = u === 'ALL' || u.startsWith('CAP_') ? u : `CAP_${u}`;
    if (!out.includes(n)) out.push(n);
  }
  return out;
}

/** docker's RAMInBytes: `512`, `100k`, `64m`, `1.5g` (binary units, optional b/ib). */
export function parseBytes(value: string, flag = 'memory'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$/i.exec(value.trim());
  if (m === null) throw badValue(value, flag, `invalid size: '${value}'`);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };
  return Math.trunc(Number(m[1]) * (mult[(m[2] ?? '').toLowerCase()] ?? 1));
}

/** `--cpus 1.5` into NanoCPUs. */
export function parseCpus(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw badValue(value, 'cpus', `failed to parse ${value} as a rational number`);
  return Math.round(n * 1e9);
}

export function parseRestart(value: string): { Name: string; MaximumRetryCount: number } {
  if (value === '') return { Name: '', MaximumRetryCount: 0 };
  const [name = '', count] = value.split(':');
  if (!['no', 'always', 'unless-stopped', 'on-failure'].includes(name)) throw bad(`invalid restart policy format: ${value}`);
  if (count !== undefined) {
    if (name !== 'on-failure') throw bad(`invalid restart policy format: maximum retry count can only be used with 'on-failure'`);
    if (!/^\d+$/.test(count)) throw bad(`invalid restart policy format: maximum retry count must be an integer`);
  }
  return { Name: name, MaximumRetryCount: count === undefined ? 0 : Number(count) };
}

/** Go duration flag into nanoseconds. */
function durationNs(value: string, flag: string): number {
  const ms = parseGoDuration(value);
  if (ms === undefined) throw badValue(value, flag, `time: invalid duration "${value}"`);
  return Math.round(ms * 1e6);
}

function keyValue(value: string, flag: string): [string, string] {
  const eq = value.indexOf('=');
  if (eq <= 0) throw badValue(value, flag, 'invalid key value pair format');
  return [value.slice(0, eq), value.slice(eq + 1)];
}

/** `-e K=V` or `-e K` (taken from the environment when set). */
function envEntry(value: string): string {
  if (value.includes('=')) {
    if (value.startsWith('=')) throw bad(`invalid argument "${value}" for "-e, --env" flag: invalid environment variable: ${value}`);
    return value;
  }
  const v = process.env[value];
  return v === undefined ? value : `${value}=${v}`;
}

/** Lines of an env file (or label file): comments and blank lines skipped. */
export function readKeyFile(path: string, fromEnv: boolean): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw bad(`open ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
  }
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/^\s+/, '').replace(/\r$/, '');
    if (line === '' || line.startsWith('#')) continue;
    if (line.includes('=')) out.push(line);
    else if (fromEnv) {
      const v = process.env[line.trim()];
      if (v !== undefined) out.push(`${line.trim()}=${v}`);
    } else out.push(line);
  }
  return out;
}

interface PortBinding {
  HostIp: string;
  HostPort: string;
}

function range(s: string): [number, number] {
  const [a = '', b] = s.split('-');
  const lo = Number(a);
  const hi = b === undefined ? lo : Number(b);
  if (a === '' || !Number.isInteger(lo) || !Number.isInteger(hi) || hi < lo) throw bad(`invalid port range: ${s}`);
  return [lo, hi];
}

/** `-p [ip:][hostPort:]containerPort[/proto]` into exposed ports and bindings. */
export function parsePublish(
  specs: readonly string[],
  exposed: Record<string, Record<string, never>>,
  bindings: Record<string, PortBinding[]>,
): void {
  for (const spec of specs) {
    let rest = spec;
    let proto = 'tcp';
    const slash = rest.lastIndexOf('/');
    if (slash >= 0) {
      proto = rest.slice(slash + 1).toLowerCase();
      rest = rest.slice(0, slash);
    }
    let ip = '';
    let hostPart = '';
    let ctrPart: string;
    const v6 = /^\[([^\]]+)\]:(.*)$/.exec(rest);
    if (v6 !== null) {
      ip = v6[1] ?? '';
      const parts = (v6[2] ?? '').split(':');
      hostPart = parts.length > 1 ? parts[0] ?? '' : '';
      ctrPart = parts[parts.length - 1] ?? '';
    } else {
      const parts = rest.split(':');
      if (parts.length === 1) ctrPart = parts[0] ?? '';
      else if (parts.length === 2) {
        hostPart = parts[0] ?? '';
        ctrPart = parts[1] ?? '';
      } else if (parts.length === 3) {
        ip = parts[0] ?? '';
        hostPart = parts[1] ?? '';
        ctrPart = parts[2] ?? '';
      } else throw bad(`invalid argument "${spec}" for "-p, --publish" flag: invalid proto: ${spec}`);
    }
    if (ctrPart === '') throw bad(`invalid argument "${spec}" for "-p, --publish" flag: no port specified: ${spec}<empty>`);
    const [clo, chi] = range(ctrPart);
    let hlo = 0;
    let hhi = 0;
    if (hostPart !== '') [hlo, hhi] = range(hostPart);
    if (hostPart !== '' && hhi - hlo !== chi - clo && hlo !== hhi) {
      throw bad(`invalid argument "${spec}" for "-p, --publish" flag: invalid ranges specified for container and host Ports: ${ctrPart} and ${hostPart}`);
    }
    for (let p = clo; p <= chi; p++) {
      const key = `${p}/${proto}`;
      exposed[key] = {};
      let hostPort = '';
      if (hostPart !== '') hostPort = hlo === hhi ? (chi === clo ? String(hlo) : `${hlo}`) : String(hlo + (p - clo));
      if (hostPart !== '' && hlo !== hhi && chi === clo) hostPort = `${hlo}-${hhi}`;
      (bindings[key] ??= []).push({ HostIp: ip, HostPort: hostPort });
    }
  }
}

/** `--mount type=bind,source=/a,target=/b,readonly` into an API Mount. */
export function parseMount(spec: string): Record<string, unknown> {
  const m: Record<string, unknown> = { Type: 'volume' };
  const bind: Record<string, unknown> = {};
  const vol: Record<string, unknown> = {};
  const tmpfs: Record<string, unknown> = {};
  for (const field of spec.split(',')) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).trim().toLowerCase();
    const val = eq < 0 ? '' : field.slice(eq + 1);
    switch (key) {
      case 'type':
        m.Type = val;
        break;
      case 'source':
      case 'src':
        m.Source = val;
        break;
      case 'target':
      case 'destination':
      case 'dst':
        m.Target = val;
        break;
      case 'readonly':
      case 'ro':
        m.ReadOnly = eq < 0 || ['1', 'true'].includes(val.toLowerCase());
        break;
      case 'consistency':
        m.Consistency = val;
        break;
      case 'bind-propagation':
        bind.Propagation = val;
        break;
      case 'bind-recursive':
        break;
      case 'volume-nocopy':
        vol.NoCopy = eq < 0 || ['1', 'true'].includes(val.toLowerCase());
        break;
      case 'volume-driver':
        vol.DriverConfig = { Name: val };
        break;
      case 'volume-subpath':
        vol.Subpath = val;
        break;
      case 'volume-label': {
        const [k, v] = keyValue(val, 'mount');
        vol.Labels = { ...((vol.Labels as Record<string, string> | undefined) ?? {}), [k]: v };
        break;
      }
      case 'tmpfs-size':
        tmpfs.SizeBytes = parseBytes(val, 'mount');
        break;
      case 'tmpfs-mode':
        tmpfs.Mode = parseInt(val, 8);
        break;
      default:
        throw badValue(spec, 'mount', `unexpected key '${key}' in '${field}'`);
    }
  }
  if (m.Target === undefined) throw badValue(spec, 'mount', 'target is required');
  if (Object.keys(bind).length > 0) m.BindOptions = bind;
  if (Object.keys(vol).length > 0) m.VolumeOptions = vol;
  if (Object.keys(tmpfs).length > 0) m.TmpfsOptions = tmpfs;
  return m;
}

export function parseUlimit(spec: string): { Name: string; Soft: number; Hard: number } {
  const [name = '', limits = ''] = spec.split('=');
  const [soft = '', hard] = limits.split(':');
  const s = Number(soft);
  const h = hard === undefined ? s : Number(hard);
  if (name === '' || soft === '' || !Number.isInteger(s) || !Number.isInteger(h)) {
    throw badValue(spec, 'ulimit', `invalid ulimit argument: ${spec}`);
  }
  if (s > h) throw badValue(spec, 'ulimit', `ulimit soft limit must be less than or equal to hard limit: ${s} > ${h}`);
  return { Name: name, Soft: s, Hard: h };
}

export function parseDevice(spec: string): { PathOnHost: string; PathInContainer: string; CgroupPermissions: string } {
  const parts = spec.split(':');
  const host = parts[0] ?? '';
  let ctr = host;
  let perms = 'rwm';
  if (parts.length === 2) {
    if (/^[rwm]+$/.test(parts[1] ?? '')) perms = parts[1] ?? 'rwm';
    else ctr = parts[1] ?? host;
  } else if (parts.length === 3) {
    ctr = parts[1] ?? host;
    perms = parts[2] ?? 'rwm';
  } else if (parts.length > 3) throw bad(`invalid argument "${spec}" for "--device" flag: invalid device specification: ${spec}`);
  return { PathOnHost: host, PathInContainer: ctr, CgroupPermissions: perms };
}

const L = (long: string, help: string, short?: string, type?: string): FlagDef =>
  short === undefined ? { long, kind: 'list', help, ...(type !== undefined ? { type } : {}) } : { long, short, kind: 'list', help, ...(type !== undefined ? { type } : {}) };
const S = (long: string, help: string, short?: string, type?: string): FlagDef =>
  short === undefined ? { long, kind: 'string', help, ...(type !== undefined ? { type } : {}) } : { long, short, kind: 'string', help, ...(type !== undefined ? { type } : {}) };
const B = (long: string, help: string, short?: string): FlagDef => (short === undefined ? { long, kind: 'bool', help } : { long, short, kind: 'bool', help });
const I = (long: string, help: string, short?: string): FlagDef => (short === undefined ? { long, kind: 'int', help } : { long, short, kind: 'int', help });

/** The flags `create` and `run` share. */
export const CREATE_FLAGS: readonly FlagDef[] = [
  L('add-host', 'Add a custom host-to-IP mapping (host:ip)'),
  L('annotation', 'Add an annotation to the container (passed through to the OCI runtime)', undefined, 'map'),
  L('attach', 'Attach to STDIN, STDOUT or STDERR', 'a'),
  I('blkio-weight', 'Block IO (relative weight), between 10 and 1000, or 0 to disable'),
  L('cap-add', 'Add Linux capabilities'),
  L('cap-drop', 'Drop Linux capabilities'),
  S('cgroup-parent', 'Optional parent cgroup for the container'),
  S('cgroupns', 'Cgroup namespace to use (host|private)'),
  S('cidfile', 'Write the container ID to the file'),
  I('cpu-period', 'Limit CPU CFS (Completely Fair Scheduler) period'),
  I('cpu-quota', 'Limit CPU CFS (Completely Fair Scheduler) quota'),
  I('cpu-shares', 'CPU shares (relative weight)', 'c'),
  S('cpus', 'Number of CPUs', undefined, 'decimal'),
  S('cpuset-cpus', 'CPUs in which to allow execution (0-3, 0,1)'),
  S('cpuset-mems', 'MEMs in which to allow execution (0-3, 0,1)'),
  S('detach-keys', 'Override the key sequence for detaching a container'),
  L('device', 'Add a host device to the container'),
  L('device-cgroup-rule', 'Add a rule to the cgroup allowed devices list'),
  L('dns', 'Set custom DNS servers'),
  L('dns-option', 'Set DNS options'),
  L('dns-search', 'Set custom DNS search domains'),
  S('domainname', 'Container NIS domain name'),
  S('entrypoint', 'Overwrite the default ENTRYPOINT of the image'),
  L('env', 'Set environment variables', 'e'),
  L('env-file', 'Read in a file of environment variables'),
  L('expose', 'Expose a port or a range of ports'),
  L('group-add', 'Add additional groups to join'),
  S('health-cmd', 'Command to run to check health'),
  S('health-interval', 'Time between running the check (ms|s|m|h) (default 0s)', undefined, 'duration'),
  I('health-retries', 'Consecutive failures needed to report unhealthy'),
  S('health-start-interval', 'Time between running the check during the start period (ms|s|m|h) (default 0s)', undefined, 'duration'),
  S('health-start-period', 'Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)', undefined, 'duration'),
  S('health-timeout', 'Maximum time to allow one check to run (ms|s|m|h) (default 0s)', undefined, 'duration'),
  S('hostname', 'Container host name', 'h'),
  B('init', 'Run an init inside the container that forwards signals and reaps processes'),
  B('interactive', 'Keep STDIN open even if not attached', 'i'),
  S('ip', 'IPv4 address (e.g., 172.30.100.104)'),
  S('ip6', 'IPv6 address (e.g., 2001:db8::33)'),
  S('ipc', 'IPC mode to use'),
  L('label', 'Set meta data on a container', 'l'),
  L('label-file', 'Read in a line delimited file of labels'),
  L('link', 'Add link to another container'),
  S('log-driver', 'Logging driver for the container'),
  L('log-opt', 'Log driver options'),
  S('mac-address', 'Container MAC address (e.g., 92:d0:c6:0a:29:33)'),
  S('memory', 'Memory limit', 'm', 'bytes'),
  S('memory-reservation', 'Memory soft limit', undefined, 'bytes'),
  S('memory-swap', "Swap limit equal to memory plus swap: '-1' to enable unlimited swap", undefined, 'bytes'),
  I('memory-swappiness', 'Tune container memory swappiness (0 to 100)'),
  L('mount', 'Attach a filesystem mount to the container', undefined, 'mount'),
  S('name', 'Assign a name to the container'),
  S('network', 'Connect a container to a network', undefined, 'network'),
  L('network-alias', 'Add network-scoped alias for the container'),
  B('no-healthcheck', 'Disable any container-specified HEALTHCHECK'),
  B('oom-kill-disable', 'Disable OOM Killer'),
  I('oom-score-adj', "Tune host's OOM preferences (-1000 to 1000)"),
  S('pid', 'PID namespace to use'),
  I('pids-limit', 'Tune container pids limit (set -1 for unlimited)'),
  S('platform', 'Set platform if server is multi-platform capable'),
  B('privileged', 'Give extended privileges to this container'),
  L('publish', "Publish a container's port(s) to the host", 'p'),
  B('publish-all', 'Publish all exposed ports to random ports', 'P'),
  { long: 'pull', kind: 'string', help: 'Pull image before running ("always", "missing", "never")', default: 'missing' },
  B('quiet', 'Suppress the pull output', 'q'),
  B('read-only', "Mount the container's root filesystem as read only"),
  S('restart', 'Restart policy to apply when a container exits', undefined, 'string'),
  B('rm', 'Automatically remove the container and its associated anonymous volumes when it exits'),
  S('runtime', 'Runtime to use for this container'),
  L('security-opt', 'Security Options'),
  S('shm-size', 'Size of /dev/shm', undefined, 'bytes'),
  S('stop-signal', 'Signal to stop the container'),
  I('stop-timeout', 'Timeout (in seconds) to stop a container'),
  L('storage-opt', 'Storage driver options for the container'),
  L('sysctl', 'Sysctl options', undefined, 'map'),
  L('tmpfs', 'Mount a tmpfs directory'),
  B('tty', 'Allocate a pseudo-TTY', 't'),
  L('ulimit', 'Ulimit options', undefined, 'ulimit'),
  S('user', 'Username or UID (format: <name|uid>[:<group|gid>])', 'u'),
  S('userns', 'User namespace to use'),
  S('uts', 'UTS namespace to use'),
  L('volume', 'Bind mount a volume', 'v'),
  S('volume-driver', 'Optional volume driver for the container'),
  L('volumes-from', 'Mount volumes from the specified container(s)'),
  S('workdir', 'Working directory inside the container', 'w'),
];

export interface CreateRequest {
  readonly name: string | undefined;
  readonly platform: string | undefined;
  readonly image: string;
  readonly body: Record<string, unknown>;
  readonly attach: { stdin: boolean; stdout: boolean; stderr: boolean };
  readonly tty: boolean;
  readonly autoRemove: boolean;
}

/** Builds the create request from run/create flags and `IMAGE [COMMAND] [ARG...]`. */
export function buildCreate(flags: Flags, args: readonly string[], detached: boolean): CreateRequest {
  const [image = '', ...cmd] = args;
  const tty = flags.bool('tty');
  const interactive = flags.bool('interactive');
  const attachList = flags.list('attach').map((a) => a.toLowerCase());
  for (const a of attachList) {
    if (!['stdin', 'stdout', 'stderr'].includes(a)) throw bad(`invalid argument "${a}" for "-a, --attach" flag: valid streams are STDIN, STDOUT and STDERR`);
  }
  if (detached && attachList.length > 0) throw bad('Conflicting options: -a and -d');
  const attach = detached
    ? { stdin: false, stdout: false, stderr: false }
    : attachList.length > 0
      ? { stdin: attachList.includes('stdin'), stdout: attachList.includes('stdout'), stderr: attachList.includes('stderr') }
      : { stdin: interactive, stdout: true, stderr: true };
  const autoRemove = flags.bool('rm');
  const restart = parseRestart(flags.str('restart'));
  if (autoRemove && restart.Name !== '' && restart.Name !== 'no') throw bad('conflicting options: cannot specify both --restart and --rm');

  const env: string[] = [];
  for (const f of flags.list('env-file')) env.push(...readKeyFile(f, true));
  for (const e of flags.list('env')) env.push(envEntry(e));
  const labels: Record<string, string> = {};
  for (const f of flags.list('label-file')) for (const l of readKeyFile(f, false)) {
    const eq = l.indexOf('=');
    labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? '' : l.slice(eq + 1);
  }
  for (const l of flags.list('label')) {
    const eq = l.indexOf('=');
    labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? '' : l.slice(eq + 1);
  }

  const exposed: Record<string, Record<string, never>> = {};
  const bindings: Record<string, PortBinding[]> = {};
  parsePublish(flags.list('publish'), exposed, bindings);
  for (const e of flags.list('expose')) {
    const [p = '', proto = 'tcp'] = e.split('/');
    const [lo, hi] = range(p);
    for (let n = lo; n <= hi; n++) exposed[`${n}/${proto}`] = {};
  }

  const binds: string[] = [];
  const volumes: Record<string, Record<string, never>> = {};
  for (const v of flags.list('volume')) {
    const parts = v.split(':');
    if (parts.length === 1) {
      if (!v.startsWith('/')) throw bad(`invalid argument "${v}" for "-v, --volume" flag: invalid volume specification: '${v}'`);
      volumes[v] = {};
    } else binds.push(v);
  }
  const tmpfs: Record<string, string> = {};
  for (const t of flags.list('tmpfs')) {
    const c = t.indexOf(':');
    tmpfs[c < 0 ? t : t.slice(0, c)] = c < 0 ? '' : t.slice(c + 1);
  }

  let healthcheck: Record<string, unknown> | undefined;
  const healthFlags = ['health-cmd', 'health-interval', 'health-timeout', 'health-start-period', 'health-start-interval', 'health-retries'];
  if (flags.bool('no-healthcheck')) {
    if (healthFlags.some((f) => flags.changed(f))) throw bad('--no-healthcheck conflicts with --health-* options');
    healthcheck = { Test: ['NONE'] };
  } else if (healthFlags.some((f) => flags.changed(f))) {
    healthcheck = {};
    if (flags.changed('health-cmd')) healthcheck.Test = ['CMD-SHELL', flags.str('health-cmd')];
    if (flags.changed('health-interval')) healthcheck.Interval = durationNs(flags.str('health-interval'), 'health-interval');
    if (flags.changed('health-timeout')) healthcheck.Timeout = durationNs(flags.str('health-timeout'), 'health-timeout');
    if (flags.changed('health-start-period')) healthcheck.StartPeriod = durationNs(flags.str('health-start-period'), 'health-start-period');
    if (flags.changed('health-start-interval')) healthcheck.StartInterval = durationNs(flags.str('health-start-interval'), 'health-start-interval');
    if (flags.changed('health-retries')) healthcheck.Retries = flags.int('health-retries');
  }

  const securityOpt = flags.list('security-opt').map((o) => {
    const m = /^seccomp[=:](.*)$/.exec(o);
    if (m === null || m[1] === 'unconfined' || m[1] === 'builtin') return o;
    try {
      return `seccomp=${JSON.stringify(JSON.parse(readFileSync(m[1] ?? '', 'utf8')))}`;
    } catch (err) {
      throw bad(`invalid argument "${o}" for "--security-opt" flag: opening seccomp profile (${m[1] ?? ''}) failed: ${(err as Error).message}`);
    }
  });

  const config: Record<string, unknown> = {
    Hostname: flags.str('hostname'),
    Domainname: flags.str('domainname'),
    User: flags.str('user'),
    AttachStdin: attach.stdin,
    AttachStdout: attach.stdout,
    AttachStderr: attach.stderr,
    Tty: tty,
    OpenStdin: interactive,
    StdinOnce: interactive && attach.stdin && !detached,
    Env: env,
    Cmd: cmd.length > 0 ? cmd : null,
    Image: image,
    Volumes: Object.keys(volumes).length > 0 ? volumes : null,
    WorkingDir: flags.str('workdir'),
    Entrypoint: flags.changed('entrypoint') ? [flags.str('entrypoint')] : null,
    Labels: labels,
  };
  if (Object.keys(exposed).length > 0) config.ExposedPorts = exposed;
  if (healthcheck !== undefined) config.Healthcheck = healthcheck;
  if (flags.changed('stop-signal')) config.StopSignal = flags.str('stop-signal');
  if (flags.changed('stop-timeout')) config.StopTimeout = flags.int('stop-timeout');
  if (flags.changed('mac-address')) config.MacAddress = flags.str('mac-address');

  const logOpts: Record<string, string> = {};
  for (const o of flags.list('log-opt')) {
    const [k, v] = keyValue(o, 'log-opt');
    logOpts[k] = v;
  }
  const sysctls: Record<string, string> = {};
  for (const s of flags.list('sysctl')) {
    const [k, v] = keyValue(s, 'sysctl');
    sysctls[k] = v;
  }
  const annotations: Record<string, string> = {};
  for (const s of flags.list('annotation')) {
    const [k, v] = keyValue(s, 'annotation');
    annotations[k] = v;
  }
  const storageOpt: Record<string, string> = {};
  for (const s of flags.list('storage-opt')) {
    const [k, v] = keyValue(s, 'storage-opt');
    storageOpt[k] = v;
  }
  const network = flags.str('network') || 'default';
  const host: Record<string, unknown> = {
    Binds: binds.length > 0 ? binds : null,
    ContainerIDFile: flags.str('cidfile'),
    LogConfig: { Type: flags.str('log-driver'), Config: logOpts },
    NetworkMode: network,
    PortBindings: bindings,
    RestartPolicy: restart,
    AutoRemove: autoRemove,
    VolumeDriver: flags.str('volume-driver'),
    VolumesFrom: flags.list('volumes-from').length > 0 ? flags.list('volumes-from') : null,
    CapAdd: normalizeCaps(flags.list('cap-add')),
    CapDrop: normalizeCaps(flags.list('cap-drop')),
    CgroupnsMode: flags.str('cgroupns'),
    Dns: flags.list('dns'),
    DnsOptions: flags.list('dns-option'),
    DnsSearch: flags.list('dns-search'),
    ExtraHosts: flags.list('add-host').length > 0 ? flags.list('add-host') : null,
    GroupAdd: flags.list('group-add').length > 0 ? flags.list('group-add') : null,
    IpcMode: flags.str('ipc'),
    Cgroup: '',
    Links: flags.list('link').length > 0 ? flags.list('link') : null,
    OomScoreAdj: flags.int('oom-score-adj') ?? 0,
    PidMode: flags.str('pid'),
    Privileged: flags.bool('privileged'),
    PublishAllPorts: flags.bool('publish-all'),
    ReadonlyRootfs: flags.bool('read-only'),
    SecurityOpt: securityOpt.length > 0 ? securityOpt : null,
    UTSMode: flags.str('uts'),
    UsernsMode: flags.str('userns'),
    ShmSize: flags.changed('shm-size') ? parseBytes(flags.str('shm-size'), 'shm-size') : 0,
    CgroupParent: flags.str('cgroup-parent'),
    BlkioWeight: flags.int('blkio-weight') ?? 0,
    BlkioWeightDevice: [],
    BlkioDeviceReadBps: [],
    BlkioDeviceWriteBps: [],
    BlkioDeviceReadIOps: [],
    BlkioDeviceWriteIOps: [],
    CpuShares: flags.int('cpu-shares') ?? 0,
    Memory: flags.changed('memory') ? parseBytes(flags.str('memory'), 'memory') : 0,
    NanoCpus: flags.changed('cpus') ? parseCpus(flags.str('cpus')) : 0,
    CpuPeriod: flags.int('cpu-period') ?? 0,
    CpuQuota: flags.int('cpu-quota') ?? 0,
    CpusetCpus: flags.str('cpuset-cpus'),
    CpusetMems: flags.str('cpuset-mems'),
    Devices: flags.list('device').map(parseDevice),
    DeviceCgroupRules: flags.list('device-cgroup-rule').length > 0 ? flags.list('device-cgroup-rule') : null,
    MemoryReservation: flags.changed('memory-reservation') ? parseBytes(flags.str('memory-reservation'), 'memory-reservation') : 0,
    MemorySwap: !flags.changed('memory-swap') ? 0 : flags.str('memory-swap') === '-1' ? -1 : parseBytes(flags.str('memory-swap'), 'memory-swap'),
    MemorySwappiness: flags.changed('memory-swappiness') ? flags.int('memory-swappiness') : null,
    OomKillDisable: flags.bool('oom-kill-disable'),
    PidsLimit: flags.changed('pids-limit') ? flags.int('pids-limit') : null,
    Ulimits: flags.list('ulimit').map(parseUlimit),
  };
  if (flags.changed('runtime')) host.Runtime = flags.str('runtime');
  if (flags.list('mount').length > 0) host.Mounts = flags.list('mount').map(parseMount);
  if (Object.keys(tmpfs).length > 0) host.Tmpfs = tmpfs;
  if (Object.keys(sysctls).length > 0) host.Sysctls = sysctls;
  if (Object.keys(annotations).length > 0) host.Annotations = annotations;
  if (Object.keys(storageOpt).length > 0) host.StorageOpt = storageOpt;
  if (flags.bool('init')) host.Init = true;

  const endpoint: Record<string, unknown> = {};
  if (flags.list('network-alias').length > 0) endpoint.Aliases = flags.list('network-alias');
  const ipam: Record<string, string> = {};
  if (flags.changed('ip')) ipam.IPv4Address = flags.str('ip');
  if (flags.changed('ip6')) ipam.IPv6Address = flags.str('ip6');
  if (Object.keys(ipam).length > 0) endpoint.IPAMConfig = ipam;
  const networking = Object.keys(endpoint).length > 0 && network !== 'default' ? { EndpointsConfig: { [network]: endpoint } } : { EndpointsConfig: {} };

  return {
    name: flags.string('name'),
    platform: flags.string('platform'),
    image,
    body: { ...config, HostConfig: host, NetworkingConfig: networking },
    attach,
    tty,
    autoRemove,
  };
}
