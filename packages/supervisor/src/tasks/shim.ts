/**
 * berth-shim from the supervisor's side (native/shim/PROTOCOL.md): starting one
 * with its ready fd, and a client over its control socket: one connection,
 * requests matched to answers by seq, events (exit, exec_started, oom) passed
 * to a callback once subscribed.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import {
  BerthError, ErrorKind, alreadyExists, failedPrecondition, internal, invalid, notFound, unavailable,
} from '@berth/base';
import { isRecord } from '../wire.js';
import type { Timestamp } from '../wire.js';

export const PROTOCOL_VERSION = 1;

export type ShimValue = string | number | boolean;
export type ShimMessage = Readonly<Record<string, unknown>>;

export interface ShimEvent {
  readonly event: string;
  readonly execId: string;
  readonly pid: number;
  readonly exitCode: number;
  readonly exitedAt: Timestamp | undefined;
}

/** RFC 3339 with up to 9 fraction digits (the shim's exit times) to a protobuf Timestamp. */
export function parseShimTime(s: unknown): Timestamp | undefined {
  if (typeof s !== 'string') return undefined;
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(s);
  if (m === null || m[1] === undefined) return undefined;
  const ms = Date.parse(`${m[1]}Z`);
  if (Number.isNaN(ms)) return undefined;
  return { seconds: Math.floor(ms / 1000), nanos: Number((m[2] ?? '').padEnd(9, '0')) };
}

function numberField(m: ShimMessage, key: string): number {
  const v = m[key];
  return typeof v === 'number' ? v : 0;
}

function stringField(m: ShimMessage, key: string): string {
  const v = m[key];
  return typeof v === 'string' ? v : '';
}

/** A shim error answer as one of our error kinds, keeping the shim's message. */
function shimError(m: ShimMessage, op: string): BerthError {
  const msg = stringField(m, 'error') || `shim ${op} failed`;
  switch (stringField(m, 'code')) {
    case 'invalid': return invalid(msg);
    case 'not_found': return notFound(msg);
    case 'already_exists': return alreadyExists(msg);
    case 'failed_precondition': return failedPrecondition(msg);
    default: return internal(`shim ${op}: ${msg}`);
  }
}

/**
 * Start a shim and wait for its ready line. The first process exits once the
 * shim has detached; the answer names the shim's own pid.
 */
export async function startShim(binary: string, args: readonly string[], stateDir: string): Promise<number> {
  const child = spawn(binary, [...args, '--ready-fd', '3'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve(code));
  });
  const readyPipe = child.stdio[3];
  let line = '';
  if (readyPipe !== null && readyPipe !== undefined && 'setEncoding' in readyPipe) {
    const r = readyPipe as Socket;
    r.setEncoding('utf8');
    await new Promise<void>((resolve) => {
      r.on('data', (d: string) => { line += d; });
      r.once('end', () => resolve());
      r.once('error', () => resolve());
      r.once('close', () => resolve());
    });
  }
  let code: number | null;
  try {
    code = await exited;
  } catch (e) {
    throw unavailable(`starting berth-shim ${binary}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  if (code !== 0) throw failedPrecondition(`berth-shim exited with status ${String(code)}: ${stderr.trim() || line.trim()}`);
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    throw failedPrecondition(`berth-shim in ${stateDir} gave no ready line: ${JSON.stringify(line)} ${stderr.trim()}`);
  }
  if (!isRecord(msg) || msg['ok'] !== true || typeof msg['pid'] !== 'number') {
    const err = isRecord(msg) && typeof msg['error'] === 'string' ? msg['error'] : line.trim();
    throw failedPrecondition(`berth-shim in ${stateDir}: ${err}`);
  }
  return msg['pid'];
}

interface Pending {
  op: string;
  resolve(m: ShimMessage): void;
  reject(e: Error): void;
}

export class ShimClient {
  private seq = 0;
  private buf = '';
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private onEvent: (e: ShimEvent) => void = () => undefined;
  private onClose: () => void = () => undefined;

  private constructor(private readonly sock: Socket, readonly stateDir: string) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.receive(d));
    sock.on('error', () => undefined);
    sock.on('close', () => this.shut(unavailable(`connection to the shim in ${stateDir} was lost`)));
  }

  /** Connect to <stateDir>/control.sock and agree on the protocol version. */
  static async connect(stateDir: string): Promise<ShimClient> {
    const path = join(stateDir, 'control.sock');
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => { s.removeAllListeners('error'); resolve(s); });
      s.once('error', (e) => reject(unavailable(`connecting to the shim at ${path}: ${e.message}`, e)));
    });
    const client = new ShimClient(sock, stateDir);
    try {
      await client.request('version', { version: PROTOCOL_VERSION });
    } catch (e) {
      client.close();
      throw e;
    }
    return client;
  }

  get alive(): boolean {
    return !this.closed;
  }

  /** Receive events from now on; onClose is called once when the connection ends. */
  async subscribe(onEvent: (e: ShimEvent) => void, onClose: () => void): Promise<void> {
    this.onEvent = onEvent;
    this.onClose = onClose;
    await this.request('subscribe');
  }

  request(op: string, fields: Readonly<Record<string, ShimValue | undefined>> = {}): Promise<ShimMessage> {
    if (this.closed) return Promise.reject(unavailable(`the shim in ${this.stateDir} is not connected`));
    const seq = ++this.seq;
    const body: Record<string, ShimValue> = { op, seq };
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) body[k] = v;
    return new Promise<ShimMessage>((resolve, reject) => {
      this.pending.set(seq, { op, resolve, reject });
      this.sock.write(`${JSON.stringify(body)}\n`);
    });
  }

  private receive(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      if (!isRecord(msg)) continue;
      if (typeof msg['event'] === 'string') {
        this.onEvent({
          event: msg['event'],
          execId: stringField(msg, 'exec_id'),
          pid: numberField(msg, 'pid'),
          exitCode: numberField(msg, 'exit_code'),
          exitedAt: parseShimTime(msg['exited_at']),
        });
        continue;
      }
      const seq = msg['seq'];
      if (typeof seq !== 'number') continue;
      const p = this.pending.get(seq);
      if (p === undefined) continue;
      this.pending.delete(seq);
      if (msg['ok'] === true) p.resolve(msg);
      else p.reject(shimError(msg, p.op));
    }
  }

  private shut(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) {
      // A delete ends the shim: its answer may race the close.
      p.reject(err instanceof BerthError && err.kind === ErrorKind.Unavailable ? err : unavailable(err.message, err));
    }
    this.pending.clear();
    this.onClose();
  }

  close(): void {
    this.sock.destroy();
    this.shut(unavailable(`connection to the shim in ${this.stateDir} was closed`));
  }
}

