/**
 * Values as they come off the wire (objects produced by the proto loader with
 * keepCase, defaults, longs as numbers) and the checks that turn them into
 * typed values. Requests are parsed here before any service looks at them.
 */
import { invalid } from '@berth/base';

/** google.protobuf.Any, passed through byte for byte. */
export interface AnyMessage {
  type_url: string;
  value: Buffer;
}

/** google.protobuf.Timestamp. */
export interface Timestamp {
  seconds: number;
  nanos: number;
}

export type Wire = Readonly<Record<string, unknown>>;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

/** A message field that must be present. */
export function record(v: unknown, what: string): Wire {
  if (!isRecord(v)) throw invalid(`${what} must be set`);
  return v;
}

/** A message field that may be absent (null on the wire). */
export function optRecord(v: unknown, what: string): Wire | undefined {
  if (v === null || v === undefined) return undefined;
  if (!isRecord(v)) throw invalid(`${what}: expected a message, got ${describe(v)}`);
  return v;
}

export function str(o: Wire, key: string, what: string): string {
  const v = o[key];
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw invalid(`${what}.${key}: expected a string, got ${describe(v)}`);
  return v;
}

export function num(o: Wire, key: string, what: string): number {
  const v = o[key];
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v);
  throw invalid(`${what}.${key}: expected a number, got ${describe(v)}`);
}

export function strList(o: Wire, key: string, what: string): string[] {
  const v = o[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((x): x is string => typeof x === 'string')) {
    throw invalid(`${what}.${key}: expected a list of strings`);
  }
  return v;
}

export function strMap(o: Wire, key: string, what: string): Record<string, string> {
  const v = o[key];
  if (v === undefined || v === null) return {};
  if (!isRecord(v)) throw invalid(`${what}.${key}: expected a map`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw invalid(`${what}.${key}[${JSON.stringify(k)}]: expected a string`);
    Object.defineProperty(out, k, { value: x, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

export function anyMessage(v: unknown, what: string): AnyMessage | undefined {
  const o = optRecord(v, what);
  if (o === undefined) return undefined;
  const typeUrl = str(o, 'type_url', what);
  const value = o['value'];
  if (value === undefined || value === null) return { type_url: typeUrl, value: Buffer.alloc(0) };
  if (Buffer.isBuffer(value)) return { type_url: typeUrl, value };
  if (value instanceof Uint8Array) return { type_url: typeUrl, value: Buffer.from(value) };
  throw invalid(`${what}.value: expected bytes, got ${describe(value)}`);
}

export function anyMap(o: Wire, key: string, what: string): Record<string, AnyMessage> {
  const v = o[key];
  if (v === undefined || v === null) return {};
  if (!isRecord(v)) throw invalid(`${what}.${key}: expected a map`);
  const out: Record<string, AnyMessage> = {};
  for (const [k, x] of Object.entries(v)) {
    const a = anyMessage(x, `${what}.${key}[${JSON.stringify(k)}]`);
    if (a === undefined) continue;
    Object.defineProperty(out, k, { value: a, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

export function timestamp(v: unknown, what: string): Timestamp | undefined {
  const o = optRecord(v, what);
  if (o === undefined) return undefined;
  return { seconds: num(o, 'seconds', what), nanos: num(o, 'nanos', what) };
}

/** google.protobuf.FieldMask paths; an absent mask is an empty list. */
export function fieldMask(v: unknown, what: string): string[] {
  const o = optRecord(v, what);
  return o === undefined ? [] : strList(o, 'paths', what);
}

/** The current time as a protobuf Timestamp, with sub-millisecond precision. */
export function now(): Timestamp {
  const ms = performance.timeOrigin + performance.now();
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.min(999_999_999, Math.max(0, Math.round((ms - seconds * 1000) * 1e6)));
  return { seconds, nanos };
}

/** containerd's identifier rule (namespaces, container ids, topic components). */
const IDENTIFIER_RE = /^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$/;
const IDENTIFIER_MAX = 76;

export function validateIdentifier(s: string): void {
  if (s === '') throw invalid('identifier must not be empty');
  if (s.length > IDENTIFIER_MAX) {
    throw invalid(`identifier ${JSON.stringify(s)} greater than maximum length (${IDENTIFIER_MAX} characters)`);
  }
  if (!IDENTIFIER_RE.test(s)) {
    throw invalid(`identifier ${JSON.stringify(s)} must match ${IDENTIFIER_RE.source}`);
  }
}

const LABEL_MAX = 4096;

/** containerd's label rule: key and value together at most 4096 bytes. */
export function validateLabels(labels: Readonly<Record<string, string>>, what: string): void {
  for (const [k, v] of Object.entries(labels)) {
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > LABEL_MAX) {
      throw invalid(`${what}: label key and value length (${Buffer.byteLength(k) + Buffer.byteLength(v)} bytes) greater than maximum size (${LABEL_MAX} bytes), key: ${k}`);
    }
  }
}
