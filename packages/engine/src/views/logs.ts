// `GET /containers/{id}/logs` over Docker's json-file log as berth-shim writes
// it (native/shim/PROTOCOL.md, "Output and the json-file log"): one JSON object
// per line, rotated to <log>.1 … <log>.N-1 (the oldest has the highest number).
//
// The files are read oldest first; `tail` counts complete lines across files,
// read backwards from the end. Following keeps the current file open: when the
// shim renames it away, the open fd is read to its end and the files that came
// after it are read in order, so a rotation loses nothing.
import { watch, type FSWatcher } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { errnoCode, internal, invalid } from '@berth/base';

export interface StreamLogsOptions {
  /** The json-file log; its rotated files are `<path>.1` … `<path>.<maxFiles-1>`. */
  path: string;
  /** `--log-max-files` as given to the shim (1: no rotated files). */
  maxFiles: number;
  stdout: boolean;
  stderr: boolean;
  /** Unix seconds (fractional): entries before this time are left out; 0 or absent: all. */
  since?: number;
  /** Unix seconds (fractional): the stream ends at the first entry after this time; 0 or absent: no end. */
  until?: number;
  /** The number of lines from the end of the log to start with; 'all', negative or absent: every line. */
  tail?: number | 'all';
  /** Prefix each entry with its time, as docker does (`2026-11-22T22:33:44.123456789Z `). */
  timestamps: boolean;
  /** Keep reading as the log grows, until the container stops or `signal` aborts. */
  follow: boolean;
  /** The container has a terminal: output raw; otherwise in stdcopy frames. */
  tty: boolean;
  /** Asked while following: false once the container has stopped. */
  isRunning: () => boolean;
  signal: AbortSignal;
  /** Receives the output; the next chunk waits for the returned promise. */
  write: (chunk: Buffer) => Promise<void>;
}

/** Docker's stdcopy frame: [stream, 0, 0, 0, size (4 bytes, big-endian)] then the payload. */
export function stdcopyFrame(stream: 1 | 2, payload: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(8 + payload.length);
  frame.writeUInt32BE(0, 0);
  frame[0] = stream;
  frame.writeUInt32BE(payload.length, 4);
  payload.copy(frame, 8);
  return frame;
}

// ------------------------------------------------------------------ times

const NS_PER_S = 1_000_000_000n;

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?)?([Zz]|[+-]\d{2}:\d{2})?$/;

/**
 * An RFC 3339 time to nanoseconds since the epoch. Also the shorter forms the
 * docker CLI takes (date only, up to the hour or minute); without a zone the
 * time is local, as docker reads it. undefined when `s` has another form.
 */
export function parseRfc3339(s: string): bigint | undefined {
  const m = RFC3339.exec(s);
  if (m === null) return undefined;
  const [, y, mo, d, h = '0', mi = '0', sec = '0', frac = '', zone] = m;
  const fields = [Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec)] as const;
  if (fields[1] > 11 || fields[2] < 1 || fields[2] > 31 || fields[3] > 23 || fields[4] > 59 || fields[5] > 60) {
    return undefined;
  }
  let ms: number;
  if (zone === undefined) {
    const local = new Date(fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]);
    local.setFullYear(fields[0]);
    ms = local.getTime();
  } else {
    ms = Date.UTC(...fields);
    if (fields[0] < 100) ms = new Date(ms).setUTCFullYear(fields[0]);
    if (zone !== 'Z' && zone !== 'z') {
      const sign = zone.startsWith('-') ? -1 : 1;
      ms -= sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6))) * 60_000;
    }
  }
  if (!Number.isFinite(ms)) return undefined;
  return BigInt(ms) * 1_000_000n + BigInt(frac.padEnd(9, '0'));
}

/** Nanoseconds since the epoch as docker prints log times: UTC, always 9 fraction digits. */
export function formatLogTime(ns: bigint): string {
  let sec = ns / NS_PER_S;
  let frac = ns % NS_PER_S;
  if (frac < 0n) {
    frac += NS_PER_S;
    sec -= 1n;
  }
  const iso = new Date(Number(sec) * 1000).toISOString(); // 2026-11-22T22:33:44.000Z
  return `${iso.slice(0, 19)}.${frac.toString().padStart(9, '0')}Z`;
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-9, us: 1e-6, 'µs': 1e-6, 'μs': 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600,
};

/** A Go duration ("10m", "1h30m", "1.5s", "-2h") in seconds; undefined when it is not one. */
export function parseGoDuration(s: string): number | undefined {
  const m = /^([+-]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/.exec(s);
  if (m === null) return undefined;
  let total = 0;
  for (const part of (m[2] ?? '').matchAll(/(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += Number(part[1]) * (DURATION_UNITS[part[2] ?? ''] ?? 0);
  }
  return m[1] === '-' ? -total : total;
}

/**
 * The `since` and `until` query parameters of the logs (and events) endpoints,
 * to unix seconds with a fraction. The API takes unix timestamps
 * ("1700000000", "1700000000.123456789"); the docker CLI converts the other
 * forms before sending, and they are accepted here too: RFC 3339 times (and
 * their shorter forms) and durations ("10m"), which count back from `now`
 * (milliseconds since the epoch). "" is 0, which means no bound.
 */
export function parseLogTime(value: string, now: number = Date.now()): number {
  const s = value.trim();
  if (s === '') return 0;
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  if (s !== '0') {
    const d = parseGoDuration(s);
    if (d !== undefined) return now / 1000 - d;
  }
  const ns = parseRfc3339(s);
  if (ns !== undefined) return Number(ns / NS_PER_S) + Number(ns % NS_PER_S) / 1e9;
  throw invalid(`invalid value for time ${JSON.stringify(value)}: not a unix timestamp, RFC 3339 time or duration`);
}

// ------------------------------------------------------------------ entries

export interface LogEntry {
  log: Buffer;
  stream: 'stdout' | 'stderr';
  /** Nanoseconds since the epoch. */
  time: bigint;
}

/** One json-file line (without its "\n"); undefined when it is not a log entry. */
export function parseLogLine(line: Buffer | string): LogEntry | undefined {
  let obj: unknown;
  try {
    obj = JSON.parse(typeof line === 'string' ? line : line.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof obj !== 'object' || obj === null) return undefined;
  const { log, stream, time } = obj as Record<string, unknown>;
  if (typeof log !== 'string' || (stream !== 'stdout' && stream !== 'stderr') || typeof time !== 'string') return undefined;
  const ns = parseRfc3339(time);
  if (ns === undefined) return undefined;
  return { log: Buffer.from(log, 'utf8'), stream, time: ns };
}

// ------------------------------------------------------------------ reading

const CHUNK = 64 * 1024;
/** Output is handed to write() in pieces of about this size. */
const BATCH = 64 * 1024;
/** How often following looks at the file when no change was reported. */
const POLL_MS = 250;

interface OpenLog {
  fh: FileHandle;
  ino: number;
  /** Where reading goes on. */
  pos: number;
  /** The bytes read of a line whose end is not written yet. */
  partial: Buffer;
}

const EMPTY = Buffer.alloc(0);

const rotatedName = (path: string, i: number): string => (i === 0 ? path : `${path}.${i}`);

async function openIfExists(name: string): Promise<OpenLog | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(name, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw internal(`open log file ${name}: ${errnoCode(err) ?? String(err)}`, err);
  }
  const st = await fh.stat();
  return { fh, ino: st.ino, pos: 0, partial: EMPTY };
}

async function inodeOf(name: string): Promise<number | undefined> {
  try {
    return (await stat(name)).ino;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * The log files, oldest first, open. Opened newest first: when a rotation
 * happens in between, a file is met twice (same inode) and kept once.
 */
async function openAll(path: string, maxFiles: number): Promise<OpenLog[]> {
  const files: OpenLog[] = [];
  const seen = new Set<number>();
  try {
    for (let i = 0; i < Math.max(1, maxFiles); i++) {
      const f = await openIfExists(rotatedName(path, i));
      if (f === undefined) continue;
      if (seen.has(f.ino)) {
        await f.fh.close();
        continue;
      }
      seen.add(f.ino);
      files.push(f);
    }
  } catch (err) {
    for (const f of files) await f.fh.close();
    throw err;
  }
  return files.reverse();
}

/**
 * Where the last `n` complete lines start: the index of the file and the
 * offset in it. Each file is read backwards from its size as it is now.
 */
async function tailStart(files: OpenLog[], n: number): Promise<{ file: number; pos: number }> {
  if (files.length === 0) return { file: 0, pos: 0 };
  let newlines = 0;
  let first = true;
  for (let f = files.length - 1; f >= 0; f--) {
    const file = files[f] as OpenLog;
    let end = (await file.fh.stat()).size;
    const buf = Buffer.allocUnsafe(CHUNK);
    while (end > 0) {
      const start = Math.max(0, end - CHUNK);
      const { bytesRead } = await file.fh.read(buf, 0, end - start, start);
      for (let i = bytesRead - 1; i >= 0; i--) {
        if (buf[i] !== 0x0a) continue;
        if (first) {
          // the newline ending the last complete line
          first = false;
          if (n === 0) return { file: f, pos: start + i + 1 };
          continue;
        }
        newlines++;
        if (newlines === n) return { file: f, pos: start + i + 1 };
      }
      end = start;
    }
  }
  return { file: 0, pos: 0 };
}

class Emitter {
  private pending: Buffer[] = [];
  private size = 0;
  /** Set when an entry after `until` was met: nothing more is read. */
  done = false;
  private readonly since: bigint | undefined;
  private readonly until: bigint | undefined;

  constructor(private readonly o: StreamLogsOptions) {
    // A double holds a current unix time to about 240 ns: bounds are widened
    // by 1 µs so that an entry at exactly the given time is kept.
    const toNs = (t: number | undefined, slack: bigint): bigint | undefined =>
      t === undefined || t <= 0 || !Number.isFinite(t) ? undefined : BigInt(Math.round(t * 1e6)) * 1000n + slack;
    this.since = toNs(o.since, -1000n);
    this.until = toNs(o.until, 1000n);
  }

  untilPassed(): boolean {
    return this.until !== undefined && BigInt(Date.now()) * 1_000_000n > this.until;
  }

  async line(line: Buffer): Promise<void> {
    if (this.done) return;
    const e = parseLogLine(line);
    if (e === undefined) return;
    if (this.until !== undefined && e.time > this.until) {
      this.done = true;
      return;
    }
    if (this.since !== undefined && e.time < this.since) return;
    if (e.stream === 'stdout' ? !this.o.stdout : !this.o.stderr) return;
    const payload = this.o.timestamps ? Buffer.concat([Buffer.from(`${formatLogTime(e.time)} `), e.log]) : e.log;
    const chunk = this.o.tty ? payload : stdcopyFrame(e.stream === 'stdout' ? 1 : 2, payload);
    this.pending.push(chunk);
    this.size += chunk.length;
    if (this.size >= BATCH) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.size === 0) return;
    const chunk = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.size);
    this.pending = [];
    this.size = 0;
    await this.o.write(chunk);
  }
}

/** The longest line kept while waiting for its end (the shim splits lines at 16 KiB of output). */
const MAX_LINE = 1024 * 1024;

/**
 * Reads `file` from its position to its end as it is now, passing each
 * complete line on; an incomplete last line is kept until its end is read.
 */
async function readLines(file: OpenLog, out: Emitter, signal: AbortSignal): Promise<void> {
  const buf = Buffer.allocUnsafe(CHUNK);
  for (;;) {
    if (out.done || signal.aborted) return;
    const { bytesRead } = await file.fh.read(buf, 0, CHUNK, file.pos);
    if (bytesRead === 0) return;
    file.pos += bytesRead;
    const data = file.partial.length === 0 ? buf.subarray(0, bytesRead) : Buffer.concat([file.partial, buf.subarray(0, bytesRead)]);
    let start = 0;
    for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a, start)) {
      await out.line(data.subarray(start, nl));
      start = nl + 1;
      if (out.done) return;
    }
    const rest = data.length - start;
    file.partial = rest === 0 || rest > MAX_LINE ? EMPTY : Buffer.from(data.subarray(start));
  }
}

/** Resolves after `ms`, on a change reported by `watcher`, or on abort. */
function wait(ms: number, signal: AbortSignal, watcher: FSWatcher | undefined, name: string): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      watcher?.off('change', onChange);
      resolve();
    };
    const onChange = (_event: string, file: string | Buffer | null): void => {
      const f = file === null ? '' : file.toString();
      if (f === '' || f === name || f.startsWith(`${name}.`)) done();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    watcher?.on('change', onChange);
  });
}

/**
 * After the current file was renamed away (its end already read): the files
 * written after it, oldest first. They are found by where the old file went:
 * if it is now <path>.k, then <path>.k-1 … <path>.1 came after it.
 */
async function filesAfterRotation(path: string, maxFiles: number, oldIno: number): Promise<OpenLog[]> {
  let k = maxFiles;
  for (let i = 1; i < maxFiles; i++) {
    if ((await inodeOf(rotatedName(path, i))) === oldIno) {
      k = i;
      break;
    }
  }
  const out: OpenLog[] = [];
  for (let i = k - 1; i >= 1; i--) {
    const f = await openIfExists(rotatedName(path, i));
    if (f !== undefined && f.ino !== oldIno) out.push(f);
  }
  return out;
}

/** Writes the container's log as `GET /containers/{id}/logs` returns it. */
export async function streamLogs(opts: StreamLogsOptions): Promise<void> {
  const out = new Emitter(opts);
  const files = await openAll(opts.path, opts.maxFiles);
  const state: { current: OpenLog | undefined } = { current: undefined };
  try {
    // what is there now
    let from = { file: 0, pos: 0 };
    const tail = opts.tail ?? 'all';
    // a negative count means every line, as docker takes it
    if (tail !== 'all' && tail >= 0) from = await tailStart(files, Math.floor(tail));
    while (files.length > 0) {
      const f = files.shift() as OpenLog;
      if (from.file > 0) {
        from.file--;
        await f.fh.close();
        continue;
      }
      f.pos = from.pos;
      from.pos = 0;
      if (files.length === 0) {
        state.current = f;
      } else {
        try {
          await readLines(f, out, opts.signal);
        } finally {
          await f.fh.close();
        }
      }
    }
    if (state.current !== undefined) await readLines(state.current, out, opts.signal);
    if (opts.follow) await follow(opts, out, state);
    if (!opts.signal.aborted) await out.flush();
  } finally {
    for (const f of files) await f.fh.close();
    await state.current?.fh.close();
  }
}

/** Reads on as the log grows and rotates, until the container stops, `until` passes or the signal aborts. */
async function follow(opts: StreamLogsOptions, out: Emitter, state: { current: OpenLog | undefined }): Promise<void> {
  const { signal } = opts;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(opts.path), { persistent: false });
    watcher.on('error', () => watcher?.close());
  } catch {
    watcher = undefined; // polling alone then
  }
  const name = basename(opts.path);
  try {
    for (;;) {
      if (signal.aborted || out.done) return;
      // decided before reading, so that what was written before the stop is read
      const stopping = !opts.isRunning() || out.untilPassed();
      if (state.current !== undefined) await readLines(state.current, out, signal);
      // rotated (or first created) under us?
      const ino = await inodeOf(opts.path);
      if (ino !== undefined && ino !== state.current?.ino) {
        const old = state.current;
        const next: OpenLog[] = [];
        if (old !== undefined) {
          await readLines(old, out, signal);
          state.current = undefined;
          await old.fh.close();
          next.push(...(await filesAfterRotation(opts.path, opts.maxFiles, old.ino)));
        }
        try {
          for (const f of next) await readLines(f, out, signal);
        } finally {
          for (const f of next) await f.fh.close();
        }
        state.current = await openIfExists(opts.path);
        continue;
      }
      if (state.current !== undefined && (await state.current.fh.stat()).size < state.current.pos) {
        // truncated in place (a single log file): start again at its beginning
        state.current.pos = 0;
        state.current.partial = EMPTY;
        continue;
      }
      await out.flush();
      if (stopping) return;
      await wait(POLL_MS, signal, watcher, name);
    }
  } finally {
    watcher?.close();
  }
}
