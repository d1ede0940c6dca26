// What the v1 and v2 managers share: signalling every process, and waiting
// for a cgroup to empty.
import type { LinuxResources } from '@berth/spec';
import { errnoCode, unavailable } from '@berth/base';
import { sleep } from './_fs.js';
import type { ApplyReport, CgroupManager, FreezerState } from './manager.js';
import type { CgroupLayout, CgroupVersion } from './detect.js';
import type { CgroupPaths } from './paths.js';
import type { CgroupStats } from './stats.js';

export function newReport(): ApplyReport {
  return { writes: [], warnings: [], unappliedDeviceRules: [], deviceRulesBeyondDefault: [] };
}

/** Poll `check` until it returns true or `ms` pass; returns the last result. */
export async function pollUntil(ms: number, check: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (let i = 0; ; i++) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(i < 10 ? 1 : 10);
  }
}

function signalPid(pid: number, signal: NodeJS.Signals | number): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if (errnoCode(err) !== 'ESRCH') throw err;
  }
}

const isSigkill = (s: NodeJS.Signals | number): boolean => s === 'SIGKILL' || s === 9;

export abstract class BaseManager implements CgroupManager {
  abstract readonly version: CgroupVersion;
  constructor(
    readonly layout: CgroupLayout,
    readonly paths: CgroupPaths,
  ) {}

  abstract create(resources?: LinuxResources): Promise<ApplyReport>;
  abstract procsFiles(): string[];
  abstract apply(resources: LinuxResources): Promise<ApplyReport>;
  abstract freeze(): Promise<void>;
  abstract thaw(): Promise<void>;
  abstract freezerState(): Promise<FreezerState>;
  abstract pids(): Promise<number[]>;
  abstract stats(): Promise<CgroupStats>;
  abstract oomCount(): Promise<number>;
  abstract oomEventFiles(): string[];
  abstract destroy(): Promise<void>;
  /** Kill everything at once if the kernel can (v2 cgroup.kill); false when it cannot. */
  protected abstract killAllAtOnce(): Promise<boolean>;
  /** A name for messages. */
  protected abstract describe(): string;

  private async waitEmpty(ms: number): Promise<boolean> {
    return pollUntil(ms, async () => (await this.pids()).length === 0);
  }

  async killAll(signal: NodeJS.Signals | number = 'SIGKILL'): Promise<void> {
    const kill = isSigkill(signal);
    if (kill && (await this.killAllAtOnce())) {
      if (await this.waitEmpty(5000)) return;
    }
    // Freeze while signalling so no process forks a new one unseen; a frozen
    // v1 task only dies once thawed, so a SIGKILL always ends thawed.
    for (let round = 0; round < (kill ? 20 : 1); round++) {
      if ((await this.pids()).length === 0) return;
      const before = await this.freezerState();
      let froze = false;
      if (before === 'thawed') {
        try {
          await this.freeze();
          froze = true;
        } catch {
          froze = false; // signal unfrozen rather than not at all
        }
      }
      for (const pid of await this.pids()) signalPid(pid, signal);
      if (froze || (kill && before !== 'thawed' && before !== 'unknown')) await this.thaw();
      if (!kill) return;
      if (await this.waitEmpty(250)) return;
    }
    const left = await this.pids();
    if (left.length > 0) {
      throw unavailable(`processes ${left.join(', ')} are still in cgroup ${this.describe()} after SIGKILL`);
    }
  }
}
