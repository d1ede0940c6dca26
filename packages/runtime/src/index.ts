export type * from './plan/types.js';
export { encodePlan, decodeRecords } from './plan/encode.js';
