// Small helpers shared by the benchmarks: timing, medians, ratios, tables.
import { spawnSync } from 'node:child_process';

export function timeRun(argv, opts = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) {
    throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr?.toString().slice(0, 400)}`);
  }
  return ms;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  return { median: median(s), min: s[0], p90: s[Math.min(s.length - 1, Math.floor(s.length * 0.9))], n: s.length };
}

export function printTable(title, rows, baseline) {
  console.log(`\n## ${title}`);
  const base = rows.find((r) => r.name === baseline);
  console.log('| case | median ms | min ms | p90 ms | ratio vs ' + baseline + ' |');
  console.log('|---|---:|---:|---:|---:|');
  for (const r of rows) {
    const ratio = base ? (r.median / base.median).toFixed(2) : '-';
    console.log(`| ${r.name} | ${r.median.toFixed(1)} | ${r.min.toFixed(1)} | ${r.p90.toFixed(1)} | ${ratio} |`);
  }
}

export function which(bin) {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** x with d decimals. */
export const fmt = (x, d = 1) => x.toFixed(d);
