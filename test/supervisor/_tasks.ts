/**
 * What the task suites share: a private copy of the test rootfs, the crun
 * wrapper for this hybrid cgroup host, a pty for `ctr run -t`, and the
 * cleanup that leaves nothing behind even when a test fails: every process
 * a shim left (the shim, the container, its execs) killed by PID, frozen
 * cgroups thawed first, and the namespaces' cgroup directories removed.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { EVENTS, REPO_ROOT } from './_daemon.js';
import type { Api, Msg } from './_daemon.js';

export const BERTH_RUNC = join(REPO_ROOT, 'packages', 'runtime', 'bin', 'berth-runc.js');
export const RUNC = '/usr/sbin/runc';
export const CRUN = '/usr/bin/crun';
export const TEST_ROOTFS = join(REPO_ROOT, 'native', 'out', 'rootfs');

/** A copy of native/out/rootfs under base (containers may write to it). */
export function copyRootfs(base: string): string {
  if (!existsSync(join(TEST_ROOTFS, 'bin', 'busybox'))) throw new Error(`${TEST_ROOTFS} is missing: run make -C native`);
  const dest = join(base, 'rootfs');
  const r = spawnSync('cp', ['-a', TEST_ROOTFS, dest], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cp -a ${TEST_ROOTFS}: ${r.stderr}`);
  return dest;
}

/**
 * crun refuses a hybrid host (v1 controllers plus an empty cgroup2 at
 * /sys/fs/cgroup/unified); this wrapper, given to ctr as --runc-binary, runs it
 * in a mount namespace without that mount.
 */
export function crunWrapper(base: string): string {
  const path = join(base, 'crun-wrapper');
  writeFileSync(path, `#!/bin/sh\nexec unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec ${CRUN} "$@"' crun "$@"\n`);
  chmodSync(path, 0o755);
  return path;
}

/** Run a command line under a pty (script(1)); its exit status and what the terminal showed. */
export function underPty(commandLine: string, input = ''): { code: number; output: string } {
  const r = spawnSync('script', ['-qec', commandLine, '/dev/null'], { input, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? 128, output: r.stdout };
}

function pidsIn(dir: string): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    if (n !== 'shim.pid' && n !== 'init.pid' && !/^exec-.*\.pid$/.test(n)) continue;
    const pid = Number(readFileSync(join(dir, n), 'utf8').trim());
    if (Number.isInteger(pid) && pid > 1) out.push(pid);
  }
  return out;
}

function cgroupRoots(): string[] {
  try {
    return readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c)).filter((d) => existsSync(join(d, 'cgroup.procs')));
  } catch {
    return [];
  }
}

/** Thaw a namespace's frozen cgroups so that SIGKILL can land. */
function thaw(namespaces: readonly string[]): void {
  for (const ns of namespaces) {
    const dir = join('/sys/fs/cgroup/freezer', ns);
    let ids: string[] = [];
    try { ids = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name); } catch { continue; }
    for (const id of ids) {
      try { writeFileSync(join(dir, id, 'freezer.state'), 'THAWED'); } catch { /* gone */ }
    }
  }
}

function removeTree(dir: string): void {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) if (e.isDirectory()) removeTree(join(dir, e.name));
  try { rmdirSync(dir); } catch { /* busy or gone */ }
}

/**
 * Kill every process the shims under <state>/shims left (shim, init, execs),
 * by the PIDs they wrote, and remove the namespaces' cgroup directories.
 */
export async function killLeftovers(state: string, namespaces: readonly string[]): Promise<void> {
  thaw(namespaces);
  const shims = join(state, 'shims');
  let nss: string[] = [];
  try { nss = readdirSync(shims); } catch { /* none */ }
  const pids: number[] = [];
  for (const ns of nss) {
    let ids: string[] = [];
    try { ids = readdirSync(join(shims, ns)); } catch { continue; }
    for (const id of ids) pids.push(...pidsIn(join(shims, ns, id)));
  }
  for (const pid of pids) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  for (const ns of namespaces) {
    for (const root of cgroupRoots()) {
      const dir = join(root, ns);
      for (let i = 0; i < 50 && existsSync(dir); i++) {
        removeTree(dir);
        if (existsSync(dir)) await sleep(20);
      }
    }
  }
}

/** Poll until pred holds (or throw after ms). */
export async function until(what: string, pred: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/**
 * An Events subscription that is live when this resolves (a probe event,
 * matched by a filter of its own, has come through), and the envelopes the
 * given filters select as they arrive.
 */
export async function liveEvents(api: Api, namespace: string, filters: readonly string[]): Promise<{
  stream: ClientReadableStream<Msg>;
  until: (pred: (got: readonly Msg[]) => boolean, ms?: number) => Promise<Msg[]>;
}> {
  const probeTopic = `/berthprobe/p${process.pid}`;
  const stream = api.stream(EVENTS, 'Subscribe', { filters: [...filters, `topic=="${probeTopic}"`] });
  stream.on('error', () => undefined);
  const got: Msg[] = [];
  let probed = false;
  stream.on('data', (m: Msg) => {
    if (m['topic'] === probeTopic) probed = true;
    else got.push(m);
  });
  const deadline = Date.now() + 10_000;
  while (!probed) {
    if (Date.now() > deadline) throw new Error('the event subscription never became live');
    await api.unary(EVENTS, 'Publish', { topic: probeTopic, event: { type_url: 'berth.probe', value: Buffer.alloc(0) } }, namespace);
    await sleep(30);
  }
  return {
    stream,
    until: async (pred, ms = 20_000) => {
      const end = Date.now() + ms;
      while (!pred(got)) {
        if (Date.now() > end) throw new Error(`events: timed out with ${JSON.stringify(got.map((m) => m['topic']))}`);
        await sleep(25);
      }
      return [...got];
    },
  };
}

/** Where ctr makes the fifos of a task's stdio (one directory per process). */
export const CTR_FIFO_DIR = '/run/containerd/fifo';

/**
 * ctr leaves the fifo directories of detached tasks and execs behind; remove
 * those that hold fifos of the given process ids (init: container id, exec:
 * exec id), then the directories above if nothing else is in them.
 */
export function removeCtrFifos(ids: readonly string[]): void {
  let dirs: string[] = [];
  try { dirs = readdirSync(CTR_FIFO_DIR); } catch { return; }
  for (const d of dirs) {
    const dir = join(CTR_FIFO_DIR, d);
    let names: string[] = [];
    try { names = readdirSync(dir); } catch { continue; }
    if (names.length > 0 && names.every((n) => ids.some((id) => n === `${id}-stdin` || n === `${id}-stdout` || n === `${id}-stderr`))) {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  for (const d of [CTR_FIFO_DIR, '/run/containerd']) {
    try { rmdirSync(d); } catch { /* in use */ }
  }
}
