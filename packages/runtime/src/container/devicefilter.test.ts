// Root-only, end to end: berth-runc's device allowlist through the eBPF device
// filter (BERTH_DEVICE_FILTER=bpf attaches it on this hybrid host too, beside
// the v1 devices controller). The BPF program alone is tested by
// ../executor/devicefilter.test.ts; here: the runtime composes the rules,
// the program lands on the container's cgroup2 directory, and the container
// gets what the rules say.
// Build first: make -C native && npx tsc -b;
// run: node --test packages/runtime/dist/container/devicefilter.test.js
import test from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cgroupManager, deviceFilterProgram, hostCgroupLayout, layoutFromMountinfo, resolveCgroupPaths } from '@berth/cgroups';
import { BerthError } from '@berth/base';
import type { Spec } from '@berth/spec';
import { Runtime } from './runtime.js';
import { containerDeviceFilter, deviceRules } from './cgroup.js';
import { defaultSpec } from '../spec/index.js';
import { executorPath } from '../executor/index.js';
import { bpfQuery, haveCompiler } from '../executor/_bpfquery.js';

const rootfs = fileURLToPath(new URL('../../../../native/out/rootfs', import.meta.url));
const layout = await hostCgroupLayout().catch(() => undefined);
const skip = process.getuid?.() !== 0 ? 'needs root'
  : !existsSync(executorPath()) || !existsSync(rootfs) ? 'needs native/out (make -C native)'
  : layout?.unified === undefined ? 'needs a cgroup2 hierarchy'
  : !haveCompiler() ? 'needs cc (to read the attached programs back)' : false;
const EPERM = 'Operation not permitted';

/** Each check prints "<name> ok" or "<name> fail: <its stderr>"; the results land in /tmp/checks.done. */
const SCRIPT = `
check() { name=$1; shift; if out=$("$@" 2>&1); then echo "$name ok"; else echo "$name fail: $out"; fi; }
{
check null-rw sh -c 'echo x > /dev/null && head -c1 /dev/null'
check loop0-created head -c1 /dev/loop0
check loop1-open head -c1 /loop1
check mknod-loop1 mknod /tmp/loop1 b 7 1
check loop1-made-open head -c1 /tmp/loop1
} > /tmp/checks 2>&1
mv /tmp/checks /tmp/checks.done
exec sleep 30
`;

function withEnv(t: TestContext, value: string | undefined): void {
  const old = process.env['BERTH_DEVICE_FILTER'];
  if (value === undefined) delete process.env['BERTH_DEVICE_FILTER'];
  else process.env['BERTH_DEVICE_FILTER'] = value;
  t.after(() => {
    if (old === undefined) delete process.env['BERTH_DEVICE_FILTER'];
    else process.env['BERTH_DEVICE_FILTER'] = old;
  });
}

/** A bundle from the built rootfs, with /loop1 (b 7:1, outside the allowlist) made in it; removed after. */
function bundle(t: TestContext, mutate: (s: Spec) => void = () => undefined): { dir: string; rt: Runtime } {
  const dir = mkdtempSync(join(tmpdir(), 'berth-devfilter-'));
  const rt = new Runtime(join(dir, 'state'));
  t.after(async () => {
    for (const id of rt.store.ids()) await rt.delete(id, true).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  cpSync(rootfs, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  const mk = spawnSync('mknod', ['-m', '0666', join(dir, 'rootfs/loop1'), 'b', '7', '1'], { encoding: 'utf8' });
  assert.equal(mk.status, 0, mk.stderr);
  const spec = defaultSpec({ args: ['sh', '-c', SCRIPT] });
  if (spec.process) spec.process.terminal = false;
  if (spec.root) spec.root.readonly = false;
  const caps = spec.process?.capabilities;
  for (const set of [caps?.bounding, caps?.effective, caps?.permitted]) set?.push('CAP_MKNOD'); // as Docker gives it
  // A device the config creates is allowed, like runc does it: /dev/loop0 (b 7:0).
  spec.linux = { ...spec.linux, devices: [{ path: '/dev/loop0', type: 'b', major: 7, minor: 0, fileMode: 0o666 }] };
  mutate(spec);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  return { dir, rt };
}

async function checksOf(dir: string): Promise<Map<string, string>> {
  const path = join(dir, 'rootfs/tmp/checks.done');
  for (let i = 0; !existsSync(path); i++) {
    if (i > 500) throw new Error(`the container wrote no ${path}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const out = new Map<string, string>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^(\S+) (ok|fail: .*)$/.exec(line);
    if (m) out.set(m[1] ?? '', m[2] ?? '');
  }
  return out;
}

function assertAllowlist(checks: Map<string, string>): void {
  assert.equal(checks.get('null-rw'), 'ok', JSON.stringify([...checks]));
  assert.equal(checks.get('loop0-created'), 'ok');
  assert.match(checks.get('loop1-open') ?? '', new RegExp(`^fail: .*${EPERM}`));
  assert.equal(checks.get('mknod-loop1'), 'ok'); // the default list allows mknod of any device
  assert.match(checks.get('loop1-made-open') ?? '', new RegExp(`^fail: .*${EPERM}`));
}

test('BERTH_DEVICE_FILTER=bpf: the container gets the allowlist from a program on its cgroup2 directory', { skip }, async (t) => {
  withEnv(t, 'bpf');
  const q = bpfQuery();
  t.after(q.cleanup);
  const { dir, rt } = bundle(t);
  const { record } = await rt.create('devbpf', { bundle: dir });
  const cgdir = record.cgroup.dirs[''];
  assert.ok(cgdir !== undefined);
  const progs = q.query(cgdir);
  assert.equal(progs.length, 1, JSON.stringify(progs));
  assert.equal(progs[0]?.name, 'berth_devices');
  await rt.start('devbpf');
  assertAllowlist(await checksOf(dir));
  await rt.delete('devbpf', true);
  assert.equal(existsSync(cgdir), false);
});

test('by default the v1 devices controller alone enforces the list on a hybrid host (no program attached)', { skip }, async (t) => {
  withEnv(t, undefined);
  const q = bpfQuery();
  t.after(q.cleanup);
  const { dir, rt } = bundle(t);
  const { record } = await rt.create('devauto', { bundle: dir });
  const cgdir = record.cgroup.dirs[''];
  assert.ok(cgdir !== undefined);
  assert.equal(q.query(cgdir).length, layout?.version === 'v2' ? 1 : 0);
  await rt.start('devauto');
  assertAllowlist(await checksOf(dir));
});

test('rules the device filter cannot express are refused, and create leaves nothing behind', { skip }, async (t) => {
  withEnv(t, 'bpf');
  const { dir, rt } = bundle(t, (s) => {
    s.linux = {
      ...s.linux,
      resources: {
        devices: [
          { allow: false, access: 'rwm' },
          { allow: true, type: 'c', major: 1, access: 'rwm' },
          { allow: false, type: 'c', major: 1, minor: 9, access: 'w' },
        ],
      },
    };
  });
  await assert.rejects(rt.create('devhole', { bundle: dir }), (e: unknown) => {
    assert.ok(e instanceof BerthError, String(e));
    assert.match(e.message, /device rule 2 \(deny c 1:9 w\): cannot deny part of the devices that the earlier rule c 1:\* rwm allows/);
    return true;
  });
  assert.deepEqual(rt.store.ids(), []);
  assert.equal(existsSync(join(layout?.unified?.mountpoint ?? '/nonexistent', 'devhole')), false);
});

test('BERTH_DEVICE_FILTER with an unknown value is refused', { skip }, async (t) => {
  withEnv(t, 'yes');
  const { dir, rt } = bundle(t);
  await assert.rejects(rt.create('devbad', { bundle: dir }), /BERTH_DEVICE_FILTER="yes": expected auto or bpf/);
  assert.deepEqual(rt.store.ids(), []);
});

test('containerDeviceFilter: on v2 always, on hybrid only with BERTH_DEVICE_FILTER=bpf (no root needed)', () => {
  const V1 = '30 23 0:27 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n';
  const V2 = '29 23 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n';
  const HYBRID = `${V1}29 23 0:26 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n`;
  const mgr = (mountinfo: string) => {
    const l = layoutFromMountinfo(mountinfo);
    return cgroupManager(l, resolveCgroupPaths(l, { cgroupsPath: '/ctr', containerId: 'ctr' }));
  };
  const resources = { devices: [{ allow: false, access: 'rwm' }] };
  const devices = [{ path: '/dev/loop0', type: 'b' as const, major: 7, minor: 0 }];
  const program = deviceFilterProgram(deviceRules(resources, devices) ?? []);
  const env = (v?: string): NodeJS.ProcessEnv => (v === undefined ? {} : { BERTH_DEVICE_FILTER: v });

  assert.deepEqual(containerDeviceFilter(mgr(V2), resources, devices, env()), { cgroupDir: '/sys/fs/cgroup/ctr', program });
  assert.deepEqual(containerDeviceFilter(mgr(V2), resources, devices, env('auto')), { cgroupDir: '/sys/fs/cgroup/ctr', program });
  assert.equal(containerDeviceFilter(mgr(V2), undefined, devices, env()), undefined); // no rule: nothing restricted
  assert.equal(containerDeviceFilter(mgr(HYBRID), resources, devices, env()), undefined);
  assert.deepEqual(containerDeviceFilter(mgr(HYBRID), resources, devices, env('bpf')), { cgroupDir: '/sys/fs/cgroup/unified/ctr', program });
  assert.equal(containerDeviceFilter(mgr(V1), resources, devices, env()), undefined);
  assert.throws(() => containerDeviceFilter(mgr(V1), resources, devices, env('bpf')), /no cgroup2 hierarchy/);
  assert.throws(() => containerDeviceFilter(mgr(V2), resources, devices, env('on')), /BERTH_DEVICE_FILTER="on"/);
});
