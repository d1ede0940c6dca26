/**
 * Test bundles: a temp dir with a copy of the built-in root filesystem
 * (native/out/rootfs, made by `make -C native`) and a config.json.
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { failedPrecondition } from '@berth/base';
import type { Cleanup } from './cleanup.js';
import { runCommand, describeResult } from './exec.js';
import { defaultConfig } from './oci.js';
import type { OciConfig } from './oci.js';
import { REPO_ROOT } from './runtimes.js';

export const BUILTIN_ROOTFS: string = join(REPO_ROOT, 'native', 'out', 'rootfs');

export interface Bundle {
  /** Absolute path of the bundle directory. */
  readonly dir: string;
  /** Absolute path of its root filesystem. */
  readonly rootfs: string;
  readonly configPath: string;
  /** The configuration as written; change it and call save() to rewrite config.json. */
  readonly config: OciConfig;
  save(): void;
}

export interface BundleOptions {
  /** The configuration to start from (default: defaultConfig()). */
  readonly config?: OciConfig;
  /** Changes the configuration (and may change files in the bundle) before it is written. */
  readonly mutate?: (config: OciConfig, bundle: Bundle) => void | Promise<void>;
  /** Registers the bundle's removal; without it the caller removes bundle.dir. */
  readonly cleanup?: Cleanup;
}

/** Throws with the command to run when the built-in root filesystem is not built. */
export function requireRootfs(): void {
  if (!existsSync(join(BUILTIN_ROOTFS, 'probe')) || !existsSync(join(BUILTIN_ROOTFS, 'bin', 'busybox'))) {
    throw failedPrecondition(`the built-in test rootfs is missing at ${BUILTIN_ROOTFS}: run make -C native`);
  }
}

/** Makes a bundle in a new temp dir. */
export async function makeBundle(opts: BundleOptions = {}): Promise<Bundle> {
  requireRootfs();
  const dir = opts.cleanup ? opts.cleanup.tempDir('berth-bundle-') : mkdtempSync(join(tmpdir(), 'berth-bundle-'));
  const rootfs = join(dir, 'rootfs');
  const cp = await runCommand(['cp', '-a', BUILTIN_ROOTFS, rootfs], { timeoutMs: 60_000 });
  if (cp.code !== 0) throw failedPrecondition(`copying the test rootfs failed: ${describeResult(cp)}`);
  const config = structuredClone(opts.config ?? defaultConfig());
  const configPath = join(dir, 'config.json');
  const bundle: Bundle = {
    dir,
    rootfs,
    configPath,
    config,
    save() {
      writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
    },
  };
  if (opts.mutate) await opts.mutate(config, bundle);
  bundle.save();
  return bundle;
}
