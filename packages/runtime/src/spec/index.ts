export { defaultSpec, DEFAULT_MASKED_PATHS, DEFAULT_OCI_VERSION, DEFAULT_READONLY_PATHS } from './default.js';
export type { DefaultSpecOptions } from './default.js';
