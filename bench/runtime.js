// Benchmark: `run` of a trivial container (/bin/true) with berth-runc vs runc vs crun on the
// same bundle, and where berth-runc's time goes (Node start-up, module load, planning, executor).
import { mkdtempSync, rmSync, cpSync, writeFileSync, readFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { timeRun, stats, printTable, which } from './lib.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const berthRunc = join(repo, 'packages/runtime/bin/berth-runc.js');
const N = Number(process.env.BENCH_N ?? 15);

function sample(fn, n = N) {
  fn(); // warm-up
  const xs = [];
  for (let i = 0; i < n; i++) xs.push(fn(i));
  return stats(xs);
}

export async function run() {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-rt-'));
  try {
    const bundle = join(dir, 'bundle');
    mkdirSync(bundle);
    cpSync(join(repo, 'native/out/rootfs'), join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
    spawnSync(process.execPath, [berthRunc, 'spec', '--bundle', bundle]);
    const cfgPath = join(bundle, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    cfg.process.terminal = false;
    cfg.process.args = ['/bin/true'];
    writeFileSync(cfgPath, JSON.stringify(cfg));

    const envWith = { ...process.env };
    const envWithout = { ...process.env };
    delete envWithout.NODE_EXTRA_CA_CERTS;
    const rows = [];
    const runcBin = which('runc');
    const crunBin = which('crun');
    let k = 0;
    if (runcBin) {
      rows.push({ name: 'runc run', ...sample(() => timeRun([runcBin, '--root', join(dir, 'runc'), 'run', '--bundle', bundle, `r${k++}`])) });
    }
    if (crunBin) {
      // crun 1.8 refuses hybrid cgroups unless the empty cgroup2 mount is hidden from it.
      const hybrid = readFileSync('/proc/self/mountinfo', 'utf8').includes(' /sys/fs/cgroup/unified ');
      const wrap = (argv) => hybrid ? ['unshare', '-m', 'sh', '-c', 'umount /sys/fs/cgroup/unified; exec "$@"', 'crun', ...argv] : argv;
      rows.push({
        name: hybrid ? 'crun run (under unshare -m)' : 'crun run',
        ...sample(() => timeRun(wrap([crunBin, '--root', join(dir, 'crun'), 'run', '--bundle', bundle, `c${k++}`]))),
      });
    }
    rows.push({ name: 'berth-runc run (NODE_EXTRA_CA_CERTS set)', ...sample(() => timeRun([process.execPath, berthRunc, '--root', join(dir, 'berth'), 'run', '--bundle', bundle, `b${k++}`], { env: envWith })) });
    rows.push({ name: 'berth-runc run (NODE_EXTRA_CA_CERTS unset)', ...sample(() => timeRun([process.execPath, berthRunc, '--root', join(dir, 'berth'), 'run', '--bundle', bundle, `b${k++}`], { env: envWithout })) });
    printTable('run of a trivial container (/bin/true), end to end', rows, runcBin ? 'runc run' : rows[0].name);

    // Where berth-runc's time goes.
    const parts = [];
    parts.push({ name: 'node -e 0 (CA certs set)', ...sample(() => timeRun([process.execPath, '-e', '0'], { env: envWith })) });
    parts.push({ name: 'node -e 0 (CA certs unset)', ...sample(() => timeRun([process.execPath, '-e', '0'], { env: envWithout })) });
    parts.push({ name: 'berth-runc --version (start-up + module load, certs unset)', ...sample(() => timeRun([process.execPath, berthRunc, '--version'], { env: envWithout })) });
    const { planCreate, parseSpecForBench, encodePlan } = await loadPlanner();
    const spec = parseSpecForBench(cfg);
    const planMs = [];
    for (let i = 0; i < 200; i++) {
      const t0 = process.hrtime.bigint();
      encodePlan(planCreate(spec, { bundle, containerId: 'bench', cgroupProcsFiles: [], cgroupMounts: { version: 'v2' } }));
      planMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    parts.push({ name: 'planning in-process (parse + plan + encode)', ...stats(planMs.slice(20)) });
    // The executor alone, with a ready plan, waiting for the container to exit.
    const plan = encodePlan([...planCreate(spec, { bundle, containerId: 'bench', cgroupProcsFiles: [], cgroupMounts: { version: 'v2' } }), { tag: 'wait' }]);
    const planFile = join(dir, 'plan.bin');
    writeFileSync(planFile, plan);
    const exe = join(repo, 'native/out/berth-executor');
    parts.push({ name: 'berth-executor alone (plan from a file, waits for exit)', ...sample(() => timeRun(['sh', '-c', `exec "${exe}" --plan-fd 3 --sync-fd 4 3<"${planFile}" 4>/dev/null`])) });
    printTable('where berth-runc run spends its time', parts, parts[0].name);
    console.log('\nRatios are medians over', N, 'runs each; machines are shared, so compare ratios, not absolute times.');
  } finally {
    spawnSync('sh', ['-c', `for r in runc crun berth; do true; done`]);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function loadPlanner() {
  const rt = await import(join(repo, 'packages/runtime/dist/index.js'));
  const spec = await import(join(repo, 'packages/spec/dist/index.js'));
  return { planCreate: rt.planCreate, encodePlan: rt.encodePlan, parseSpecForBench: spec.parseSpec };
}
