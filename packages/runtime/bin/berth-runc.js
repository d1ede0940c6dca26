#!/usr/bin/env node
// berth-runc: an OCI runtime with runc's command line.
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`berth-runc: ${err?.stack ?? err}\n`); process.exitCode = 2; },
);
