export { CLI_VERSION } from './version.js';
export { main } from './main.js';
export type { MainIO } from './main.js';
export { Client, ApiError, ConnectError, parseHost, encodeFilters, jsonLines, MAX_API_VERSION, DEFAULT_HOST } from './api.js';
export type { Host, Hijacked, TlsFiles, RequestOptions, Query } from './api.js';
export { demux, copyRaw, frame } from './stdcopy.js';
export { parseArgs, Flags, UsageError } from './args.js';
export type { FlagDef } from './args.js';
export { Template, tabulate, humanSize, bytesSize, humanDuration } from './format.js';
