#!/usr/bin/env node
// berth-runc: an OCI runtime with runc's command line.
// The build bundles the command line into one file, which starts about twice as fast as
// loading its ~50 modules one by one; the bundle is used only when it is not older than
// the compiled sources, so a plain `tsc -b` never leaves a stale bundle in charge.
import { statSync } from 'node:fs';

const bundle = new URL('../dist/cli/berth-runc.bundle.js', import.meta.url);
const entry = new URL('../dist/cli/main.js', import.meta.url);
const mtime = (u) => { try { return statSync(u).mtimeMs; } catch { return -1; } };
const { main } = await import(mtime(bundle) >= mtime(entry) ? bundle.href : entry.href);

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`berth-runc: ${err?.stack ?? err}\n`); process.exitCode = 2; },
);
