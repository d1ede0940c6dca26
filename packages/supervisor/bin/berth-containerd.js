#!/usr/bin/env node
// berth-containerd: a container supervisor serving containerd's gRPC API.
import { main } from '../dist/cmd/main.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`berth-containerd: ${err?.stack ?? err}\n`); process.exitCode = 2; },
);
