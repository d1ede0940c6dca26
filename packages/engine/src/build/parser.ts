// The Dockerfile parser: parser directives, comments, line continuations,
// heredocs and instruction flags, then one typed record per instruction.
// Values are kept as written; expand.ts substitutes variables when a build
// reaches the instruction, as the builder does.
import { BerthError, ErrorKind } from '@berth/base';
import { Lexer, NO_VARS } from './lex.js';

export type EscapeChar = '\\' | '`';

export interface Directives {
  readonly escape: EscapeChar;
  /** `# syntax=`: recorded, not acted upon. */
  readonly syntax?: string;
  /** `# check=`: recorded, not acted upon. */
  readonly check?: string;
}

export interface Heredoc {
  readonly name: string;
  /** The lines up to the delimiter, each ending in a newline; tabs not stripped. */
  readonly content: string;
  /** False when any part of the delimiter word was quoted. */
  readonly expand: boolean;
  /** `<<-`: leading tabs are stripped from the content and the delimiter line. */
  readonly chomp: boolean;
  /** `3<<EOF`: the file descriptor written before `<<`, if any. */
  readonly fd?: number;
}

/** A command in exec (JSON) form, or in shell form as one string in args[0]. */
export interface CommandLine {
  readonly json: boolean;
  readonly args: readonly string[];
}

export interface KeyValue {
  readonly key: string;
  readonly value: string;
}

export interface ArgDecl {
  readonly name: string;
  readonly default?: string;
}

export type CopySource =
  | { readonly kind: 'path'; readonly path: string }
  | { readonly kind: 'heredoc'; readonly name: string; readonly content: string; readonly expand: boolean };

interface Base {
  /** 1-based line of the instruction's first line. */
  readonly startLine: number;
  /** 1-based line of its last line (continuations and heredocs included). */
  readonly endLine: number;
  /** The instruction as written, continuation lines joined. */
  readonly original: string;
}

export interface FromInstruction extends Base {
  readonly kind: 'FROM';
  readonly image: string;
  /** `AS name`, lower-cased. */
  readonly name?: string;
  readonly platform?: string;
}
export interface RunInstruction extends Base {
  readonly kind: 'RUN';
  readonly command: CommandLine;
  readonly heredocs: readonly Heredoc[];
  /** `--mount=` values as written. */
  readonly mounts: readonly string[];
  readonly network?: string;
  readonly security?: string;
  readonly devices: readonly string[];
}
export interface CmdInstruction extends Base {
  readonly kind: 'CMD';
  readonly command: CommandLine;
}
export interface EntrypointInstruction extends Base {
  readonly kind: 'ENTRYPOINT';
  readonly command: CommandLine;
}
export interface EnvInstruction extends Base {
  readonly kind: 'ENV';
  readonly pairs: readonly KeyValue[];
}
export interface LabelInstruction extends Base {
  readonly kind: 'LABEL';
  readonly pairs: readonly KeyValue[];
}
export interface ArgInstruction extends Base {
  readonly kind: 'ARG';
  readonly args: readonly ArgDecl[];
}
export interface ExposeInstruction extends Base {
  readonly kind: 'EXPOSE';
  readonly ports: readonly string[];
}
interface CopyLike extends Base {
  readonly sources: readonly CopySource[];
  readonly dest: string;
  readonly json: boolean;
  readonly chown?: string;
  readonly chmod?: string;
  readonly link: boolean;
  readonly excludes: readonly string[];
}
export interface CopyInstruction extends CopyLike {
  readonly kind: 'COPY';
  readonly from?: string;
  readonly parents: boolean;
}
export interface AddInstruction extends CopyLike {
  readonly kind: 'ADD';
  readonly keepGitDir: boolean;
  readonly checksum?: string;
  readonly unpack?: boolean;
}
export interface WorkdirInstruction extends Base {
  readonly kind: 'WORKDIR';
  readonly path: string;
}
export interface UserInstruction extends Base {
  readonly kind: 'USER';
  readonly user: string;
}
export interface VolumeInstruction extends Base {
  readonly kind: 'VOLUME';
  readonly json: boolean;
  readonly paths: readonly string[];
}
export interface StopSignalInstruction extends Base {
  readonly kind: 'STOPSIGNAL';
  readonly signal: string;
}
export interface HealthcheckInstruction extends Base {
  readonly kind: 'HEALTHCHECK';
  /** ["NONE"], ["CMD", ...args] or ["CMD-SHELL", command], as the image config stores it. */
  readonly test: readonly string[];
  /** Nanoseconds; 0 when not given (the runtime then uses HEALTHCHECK_DEFAULTS). */
  readonly interval: number;
  readonly timeout: number;
  readonly startPeriod: number;
  readonly startInterval: number;
  /** 0 when not given. */
  readonly retries: number;
}
export interface ShellInstruction extends Base {
  readonly kind: 'SHELL';
  readonly shell: readonly string[];
}
export interface OnbuildInstruction extends Base {
  readonly kind: 'ONBUILD';
  /** The trigger text as the image config's OnBuild stores it. */
  readonly expression: string;
  readonly trigger: Instruction;
}
export interface MaintainerInstruction extends Base {
  readonly kind: 'MAINTAINER';
  readonly maintainer: string;
}

export type Instruction =
  | FromInstruction
  | RunInstruction
  | CmdInstruction
  | EntrypointInstruction
  | EnvInstruction
  | LabelInstruction
  | ArgInstruction
  | ExposeInstruction
  | CopyInstruction
  | AddInstruction
  | WorkdirInstruction
  | UserInstruction
  | VolumeInstruction
  | StopSignalInstruction
  | HealthcheckInstruction
  | ShellInstruction
  | OnbuildInstruction
  | MaintainerInstruction;

export type InstructionKind = Instruction['kind'];

export interface Dockerfile {
  readonly directives: Directives;
  readonly instructions: readonly Instruction[];
  /** Non-fatal remarks (empty continuation lines), with their line. */
  readonly warnings: readonly { readonly line: number; readonly message: string }[];
}

export interface ParseOptions {
  /** The name used in error messages (`Dockerfile:7`); default `Dockerfile`. */
  readonly filename?: string;
}

/** Docker's defaults for options HEALTHCHECK leaves out, in nanoseconds. */
export const HEALTHCHECK_DEFAULTS = Object.freeze({
  interval: 30_000_000_000,
  timeout: 30_000_000_000,
  startPeriod: 0,
  startInterval: 5_000_000_000,
  retries: 3,
});

/** Largest Dockerfile accepted, in UTF-16 code units. */
export const MAX_DOCKERFILE_SIZE = 16 * 1024 * 1024;

/** A Dockerfile error that knows its lines; message `Dockerfile:7: detail`. */
export class DockerfileError extends BerthError {
  constructor(
    readonly detail: string,
    readonly startLine: number,
    readonly endLine: number = startLine,
    readonly filename: string = 'Dockerfile',
  ) {
    super(ErrorKind.InvalidArgument, startLine > 0 ? `${filename}:${startLine}: ${detail}` : `${filename}: ${detail}`);
  }
}

/** A parse failure inside one instruction, before its lines are known. */
class LineError extends Error {}

const DIRECTIVE_RE = /^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$/;
const KNOWN_DIRECTIVES = new Set(['syntax', 'escape', 'check']);
const HEREDOC_RE = /^(\d*)<<(-?)([^<]*)$/;
const HEREDOC_KINDS = new Set(['RUN', 'COPY', 'ADD']);
const STAGE_NAME_RE = /^[a-z][a-z0-9-_.]*$/;
const ws = (ch: string | undefined): boolean => ch !== undefined && /^\s$/u.test(ch);

function isComment(line: string): boolean {
  return line.trimStart().startsWith('#');
}

// ---------------------------------------------------------------------------
// Lines, directives, continuations, heredocs

interface RawInstruction {
  line: string;
  startLine: number;
  endLine: number;
  heredocs: Heredoc[];
}

/** Parses a Dockerfile. Throws DockerfileError naming the line. */
export function parseDockerfile(text: string, options: ParseOptions = {}): Dockerfile {
  const filename = options.filename ?? 'Dockerfile';
  if (text.length > MAX_DOCKERFILE_SIZE) {
    throw new DockerfileError(`file is too large (${text.length} bytes, at most ${MAX_DOCKERFILE_SIZE})`, 0, 0, filename);
  }
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i] ?? '';
    if (l.endsWith('\r')) lines[i] = l.slice(0, -1);
    if (l.includes('\0')) throw new DockerfileError('NUL byte in the Dockerfile', i + 1, i + 1, filename);
  }

  // Parser directives: only at the very top, each at most once.
  let escape: EscapeChar = '\\';
  let syntax: string | undefined;
  let check: string | undefined;
  const seen = new Set<string>();
  let n = 0;
  for (; n < lines.length; n++) {
    const m = DIRECTIVE_RE.exec(lines[n] ?? '');
    if (m === null) break;
    const key = (m[1] ?? '').toLowerCase();
    const value = m[2] ?? '';
    if (!KNOWN_DIRECTIVES.has(key)) break;
    if (seen.has(key)) throw new DockerfileError(`only one ${key} parser directive can be used`, n + 1, n + 1, filename);
    seen.add(key);
    if (key === 'escape') {
      if (value !== '\\' && value !== '`') {
        throw new DockerfileError(`invalid escape token '${value}' does not match \` or \\`, n + 1, n + 1, filename);
      }
      escape = value;
    } else if (key === 'syntax') syntax = value;
    else check = value;
  }

  const warnings: { line: number; message: string }[] = [];
  const contRe = new RegExp(`${escape === '\\' ? '\\\\' : '`'}[ \\t]*$`);
  const trimCont = (s: string): [string, boolean] => {
    const m = contRe.exec(s);
    return m === null ? [s, true] : [s.slice(0, m.index), false];
  };
  const raws: RawInstruction[] = [];
  let i = 0;
  while (i < lines.length) {
    const first = lines[i] ?? '';
    const startLine = ++i;
    if (isComment(first)) continue;
    let [line, done] = trimCont(first.trimStart());
    if (done && line.trim() === '') continue;
    let emptyCont = false;
    while (!done && i < lines.length) {
      const next = lines[i] ?? '';
      i++;
      if (isComment(next)) continue;
      if (next.trim() === '') {
        emptyCont = true;
        continue;
      }
      const [part, end] = trimCont(next);
      line += part;
      done = end;
    }
    if (emptyCont) warnings.push({ line: startLine, message: 'Empty continuation line found in: ' + line.trim() });
    if (line.trim() === '') continue;
    const heredocs: Heredoc[] = [];
    const kw = (/^\S+/.exec(line.trim())?.[0] ?? '').toUpperCase();
    if (HEREDOC_KINDS.has(kw) && line.includes('<<') && !isJsonForm(line, kw)) {
      for (const h of heredocsFromLine(line)) {
        let content = '';
        let terminated = false;
        while (i < lines.length) {
          const l = lines[i] ?? '';
          i++;
          const candidate = h.chomp ? l.replace(/^\t+/, '') : l;
          if (candidate === h.name) {
            terminated = true;
            break;
          }
          content += `${l}\n`;
        }
        if (!terminated) {
          throw new DockerfileError(`unterminated heredoc ${h.name}`, startLine, i, filename);
        }
        heredocs.push({ ...h, content });
      }
    }
    raws.push({ line: line.trim(), startLine, endLine: i, heredocs });
  }

  const instructions: Instruction[] = [];
  for (const r of raws) {
    try {
      instructions.push(parseInstruction(r.line, r.startLine, r.endLine, r.heredocs, escape, false));
    } catch (err) {
      if (err instanceof LineError) throw new DockerfileError(err.message, r.startLine, r.endLine, filename);
      if (err instanceof BerthError) throw new DockerfileError(err.message, r.startLine, r.endLine, filename);
      throw err;
    }
  }
  const directives: Directives = {
    escape,
    ...(syntax !== undefined ? { syntax } : {}),
    ...(check !== undefined ? { check } : {}),
  };
  return { directives, instructions, warnings };
}

function isJsonForm(line: string, kw: string): boolean {
  const rest = line.trim().slice(kw.length);
  const { rest: afterFlags } = extractFlags(rest);
  return parseJsonArray(afterFlags) !== undefined;
}

/** The heredoc markers in a line, in order, without content. */
export function heredocsFromLine(line: string): Omit<Heredoc, 'content'>[] {
  let words: string[];
  try {
    words = new Lexer('\\', { rawQuotes: true, rawEscapes: true }).processWords(line, NO_VARS);
  } catch {
    return [];
  }
  const out: Omit<Heredoc, 'content'>[] = [];
  for (const w of words) {
    const h = parseHeredocWord(w);
    if (h !== undefined) out.push(h);
  }
  return out;
}

/** `<<EOF`, `<<-"EOF"`, `3<<EOF` as one word; undefined if not a heredoc. */
export function parseHeredocWord(word: string): Omit<Heredoc, 'content'> | undefined {
  const m = HEREDOC_RE.exec(word);
  if (m === null) return undefined;
  const rest = m[3] ?? '';
  if (rest === '') return undefined;
  let plain: string[];
  let raw: string[];
  try {
    plain = new Lexer('\\').processWords(rest, NO_VARS);
    raw = new Lexer('\\', { rawQuotes: true }).processWords(rest, NO_VARS);
  } catch {
    return undefined;
  }
  if (plain.length !== 1 || raw.length !== 1) return undefined;
  const name = plain[0] ?? '';
  const h: { name: string; expand: boolean; chomp: boolean; fd?: number } = {
    name,
    expand: name === raw[0],
    chomp: m[2] === '-',
  };
  if ((m[1] ?? '') !== '') h.fd = Number(m[1]);
  return h;
}

/** Strips leading tabs from every line, as `<<-` asks. */
export function chompHeredoc(content: string): string {
  return content.replace(/^\t+/gm, '');
}

// ---------------------------------------------------------------------------
// Words

/** Leading `--flag[=value]` words (quotes and backslashes processed) and the rest. */
function extractFlags(line: string): { flags: string[]; rest: string } {
  const flags: string[] = [];
  let pos = 0;
  const len = line.length;
  for (;;) {
    while (pos < len && ws(line[pos])) pos++;
    if (pos >= len) return { flags, rest: '' };
    if (!(line[pos] === '-' && line[pos + 1] === '-')) return { flags, rest: line.slice(pos) };
    let word = '';
    let quote = '';
    let blankOk = false;
    for (; pos < len; pos++) {
      let ch = line[pos] ?? '';
      if (quote === '') {
        if (ws(ch)) break;
        if (ch === '"' || ch === "'") {
          quote = ch;
          blankOk = true;
          continue;
        }
      } else if (ch === quote) {
        quote = '';
        continue;
      }
      if (ch === '\\') {
        if (pos + 1 === len) continue;
        ch = line[++pos] ?? '';
      }
      word += ch;
    }
    if (word === '--') return { flags, rest: line.slice(pos).trimStart() };
    if (blankOk || word.length > 0) flags.push(word);
  }
}

/** Splits on whitespace keeping quotes and escapes (for name=value lists). */
export function splitWords(rest: string, escape: string): string[] {
  const words: string[] = [];
  const chars = Array.from(rest);
  let word = '';
  let inWord = false;
  let quote = '';
  let blankOk = false;
  for (let i = 0; i < chars.length; i++) {
    let ch = chars[i] ?? '';
    if (!inWord) {
      if (ws(ch)) continue;
      inWord = true;
    }
    if (quote === '') {
      if (ws(ch)) {
        if (blankOk || word.length > 0) words.push(word);
        word = '';
        blankOk = false;
        inWord = false;
        continue;
      }
      if (ch === '"' || ch === "'") {
        quote = ch;
        blankOk = true;
      } else if (ch === escape) {
        if (i + 1 === chars.length) continue;
        word += ch;
        ch = chars[++i] ?? '';
      }
      word += ch;
      continue;
    }
    if (ch === quote) quote = '';
    else if (ch === escape && quote !== "'") {
      if (i + 1 === chars.length) {
        quote = '';
        continue;
      }
      word += ch;
      ch = chars[++i] ?? '';
    }
    word += ch;
  }
  if (inWord && (blankOk || word.length > 0)) words.push(word);
  return words;
}

function splitWhitespace(rest: string): string[] {
  return rest.split(/\s+/u).filter((w) => w !== '');
}

function parseJsonArray(rest: string): string[] | undefined {
  const t = rest.trimStart();
  if (!t.startsWith('[')) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(t);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) return undefined;
  return v as string[];
}

function maybeJson(rest: string): CommandLine {
  const arr = parseJsonArray(rest);
  if (arr !== undefined) return { json: true, args: arr };
  return { json: false, args: rest === '' ? [] : [rest] };
}

function maybeJsonList(rest: string): { json: boolean; args: string[] } {
  const arr = parseJsonArray(rest);
  if (arr !== undefined) return { json: true, args: arr };
  return { json: false, args: splitWhitespace(rest) };
}

// ---------------------------------------------------------------------------
// Flags

type FlagType = 'string' | 'bool' | 'strings';

class Flags {
  private readonly values = new Map<string, string[]>();
  constructor(words: string[], spec: Record<string, FlagType>) {
    for (const w of words) {
      if (!w.startsWith('--')) throw new LineError(`arg should start with -- : ${w}`);
      const body = w.slice(2);
      const eq = body.indexOf('=');
      const name = eq < 0 ? body : body.slice(0, eq);
      const value = eq < 0 ? undefined : body.slice(eq + 1);
      const type = Object.hasOwn(spec, name) ? spec[name] : undefined;
      if (type === undefined) throw new LineError(`unknown flag: ${name}`);
      const prev = this.values.get(name);
      if (prev !== undefined && type !== 'strings') throw new LineError(`duplicate flag specified: ${name}`);
      if (type === 'bool') {
        if (value === '') throw new LineError(`missing a value on flag: ${name}`);
        const v = (value ?? 'true').toLowerCase();
        if (v !== 'true' && v !== 'false') {
          throw new LineError(`expecting boolean value for flag ${name}, not: ${value ?? ''}`);
        }
        this.values.set(name, [v]);
      } else {
        if (value === undefined) throw new LineError(`missing a value on flag: ${name}`);
        this.values.set(name, [...(prev ?? []), value]);
      }
    }
  }
  string(name: string): string | undefined {
    return this.values.get(name)?.[0];
  }
  bool(name: string): boolean | undefined {
    const v = this.values.get(name)?.[0];
    return v === undefined ? undefined : v === 'true';
  }
  strings(name: string): string[] {
    return this.values.get(name) ?? [];
  }
}

const FLAG_SPECS: Record<string, Record<string, FlagType>> = {
  FROM: { platform: 'string' },
  RUN: { mount: 'strings', network: 'string', security: 'string', device: 'strings' },
  COPY: { from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'strings' },
  ADD: {
    chown: 'string',
    chmod: 'string',
    link: 'bool',
    'keep-git-dir': 'bool',
    checksum: 'string',
    exclude: 'strings',
    unpack: 'bool',
  },
  HEALTHCHECK: {
    interval: 'string',
    timeout: 'string',
    'start-period': 'string',
    'start-interval': 'string',
    retries: 'string',
  },
};

// ---------------------------------------------------------------------------
// Instructions

const KINDS: ReadonlySet<string> = new Set<InstructionKind>([
  'FROM', 'RUN', 'CMD', 'ENTRYPOINT', 'ENV', 'LABEL', 'ARG', 'EXPOSE', 'COPY', 'ADD',
  'WORKDIR', 'USER', 'VOLUME', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL', 'ONBUILD', 'MAINTAINER',
]);

function parseInstruction(
  line: string,
  startLine: number,
  endLine: number,
  heredocs: Heredoc[],
  escape: EscapeChar,
  inOnbuild: boolean,
): Instruction {
  const m = /^(\S+)(?:\s+([\s\S]*))?$/u.exec(line);
  const word = m?.[1] ?? '';
  const kind = word.toUpperCase();
  if (!KINDS.has(kind)) throw new LineError(`unknown instruction: ${kind}`);
  const afterName = m?.[2] ?? '';
  const { flags: flagWords, rest } = extractFlags(afterName);
  const flags = new Flags(flagWords, FLAG_SPECS[kind] ?? {});
  const base = { startLine, endLine, original: line };
  const k = kind as InstructionKind;
  switch (k) {
    case 'FROM': {
      const args = splitWhitespace(rest);
      let name: string | undefined;
      if (args.length === 3 && (args[1] ?? '').toLowerCase() === 'as') {
        name = (args[2] ?? '').toLowerCase();
        if (!STAGE_NAME_RE.test(name)) {
          throw new LineError(
            `invalid name for build stage: ${JSON.stringify(args[2])}, name can't start with a number or contain symbols`,
          );
        }
      } else if (args.length !== 1) {
        throw new LineError('FROM requires either one or three arguments');
      }
      const platform = flags.string('platform');
      return {
        kind: k,
        ...base,
        image: args[0] ?? '',
        ...(name !== undefined ? { name } : {}),
        ...(platform !== undefined ? { platform } : {}),
      };
    }
    case 'RUN': {
      const command = maybeJson(rest);
      if (command.args.length === 0 && !command.json) throw new LineError('RUN requires at least one argument');
      const network = flags.string('network');
      const security = flags.string('security');
      if (network !== undefined && !['default', 'none', 'host'].includes(network)) {
        throw new LineError(`unsupported network mode ${JSON.stringify(network)}`);
      }
      if (security !== undefined && !['sandbox', 'insecure'].includes(security)) {
        throw new LineError(`unsupported security mode ${JSON.stringify(security)}`);
      }
      return {
        kind: k,
        ...base,
        command,
        heredocs,
        mounts: flags.strings('mount'),
        devices: flags.strings('device'),
        ...(network !== undefined ? { network } : {}),
        ...(security !== undefined ? { security } : {}),
      };
    }
    case 'CMD':
    case 'ENTRYPOINT': {
      const command = maybeJson(rest);
      if (command.args.length === 0 && !command.json) throw new LineError(`${k} requires at least one argument`);
      return k === 'CMD' ? { kind: k, ...base, command } : { kind: k, ...base, command };
    }
    case 'ENV':
    case 'LABEL': {
      const pairs = parseNameValues(rest, k, escape);
      return k === 'ENV' ? { kind: k, ...base, pairs } : { kind: k, ...base, pairs };
    }
    case 'ARG': {
      const words = splitWords(rest, escape);
      if (words.length === 0) throw new LineError('ARG requires at least one argument');
      const args = words.map((w): ArgDecl => {
        const eq = w.indexOf('=');
        if (eq < 0) return { name: w };
        if (eq === 0) throw new LineError('ARG names can not be blank');
        return { name: w.slice(0, eq), default: w.slice(eq + 1) };
      });
      return { kind: k, ...base, args };
    }
    case 'EXPOSE': {
      const ports = splitWhitespace(rest);
      if (ports.length === 0) throw new LineError('EXPOSE requires at least one argument');
      return { kind: k, ...base, ports };
    }
    case 'COPY':
    case 'ADD':
      return parseCopy(k, base, rest, flags, heredocs);
    case 'WORKDIR':
    case 'USER':
    case 'STOPSIGNAL':
    case 'MAINTAINER': {
      const value = rest.trim();
      if (value === '') throw new LineError(`${k} requires exactly one argument`);
      if (k === 'WORKDIR') return { kind: k, ...base, path: value };
      if (k === 'USER') return { kind: k, ...base, user: value };
      if (k === 'STOPSIGNAL') {
        if (/\s/u.test(value)) throw new LineError('STOPSIGNAL requires exactly one argument');
        return { kind: k, ...base, signal: value };
      }
      return { kind: k, ...base, maintainer: value };
    }
    case 'VOLUME': {
      const { json, args } = maybeJsonList(rest);
      if (args.length === 0) throw new LineError('VOLUME requires at least one argument');
      for (const a of args) if (a.trim() === '') throw new LineError('VOLUME specified can not be an empty string');
      return { kind: k, ...base, json, paths: args };
    }
    case 'HEALTHCHECK':
      return parseHealthcheck(base, rest, flags, flagWords.length);
    case 'SHELL': {
      const c = maybeJson(rest);
      if (c.args.length === 0) throw new LineError('SHELL requires at least one argument');
      if (!c.json) throw new LineError('SHELL requires the arguments to be in JSON form');
      return { kind: k, ...base, shell: c.args };
    }
    case 'ONBUILD': {
      if (inOnbuild) throw new LineError('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
      const expression = afterName.trim();
      if (expression === '') throw new LineError('ONBUILD requires at least one argument');
      const triggerKind = (/^\S+/.exec(expression)?.[0] ?? '').toUpperCase();
      if (triggerKind === 'ONBUILD') throw new LineError('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
      if (triggerKind === 'FROM' || triggerKind === 'MAINTAINER') {
        throw new LineError(`${triggerKind} isn't allowed as an ONBUILD trigger`);
      }
      const trigger = parseInstruction(expression, startLine, endLine, [], escape, true);
      return { kind: k, ...base, expression, trigger };
    }
  }
}

/** Parses one ONBUILD trigger stored in a base image's config. */
export function parseTrigger(expression: string, escape: EscapeChar = '\\'): Instruction {
  try {
    return parseInstruction(expression.trim(), 0, 0, [], escape, true);
  } catch (err) {
    if (err instanceof LineError) throw new DockerfileError(err.message, 0, 0, 'ONBUILD trigger');
    throw err;
  }
}

function parseNameValues(rest: string, kind: 'ENV' | 'LABEL', escape: string): KeyValue[] {
  const words = splitWords(rest, escape);
  if (words.length === 0) throw new LineError(`${kind} requires at least one argument`);
  const first = words[0] ?? '';
  if (!first.includes('=')) {
    const m = /^(\S+)\s+([\s\S]*)$/u.exec(rest.trim());
    if (m === null || (m[2] ?? '') === '') throw new LineError(`${kind} must have two arguments`);
    return [{ key: m[1] ?? '', value: m[2] ?? '' }];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq < 0) {
      throw new LineError(`Syntax error - can't find = in ${JSON.stringify(w)}. Must be of the form: name=value`);
    }
    if (eq === 0) throw new LineError(`${kind} names can not be blank`);
    return { key: w.slice(0, eq), value: w.slice(eq + 1) };
  });
}

function parseCopy(
  kind: 'COPY' | 'ADD',
  base: Base,
  rest: string,
  flags: Flags,
  heredocs: Heredoc[],
): CopyInstruction | AddInstruction {
  const { json, args } = maybeJsonList(rest);
  if (args.length < 2) {
    throw new LineError(
      `${kind} requires at least two arguments, but only one was provided. Destination could not be determined.`,
    );
  }
  const dest = args[args.length - 1] ?? '';
  if (!json && parseHeredocWord(dest) !== undefined) {
    throw new LineError(`${kind} cannot accept a heredoc as a destination`);
  }
  const byName = new Map(heredocs.map((h) => [h.name, h]));
  const sources: CopySource[] = args.slice(0, -1).map((src): CopySource => {
    const h = json ? undefined : parseHeredocWord(src);
    if (h === undefined) return { kind: 'path', path: src };
    const found = byName.get(h.name);
    const content = found?.content ?? '';
    return { kind: 'heredoc', name: h.name, content: h.chomp ? chompHeredoc(content) : content, expand: h.expand };
  });
  const chown = flags.string('chown');
  const chmod = flags.string('chmod');
  const common = {
    ...base,
    sources,
    dest,
    json,
    link: flags.bool('link') ?? false,
    excludes: flags.strings('exclude'),
    ...(chown !== undefined ? { chown } : {}),
    ...(chmod !== undefined ? { chmod } : {}),
  };
  if (kind === 'COPY') {
    const from = flags.string('from');
    return { kind, ...common, parents: flags.bool('parents') ?? false, ...(from !== undefined ? { from } : {}) };
  }
  const checksum = flags.string('checksum');
  const unpack = flags.bool('unpack');
  return {
    kind,
    ...common,
    keepGitDir: flags.bool('keep-git-dir') ?? false,
    ...(checksum !== undefined ? { checksum } : {}),
    ...(unpack !== undefined ? { unpack } : {}),
  };
}

function parseHealthcheck(base: Base, rest: string, flags: Flags, nflags: number): HealthcheckInstruction {
  const m = /^(\S+)\s*([\s\S]*)$/u.exec(rest);
  if (m === null) throw new LineError('HEALTHCHECK requires at least one argument');
  const type = (m[1] ?? '').toUpperCase();
  const args = m[2] ?? '';
  const none = { interval: 0, timeout: 0, startPeriod: 0, startInterval: 0, retries: 0 };
  if (type === 'NONE') {
    if (args.trim() !== '') throw new LineError('HEALTHCHECK NONE takes no arguments');
    if (nflags > 0) throw new LineError('HEALTHCHECK NONE takes no options');
    return { kind: 'HEALTHCHECK', ...base, test: ['NONE'], ...none };
  }
  if (type !== 'CMD') throw new LineError(`Unknown type ${JSON.stringify(type)} in HEALTHCHECK (try CMD)`);
  const cmd = maybeJson(args);
  if (cmd.args.length === 0) throw new LineError('Missing command after HEALTHCHECK CMD');
  const test = cmd.json ? ['CMD', ...cmd.args] : ['CMD-SHELL', cmd.args[0] ?? ''];
  let retries = 0;
  const r = flags.string('retries');
  if (r !== undefined) {
    if (!/^[+-]?\d+$/.test(r)) throw new LineError(`strconv.ParseInt: parsing ${JSON.stringify(r)}: invalid syntax`);
    retries = Number(r);
    if (retries < 0) throw new LineError(`--retries cannot be negative (${retries})`);
    if (retries > 2147483647) throw new LineError(`strconv.ParseInt: parsing ${JSON.stringify(r)}: value out of range`);
  }
  return {
    kind: 'HEALTHCHECK',
    ...base,
    test,
    interval: interval(flags, 'interval'),
    timeout: interval(flags, 'timeout'),
    startPeriod: interval(flags, 'start-period'),
    startInterval: interval(flags, 'start-interval'),
    retries,
  };
}

function interval(flags: Flags, name: string): number {
  const s = flags.string(name);
  if (s === undefined || s === '') return 0;
  let d: number;
  try {
    d = parseDuration(s);
  } catch (err) {
    throw new LineError((err as Error).message);
  }
  if (d === 0) return 0;
  if (d < 1_000_000) throw new LineError(`Interval ${JSON.stringify(name)} cannot be less than 1ms`);
  return d;
}

const UNITS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Go's time.ParseDuration, in nanoseconds. */
export function parseDuration(s: string): number {
  const bad = (): Error => new Error(`time: invalid duration ${JSON.stringify(s)}`);
  let rest = s;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    if (rest[0] === '-') sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') throw bad();
  let total = 0;
  while (rest !== '') {
    const num = /^(\d*)(?:\.(\d*))?/.exec(rest);
    const int = num?.[1] ?? '';
    const frac = num?.[2] ?? '';
    if (int === '' && frac === '') throw bad();
    rest = rest.slice(num?.[0].length ?? 0);
    const unit = /^[^0-9.]*/.exec(rest)?.[0] ?? '';
    if (unit === '') throw new Error(`time: missing unit in duration ${JSON.stringify(s)}`);
    const mult = UNITS[unit];
    if (mult === undefined) throw new Error(`time: unknown unit ${JSON.stringify(unit)} in duration ${JSON.stringify(s)}`);
    total += Number(`${int || '0'}.${frac || '0'}`) * mult;
    rest = rest.slice(unit.length);
  }
  if (total > 2 ** 63 - 1) throw new Error(`time: invalid duration ${JSON.stringify(s)}`);
  return sign * Math.round(total);
}
