/**
 * Small combinators to validate JSON against a TypeScript shape. Every
 * failure is an invalid() error that starts with the JSON path of the
 * offending value (`linux.namespaces[2].type: ...`).
 */
import { invalid } from '@berth/base';

export type Parser<T> = (v: unknown, path: string) => T;

export interface Field<T, O extends boolean> {
  parse: Parser<T>;
  optional: O;
  /** For required properties that some producers leave out: the value to use then. */
  fallback?: () => T;
}

type OptionalKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? K : never }[keyof T];

/** For each property of T: req(parser) if T requires it, opt(parser) if it is optional. */
export type Shape<T> = {
  [K in keyof T]-?: K extends OptionalKeys<T>
    ? Field<Exclude<T[K], undefined>, true>
    : Field<T[K], false>;
};

export const req = <T>(parse: Parser<T>): Field<T, false> => ({ parse, optional: false });
export const opt = <T>(parse: Parser<T>): Field<T, true> => ({ parse, optional: true });
export const dflt = <T>(parse: Parser<T>, fallback: () => T): Field<T, false> => ({
  parse, optional: false, fallback,
});

export function fail(path: string, msg: string): never {
  throw invalid(`${path === '' ? 'config' : path}: ${msg}`);
}

export const join = (path: string, key: string): string => (path === '' ? key : `${path}.${key}`);

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `a string (${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)})`;
  return `a ${typeof v}`;
}

export function object(v: unknown, path: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(path, `expected an object, got ${describe(v)}`);
  return v as Record<string, unknown>;
}

/**
 * An object parser for a shape. Unknown properties are ignored, as the
 * runtime spec asks; `null` counts as absent for optional properties.
 */
export function struct<T>(shape: Shape<T>, check?: (out: T, path: string) => void): Parser<T> {
  const entries = Object.entries(shape) as [string, Field<unknown, boolean>][];
  return (v, path) => {
    const o = object(v, path);
    const out: Record<string, unknown> = {};
    for (const [key, field] of entries) {
      const x = o[key];
      if (x === undefined || (x === null && field.optional)) {
        if (field.fallback) out[key] = field.fallback();
        else if (!field.optional) fail(join(path, key), 'required');
        continue;
      }
      out[key] = field.parse(x, join(path, key));
    }
    const result = out as T;
    check?.(result, path);
    return result;
  };
}

export function array<T>(item: Parser<T>): Parser<T[]> {
  return (v, path) => {
    if (!Array.isArray(v)) fail(path, `expected an array, got ${describe(v)}`);
    return v.map((x, i) => item(x, `${path}[${i}]`));
  };
}

export function record<T>(value: Parser<T>): Parser<Record<string, T>> {
  return (v, path) => {
    const o = object(v, path);
    const out: Record<string, T> = {};
    for (const [k, x] of Object.entries(o)) out[k] = value(x, `${path}[${JSON.stringify(k)}]`);
    return out;
  };
}

export const string: Parser<string> = (v, path) => {
  if (typeof v !== 'string') fail(path, `expected a string, got ${describe(v)}`);
  return v;
};

export const boolean: Parser<boolean> = (v, path) => {
  if (typeof v !== 'boolean') fail(path, `expected a boolean, got ${describe(v)}`);
  return v;
};

export function pattern(re: RegExp, what: string): Parser<string> {
  return (v, path) => {
    const s = string(v, path);
    if (!re.test(s)) fail(path, `${JSON.stringify(s)} is not ${what}`);
    return s;
  };
}

export function oneOf<const T extends readonly string[]>(values: T, what: string): Parser<T[number]> {
  return (v, path) => {
    const s = string(v, path);
    if (!(values as readonly string[]).includes(s)) fail(path, `unknown ${what} ${JSON.stringify(s)}`);
    return s as T[number];
  };
}

export function integer(min: number, max: number): Parser<number> {
  return (v, path) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) fail(path, `expected an integer, got ${describe(v)}`);
    if (v < min || v > max) fail(path, `${v} is out of range [${min}, ${max}]`);
    return v;
  };
}

export const int32 = integer(-(2 ** 31), 2 ** 31 - 1);
export const uint16 = integer(0, 0xffff);
export const uint32 = integer(0, 0xffffffff);
// 64-bit bounds as doubles: JSON.parse rounds 2^63-1 and 2^64-1 up to 2^63 and 2^64.
export const int64 = integer(-(2 ** 63), 2 ** 63);
export const uint64 = integer(0, 2 ** 64);

export const stringArray = array(string);
export const stringMap = record(string);
