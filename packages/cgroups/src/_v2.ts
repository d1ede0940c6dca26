// cgroup v2: one directory in the unified hierarchy.
import { join, relative } from 'node:path';
import { readdir } from 'node:fs/promises';
import type { LinuxResources } from '@berth/spec';
import { Bug, failedPrecondition, invalid, notImplemented, unavailable } from '@berth/base';
import { BaseManager, newReport, pollUntil } from './_base.js';
import type { CgroupWrite } from './_fs.js';
import { collectPids, exists, mkdirp, readOptional, removeCgroupTree, writeControl } from './_fs.js';
import { blkioWeightToIoWeight, checkPageSize, cpuSharesToWeight, maxOr, memorySwapToV2 } from './convert.js';
import { deviceRulesBeyondDefault } from './devices.js';
import type { ApplyReport, FreezerState } from './manager.js';
import type { CgroupStats, MemoryEntry } from './stats.js';
import { UNLIMITED, emptyStats, parseIoStatV2, parseKeyValues, parseRangeList, parseValue } from './stats.js';

const UNIFIED_KEY = /^[A-Za-z0-9_]+\.[A-Za-z0-9_.]+$/;

const words = (text: string | undefined): string[] => (text ?? '').trim().split(/\s+/).filter((w) => w !== '');

export class V2Manager extends BaseManager {
  readonly version = 'v2' as const;

  private get dir(): string {
    const d = this.paths.dirs[''];
    if (d === undefined) throw new Bug('cgroup v2 manager without a cgroup2 directory');
    return d;
  }

  private file(name: string): string {
    return join(this.dir, name);
  }

  protected describe(): string {
    return this.dir;
  }

  async create(resources?: LinuxResources): Promise<ApplyReport> {
    const report = newReport();
    const mount = this.layout.unified?.mountpoint;
    if (mount === undefined) throw new Bug('cgroup v2 layout without a cgroup2 mount');
    let cur = mount;
    for (const part of relative(mount, this.dir).split('/').filter((p) => p !== '')) {
      await this.enableControllers(cur, report.writes);
      cur = join(cur, part);
      await mkdirp(cur);
    }
    if (resources === undefined) return report;
    const applied = await this.apply(resources);
    return { ...applied, writes: [...report.writes, ...applied.writes] };
  }

  /**
   * Enable in dir's cgroup.subtree_control every controller it has, so its
   * children get them. A controller the kernel refuses (a process in a
   * non-root dir, a threaded subtree) is left out; apply() then says which
   * controller is missing if it needs it.
   */
  private async enableControllers(dir: string, log: CgroupWrite[]): Promise<void> {
    const available = words(await readOptional(join(dir, 'cgroup.controllers')));
    const enabled = new Set(words(await readOptional(join(dir, 'cgroup.subtree_control'))));
    const missing = available.filter((c) => !enabled.has(c));
    if (missing.length === 0) return;
    const file = join(dir, 'cgroup.subtree_control');
    try {
      await writeControl(file, missing.map((c) => `+${c}`).join(' '), log);
    } catch {
      for (const c of missing) {
        try {
          await writeControl(file, `+${c}`, log);
        } catch {
          // left disabled; see above
        }
      }
    }
  }

  procsFiles(): string[] {
    return [this.file('cgroup.procs')];
  }

  async apply(r: LinuxResources): Promise<ApplyReport> {
    const report = newReport();
    const log = report.writes;
    const write = (file: string, value: string | number): Promise<void> =>
      writeControl(this.file(file), String(value), log);
    const available = new Set(words(await readOptional(this.file('cgroup.controllers'))));
    const need = (controller: string, what: string): void => {
      if (available.has(controller)) return;
      const list = [...available].join(' ') || 'none';
      throw failedPrecondition(
        `cannot set ${what}: the ${controller} controller is not enabled for ${this.dir} (cgroup.controllers: ${list})`,
      );
    };

    // Refuse what cannot be done before writing anything.
    const m = r.memory;
    const c = r.cpu;
    const b = r.blockIO;
    const swapV2 = memorySwapToV2(m?.swap, m?.limit);
    const limit = m?.limit ?? 0;
    const memoryWrites = swapV2 !== undefined || limit !== 0 || (m?.reservation ?? 0) !== 0;
    if (memoryWrites) need('memory', 'memory limits');
    if ((c?.realtimePeriod ?? 0) !== 0 || (c?.realtimeRuntime ?? 0) !== 0) {
      throw failedPrecondition('cannot set cpu.realtimePeriod/realtimeRuntime: cgroup v2 has no realtime CPU limits');
    }
    const shares = c?.shares ?? 0;
    const quota = c?.quota ?? 0;
    const period = c?.period ?? 0;
    const cpuWrites = shares !== 0 || quota !== 0 || period !== 0 || c?.burst !== undefined || c?.idle !== undefined;
    if (cpuWrites) need('cpu', 'cpu limits');
    const cpus = c?.cpus ?? '';
    const mems = c?.mems ?? '';
    if (cpus !== '' || mems !== '') need('cpuset', 'cpu.cpus/cpu.mems');
    if (r.pids !== undefined) need('pids', 'pids.limit');
    const throttles = [
      ['rbps', b?.throttleReadBpsDevice],
      ['wbps', b?.throttleWriteBpsDevice],
      ['riops', b?.throttleReadIOPSDevice],
      ['wiops', b?.throttleWriteIOPSDevice],
    ] as const;
    const ioWrites = (b?.weight ?? 0) !== 0 || (b?.weightDevice ?? []).some((w) => (w.weight ?? 0) !== 0) ||
      throttles.some(([, list]) => (list?.length ?? 0) > 0);
    if (ioWrites) need('io', 'blockIO limits');
    for (const h of r.hugepageLimits ?? []) checkPageSize(h.pageSize);
    if ((r.hugepageLimits?.length ?? 0) > 0) need('hugetlb', 'hugepageLimits');
    if (Object.keys(r.rdma ?? {}).length > 0) need('rdma', 'rdma limits');
    if (r.network?.classID !== undefined || (r.network?.priorities?.length ?? 0) > 0) {
      throw failedPrecondition('cannot set network.classID/priorities: cgroup v2 has no net_cls or net_prio controller');
    }
    for (const key of Object.keys(r.unified ?? {})) {
      if (!UNIFIED_KEY.test(key)) throw invalid(`linux.resources.unified: invalid file name ${JSON.stringify(key)}`);
      const controller = key.slice(0, key.indexOf('.'));
      if (controller !== 'cgroup') need(controller, `unified ${key}`);
    }

    // pids
    if (r.pids !== undefined) await write('pids.max', maxOr(r.pids.limit));

    // memory: swap first, as runc does, then the limit and the reservation.
    if (m !== undefined) {
      if (m.checkBeforeUpdate === true && limit > 0) {
        const current = parseValue(await readOptional(this.file('memory.current')));
        if (current > limit) {
          throw failedPrecondition(`cannot set memory limit ${limit}: current usage ${current} is higher`);
        }
      }
      if (swapV2 !== undefined) {
        const swapFile = this.file('memory.swap.max');
        if (await exists(swapFile)) await write('memory.swap.max', maxOr(swapV2));
        else if (swapV2 > 0) throw failedPrecondition(`cannot set memory.swap: swap accounting is off (no ${swapFile})`);
      }
      if (limit !== 0) await write('memory.max', maxOr(limit));
      if ((m.reservation ?? 0) !== 0) await write('memory.low', maxOr(m.reservation ?? 0));
      if (m.swappiness !== undefined && m.swappiness !== -1) {
        report.warnings.push('memory.swappiness: cgroup v2 has no per-cgroup swappiness; ignored');
      }
      if (m.disableOOMKiller === true) report.warnings.push('memory.disableOOMKiller: not available on cgroup v2; ignored');
      if ((m.kernel ?? 0) !== 0 || (m.kernelTCP ?? 0) !== 0) {
        report.warnings.push('memory.kernel/kernelTCP: cgroup v2 has no separate kernel memory limits; ignored');
      }
    }

    // io: BFQ's weight file takes the blkio range as is; io.weight wants 1..10000.
    if (b !== undefined && ioWrites) {
      const bfq = await exists(this.file('io.bfq.weight'));
      const weight = b.weight ?? 0;
      if (weight !== 0) {
        if (bfq) await write('io.bfq.weight', weight);
        else await write('io.weight', `default ${blkioWeightToIoWeight(weight)}`);
      }
      for (const wd of b.weightDevice ?? []) {
        const w = wd.weight ?? 0;
        if (w === 0) continue;
        if (bfq) await write('io.bfq.weight', `${wd.major}:${wd.minor} ${w}`);
        else await write('io.weight', `${wd.major}:${wd.minor} ${blkioWeightToIoWeight(w)}`);
      }
      for (const [key, list] of throttles) {
        for (const t of list ?? []) await write('io.max', `${t.major}:${t.minor} ${key}=${t.rate}`);
      }
    }
    if ((b?.leafWeight ?? 0) !== 0 || (b?.weightDevice ?? []).some((w) => (w.leafWeight ?? 0) !== 0)) {
      report.warnings.push('blockIO.leafWeight: cgroup v2 has no leaf weights; ignored');
    }

    // cpu
    if (c !== undefined && cpuWrites) {
      if (shares !== 0) await write('cpu.weight', cpuSharesToWeight(shares));
      // The kernel wants burst <= quota at every step: try the burst first
      // (for a smaller quota), else after cpu.max (for a larger one).
      let burstPending = false;
      if (c.burst !== undefined) {
        try {
          await write('cpu.max.burst', c.burst);
        } catch (err) {
          if (quota === 0 && period === 0) throw err;
          burstPending = true;
        }
      }
      if (quota !== 0 || period !== 0) {
        let value = quota > 0 ? String(quota) : 'max';
        if (period !== 0) value += ` ${period}`;
        await write('cpu.max', value);
      }
      if (burstPending) await write('cpu.max.burst', c.burst ?? 0);
      if (c.idle !== undefined) await write('cpu.idle', c.idle);
    }
    if (cpus !== '') await write('cpuset.cpus', cpus);
    if (mems !== '') await write('cpuset.mems', mems);

    // hugetlb
    for (const h of r.hugepageLimits ?? []) {
      await write(`hugetlb.${h.pageSize}.max`, h.limit);
      const rsvd = `hugetlb.${h.pageSize}.rsvd.max`;
      if (await exists(this.file(rsvd))) await write(rsvd, h.limit);
    }

    // rdma
    for (const [device, limits] of Object.entries(r.rdma ?? {})) {
      const parts = [device];
      if (limits.hcaHandles !== undefined) parts.push(`hca_handle=${limits.hcaHandles}`);
      if (limits.hcaObjects !== undefined) parts.push(`hca_object=${limits.hcaObjects}`);
      await write('rdma.max', parts.join(' '));
    }

    // devices: needs an eBPF program; reported, not applied.
    if (r.devices !== undefined) {
      report.unappliedDeviceRules = [...r.devices];
      report.deviceRulesBeyondDefault = deviceRulesBeyondDefault(r.devices);
    }

    // unified: last, so it overrides the conversions above.
    for (const [key, value] of Object.entries(r.unified ?? {})) await write(key, value);
    return report;
  }

  private async freezeFile(op: string): Promise<string> {
    const file = this.file('cgroup.freeze');
    if (!(await exists(file))) {
      if (!(await exists(this.dir))) throw failedPrecondition(`cannot ${op}: cgroup ${this.dir} does not exist`);
      throw notImplemented(`cannot ${op}: no ${file} (the cgroup v2 freezer needs Linux 5.2 or later)`);
    }
    return file;
  }

  private async frozenEvent(): Promise<string | undefined> {
    const events = parseKeyValues(await readOptional(this.file('cgroup.events')));
    return events['frozen'] === undefined ? undefined : String(events['frozen']);
  }

  private async setFrozen(want: '1' | '0', op: string): Promise<void> {
    const file = await this.freezeFile(op);
    await writeControl(file, want);
    const done = await pollUntil(2000, async () => (await this.frozenEvent()) === want);
    if (!done) {
      if (want === '1') await writeControl(file, '0');
      throw unavailable(`cannot ${op} cgroup ${this.dir}: cgroup.events did not report "frozen ${want}"`);
    }
  }

  freeze(): Promise<void> {
    return this.setFrozen('1', 'freeze');
  }

  thaw(): Promise<void> {
    return this.setFrozen('0', 'thaw');
  }

  async freezerState(): Promise<FreezerState> {
    const want = (await readOptional(this.file('cgroup.freeze')))?.trim();
    if (want === undefined) return 'unknown';
    if (want === '0') return 'thawed';
    return (await this.frozenEvent()) === '1' ? 'frozen' : 'freezing';
  }

  pids(): Promise<number[]> {
    return collectPids(this.dir);
  }

  protected async killAllAtOnce(): Promise<boolean> {
    const file = this.file('cgroup.kill');
    if (!(await exists(file))) return false;
    await writeControl(file, '1');
    return true;
  }

  async stats(): Promise<CgroupStats> {
    const s = emptyStats();
    const read = (file: string): Promise<string | undefined> => readOptional(this.file(file));

    const cpu = parseKeyValues(await read('cpu.stat'));
    s.cpu.usage.total = (cpu['usage_usec'] ?? 0) * 1000;
    s.cpu.usage.user = (cpu['user_usec'] ?? 0) * 1000;
    s.cpu.usage.kernel = (cpu['system_usec'] ?? 0) * 1000;
    s.cpu.throttling = {
      periods: cpu['nr_periods'] ?? 0,
      throttledPeriods: cpu['nr_throttled'] ?? 0,
      throttledTime: (cpu['throttled_usec'] ?? 0) * 1000,
    };

    s.cpuset.cpus = parseRangeList(await read('cpuset.cpus.effective'));
    s.cpuset.mems = parseRangeList(await read('cpuset.mems.effective'));

    const current = await read('memory.current');
    if (current !== undefined) {
      s.memory.raw = parseKeyValues(await read('memory.stat'));
      s.memory.cache = s.memory.raw['file'] ?? 0;
      const entry = async (prefix: string): Promise<MemoryEntry> => ({
        limit: parseValue(await read(`${prefix}.max`)),
        usage: parseValue(await read(`${prefix}.current`)),
        max: parseValue(await read(`${prefix}.peak`)),
        failcnt: parseKeyValues(await read(`${prefix}.events`))['max'] ?? 0,
      });
      const usage = await entry('memory');
      s.memory.usage = usage;
      // Reported as memory+swap like v1's memsw; the peak of the sum is unknown.
      const swap = await entry('memory.swap');
      swap.usage += usage.usage;
      if (swap.limit < UNLIMITED) swap.limit = usage.limit >= UNLIMITED ? UNLIMITED : swap.limit + usage.limit;
      swap.max = 0;
      s.memory.swap = swap;
    }

    s.pids.current = parseValue(await read('pids.current'));
    s.pids.limit = parseValue(await read('pids.max'), 0);

    const io = parseIoStatV2(await read('io.stat'));
    s.blkio.ioServiceBytesRecursive = io.ioServiceBytesRecursive;
    s.blkio.ioServicedRecursive = io.ioServicedRecursive;

    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const size = /^hugetlb\.([0-9]+[KMG]B)\.current$/.exec(name)?.[1];
      if (size === undefined) continue;
      s.hugetlb[size] = {
        usage: parseValue(await read(`hugetlb.${size}.current`)),
        max: 0,
        failcnt: parseKeyValues(await read(`hugetlb.${size}.events`))['max'] ?? 0,
      };
    }
    return s;
  }

  async oomCount(): Promise<number> {
    return parseKeyValues(await readOptional(this.file('memory.events')))['oom_kill'] ?? 0;
  }

  oomEventFiles(): string[] {
    return [this.file('memory.events')];
  }

  async destroy(): Promise<void> {
    await removeCgroupTree(this.dir);
  }
}
