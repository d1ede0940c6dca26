// cgroup v1: one directory per hierarchy (plus the cgroup2 one on hybrid hosts).
import { join, relative } from 'node:path';
import { readdir } from 'node:fs/promises';
import type { LinuxMemory, LinuxResources } from '@berth/spec';
import { failedPrecondition, invalid, unavailable } from '@berth/base';
import { BaseManager, newReport, pollUntil } from './_base.js';
import type { CgroupWrite } from './_fs.js';
import {
  collectPids, exists, mkdirpSync, readControl, readControlSync, readOptional, readOptionalSync, removeCgroupTree, writeControl, writeControlSync,
} from './_fs.js';
import { checkPageSize } from './convert.js';
import { formatDeviceRule } from './devices.js';
import type { ApplyReport, FreezerState } from './manager.js';
import type { BlkioEntry, CgroupStats, MemoryEntry } from './stats.js';
import { emptyStats, parseBlkioV1, parseKeyValues, parseNumberList, parseRangeList, parseValue } from './stats.js';

const PIDS_FROM = ['pids', 'freezer', 'memory', 'devices', 'cpu', 'cpuacct', 'blkio', 'cpuset'];
/** USER_HZ: the unit of cpuacct.stat. */
const CLOCK_TICKS = 100;

function memoryWrites(m: LinuxMemory | undefined): boolean {
  if (m === undefined) return false;
  return (
    (m.limit ?? 0) !== 0 ||
    (m.swap ?? 0) !== 0 ||
    (m.reservation ?? 0) !== 0 ||
    (m.kernelTCP ?? 0) !== 0 ||
    (m.swappiness !== undefined && m.swappiness !== -1) ||
    m.disableOOMKiller === true
  );
}

export class V1Manager extends BaseManager {
  readonly version = 'v1' as const;

  private dir(controller: string): string | undefined {
    return this.paths.dirs[controller];
  }

  private need(controller: string, what: string): string {
    const d = this.dir(controller);
    if (d === undefined) throw failedPrecondition(`cannot set ${what}: the ${controller} cgroup controller is not mounted`);
    return d;
  }

  private uniqueDirs(): string[] {
    return [...new Set(Object.values(this.paths.dirs))];
  }

  protected describe(): string {
    return this.paths.relative;
  }

  /** Set while create() applies resources: the new cgroup's files are written synchronously. */
  private creating = false;

  async create(resources?: LinuxResources): Promise<ApplyReport> {
    const report = newReport();
    // cgroupfs directories and files of a new cgroup: synchronous calls, a
    // few microseconds each, rather than a thread-pool round trip apiece.
    for (const d of this.uniqueDirs()) mkdirpSync(d);
    const cpuset = this.dir('cpuset');
    const mount = this.layout.mounts['cpuset'];
    if (cpuset !== undefined && mount !== undefined) this.initCpuset(mount.mountpoint, cpuset, report.writes);
    if (resources === undefined) return report;
    this.creating = true;
    let applied: ApplyReport;
    try {
      applied = await this.apply(resources);
    } finally {
      this.creating = false;
    }
    return { ...applied, writes: [...report.writes, ...applied.writes] };
  }

  /** A new cpuset cgroup starts with empty cpus and mems, which the kernel refuses tasks into: copy the parent's. */
  private initCpuset(mountpoint: string, dir: string, log: CgroupWrite[]): void {
    let parent = mountpoint;
    for (const part of relative(mountpoint, dir).split('/').filter((p) => p !== '')) {
      const cur = join(parent, part);
      for (const file of ['cpuset.cpus', 'cpuset.mems']) {
        if ((readOptionalSync(join(cur, file)) ?? '').trim() !== '') continue;
        writeControlSync(join(cur, file), readControlSync(join(parent, file)).trim(), log);
      }
      parent = cur;
    }
  }

  procsFiles(): string[] {
    return this.uniqueDirs().map((d) => join(d, 'cgroup.procs'));
  }

  async apply(r: LinuxResources): Promise<ApplyReport> {
    // Refuse what cannot be done before writing anything.
    if (r.unified !== undefined && Object.keys(r.unified).length > 0) {
      throw failedPrecondition(
        `linux.resources.unified (${Object.keys(r.unified).join(', ')}) needs cgroup v2; this host uses cgroup v1`,
      );
    }
    for (const h of r.hugepageLimits ?? []) checkPageSize(h.pageSize);
    const sw = r.memory?.swappiness;
    if (sw !== undefined && sw !== -1 && (sw < 0 || sw > 100)) {
      throw invalid(`memory.swappiness: ${sw} is out of range 0..100`);
    }

    const report = newReport();
    const log = report.writes;
    const write = this.creating
      ? async (dir: string, file: string, value: string | number): Promise<void> => writeControlSync(join(dir, file), String(value), log)
      : (dir: string, file: string, value: string | number): Promise<void> => writeControl(join(dir, file), String(value), log);

    // cpuset
    const cpus = r.cpu?.cpus ?? '';
    const mems = r.cpu?.mems ?? '';
    if (cpus !== '' || mems !== '') {
      const d = this.need('cpuset', 'cpu.cpus/cpu.mems');
      if (cpus !== '') await write(d, 'cpuset.cpus', cpus);
      if (mems !== '') await write(d, 'cpuset.mems', mems);
    }

    // devices: deny everything, then the rules in order.
    if (r.devices !== undefined) {
      const d = this.need('devices', 'the device allowlist');
      await write(d, 'devices.deny', 'a');
      let leading = true;
      for (const rule of r.devices) {
        const rendered = formatDeviceRule(rule);
        if (leading && !rule.allow && rendered === 'a') continue;
        leading = false;
        await write(d, rule.allow ? 'devices.allow' : 'devices.deny', rendered);
      }
    }

    // memory
    const m = r.memory;
    if (m !== undefined && memoryWrites(m)) await this.applyMemory(this.need('memory', 'memory limits'), m, write, report);
    if (m !== undefined && (m.kernel ?? 0) !== 0) {
      report.warnings.push('memory.kernel: kernel memory limits are not supported; ignored');
    }

    // cpu
    const c = r.cpu;
    if (c !== undefined) {
      const shares = c.shares ?? 0;
      const quota = c.quota ?? 0;
      const period = c.period ?? 0;
      const rtPeriod = c.realtimePeriod ?? 0;
      const rtRuntime = c.realtimeRuntime ?? 0;
      const any = shares !== 0 || quota !== 0 || period !== 0 || c.burst !== undefined ||
        rtPeriod !== 0 || rtRuntime !== 0 || c.idle !== undefined;
      if (any) {
        const d = this.need('cpu', 'cpu limits');
        if (shares !== 0) {
          await write(d, 'cpu.shares', shares);
          const got = parseValue(await readOptional(join(d, 'cpu.shares')));
          if (got !== 0 && got !== shares) {
            throw invalid(`cpu.shares: the kernel set ${got} for ${shares} (its range is 2..262144)`);
          }
        }
        // A period smaller than the current one can be refused until the
        // quota is lowered: then write the quota first and the period again.
        let periodPending = false;
        if (period !== 0) {
          try {
            await write(d, 'cpu.cfs_period_us', period);
          } catch (err) {
            if (quota === 0) throw err;
            periodPending = true;
          }
        }
        if (quota !== 0) {
          await write(d, 'cpu.cfs_quota_us', quota);
          if (periodPending) await write(d, 'cpu.cfs_period_us', period);
        }
        if (c.burst !== undefined) await write(d, 'cpu.cfs_burst_us', c.burst);
        if (rtPeriod !== 0) await write(d, 'cpu.rt_period_us', rtPeriod);
        if (rtRuntime !== 0) await write(d, 'cpu.rt_runtime_us', rtRuntime);
        if (c.idle !== undefined) await write(d, 'cpu.idle', c.idle);
      }
    }

    // pids
    if (r.pids !== undefined) {
      await write(this.need('pids', 'pids.limit'), 'pids.max', r.pids.limit < 0 ? 'max' : r.pids.limit);
    }

    // blkio
    const b = r.blockIO;
    if (b !== undefined) {
      const throttles = [
        ['blkio.throttle.read_bps_device', b.throttleReadBpsDevice],
        ['blkio.throttle.write_bps_device', b.throttleWriteBpsDevice],
        ['blkio.throttle.read_iops_device', b.throttleReadIOPSDevice],
        ['blkio.throttle.write_iops_device', b.throttleWriteIOPSDevice],
      ] as const;
      const any = (b.weight ?? 0) !== 0 || (b.leafWeight ?? 0) !== 0 || (b.weightDevice?.length ?? 0) > 0 ||
        throttles.some(([, list]) => (list?.length ?? 0) > 0);
      if (any) {
        const d = this.need('blkio', 'blockIO limits');
        // The CFQ files, or BFQ's when the kernel has only those.
        const bfq = !(await exists(join(d, 'blkio.weight'))) && (await exists(join(d, 'blkio.bfq.weight')));
        const weightFile = bfq ? 'blkio.bfq.weight' : 'blkio.weight';
        const weightDeviceFile = bfq ? 'blkio.bfq.weight_device' : 'blkio.weight_device';
        if ((b.weight ?? 0) !== 0) await write(d, weightFile, b.weight ?? 0);
        if ((b.leafWeight ?? 0) !== 0) await write(d, 'blkio.leaf_weight', b.leafWeight ?? 0);
        for (const wd of b.weightDevice ?? []) {
          if ((wd.weight ?? 0) !== 0) await write(d, weightDeviceFile, `${wd.major}:${wd.minor} ${wd.weight}`);
          if ((wd.leafWeight ?? 0) !== 0) await write(d, 'blkio.leaf_weight_device', `${wd.major}:${wd.minor} ${wd.leafWeight}`);
        }
        for (const [file, list] of throttles) {
          for (const t of list ?? []) await write(d, file, `${t.major}:${t.minor} ${t.rate}`);
        }
      }
    }

    // hugetlb
    if ((r.hugepageLimits?.length ?? 0) > 0) {
      const d = this.need('hugetlb', 'hugepageLimits');
      for (const h of r.hugepageLimits ?? []) {
        await write(d, `hugetlb.${h.pageSize}.limit_in_bytes`, h.limit);
        const rsvd = `hugetlb.${h.pageSize}.rsvd.limit_in_bytes`;
        if (await exists(join(d, rsvd))) await write(d, rsvd, h.limit);
      }
    }

    // net_cls, net_prio
    const n = r.network;
    if (n?.classID !== undefined) await write(this.need('net_cls', 'network.classID'), 'net_cls.classid', n.classID);
    for (const p of n?.priorities ?? []) {
      await write(this.need('net_prio', 'network.priorities'), 'net_prio.ifpriomap', `${p.name} ${p.priority}`);
    }

    // rdma
    for (const [device, limits] of Object.entries(r.rdma ?? {})) {
      const parts = [device];
      if (limits.hcaHandles !== undefined) parts.push(`hca_handle=${limits.hcaHandles}`);
      if (limits.hcaObjects !== undefined) parts.push(`hca_object=${limits.hcaObjects}`);
      await write(this.need('rdma', 'rdma limits'), 'rdma.max', parts.join(' '));
    }
    return report;
  }

  private async applyMemory(
    d: string,
    m: LinuxMemory,
    write: (dir: string, file: string, value: string | number) => Promise<void>,
    report: ApplyReport,
  ): Promise<void> {
    const limit = m.limit ?? 0;
    let swap = m.swap ?? 0;
    // Unlimited memory with swap unset: unlimited memory+swap too.
    if (limit === -1 && swap === 0) swap = -1;
    const memswFile = 'memory.memsw.limit_in_bytes';
    if (swap !== 0 && !(await exists(join(d, memswFile)))) {
      if (swap !== -1) {
        throw failedPrecondition(`cannot set memory.swap: swap accounting is off (no ${join(d, memswFile)})`);
      }
      report.warnings.push('memory.swap: swap accounting is off; unlimited swap left as is');
      swap = 0;
    }
    // The kernel wants memory <= memory+swap at every step: raise memsw
    // first when it grows, else the memory limit first.
    let swapFirst = false;
    if (limit !== 0 && swap !== 0) {
      const current = parseValue(await readControl(join(d, 'memory.limit_in_bytes')));
      swapFirst = swap === -1 || current < swap;
    }
    if (swapFirst) {
      await write(d, memswFile, swap);
      await write(d, 'memory.limit_in_bytes', limit);
    } else {
      if (limit !== 0) await write(d, 'memory.limit_in_bytes', limit);
      if (swap !== 0) await write(d, memswFile, swap);
    }
    if ((m.reservation ?? 0) !== 0) await write(d, 'memory.soft_limit_in_bytes', m.reservation ?? 0);
    if ((m.kernelTCP ?? 0) !== 0) await write(d, 'memory.kmem.tcp.limit_in_bytes', m.kernelTCP ?? 0);
    if (m.swappiness !== undefined && m.swappiness !== -1) await write(d, 'memory.swappiness', m.swappiness);
    if (m.disableOOMKiller === true) await write(d, 'memory.oom_control', '1');
  }

  private freezerFile(): string | undefined {
    const d = this.dir('freezer');
    return d === undefined ? undefined : join(d, 'freezer.state');
  }

  async freeze(): Promise<void> {
    const file = this.freezerFile();
    if (file === undefined) throw failedPrecondition('cannot freeze: the freezer cgroup controller is not mounted');
    let state = '';
    let n = 0;
    const done = await pollUntil(2000, async () => {
      // FREEZING can stall while a task is in an uninterruptible sleep: ask again now and then.
      if (n++ % 50 === 0) await writeControl(file, 'FROZEN');
      state = (await readControl(file)).trim();
      return state === 'FROZEN';
    });
    if (!done) {
      await writeControl(file, 'THAWED');
      throw unavailable(`cannot freeze cgroup ${this.paths.relative}: ${file} stayed ${state}; thawed again`);
    }
  }

  async thaw(): Promise<void> {
    const file = this.freezerFile();
    if (file === undefined) throw failedPrecondition('cannot thaw: the freezer cgroup controller is not mounted');
    await writeControl(file, 'THAWED');
    let state = '';
    const done = await pollUntil(2000, async () => {
      state = (await readControl(file)).trim();
      return state === 'THAWED';
    });
    if (!done) throw unavailable(`cannot thaw cgroup ${this.paths.relative}: ${file} stayed ${state}`);
  }

  async freezerState(): Promise<FreezerState> {
    const file = this.freezerFile();
    if (file === undefined) return 'unknown';
    const state = (await readOptional(file))?.trim();
    if (state === 'FROZEN') return 'frozen';
    if (state === 'FREEZING') return 'freezing';
    if (state === 'THAWED') return 'thawed';
    return 'unknown';
  }

  pids(): Promise<number[]> {
    const key = PIDS_FROM.find((c) => this.dir(c) !== undefined) ?? Object.keys(this.paths.dirs)[0];
    const d = key === undefined ? undefined : this.dir(key);
    return d === undefined ? Promise.resolve([]) : collectPids(d);
  }

  protected killAllAtOnce(): Promise<boolean> {
    return Promise.resolve(false);
  }

  async stats(): Promise<CgroupStats> {
    const s = emptyStats();
    const read = (dir: string | undefined, file: string): Promise<string | undefined> =>
      dir === undefined ? Promise.resolve(undefined) : readOptional(join(dir, file));

    const acct = this.dir('cpuacct');
    const u = s.cpu.usage;
    u.total = parseValue(await read(acct, 'cpuacct.usage'));
    u.percpu = parseNumberList(await read(acct, 'cpuacct.usage_percpu'));
    u.percpu_kernel = parseNumberList(await read(acct, 'cpuacct.usage_percpu_sys'));
    u.percpu_user = parseNumberList(await read(acct, 'cpuacct.usage_percpu_user'));
    const userNs = await read(acct, 'cpuacct.usage_user');
    const sysNs = await read(acct, 'cpuacct.usage_sys');
    if (userNs !== undefined && sysNs !== undefined) {
      u.user = parseValue(userNs);
      u.kernel = parseValue(sysNs);
    } else {
      const ticks = parseKeyValues(await read(acct, 'cpuacct.stat'));
      u.user = ((ticks['user'] ?? 0) * 1e9) / CLOCK_TICKS;
      u.kernel = ((ticks['system'] ?? 0) * 1e9) / CLOCK_TICKS;
    }
    const cpuStat = parseKeyValues(await read(this.dir('cpu'), 'cpu.stat'));
    s.cpu.throttling = {
      periods: cpuStat['nr_periods'] ?? 0,
      throttledPeriods: cpuStat['nr_throttled'] ?? 0,
      throttledTime: cpuStat['throttled_time'] ?? 0,
    };

    const cpuset = this.dir('cpuset');
    s.cpuset.cpus = parseRangeList(await read(cpuset, 'cpuset.cpus'));
    s.cpuset.mems = parseRangeList(await read(cpuset, 'cpuset.mems'));

    const mem = this.dir('memory');
    if (mem !== undefined) {
      s.memory.raw = parseKeyValues(await read(mem, 'memory.stat'));
      s.memory.cache = s.memory.raw['cache'] ?? 0;
      const entry = async (prefix: string): Promise<MemoryEntry> => ({
        limit: parseValue(await read(mem, `memory.${prefix}limit_in_bytes`)),
        usage: parseValue(await read(mem, `memory.${prefix}usage_in_bytes`)),
        max: parseValue(await read(mem, `memory.${prefix}max_usage_in_bytes`)),
        failcnt: parseValue(await read(mem, `memory.${prefix}failcnt`)),
      });
      s.memory.usage = await entry('');
      s.memory.swap = await entry('memsw.');
      s.memory.kernel = await entry('kmem.');
      s.memory.kernelTCP = await entry('kmem.tcp.');
    }

    const pids = this.dir('pids');
    s.pids.current = parseValue(await read(pids, 'pids.current'));
    s.pids.limit = parseValue(await read(pids, 'pids.max'), 0);

    await this.blkioStats(s);

    const huge = this.dir('hugetlb');
    if (huge !== undefined) {
      for (const name of await readdir(huge).catch(() => [] as string[])) {
        const size = /^hugetlb\.([0-9]+[KMG]B)\.limit_in_bytes$/.exec(name)?.[1];
        if (size === undefined) continue;
        s.hugetlb[size] = {
          usage: parseValue(await read(huge, `hugetlb.${size}.usage_in_bytes`)),
          max: parseValue(await read(huge, `hugetlb.${size}.max_usage_in_bytes`)),
          failcnt: parseValue(await read(huge, `hugetlb.${size}.failcnt`)),
        };
      }
    }
    return s;
  }

  /** The CFQ statistics when they have data, else BFQ's, else the throttling layer's. */
  private async blkioStats(s: CgroupStats): Promise<void> {
    const d = this.dir('blkio');
    if (d === undefined) return;
    const get = async (file: string): Promise<BlkioEntry[]> => parseBlkioV1(await readOptional(join(d, file)));
    const b = s.blkio;
    for (const prefix of ['blkio.', 'blkio.bfq.']) {
      const serviced = await get(`${prefix}io_serviced_recursive`);
      if (serviced.length === 0) continue;
      b.ioServicedRecursive = serviced;
      b.ioServiceBytesRecursive = await get(`${prefix}io_service_bytes_recursive`);
      b.ioQueueRecursive = await get(`${prefix}io_queued_recursive`);
      b.ioServiceTimeRecursive = await get(`${prefix}io_service_time_recursive`);
      b.ioWaitTimeRecursive = await get(`${prefix}io_wait_time_recursive`);
      b.ioMergedRecursive = await get(`${prefix}io_merged_recursive`);
      b.ioTimeRecursive = await get(`${prefix}time_recursive`);
      b.sectorsRecursive = await get(`${prefix}sectors_recursive`);
      return;
    }
    b.ioServiceBytesRecursive = await get('blkio.throttle.io_service_bytes_recursive');
    if (b.ioServiceBytesRecursive.length === 0) b.ioServiceBytesRecursive = await get('blkio.throttle.io_service_bytes');
    b.ioServicedRecursive = await get('blkio.throttle.io_serviced_recursive');
    if (b.ioServicedRecursive.length === 0) b.ioServicedRecursive = await get('blkio.throttle.io_serviced');
  }

  async oomCount(): Promise<number> {
    const d = this.dir('memory');
    if (d === undefined) return 0;
    return parseKeyValues(await readOptional(join(d, 'memory.oom_control')))['oom_kill'] ?? 0;
  }

  oomEventFiles(): string[] {
    const d = this.dir('memory');
    return d === undefined ? [] : [join(d, 'memory.oom_control')];
  }

  async destroy(): Promise<void> {
    for (const d of this.uniqueDirs()) await removeCgroupTree(d);
  }
}
