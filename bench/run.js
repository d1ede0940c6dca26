#!/usr/bin/env node
// npm run bench: every benchmark of the project, one after the other.
// Usage: node bench/run.js [name...]   (names: runtime, supervisor, pull, engine, network, build)
const all = {
  runtime: () => import('./runtime.js'),
  supervisor: () => import('./supervisor.js'),
  pull: () => import('./pull.js'),
  engine: () => import('./engine.js'),
  network: () => import('./network.js'),
  build: () => import('./build.js'),
};
const wanted = process.argv.slice(2);
for (const [name, load] of Object.entries(all)) {
  if (wanted.length && !wanted.includes(name)) continue;
  const mod = await load();
  await mod.run();
}
