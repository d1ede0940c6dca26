/**
 * A command-line flag parser with the docker CLI's conventions (cobra/pflag):
 * `-it` bundles, `-p80:80` and `-e X=1` short values, `--flag=value` and
 * `--flag value`, `--bool=false`, repeatable list flags, `--` ends the flags,
 * and for commands like `run` and `exec` the flags stop at the first positional
 * argument. Errors are UsageErrors carrying pflag's wording; the caller prints
 * them with the usage hint and exits 125.
 */

export type FlagKind = 'bool' | 'string' | 'list' | 'int';

export interface FlagDef {
  readonly long: string;
  readonly short?: string;
  readonly kind: FlagKind;
  readonly help: string;
  /** The type name shown in help (`string`, `list`, `bytes`, `duration`...). */
  readonly type?: string;
  /** Shown as `(default x)` in help; also the value when the flag is not given. */
  readonly default?: string | number | boolean;
  readonly hidden?: boolean;
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export class Flags {
  private readonly values = new Map<string, string[]>();
  constructor(private readonly defs: readonly FlagDef[]) {}

  private def(name: string): FlagDef {
    const d = this.defs.find((f) => f.long === name);
    if (d === undefined) throw new Error(`flag --${name} is not declared`);
    return d;
  }

  /** @internal */
  push(name: string, value: string): void {
    const list = this.values.get(name);
    if (list === undefined) this.values.set(name, [value]);
    else list.push(value);
  }

  /** Whether the flag was given on the command line. */
  changed(name: string): boolean {
    this.def(name);
    return this.values.has(name);
  }

  bool(name: string): boolean {
    const d = this.def(name);
    const v = this.values.get(name);
    if (v === undefined) return d.default === true;
    return v[v.length - 1] === 'true';
  }

  /** The last value given, or the default, or undefined. */
  string(name: string): string | undefined {
    const d = this.def(name);
    const v = this.values.get(name);
    if (v === undefined) return d.default === undefined ? undefined : String(d.default);
    return v[v.length - 1];
  }

  /** Like string(), '' when unset. */
  str(name: string): string {
    return this.string(name) ?? '';
  }

  int(name: string): number | undefined {
    const s = this.string(name);
    if (s === undefined) return undefined;
    return Number(s);
  }

  /** Every value of a repeatable flag, in order. */
  list(name: string): string[] {
    this.def(name);
    return [...(this.values.get(name) ?? [])];
  }
}

export interface ParseOptions {
  /** Stop at the first positional argument (docker run/exec). */
  readonly stopAtPositional?: boolean;
}

export interface Parsed {
  readonly flags: Flags;
  readonly args: string[];
  readonly help: boolean;
}

function checkValue(def: FlagDef, value: string, shown: string): string {
  if (def.kind === 'int') {
    if (!/^[-+]?\d+$/.test(value.trim())) {
      throw new UsageError(`invalid argument "${value}" for "${shown}" flag: strconv.ParseInt: parsing "${value}": invalid syntax`);
    }
    return String(Number(value.trim()));
  }
  if (def.kind === 'bool') {
    const v = value.toLowerCase();
    if (['1', 't', 'true'].includes(v)) return 'true';
    if (['0', 'f', 'false'].includes(v)) return 'false';
    throw new UsageError(`invalid argument "${value}" for "${shown}" flag: strconv.ParseBool: parsing "${value}": invalid syntax`);
  }
  return value;
}

const HELP: FlagDef = { long: 'help', kind: 'bool', help: 'Print usage' };

/** Parses argv against the flag definitions (`--help` is always accepted). */
export function parseArgs(argv: readonly string[], defs: readonly FlagDef[], options: ParseOptions = {}): Parsed {
  const all = defs.some((d) => d.long === 'help') ? defs : [...defs, HELP];
  const flags = new Flags(all);
  const args: string[] = [];
  const byLong = new Map(all.map((d) => [d.long, d]));
  const byShort = new Map(all.filter((d) => d.short !== undefined).map((d) => [d.short as string, d]));
  let help = false;
  let i = 0;
  while (i < argv.length) {
    const a = argv[i] as string;
    i++;
    if (a === '--') {
      args.push(...argv.slice(i));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const def = byLong.get(name);
      if (def === undefined) throw new UsageError(`unknown flag: --${name}`);
      let value: string;
      if (eq >= 0) value = a.slice(eq + 1);
      else if (def.kind === 'bool') value = 'true';
      else {
        if (i >= argv.length) throw new UsageError(`flag needs an argument: --${name}`);
        value = argv[i] as string;
        i++;
      }
      if (def.long === 'help') help = true;
      flags.push(def.long, checkValue(def, value, `--${name}`));
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      let j = 1;
      while (j < a.length) {
        const c = a[j] as string;
        const def = c === 'h' && !byShort.has('h') ? HELP : byShort.get(c);
        if (def === undefined) throw new UsageError(`unknown shorthand flag: '${c}' in ${a}`);
        const shown = `-${c}, --${def.long}`;
        if (def.kind === 'bool') {
          if (a[j + 1] === '=') {
            flags.push(def.long, checkValue(def, a.slice(j + 2), shown));
            j = a.length;
          } else {
            flags.push(def.long, 'true');
            j++;
          }
          if (def.long === 'help') help = true;
          continue;
        }
        let value: string;
        if (j + 1 < a.length) value = a.slice(a[j + 1] === '=' ? j + 2 : j + 1);
        else {
          if (i >= argv.length) throw new UsageError(`flag needs an argument: '${c}' in -${c}`);
          value = argv[i] as string;
          i++;
        }
        flags.push(def.long, checkValue(def, value, shown));
        j = a.length;
      }
      continue;
    }
    args.push(a);
    if (options.stopAtPositional === true) {
      args.push(...argv.slice(i));
      break;
    }
  }
  return { flags, args, help };
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(' ')) {
      if (line !== '' && line.length + 1 + word.length > width) {
        out.push(line);
        line = word;
      } else line = line === '' ? word : `${line} ${word}`;
    }
    out.push(line);
  }
  return out;
}

/** The `Options:` block of a help text, docker's layout. */
export function formatFlags(defs: readonly FlagDef[]): string {
  const all = [...defs.filter((d) => d.hidden !== true), ...(defs.some((d) => d.long === 'help') ? [] : [HELP])];
  all.sort((a, b) => a.long.localeCompare(b.long));
  const heads = all.map((d) => {
    const type = d.kind === 'bool' ? '' : ` ${d.type ?? (d.kind === 'int' ? 'int' : d.kind)}`;
    return `${d.short !== undefined ? `  -${d.short}, ` : '      '}--${d.long}${type}`;
  });
  const col = Math.max(...heads.map((h) => h.length)) + 3;
  const lines: string[] = [];
  all.forEach((d, n) => {
    let help = d.help;
    if (d.default !== undefined && d.default !== false && d.default !== '') help += ` (default ${String(d.default)})`;
    const body = wrap(help, Math.max(30, 80 - col));
    lines.push(`${(heads[n] as string).padEnd(col)}${body[0] ?? ''}`);
    for (const more of body.slice(1)) lines.push(`${' '.repeat(col)}${more}`);
  });
  return lines.join('\n');
}
