#!/usr/bin/env node
// berth: the client, with the docker CLI's commands, over the Docker Engine API.
import { statSync } from 'node:fs';

// The one-file bundle of dist/ (made by scripts/setup.sh) starts faster; it is used
// only when it is at least as new as the last build of this package.
const mtime = (rel) => {
  try {
    return statSync(new URL(rel, import.meta.url)).mtimeMs;
  } catch {
    return -1;
  }
};
const bundled = mtime('../dist/berth.bundle.js');
const { main } = await import(bundled > 0 && bundled >= mtime('../tsconfig.tsbuildinfo') ? '../dist/berth.bundle.js' : '../dist/main.js');

// A closed pipe on stdout ends berth quietly, as SIGPIPE ends docker.
process.stdout.on('error', (err) => { if (err?.code === 'EPIPE') process.exit(0); });

main(process.argv.slice(2)).then(
  (code) => { process.exit(code); },
  (err) => { process.stderr.write(`berth: ${err?.stack ?? err}\n`); process.exit(125); },
);
