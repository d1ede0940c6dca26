#!/usr/bin/env node
// Copies containerd's API protos (from <repo>/../shared/spec/containerd/api, or
// $BERTH_PROTO_DIR) and our own extra protos (proto-extra/) into dist/proto/,
// which is where berth-containerd loads them from. Upstream protos are never
// committed to this repository; this step makes the build self-contained.
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(pkg, '..', '..');
const source = process.env.BERTH_PROTO_DIR || join(repo, '..', 'shared', 'spec', 'containerd', 'api');
const extra = join(pkg, 'proto-extra');
const dest = join(pkg, 'dist', 'proto');

if (!existsSync(join(source, 'services', 'version', 'v1', 'version.proto'))) {
  console.error(`copy-protos: no containerd API protos in ${source} (set BERTH_PROTO_DIR)`);
  process.exit(1);
}

function copyProtos(from, to) {
  let n = 0;
  for (const name of readdirSync(from)) {
    const src = join(from, name);
    const dst = join(to, name);
    if (statSync(src).isDirectory()) {
      n += copyProtos(src, dst);
    } else if (name.endsWith('.proto')) {
      mkdirSync(to, { recursive: true });
      cpSync(src, dst);
      n++;
    }
  }
  return n;
}

rmSync(dest, { recursive: true, force: true });
const count = copyProtos(source, dest) + copyProtos(extra, dest);
console.error(`copy-protos: ${count} files into ${relative(repo, dest)}`);
