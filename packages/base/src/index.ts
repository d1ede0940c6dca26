export * from './errors.js';
export * from './atomic.js';
export * from './log.js';
export * from './ids.js';
export * from './version.js';
