/**
 * Output helpers with the docker CLI's shapes: tab-aligned tables (tabwriter with
 * minwidth 10, padding 3), human sizes (decimal for images, binary for memory),
 * human durations ("About a minute", "3 days"), time arguments (`10m`, RFC 3339,
 * unix seconds), and `--format` handling (`table` prefix, `json`, Go templates).
 */
import { Template, goJson } from './template.js';

export { ESCAPED_JSON, Template, TemplateError, goJson, goString, truthy } from './template.js';

const width = (s: string): number => Array.from(s).length;

/**
 * Aligns tab-separated lines as Go's tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)
 * does for docker's tables: every tab-terminated cell is padded to the widest cell
 * of its column plus 3, and at least 10; the last cell of a line is not padded.
 */
export function tabulate(lines: readonly string[], minWidth = 10): string {
  const rows = lines.map((l) => l.split('\t'));
  const widths: number[] = [];
  for (const r of rows) {
    r.forEach((cell, i) => {
      if (i < r.length - 1) widths[i] = Math.max(widths[i] ?? 0, width(cell));
    });
  }
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i < r.length - 1 ? cell + ' '.repeat(Math.max(minWidth, (widths[i] ?? 0) + 3) - width(cell)) : cell))
        .join(''),
    )
    .map((l) => `${l}\n`)
    .join('');
}

/** Go's %.<p>g. */
function goG(n: number, precision: number): string {
  if (n === 0) return '0';
  const s = n.toPrecision(precision);
  if (s.includes('e')) {
    const [m = '', e = ''] = s.split('e');
    const mant = m.includes('.') ? m.replace(/\.?0+$/, '') : m;
    const sign = e.startsWith('-') ? '-' : '+';
    const digits = e.replace(/^[-+]/, '').padStart(2, '0');
    return `${mant}e${sign}${digits}`;
  }
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

const DECIMAL = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];
const BINARY = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB', 'ZiB', 'YiB'];

function scaled(size: number, base: number, units: readonly string[], precision: number): string {
  let i = 0;
  let s = size;
  while (s >= base && i < units.length - 1) {
    s /= base;
    i++;
  }
  return `${goG(s, precision)}${units[i] as string}`;
}

/** units.HumanSizeWithPrecision: decimal units, `2.9MB`. */
export function humanSize(bytes: number, precision = 4): string {
  return scaled(bytes, 1000, DECIMAL, precision);
}

/** units.BytesSize: binary units, `1.5MiB`. */
export function bytesSize(bytes: number): string {
  return scaled(bytes, 1024, BINARY, 4);
}

/** units.HumanDuration of a length in milliseconds. */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.trunc(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(ms / 3_600_000 / 24 / 365)} years`;
}

/** "<duration> ago" for a unix time in seconds. */
export function ago(unixSeconds: number, now = Date.now()): string {
  return `${humanDuration(now - unixSeconds * 1000)} ago`;
}

/** A time as Go's time.Time String() in UTC: `2006-01-02 15:04:05 +0000 UTC`. */
export function goTime(unixSeconds: number): string {
  const d = new Date(unixSeconds * 1000);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000 UTC`;
}

/** Parses a Go duration (`1h30m`, `10s`, `500ms`, `1.5h`) into milliseconds. */
export function parseGoDuration(s: string): number | undefined {
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let sign = 1;
  let i = 0;
  if (s.startsWith('-') || s.startsWith('+')) {
    sign = s.startsWith('-') ? -1 : 1;
    i = 1;
  }
  if (i >= s.length) return undefined;
  let total = 0;
  while (i < s.length) {
    re.lastIndex = i;
    const m = re.exec(s);
    if (m === null) return undefined;
    total += Number(m[1]) * (unit[m[2] as string] as number);
    i = re.lastIndex;
  }
  return sign * total;
}

/**
 * The value docker sends for --since/--until: a Go duration is relative to now,
 * an RFC 3339 date (or date-only) is converted, unix seconds pass through.
 * Returns `seconds[.nanoseconds]`.
 */
export function timestampArg(value: string, now = Date.now()): string {
  if (value === '') return '';
  const dur = parseGoDuration(value);
  if (dur !== undefined) {
    const t = now - dur;
    return (t / 1000).toFixed(9).replace(/\.?0+$/, '') || '0';
  }
  if (/^\d+(\.\d+)?$/.test(value)) return value;
  let iso = value;
  if (/^\d{4}-\d{2}-\d{2}$/.test(iso)) iso += 'T00:00:00Z';
  else if (/^\d{4}-\d{2}-\d{2}T[\d:.]+$/.test(iso)) iso += 'Z';
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`failed to parse value as time or duration: "${value}"`);
  const frac = /\.(\d+)/.exec(value.slice(19))?.[1];
  const secs = Math.floor(ms / 1000);
  return frac !== undefined ? `${secs}.${frac.padEnd(9, '0').slice(0, 9)}` : String(secs);
}

/** Docker's Ellipsis: cut to `max` characters, the last one an ellipsis. */
export function ellipsis(s: string, max: number): string {
  const chars = Array.from(s);
  if (chars.length <= max) return s;
  if (max <= 1) return chars.slice(0, max).join('');
  return `${chars.slice(0, max - 1).join('')}…`;
}

export const shortId = (id: string): string => id.replace(/^sha256:/, '').slice(0, 12);

/** A `--format` value: `table ...`, `json`, `{{...}}`, or one of the command's named formats. */
export interface FormatSpec {
  readonly table: boolean;
  readonly json: boolean;
  readonly template: Template;
}

export function parseFormat(format: string, defaultTable: string): FormatSpec {
  if (format === '' || format === 'table') {
    return { table: defaultTable.startsWith('table '), json: false, template: new Template(defaultTable.replace(/^table /, '')) };
  }
  if (format === 'json') return { table: false, json: true, template: new Template('{{json .}}') };
  if (format.startsWith('table ')) return { table: true, json: false, template: new Template(unescapeTabs(format.slice(6))) };
  return { table: false, json: false, template: new Template(unescapeTabs(format)) };
}

/** docker turns the two characters `\t` and `\n` of a format flag into a tab and a newline. */
function unescapeTabs(s: string): string {
  return s.replace(/\\t/g, '\t').replace(/\\n/g, '\n');
}

/**
 * Renders rows with a format: a table gets the header row (the template run on
 * `headers`) and is aligned; other formats print one line per row.
 */
export function render(spec: FormatSpec, rows: readonly unknown[], headers: Readonly<Record<string, unknown>>): string {
  const lines = rows.map((r) => spec.template.execute(r));
  if (!spec.table) return lines.map((l) => `${l}\n`).join('');
  const head = spec.template.execute(headers);
  return tabulate([head, ...lines]);
}

/** `docker inspect` output: an indented JSON array, 4 spaces, Go's escaping. */
export function inspectJson(items: readonly unknown[]): string {
  if (items.length === 0) return '[]\n';
  return `${goJson(items, '    ')}\n`;
}

export const formatJson = goJson;
