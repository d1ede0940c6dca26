import { appendFileSync } from 'node:fs';
import { invalid } from './errors.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/**
 * A level as docker and containerd (logrus) name them, onto ours: trace is debug,
 * fatal and panic are error. `where` names the flag or setting in the error.
 */
export function parseLogLevel(s: string, where = 'log level'): LogLevel {
  switch (s.toLowerCase()) {
    case 'trace':
    case 'debug': return 'debug';
    case 'info': return 'info';
    case 'warn':
    case 'warning': return 'warn';
    case 'error':
    case 'fatal':
    case 'panic': return 'error';
    default: throw invalid(`${where}: unknown level ${JSON.stringify(s)} (trace, debug, info, warn, error, fatal, panic)`);
  }
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Append to this file instead of stderr. */
  file?: string | undefined;
  format?: 'text' | 'json';
}

/** A small synchronous logger: runtime processes are short-lived and must not lose lines. */
export class Logger {
  level: LogLevel;
  file: string | undefined;
  format: 'text' | 'json';
  constructor(opts: LoggerOptions = {}) {
    this.level = opts.level ?? 'warn';
    this.file = opts.file;
    this.format = opts.format ?? 'text';
  }
  enabled(level: LogLevel): boolean {
    return order[level] >= order[this.level];
  }
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (!this.enabled(level)) return;
    const time = new Date().toISOString();
    let line: string;
    if (this.format === 'json') {
      line = JSON.stringify({ level, msg, time, ...fields }) + '\n';
    } else {
      const extra = fields
        ? Object.entries(fields).map(([k, v]) => ` ${k}=${JSON.stringify(v)}`).join('')
        : '';
      line = `time="${time}" level=${level} msg=${JSON.stringify(msg)}${extra}\n`;
    }
    try {
      if (this.file) appendFileSync(this.file, line);
      else process.stderr.write(line);
    } catch {
      /* logging must never take the process down */
    }
  }
  debug(msg: string, f?: Record<string, unknown>): void { this.log('debug', msg, f); }
  info(msg: string, f?: Record<string, unknown>): void { this.log('info', msg, f); }
  warn(msg: string, f?: Record<string, unknown>): void { this.log('warn', msg, f); }
  error(msg: string, f?: Record<string, unknown>): void { this.log('error', msg, f); }
}
