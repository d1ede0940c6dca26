export * from './oci/runtime.js';
export { parseSpec, parseProcess, parseState, parseResources } from './oci/parse.js';
export { LINUX_CAPABILITIES } from './capabilities.js';
