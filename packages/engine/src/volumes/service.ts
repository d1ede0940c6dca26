/**
 * Volumes: Docker's named and anonymous volumes with the `local` driver.
 *
 *   storage    <data-root>/volumes/<name>/_data; metadata in the engine's
 *              database (./_db.ts), so a volume outlives its containers and
 *              berthd, and goes only when asked (rm, rm -v, --rm, prune)
 *   options    `type`/`device`/`o` are mounted with mount(8) at the first
 *              container start and unmounted when the last one stops or the
 *              volume is removed
 *   copy-up    the first mount of an empty volume copies the image's directory
 *              at the destination into it (unless `nocopy`)
 *   in use     a volume is used by every container that mounts it, names it in
 *              its config, or was given it as an anonymous volume
 *
 * The container service reaches this through VolumeHooks (resolve at start,
 * removed at remove); stops are learnt from the engine's container events.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, realpathSync, rmSync } from 'node:fs';
import { join, sep } from 'node:path';
import { invalid, notFound } from '@berth/base';
import type { Engine } from '../engine.js';
import type { VolumeHooks, VolumeResolveOptions } from '../containers/hooks.js';
import { parseMounts } from '../containers/mounts.js';
import type { MountRequest } from '../containers/mounts.js';
import type { ContainerRecord } from '../containers/record.js';
import { conflict } from '../server/errors.js';
import { VolumeDb } from './_db.js';
import type { VolumeRecord } from './_db.js';
import { copyUp, dirSize, hasMountsUnder, isEmptyDir, isMounted, mountLocal, needsMount, unmountLocal, validateLocalOptions } from './_local.js';

export type { VolumeRecord } from './_db.js';

/** A volume as the API shows it. */
export interface VolumeJSON {
  CreatedAt: string;
  Driver: string;
  Labels: Record<string, string> | null;
  Mountpoint: string;
  Name: string;
  Options: Record<string, string> | null;
  Scope: 'local';
  UsageData?: { Size: number; RefCount: number };
}

export interface VolumeCreateRequest {
  Name?: string;
  Driver?: string;
  DriverOpts?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
}

const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
/** The label Docker puts on the anonymous volumes it makes for containers. */
export const ANONYMOUS_LABEL = 'com.docker.volume.anonymous';

function rfc3339Seconds(d = new Date()): string {
  return `${d.toISOString().slice(0, 19)}Z`;
}

function noSuchVolume(name: string): Error {
  return notFound(`get ${name}: no such volume`);
}

function checkDriver(driver: string | undefined): string {
  const d = driver === undefined || driver === '' ? 'local' : driver;
  if (d !== 'local') throw notFound(`error looking up volume plugin ${d}: plugin "${d}" not found`);
  return d;
}

function sameOptions(a: Record<string, string> | null, b: Record<string, string> | null): boolean {
  const x = Object.entries(a ?? {}).sort();
  const y = Object.entries(b ?? {}).sort();
  return JSON.stringify(x) === JSON.stringify(y);
}

/** A map with its keys in order, as Go's JSON writes maps. */
function sorted(m: Record<string, string> | null): Record<string, string> | null {
  if (m === null) return null;
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Docker's label filter: `key` or `key=value`. */
function labelMatches(labels: Record<string, string> | null, want: string): boolean {
  const i = want.indexOf('=');
  const k = i < 0 ? want : want.slice(0, i);
  if (labels === null || !(k in labels)) return false;
  return i < 0 || labels[k] === want.slice(i + 1);
}

function boolFilter(key: string, v: string): boolean {
  const l = v.toLowerCase();
  if (l === 'true' || l === '1') return true;
  if (l === 'false' || l === '0') return false;
  throw invalid(`invalid filter '${key}=${v}'`);
}

export class VolumeService implements VolumeHooks {
  private readonly byName = new Map<string, VolumeRecord>();
  private readonly db: VolumeDb;
  private readonly locks = new Map<string, Promise<unknown>>();
  /** The running containers each volume is mounted in (for unmount events and the last unmount). */
  private readonly mountedIn = new Map<string, Set<string>>();
  private readonly unfollow: () => void;
  readonly root: string;

  constructor(
    private readonly engine: Engine,
    dbPath: string,
    private readonly containers: () => readonly ContainerRecord[],
  ) {
    this.root = join(engine.paths.dataRoot, 'volumes');
    mkdirSync(this.root, { recursive: true, mode: 0o701 });
    this.db = new VolumeDb(dbPath);
    for (const v of this.db.all()) this.byName.set(v.Name, v);
    for (const c of containers()) {
      if (!c.State.Running) continue;
      for (const p of c.Mounts) if (p.Type === 'volume' && p.Name !== undefined && this.byName.has(p.Name)) this.track(p.Name, c.Id);
    }
    this.unfollow = engine.events.follow((e) => {
      if (e.Type === 'container' && (e.Action === 'die' || e.Action === 'destroy')) void this.containerStopped(e.Actor.ID);
    });
  }

  close(): void {
    this.unfollow();
    this.db.close();
  }

  /** The data directory of a volume. */
  mountpoint(name: string): string {
    return join(this.root, name, '_data');
  }

  private async locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(name, tail);
    try {
      return await next;
    } finally {
      if (this.locks.get(name) === tail) this.locks.delete(name);
    }
  }

  private track(name: string, id: string): void {
    const s = this.mountedIn.get(name) ?? new Set<string>();
    s.add(id);
    this.mountedIn.set(name, s);
  }

  private event(action: string, name: string, attrs: Record<string, string> = {}): void {
    this.engine.events.emit('volume', action, name, attrs);
  }

  json(v: VolumeRecord): VolumeJSON {
    return {
      CreatedAt: v.CreatedAt, Driver: v.Driver, Labels: sorted(v.Labels), Mountpoint: this.mountpoint(v.Name), Name: v.Name,
      Options: sorted(v.Options), Scope: 'local',
    };
  }

  get(name: string): VolumeRecord {
    const v = this.byName.get(name);
    if (v === undefined) throw noSuchVolume(name);
    return v;
  }

  // ---- what uses a volume ----

  /** The volumes a container refers to: mounted, named in its config, or given as anonymous. */
  private refsOf(c: ContainerRecord, anon: ReadonlyMap<string, string[]>): Set<string> {
    const out = new Set<string>(anon.get(c.Id) ?? []);
    for (const p of c.Mounts) if (p.Type === 'volume' && p.Name !== undefined && p.Name !== '') out.add(p.Name);
    let reqs: MountRequest[] = [];
    try {
      reqs = parseMounts(c.Config, c.HostConfig, { exists: () => true });
    } catch {
      /* a config that no longer parses names nothing */
    }
    for (const m of reqs) if (m.type === 'volume' && (m.volumeName ?? '') !== '') out.add(m.volumeName ?? '');
    return out;
  }

  /** Every volume name → the IDs of the containers using it. */
  private usage(except?: string): Map<string, string[]> {
    const anon = new Map<string, string[]>();
    for (const r of this.db.allAnonymous()) anon.set(r.container, [...(anon.get(r.container) ?? []), r.name]);
    const out = new Map<string, string[]>();
    for (const c of this.containers()) {
      if (c.Id === except) continue;
      for (const n of this.refsOf(c, anon)) out.set(n, [...(out.get(n) ?? []), c.Id]);
    }
    return out;
  }

  users(name: string, except?: string): string[] {
    return this.usage(except).get(name) ?? [];
  }

  // ---- create, list, remove, prune ----

  async create(req: VolumeCreateRequest): Promise<VolumeJSON> {
    const driver = checkDriver(req.Driver);
    const name = req.Name === undefined || req.Name === '' ? randomBytes(32).toString('hex') : req.Name;
    if (!VOLUME_NAME.test(name)) {
      throw invalid(`create ${name}: ${JSON.stringify(name)} includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`);
    }
    const opts = req.DriverOpts ?? null;
    try {
      validateLocalOptions(opts);
    } catch (e) {
      throw invalid(`create ${name}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    return this.locked(name, async () => this.json(this.createLocked(name, driver, opts, req.Labels ?? null, false)));
  }

  /** An existing volume of that name (same driver), or a new one. */
  private createLocked(name: string, driver: string, opts: Record<string, string> | null, labels: Record<string, string> | null, anonymous: boolean): VolumeRecord {
    const have = this.byName.get(name);
    if (have !== undefined) {
      if (have.Driver !== driver) throw conflict(`create ${name}: a volume with the name ${name} already exists with driver "${have.Driver}"`);
      if (opts !== null && Object.keys(opts).length > 0 && !sameOptions(have.Options, opts)) {
        this.engine.log.warn('volume exists with other options; keeping the existing one', { name });
      }
      return have;
    }
    const v: VolumeRecord = { Name: name, Driver: driver, CreatedAt: rfc3339Seconds(), Labels: labels, Options: opts, anonymous };
    mkdirSync(this.mountpoint(name), { recursive: true, mode: 0o755 });
    this.db.put(v);
    this.byName.set(name, v);
    this.event('create', name, { driver });
    return v;
  }

  list(filters: ReadonlyMap<string, readonly string[]>): VolumeJSON[] {
    for (const k of filters.keys()) {
      if (!['dangling', 'label', 'name', 'driver'].includes(k)) throw invalid(`invalid filter '${k}'`);
    }
    const used = filters.has('dangling') ? this.usage() : undefined;
    const out: VolumeJSON[] = [];
    for (const v of this.byName.values()) {
      const dangling = filters.get('dangling');
      if (dangling !== undefined && used !== undefined) {
        const want = dangling.map((d) => boolFilter('dangling', d));
        if (!want.includes(!used.has(v.Name))) continue;
      }
      const names = filters.get('name');
      if (names !== undefined && !names.some((n) => v.Name.includes(n))) continue;
      const drivers = filters.get('driver');
      if (drivers !== undefined && !drivers.includes(v.Driver)) continue;
      const labels = filters.get('label');
      if (labels !== undefined && !labels.every((l) => labelMatches(v.Labels, l))) continue;
      out.push(this.json(v));
    }
    return out.sort((a, b) => a.Name.localeCompare(b.Name));
  }

  async remove(name: string, force: boolean): Promise<void> {
    await this.locked(name, async () => {
      const v = this.byName.get(name);
      if (v === undefined) {
        if (force) return;
        throw noSuchVolume(name);
      }
      const users = this.users(name);
      if (users.length > 0) throw conflict(`remove ${name}: volume is in use - [${users.join(', ')}]`);
      await this.destroyLocked(v);
    });
  }

  /** Unmount, delete the directory (never through a mount), forget. */
  private async destroyLocked(v: VolumeRecord): Promise<void> {
    const data = this.mountpoint(v.Name);
    await unmountLocal(data);
    const dir = join(this.root, v.Name);
    if (existsSync(dir)) {
      if (hasMountsUnder(dir)) throw conflict(`remove ${v.Name}: something is still mounted under ${dir}`);
      // The directory must be this volume's, whatever its name looks like.
      if (!realpathSync(dir).startsWith(realpathSync(this.root) + sep)) throw invalid(`remove ${v.Name}: ${dir} is not in ${this.root}`);
      rmSync(dir, { recursive: true, force: true });
    }
    this.db.delete(v.Name);
    this.byName.delete(v.Name);
    this.mountedIn.delete(v.Name);
    this.event('destroy', v.Name, { driver: v.Driver });
  }

  /** Unused volumes: anonymous ones, or all with `all=true`; labels filter. */
  async prune(filters: ReadonlyMap<string, readonly string[]>): Promise<{ VolumesDeleted: string[]; SpaceReclaimed: number }> {
    for (const k of filters.keys()) {
      if (!['label', 'label!', 'all'].includes(k)) throw invalid(`invalid filter '${k}'`);
    }
    const all = (filters.get('all') ?? []).some((v) => boolFilter('all', v));
    const deleted: string[] = [];
    let space = 0;
    for (const v of [...this.byName.values()]) {
      if (!all && !v.anonymous && !(v.Labels !== null && ANONYMOUS_LABEL in v.Labels)) continue;
      const labels = filters.get('label');
      if (labels !== undefined && !labels.every((l) => labelMatches(v.Labels, l))) continue;
      const notLabels = filters.get('label!');
      if (notLabels !== undefined && notLabels.some((l) => labelMatches(v.Labels, l))) continue;
      await this.locked(v.Name, async () => {
        if (!this.byName.has(v.Name) || this.users(v.Name).length > 0) return;
        const size = needsMount(v.Options) ? 0 : await dirSize(this.mountpoint(v.Name));
        await this.destroyLocked(v);
        deleted.push(v.Name);
        space += size;
      }).catch((e: unknown) => {
        this.engine.log.warn('pruning a volume failed', { name: v.Name, error: e instanceof Error ? e.message : String(e) });
      });
    }
    this.event('prune', '', { reclaimed: String(space) });
    return { VolumesDeleted: deleted, SpaceReclaimed: space };
  }

  /** `system df`: every volume with its size (-1 when it is a mount of its own) and how many containers use it. */
  async df(): Promise<VolumeJSON[]> {
    const used = this.usage();
    const out: VolumeJSON[] = [];
    for (const v of this.byName.values()) {
      const size = needsMount(v.Options) && !isMounted(this.mountpoint(v.Name)) ? -1 : await dirSize(this.mountpoint(v.Name));
      out.push({ ...this.json(v), UsageData: { Size: size, RefCount: used.get(v.Name)?.length ?? 0 } });
    }
    return out;
  }

  // ---- the container hooks ----

  async resolve(c: ContainerRecord, m: MountRequest, opts: VolumeResolveOptions): Promise<{ name: string; hostPath: string }> {
    const driver = checkDriver(m.volumeDriver);
    const owner = opts.owner ?? c;
    let name = m.volumeName ?? m.source;
    const anonymous = name === '';
    if (anonymous) {
      name = this.db.anonymous(owner.Id, m.destination) ?? randomBytes(32).toString('hex');
      this.db.putAnonymous(owner.Id, m.destination, name);
      const key = `anon:${m.destination}=`;
      if (!owner.berth.anonymousVolumes.some((a) => a.startsWith(key))) owner.berth.anonymousVolumes.push(`${key}${name}`);
    }
    const options = m.volumeDriverOptions !== undefined && Object.keys(m.volumeDriverOptions).length > 0 ? m.volumeDriverOptions : null;
    if (!this.byName.has(name)) validateLocalOptions(options);
    return this.locked(name, async () => {
      const v = this.createLocked(name, driver, options, anonymous ? { [ANONYMOUS_LABEL]: '' } : (m.volumeLabels ?? null), anonymous);
      const data = this.mountpoint(name);
      mkdirSync(data, { recursive: true, mode: 0o755 });
      if (needsMount(v.Options)) await mountLocal(name, v.Options ?? {}, data);
      const sub = m.subpath ?? '';
      if (m.noCopy !== true && sub === '' && opts.rootfs !== undefined && isEmptyDir(data)) {
        const tmp = join(this.engine.paths.dataRoot, 'tmp');
        mkdirSync(tmp, { recursive: true, mode: 0o700 });
        await copyUp(opts.rootfs, m.destination, data, tmp);
      }
      let hostPath = data;
      if (sub !== '') {
        hostPath = join(data, sub);
        const real = existsSync(hostPath) ? realpathSync(hostPath) : '';
        const base = realpathSync(data);
        if (real === '' || (real !== base && !real.startsWith(base + sep))) {
          throw invalid(`cannot access path ${hostPath}: the subpath ${sub} is not a directory of volume ${name}`);
        }
      }
      this.track(name, c.Id);
      this.event('mount', name, {
        container: c.Id, destination: m.destination, driver: v.Driver, propagation: m.propagation, 'read/write': String(!m.readOnly),
      });
      return { name, hostPath };
    });
  }

  async removed(c: ContainerRecord, removeAnonymous: boolean): Promise<void> {
    const mine = this.db.anonymousOf(c.Id);
    this.db.forgetContainer(c.Id);
    await this.containerStopped(c.Id);
    if (!removeAnonymous) return;
    for (const name of mine) {
      await this.locked(name, async () => {
        const v = this.byName.get(name);
        if (v === undefined || this.users(name, c.Id).length > 0) return;
        await this.destroyLocked(v);
      }).catch((e: unknown) => {
        this.engine.log.warn('removing an anonymous volume failed', { name, container: c.Id, error: e instanceof Error ? e.message : String(e) });
      });
    }
  }

  /** A container stopped (or went): its volumes are unmounted from it, and a volume no running container uses any more is unmounted. */
  private async containerStopped(id: string): Promise<void> {
    for (const [name, ids] of [...this.mountedIn]) {
      if (!ids.delete(id)) continue;
      const v = this.byName.get(name);
      this.event('unmount', name, { container: id, driver: v?.Driver ?? 'local' });
      if (ids.size > 0) continue;
      this.mountedIn.delete(name);
      if (v === undefined || !needsMount(v.Options)) continue;
      await this.locked(name, async () => {
        if ((this.mountedIn.get(name)?.size ?? 0) > 0) return;
        await unmountLocal(this.mountpoint(name));
      }).catch((e: unknown) => {
        this.engine.log.warn('unmounting a volume failed', { name, error: e instanceof Error ? e.message : String(e) });
      });
    }
  }
}
