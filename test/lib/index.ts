/** The test kit shared by Berth's cross-layer and conformance suites. */
export * from './exec.js';
export * from './cleanup.js';
export * from './runtimes.js';
export * from './oci.js';
export * from './bundle.js';
export * from './probe.js';
export * from './seccomp.js';
export * from './kit.js';
