export * from './detect.js';
export * from './paths.js';
export * from './manager.js';
export * from './stats.js';
export * from './convert.js';
export * from './devices.js';
export * from './devicefilter.js';
export * from './warm.js';
