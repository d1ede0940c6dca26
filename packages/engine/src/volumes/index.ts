export { ANONYMOUS_LABEL, VolumeService } from './service.js';
export type { VolumeCreateRequest, VolumeJSON, VolumeRecord } from './service.js';
