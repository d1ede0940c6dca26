import { invalid } from '@berth/base';

export interface FlagSpec {
  /** Long name, without dashes. */
  name: string;
  aliases?: string[];
  /** Takes a value (else a boolean). */
  value?: boolean;
  /** May be given several times (values collected in order). */
  repeat?: boolean;
}

export interface Parsed {
  flags: Map<string, string[]>;
  positionals: string[];
}

/**
 * Parse flags the way runc's command line accepts them: `-f`, `--flag`,
 * `-flag` (single dash long names), `--flag=value`, `--flag value`, grouped
 * single-letter booleans (`-dt`), and `--` ending the flags. With
 * `stopAtPositional`, everything after the first positional is positional
 * (exec's command and its arguments).
 */
export function parseArgs(argv: string[], specs: FlagSpec[], stopAtPositional = false): Parsed {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) {
    byName.set(s.name, s);
    for (const a of s.aliases ?? []) byName.set(a, s);
  }
  const flags = new Map<string, string[]>();
  const positionals: string[] = [];
  const set = (s: FlagSpec, v: string): void => {
    const prev = flags.get(s.name);
    if (prev && s.repeat) prev.push(v);
    else flags.set(s.name, [v]);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      positionals.push(a);
      if (stopAtPositional) {
        positionals.push(...argv.slice(i + 1));
        break;
      }
      continue;
    }
    const body = a.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    let spec = byName.get(name);
    if (!spec && !a.startsWith('--') && eq < 0 && name.length > 1) {
      // grouped short booleans: -dt
      const letters = [...name].map((c) => byName.get(c));
      if (letters.every((l) => l && !l.value)) {
        for (const l of letters) set(l as FlagSpec, 'true');
        continue;
      }
    }
    if (!spec) throw invalid(`flag provided but not defined: -${name}`);
    if (spec.value) {
      let v: string | undefined;
      if (eq >= 0) v = body.slice(eq + 1);
      else {
        v = argv[i + 1];
        i++;
      }
      if (v === undefined) throw invalid(`flag needs an argument: -${name}`);
      set(spec, v);
    } else {
      const v = eq >= 0 ? body.slice(eq + 1) : 'true';
      if (v !== 'true' && v !== 'false') throw invalid(`invalid boolean value "${v}" for -${name}`);
      set(spec, v);
    }
  }
  return { flags, positionals };
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name);
  return v ? v[v.length - 1] : undefined;
}

export function strs(p: Parsed, name: string): string[] {
  return p.flags.get(name) ?? [];
}

export function bool(p: Parsed, name: string): boolean {
  return str(p, name) === 'true';
}

export function int(p: Parsed, name: string, dflt: number): number {
  const v = str(p, name);
  if (v === undefined) return dflt;
  if (!/^-?\d+$/.test(v)) throw invalid(`invalid value "${v}" for flag -${name}: parse error`);
  return Number(v);
}

/** Exactly n positionals, with runc's wording when missing. */
export function need(p: Parsed, cmd: string, n: number, what = 'container id'): string[] {
  if (p.positionals.length < n) {
    throw invalid(`"${cmd}" requires a minimum of ${n} argument${n > 1 ? 's' : ''}${n === 1 ? ` (${what})` : ''}`);
  }
  return p.positionals;
}
