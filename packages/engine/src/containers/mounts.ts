/**
 * A container's mounts from its create request, as Docker reads them:
 * HostConfig.Binds (`host:ctr[:opts]`, `volume:ctr[:opts]`, `/ctr`),
 * HostConfig.Mounts (bind, volume, tmpfs), HostConfig.Tmpfs and the
 * anonymous volumes of Config.Volumes (the image's included once merged).
 * The result says what to mount; volume storage is resolved elsewhere.
 */
import { lstatSync } from 'node:fs';
import { posix } from 'node:path';
import { invalid } from '@berth/base';
import type { ContainerConfig, HostConfig, Mount } from './config.js';

export type MountType = 'bind' | 'volume' | 'tmpfs';

export interface MountRequest {
  type: MountType;
  /** Host path (bind), volume name (volume; '' when anonymous), '' (tmpfs). */
  source: string;
  /** Absolute, cleaned path in the container. */
  destination: string;
  readOnly: boolean;
  /**
   * Mount options for the OCI spec beyond read-only and propagation: for a
   * tmpfs its merged options (`noexec`, `size=64m`...), for a bind or volume
   * `rbind` or `bind`.
   */
  options: string[];
  /** `rprivate`, `rshared`, `rslave`... or '' (the default). */
  propagation: string;
  /** The user's mode string (`ro,z`), as inspect shows it. */
  mode: string;
  volumeName?: string;
  anonymous?: boolean;
  noCopy?: boolean;
  /** A path inside the volume to mount instead of its root. */
  subpath?: string;
  volumeDriver?: string;
  volumeDriverOptions?: Record<string, string>;
  volumeLabels?: Record<string, string>;
  tmpfsSize?: number;
  tmpfsMode?: number;
  /** Bind: create the host directory when it is missing (Binds, BindOptions.CreateMountpoint). */
  createSource?: boolean;
}

export interface MountParseOptions {
  /** Whether a host path exists (default: lstat). */
  readonly exists?: (path: string) => boolean;
}

const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
const PROPAGATION = new Set(['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave']);
const LABEL_MODES = new Set(['z', 'Z']);
const RW_MODES = new Set(['rw', 'ro']);
const CONSISTENCY = new Set(['consistent', 'cached', 'delegated']);
const DEFAULT_PROPAGATION = 'rprivate';

function defaultExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function mountError(type: string, why: string): Error {
  return invalid(`invalid mount config for type ${JSON.stringify(type)}: ${why}`);
}

/** filepath.Clean: normalised, no trailing slash. */
function clean(p: string): string {
  return posix.normalize(p).replace(/(.)\/+$/, '$1');
}

function cleanTarget(type: string, target: string): string {
  if (target === '') throw mountError(type, 'field Target must not be empty');
  if (!posix.isAbsolute(target)) throw mountError(type, `invalid mount path: '${target}' mount path must be absolute`);
  const cleaned = clean(target);
  if (cleaned === '/') throw mountError(type, "invalid specification: destination can't be '/'");
  return cleaned;
}

function checkVolumeName(name: string): void {
  if (!VOLUME_NAME.test(name)) {
    throw invalid(
      `${JSON.stringify(name)} includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`,
    );
  }
}

/** The options of a Binds entry, each kind at most once; undefined when invalid. */
function parseBindMode(mode: string): { rw?: string; label?: string; propagation?: string; nocopy?: boolean } | undefined {
  const out: { rw?: string; label?: string; propagation?: string; nocopy?: boolean } = {};
  if (mode === '') return out;
  let consistency = false;
  for (const o of mode.split(',')) {
    if (RW_MODES.has(o)) {
      if (out.rw !== undefined) return undefined;
      out.rw = o;
    } else if (LABEL_MODES.has(o)) {
      if (out.label !== undefined) return undefined;
      out.label = o;
    } else if (PROPAGATION.has(o)) {
      if (out.propagation !== undefined) return undefined;
      out.propagation = o;
    } else if (o === 'nocopy') {
      if (out.nocopy !== undefined) return undefined;
      out.nocopy = true;
    } else if (CONSISTENCY.has(o)) {
      if (consistency) return undefined;
      consistency = true;
    } else {
      return undefined;
    }
  }
  return out;
}

/** Parses one HostConfig.Binds entry. */
export function parseBind(raw: string, volumeDriver = '', opts: MountParseOptions = {}): MountRequest {
  const spec = `invalid volume specification: '${raw}'`;
  const parts = raw.split(':');
  if (parts[0] === '' || parts.length > 3) throw invalid(spec);
  let source = '';
  let target: string;
  let mode = '';
  if (parts.length === 1) {
    target = parts[0] ?? '';
  } else if (parts.length === 2) {
    if (parseBindMode(parts[1] ?? '') !== undefined && (parts[1] ?? '') !== '') throw invalid(spec);
    source = parts[0] ?? '';
    target = parts[1] ?? '';
  } else {
    source = parts[0] ?? '';
    target = parts[1] ?? '';
    mode = parts[2] ?? '';
  }
  const m = parseBindMode(mode);
  if (m === undefined) throw invalid(`invalid mode: ${mode}`);
  const type: MountType = posix.isAbsolute(source) ? 'bind' : 'volume';
  const wrap = (err: unknown): Error => invalid(`${spec}: ${err instanceof Error ? err.message : String(err)}`);
  let destination: string;
  try {
    destination = cleanTarget(type, target);
    if (type === 'bind' && m.nocopy) throw mountError(type, 'field VolumeOptions must not be specified');
    if (type === 'volume' && m.propagation !== undefined) throw mountError(type, 'field BindOptions must not be specified');
    if (type === 'volume' && source !== '') checkVolumeName(source);
    if (type === 'volume' && source === '' && m.rw === 'ro') throw mountError(type, 'must not set ReadOnly mode when using anonymous volumes');
  } catch (err) {
    throw wrap(err);
  }
  const readOnly = m.rw === 'ro';
  if (type === 'bind') {
    const exists = opts.exists ?? defaultExists;
    const req: MountRequest = {
      type, source: clean(source), destination, readOnly, options: ['rbind'],
      propagation: m.propagation ?? DEFAULT_PROPAGATION, mode,
    };
    if (!exists(req.source)) req.createSource = true;
    return req;
  }
  const req: MountRequest = { type, source, destination, readOnly, options: ['rbind'], propagation: '', mode, volumeName: source };
  if (source === '') req.anonymous = true;
  if (m.nocopy) req.noCopy = true;
  if (volumeDriver !== '') req.volumeDriver = volumeDriver;
  return req;
}

// ---------------------------------------------------------------- tmpfs options

/** Mount flags that override each other (the last one given wins), by group. */
const FLAG_GROUP: Record<string, string> = {
  ro: 'rdonly', rw: 'rdonly', suid: 'nosuid', nosuid: 'nosuid', dev: 'nodev', nodev: 'nodev',
  exec: 'noexec', noexec: 'noexec', sync: 'sync', async: 'sync', dirsync: 'dirsync', remount: 'remount',
  mand: 'mand', nomand: 'mand', atime: 'noatime', noatime: 'noatime', diratime: 'nodiratime',
  nodiratime: 'nodiratime', bind: 'bind', rbind: 'bind', relatime: 'relatime', norelatime: 'relatime',
  strictatime: 'strictatime', nostrictatime: 'strictatime', private: 'propagation', rprivate: 'propagation',
  shared: 'propagation', rshared: 'propagation', slave: 'propagation', rslave: 'propagation',
  unbindable: 'propagation', runbindable: 'propagation', tmpcopyup: 'tmpcopyup',
};
const TMPFS_DATA = new Set(['size', 'mode', 'uid', 'gid', 'nr_inodes', 'nr_blocks', 'mpol']);

/** Merges tmpfs options as Docker does: later options override earlier ones of the same kind. */
export function mergeTmpfsOptions(options: readonly string[]): string[] {
  const flags = new Set<string>();
  const data = new Set<string>();
  const out: string[] = [];
  for (let i = options.length - 1; i >= 0; i--) {
    const o = options[i] ?? '';
    if (o === 'defaults' || o === '') continue;
    const group = FLAG_GROUP[o];
    if (group !== undefined) {
      if (!flags.has(group)) {
        out.unshift(o);
        flags.add(group);
      }
      continue;
    }
    const eq = o.indexOf('=');
    const key = eq < 0 ? o : o.slice(0, eq);
    if (eq < 0 || !TMPFS_DATA.has(key)) throw invalid(`Invalid tmpfs option ${JSON.stringify(o)}`);
    if (!data.has(key)) {
      out.unshift(o);
      data.add(key);
    }
  }
  return out;
}

/** `size=` of a tmpfs (`65536k`, `64m`, `1g`, bytes, or a `%` of memory, which has no byte value). */
export function parseTmpfsSize(v: string): number | undefined {
  const m = /^([0-9]+)([kKmMgG]?)$/.exec(v);
  if (m === null) return undefined;
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Number(m[1]) * mult;
}

function tmpfsRequest(destination: string, merged: string[], mode: string): MountRequest {
  const readOnly = merged.includes('ro');
  const req: MountRequest = {
    type: 'tmpfs', source: '', destination, readOnly,
    options: merged.filter((o) => o !== 'ro' && o !== 'rw' && FLAG_GROUP[o] !== 'propagation'),
    propagation: merged.find((o) => FLAG_GROUP[o] === 'propagation') ?? DEFAULT_PROPAGATION, mode,
  };
  for (const o of merged) {
    if (o.startsWith('size=')) {
      const size = parseTmpfsSize(o.slice(5));
      if (size !== undefined) req.tmpfsSize = size;
    } else if (o.startsWith('mode=')) {
      const n = Number.parseInt(o.slice(5), 8);
      if (!Number.isNaN(n)) req.tmpfsMode = n;
    }
  }
  return req;
}

const TMPFS_DEFAULTS = ['noexec', 'nosuid', 'nodev', DEFAULT_PROPAGATION];

/** One HostConfig.Tmpfs entry (`/run`: `rw,noexec,size=64m`). */
export function parseTmpfsEntry(destination: string, data: string): MountRequest {
  const dest = cleanTarget('tmpfs', destination);
  const merged = mergeTmpfsOptions([...TMPFS_DEFAULTS, ...(data === '' ? [] : data.split(','))]);
  return tmpfsRequest(dest, merged, data);
}

/** TmpfsOptions (SizeBytes, Mode, Options) as a Docker mount data string, as Docker converts them. */
function tmpfsData(m: Mount): string[] {
  const raw: string[] = [];
  if (m.ReadOnly === true) raw.push('ro');
  const o = m.TmpfsOptions;
  if (o?.Mode !== undefined && o.Mode !== 0) raw.push(`mode=${(o.Mode & 0o7777).toString(8)}`);
  if (o?.SizeBytes !== undefined && o.SizeBytes !== 0) {
    if (o.SizeBytes < 0) throw mountError('tmpfs', `invalid tmpfs size: ${o.SizeBytes}`);
    let size = o.SizeBytes;
    let suffix = '';
    for (const [s, d] of [['g', 1024 ** 3], ['m', 1024 ** 2], ['k', 1024]] as const) {
      if (size % d === 0) {
        size /= d;
        suffix = s;
        break;
      }
    }
    raw.push(`size=${size}${suffix}`);
  }
  for (const opt of o?.Options ?? []) {
    const [k, v] = opt;
    if (k === undefined) continue;
    if (v === undefined) {
      if (FLAG_GROUP[k] === undefined) throw mountError('tmpfs', `unsupported tmpfs option: ${JSON.stringify(k)}`);
      raw.push(k);
    } else {
      if (!TMPFS_DATA.has(k)) throw mountError('tmpfs', `unsupported tmpfs option: ${JSON.stringify(k)}`);
      raw.push(`${k}=${v}`);
    }
  }
  return raw;
}

// ---------------------------------------------------------------- Mounts

/** Parses and validates one HostConfig.Mounts entry. */
export function parseApiMount(m: Mount, opts: MountParseOptions = {}): MountRequest {
  const type = m.Type ?? '';
  const source = m.Source ?? '';
  const readOnly = m.ReadOnly === true;
  switch (type) {
    case 'bind': {
      const destination = cleanTarget(type, m.Target ?? '');
      if (source === '') throw mountError(type, 'field Source must not be empty');
      if (m.VolumeOptions !== undefined) throw mountError(type, 'field VolumeOptions must not be specified');
      if (m.TmpfsOptions !== undefined) throw mountError(type, 'field TmpfsOptions must not be specified');
      if (!posix.isAbsolute(source)) throw mountError(type, `invalid mount path: '${source}' mount path must be absolute`);
      const bo = m.BindOptions;
      const exists = (opts.exists ?? defaultExists)(source);
      if (!exists && bo?.CreateMountpoint !== true) throw mountError(type, `bind source path does not exist: ${source}`);
      const req: MountRequest = {
        type, source: clean(source), destination, readOnly,
        options: [bo?.NonRecursive === true ? 'bind' : 'rbind'],
        propagation: bo?.Propagation ?? DEFAULT_PROPAGATION, mode: '',
      };
      if (!exists) req.createSource = true;
      return req;
    }
    case 'volume': {
      const destination = cleanTarget(type, m.Target ?? '');
      if (m.BindOptions !== undefined) throw mountError(type, 'field BindOptions must not be specified');
      if (m.TmpfsOptions !== undefined) throw mountError(type, 'field TmpfsOptions must not be specified');
      if (source === '' && readOnly) throw mountError(type, 'must not set ReadOnly mode when using anonymous volumes');
      if (source !== '') {
        try {
          checkVolumeName(source);
        } catch (err) {
          throw mountError(type, err instanceof Error ? err.message : String(err));
        }
      }
      const vo = m.VolumeOptions;
      const req: MountRequest = { type, source, destination, readOnly, options: ['rbind'], propagation: '', mode: '', volumeName: source };
      if (source === '') req.anonymous = true;
      if (vo?.NoCopy === true) req.noCopy = true;
      const sub = vo?.Subpath ?? '';
      if (sub !== '') {
        const sp = clean(sub);
        if (posix.isAbsolute(sub) || sp === '..' || sp.startsWith('../')) {
          throw mountError(type, 'subpath must be a relative path within the volume');
        }
        req.subpath = sp;
      }
      const driver = vo?.DriverConfig?.Name ?? '';
      if (driver !== '') req.volumeDriver = driver;
      if (vo?.DriverConfig?.Options !== undefined) req.volumeDriverOptions = { ...vo.DriverConfig.Options };
      if (vo?.Labels !== undefined) req.volumeLabels = { ...vo.Labels };
      return req;
    }
    case 'tmpfs': {
      const destination = cleanTarget(type, m.Target ?? '');
      if (source !== '') throw mountError(type, 'field Source must not be specified');
      if (m.BindOptions !== undefined) throw mountError(type, 'field BindOptions must not be specified');
      if (m.VolumeOptions !== undefined) throw mountError(type, 'field VolumeOptions must not be specified');
      const data = tmpfsData(m);
      return tmpfsRequest(destination, mergeTmpfsOptions([...TMPFS_DEFAULTS, ...data]), data.join(','));
    }
    case 'image':
      throw mountError(type, 'image mounts are not supported by this engine');
    case 'npipe':
      throw mountError(type, 'npipe mounts are only supported on Windows');
    case 'cluster':
      throw mountError(type, 'cluster volumes are only supported in swarm mode');
    default:
      throw mountError(type, 'mount type unknown');
  }
}

/**
 * Every mount of a container: Binds, then Mounts, then Tmpfs; then the
 * anonymous volumes of cfg.Volumes (the merged config) that nothing else
 * already covers. Two mounts on one destination: `Duplicate mount point: /x`.
 * VolumesFrom is the caller's (it needs the other containers' mounts).
 */
export function parseMounts(cfg: ContainerConfig, host: HostConfig, opts: MountParseOptions = {}): MountRequest[] {
  const out: MountRequest[] = [];
  const seen = new Set<string>();
  const tmpfsDests = new Set(Object.keys(host.Tmpfs ?? {}).map((d) => (posix.isAbsolute(d) ? clean(d) : d)));
  const add = (m: MountRequest): void => {
    if (seen.has(m.destination)) throw invalid(`Duplicate mount point: ${m.destination}`);
    seen.add(m.destination);
    out.push(m);
  };
  for (const b of host.Binds ?? []) {
    const m = parseBind(b, host.VolumeDriver ?? '', opts);
    if (tmpfsDests.has(m.destination)) throw invalid(`Duplicate mount point: ${m.destination}`);
    add(m);
  }
  for (const m of host.Mounts ?? []) add(parseApiMount(m, opts));
  for (const [dest, data] of Object.entries(host.Tmpfs ?? {})) add(parseTmpfsEntry(dest, data));
  for (const dest of Object.keys(cfg.Volumes ?? {})) {
    const d = cleanTarget('volume', dest);
    if (seen.has(d)) continue;
    seen.add(d);
    const req: MountRequest = {
      type: 'volume', source: '', destination: d, readOnly: false, options: ['rbind'], propagation: '', mode: '',
      volumeName: '', anonymous: true,
    };
    if ((host.VolumeDriver ?? '') !== '') req.volumeDriver = host.VolumeDriver ?? '';
    out.push(req);
  }
  return out;
}
