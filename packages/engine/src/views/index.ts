// The read-side views of containers: logs, stats, top, changes (diff) and export.
export * from './logs.js';
export * from './stats.js';
export * from './top.js';
export * from './changes.js';
export * from './export.js';
