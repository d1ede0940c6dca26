#!/usr/bin/env node
// berthd: a container engine serving the Docker Engine API.
import { main } from '../dist/cmd/main.js';

main(process.argv.slice(2)).then(
  (code) => { process.exit(code); },
  (err) => { process.stderr.write(`berthd: ${err?.stack ?? err}\n`); process.exit(1); },
);
