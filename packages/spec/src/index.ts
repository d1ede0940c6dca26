export * from './oci/runtime.js';
export { parseSpec, parseProcess, parseState, parseResources } from './oci/parse.js';
