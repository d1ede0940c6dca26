#!/usr/bin/env node
// Runs every compiled test file with node's test runner.
// Unit tests live beside their code (packages/*/src/**/*.test.ts -> dist/);
// cross-layer suites live in test/ (-> test/dist/).
// Usage: node scripts/test.js [substring filter...]
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const filters = process.argv.slice(2);

function walk(dir, out) {
  let entries;
  try { entries = readdirSync(dir); } catch { return out; }
  for (const e of entries) {
    if (e === 'node_modules') continue;
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (e.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = [];
for (const pkg of readdirSync(join(root, 'packages'))) walk(join(root, 'packages', pkg, 'dist'), files);
walk(join(root, 'test', 'dist'), files);
const selected = files
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (selected.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const concurrency = process.env.BERTH_TEST_CONCURRENCY ?? '2';
// Safety nets, so that a hang fails fast instead of eating CI's time: no single test may
// run for more than 5 minutes, a file whose tests have all finished exits even if a
// leaked handle would keep it alive, and the whole run is stopped after 45 minutes.
const r = spawnSync(process.execPath, [
  '--test', `--test-concurrency=${concurrency}`, '--test-timeout=300000', '--test-force-exit',
  '--test-reporter=spec', ...selected,
], { cwd: root, stdio: 'inherit', timeout: 45 * 60 * 1000, killSignal: 'SIGKILL' });
if (r.error) console.error(`test run stopped: ${r.error.message}`);
process.exit(r.status ?? 1);
