// Variable expansion as the builder does it when it reaches an instruction:
// which instructions expand and how (one word, or split into words), the
// ARG/ENV scopes of a stage, the global ARGs before the first FROM, the
// predefined proxy args and the build args nobody consumed.
import type {
  ArgDecl,
  ArgInstruction,
  CopySource,
  EscapeChar,
  Instruction,
  KeyValue,
} from './parser.js';
import { Lexer, lookupIn } from './lex.js';
import type { VarLookup } from './lex.js';

export { Lexer, lookupIn, NO_VARS } from './lex.js';
export type { VarLookup, LexOptions, WordResult } from './lex.js';

/** Args usable without an ARG line, kept out of history unless declared. */
export const PROXY_ARGS: readonly string[] = Object.freeze([
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy',
  'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy',
]);
const PROXY_SET: ReadonlySet<string> = new Set(PROXY_ARGS);

/** Instructions whose arguments the builder expands (ONBUILD triggers are not). */
export const EXPANDING_INSTRUCTIONS: ReadonlySet<Instruction['kind']> = new Set<Instruction['kind']>([
  'ADD', 'COPY', 'ENV', 'EXPOSE', 'FROM', 'LABEL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
]);

/**
 * Expands an instruction's words with the variables in scope, as the builder
 * does when it runs it: one word each for paths, names and values, split
 * into words for EXPOSE. RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD,
 * MAINTAINER and ARG are returned unchanged (the shell, or the scope, does
 * their substitution). Heredoc sources of COPY/ADD expand when their
 * delimiter was unquoted, keeping quotes and escapes.
 */
export function expandInstruction<T extends Instruction>(inst: T, vars: VarLookup, escape: EscapeChar = '\\'): T {
  const lex = new Lexer(escape);
  const word = (w: string): string => lex.processWord(w, vars);
  switch (inst.kind) {
    case 'FROM': {
      const platform = inst.platform === undefined ? {} : { platform: word(inst.platform) };
      return { ...inst, image: word(inst.image), ...platform };
    }
    case 'ENV':
    case 'LABEL':
      return { ...inst, pairs: inst.pairs.map((p): KeyValue => ({ key: word(p.key), value: word(p.value) })) };
    case 'EXPOSE':
      return { ...inst, ports: inst.ports.flatMap((p) => lex.processWords(p, vars)) };
    case 'WORKDIR':
      return { ...inst, path: word(inst.path) };
    case 'USER':
      return { ...inst, user: word(inst.user) };
    case 'STOPSIGNAL':
      return { ...inst, signal: word(inst.signal) };
    case 'VOLUME':
      return { ...inst, paths: inst.paths.map(word) };
    case 'COPY':
    case 'ADD': {
      const raw = lex.with({ rawQuotes: true, rawEscapes: true });
      const sources = inst.sources.map((s): CopySource =>
        s.kind === 'path'
          ? { kind: 'path', path: word(s.path) }
          : s.expand
            ? { ...s, content: raw.processWord(s.content, vars) }
            : s,
      );
      const opt = (k: 'chown' | 'chmod' | 'from' | 'checksum'): Record<string, string> => {
        const v = (inst as Partial<Record<typeof k, string>>)[k];
        return v === undefined ? {} : { [k]: word(v) };
      };
      return {
        ...inst,
        sources,
        dest: word(inst.dest),
        ...opt('chown'),
        ...opt('chmod'),
        ...opt('from'),
        ...opt('checksum'),
        excludes: inst.excludes.map(word),
      };
    }
    default:
      return inst;
  }
}

/** Expands a heredoc body meant for a shell (RUN keeps it to the shell; this is for COPY). */
export function expandHeredoc(content: string, vars: VarLookup, escape: EscapeChar = '\\'): string {
  return new Lexer(escape, { rawQuotes: true, rawEscapes: true }).processWord(content, vars);
}

// ---------------------------------------------------------------------------
// Scopes

/**
 * The `--build-arg` values of one build, and which of them an ARG declared.
 * A value of undefined (`--build-arg NAME` with no value and no such
 * variable in the client's environment) declares the name without a value.
 */
export class BuildArgs {
  private readonly given: ReadonlyMap<string, string | undefined>;
  private readonly consumed = new Set<string>();

  constructor(given: Readonly<Record<string, string | undefined>> | ReadonlyMap<string, string | undefined> = {}) {
    this.given = given instanceof Map ? new Map(given) : new Map(Object.entries(given));
  }

  has(name: string): boolean {
    return this.given.has(name) && this.given.get(name) !== undefined;
  }
  get(name: string): string | undefined {
    return this.given.get(name);
  }
  /** Marks a declared name as consumed. */
  consume(name: string): void {
    if (this.given.has(name)) this.consumed.add(name);
  }
  /** Given proxy args with values, in PROXY_ARGS order. */
  proxies(): [string, string][] {
    const out: [string, string][] = [];
    for (const p of PROXY_ARGS) {
      const v = this.given.get(p);
      if (v !== undefined) out.push([p, v]);
    }
    return out;
  }
  /** Given args no ARG declared, proxies excepted, sorted. */
  unconsumed(): string[] {
    return [...this.given.keys()].filter((k) => !this.consumed.has(k) && !PROXY_SET.has(k)).sort();
  }
  /** Docker's warning for unconsumed args, or undefined when all were consumed. */
  warning(): string | undefined {
    const left = this.unconsumed();
    return left.length === 0 ? undefined : `[Warning] One or more build-args [${left.join(' ')}] were not consumed`;
  }
}

/**
 * The global scope: the ARGs before the first FROM, usable in FROM lines
 * (and as defaults for a stage's value-less ARG of the same name). builtins
 * are predefined global args such as TARGETPLATFORM.
 */
export function globalScope(
  args: readonly ArgInstruction[],
  buildArgs: BuildArgs,
  escape: EscapeChar = '\\',
  builtins: Readonly<Record<string, string>> = {},
): Map<string, string | undefined> {
  const scope = new Map<string, string | undefined>(Object.entries(builtins));
  const lex = new Lexer(escape);
  for (const inst of args) {
    for (const a of inst.args) {
      scope.set(a.name, resolveArg(a, buildArgs, (n) => scope.get(n), lex, undefined));
    }
  }
  return scope;
}

function resolveArg(
  a: ArgDecl,
  buildArgs: BuildArgs,
  vars: VarLookup,
  lex: Lexer,
  fromGlobal: string | undefined,
): string | undefined {
  buildArgs.consume(a.name);
  if (buildArgs.has(a.name)) return buildArgs.get(a.name);
  if (a.default !== undefined) return lex.processWord(a.default, vars);
  return fromGlobal;
}

/**
 * The variables of one stage as it proceeds: the image's ENV (base image or
 * parent stage), ENV lines, and declared ARGs. ENV wins over ARG of the same
 * name. Copy it with fork() for a stage based on this one.
 */
export class StageScope {
  private readonly env: Map<string, string>;
  private readonly args: Map<string, string | undefined>;
  private readonly lex: Lexer;

  constructor(
    private readonly buildArgs: BuildArgs,
    private readonly globals: ReadonlyMap<string, string | undefined>,
    imageEnv: readonly string[] = [],
    readonly escape: EscapeChar = '\\',
    inheritedArgs: ReadonlyMap<string, string | undefined> = new Map(),
  ) {
    this.env = new Map();
    for (const kv of imageEnv) {
      const eq = kv.indexOf('=');
      if (eq < 0) this.env.set(kv, '');
      else this.env.set(kv.slice(0, eq), kv.slice(eq + 1));
    }
    this.args = new Map(inheritedArgs);
    this.lex = new Lexer(escape);
  }

  /** A scope for a stage built FROM this one: same ENV and ARGs. */
  fork(): StageScope {
    return new StageScope(this.buildArgs, this.globals, this.envList(), this.escape, this.args);
  }

  /** The lookup used to expand this stage's instructions. */
  readonly lookup: VarLookup = (name) => {
    if (this.env.has(name)) return this.env.get(name);
    return this.args.get(name);
  };

  /** Applies ARG: declares each name with its value (build arg, default, global). */
  declare(inst: ArgInstruction): void {
    for (const a of inst.args) {
      this.args.set(a.name, resolveArg(a, this.buildArgs, this.lookup, this.lex, this.globals.get(a.name)));
    }
  }

  /** Applies ENV: every value sees the variables as they were before the line. */
  setEnv(pairs: readonly KeyValue[]): void {
    for (const p of pairs) this.env.set(p.key, p.value);
  }

  /**
   * Tracks ARG and ENV (expanding ENV first) for an instruction and returns
   * it expanded with the scope before it.
   */
  apply<T extends Instruction>(inst: T): T {
    if (inst.kind === 'ARG') {
      this.declare(inst);
      return inst;
    }
    const out = expandInstruction(inst, this.lookup, this.escape);
    if (out.kind === 'ENV') this.setEnv(out.pairs);
    return out;
  }

  /** The image ENV, `KEY=value`, in the order first set. */
  envList(): string[] {
    return [...this.env].map(([k, v]) => `${k}=${v}`);
  }

  /** Declared ARG values (those with a value), in declaration order. */
  argValues(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [k, v] of this.args) if (v !== undefined) out.set(k, v);
    return out;
  }

  /**
   * The build-time variables a RUN gets on top of the image ENV, and those
   * its history line records: declared args with a value not shadowed by
   * ENV, plus the given proxy args (in env only, unless declared). Sorted.
   */
  runArgs(): { env: string[]; history: string[] } {
    const history: string[] = [];
    for (const [k, v] of this.argValues()) if (!this.env.has(k)) history.push(`${k}=${v}`);
    const env = [...history];
    for (const [k, v] of this.buildArgs.proxies()) {
      if (!this.args.has(k) && !this.env.has(k)) env.push(`${k}=${v}`);
    }
    return { env: env.sort(), history: history.sort() };
  }
}

/** A lookup over `KEY=value` strings. */
export function lookupEnvList(env: readonly string[]): VarLookup {
  const m = new Map<string, string>();
  for (const kv of env) {
    const eq = kv.indexOf('=');
    m.set(eq < 0 ? kv : kv.slice(0, eq), eq < 0 ? '' : kv.slice(eq + 1));
  }
  return lookupIn(m);
}
