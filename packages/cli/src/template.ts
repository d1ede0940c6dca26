/**
 * A subset of Go's text/template, enough for docker's `--format` strings:
 * text and `{{ }}` actions with `-` trim markers; fields `.A.B`, `.`, `$`, variables;
 * string, number and boolean literals; pipelines with `|`; parenthesised
 * pipelines; `if`/`else if`/`else`/`end`, `range` (with `$k, $v :=`), `with`;
 * the functions docker adds (json, join, split, upper, lower, title, truncate,
 * pad, println) and Go's builtins (index, len, eq, ne, lt, le, gt, ge, and, or,
 * not, print, printf, slice). Methods are functions stored on the value:
 * `{{.Label "k"}}` calls the `Label` property with "k".
 */

export class TemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateError';
  }
}

type Tok =
  | { t: 'field'; path: string[] }
  | { t: 'var'; name: string; path: string[] }
  | { t: 'str'; v: string }
  | { t: 'num'; v: number }
  | { t: 'ident'; v: string }
  | { t: 'lparen' | 'rparen' | 'pipe' | 'decl' | 'assign' | 'comma' };

type Operand =
  | { k: 'field'; path: string[] }
  | { k: 'var'; name: string; path: string[] }
  | { k: 'lit'; v: unknown }
  | { k: 'fn'; name: string }
  | { k: 'pipe'; p: Pipeline };

interface Command {
  readonly operands: Operand[];
}
interface Pipeline {
  readonly decl: string[];
  readonly cmds: Command[];
}

type Node =
  | { n: 'text'; v: string }
  | { n: 'action'; p: Pipeline }
  | { n: 'if' | 'with'; p: Pipeline; body: Node[]; alt: Node[] }
  | { n: 'range'; p: Pipeline; body: Node[]; alt: Node[] };

function lexAction(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  const path = (): string[] => {
    const parts: string[] = [];
    while (src[i] === '.' && /[A-Za-z_]/.test(src[i + 1] ?? '')) {
      i++;
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i));
      const name = m?.[0] ?? '';
      parts.push(name);
      i += name.length;
    }
    return parts;
  };
  while (i < src.length) {
    const c = src[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '.') {
      if (/[A-Za-z_]/.test(src[i + 1] ?? '')) out.push({ t: 'field', path: path() });
      else {
        i++;
        out.push({ t: 'field', path: [] });
      }
    } else if (c === '$') {
      const m = /^\$[A-Za-z0-9_]*/.exec(src.slice(i));
      const name = m?.[0] ?? '$';
      i += name.length;
      out.push({ t: 'var', name, path: path() });
    } else if (c === '"') {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== '"') {
        if (src[j] === '\\') {
          const e = src[j + 1] ?? '';
          s += e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : e;
          j += 2;
        } else s += src[j++];
      }
      if (j >= src.length) throw new TemplateError('unterminated quoted string');
      out.push({ t: 'str', v: s });
      i = j + 1;
    } else if (c === '`') {
      const j = src.indexOf('`', i + 1);
      if (j < 0) throw new TemplateError('unterminated raw quoted string');
      out.push({ t: 'str', v: src.slice(i + 1, j) });
      i = j + 1;
    } else if (/[-+0-9]/.test(c)) {
      const m = /^[-+]?(0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?)/.exec(src.slice(i));
      if (m === null) throw new TemplateError(`bad number syntax: ${src.slice(i)}`);
      out.push({ t: 'num', v: Number(m[0]) });
      i += m[0].length;
    } else if (c === '(') {
      out.push({ t: 'lparen' });
      i++;
    } else if (c === ')') {
      out.push({ t: 'rparen' });
      i++;
      // a field chain after a parenthesised pipeline is not supported; skip nothing
    } else if (c === '|') {
      out.push({ t: 'pipe' });
      i++;
    } else if (c === ',') {
      out.push({ t: 'comma' });
      i++;
    } else if (src.startsWith(':=', i)) {
      out.push({ t: 'decl' });
      i += 2;
    } else if (c === '=') {
      out.push({ t: 'assign' });
      i++;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i));
      const v = m?.[0] ?? '';
      out.push({ t: 'ident', v });
      i += v.length;
    } else throw new TemplateError(`unexpected "${c}" in command`);
  }
  return out;
}

function parsePipeline(toks: Tok[], pos: { i: number }, inParen: boolean): Pipeline {
  const decl: string[] = [];
  // `$x :=` or `$k, $v :=`
  const save = pos.i;
  const vars: string[] = [];
  while (toks[pos.i]?.t === 'var') {
    const v = toks[pos.i] as { t: 'var'; name: string; path: string[] };
    vars.push(v.name);
    pos.i++;
    if (toks[pos.i]?.t === 'comma') pos.i++;
    else break;
  }
  const next = toks[pos.i];
  if (vars.length > 0 && next !== undefined && (next.t === 'decl' || next.t === 'assign')) {
    decl.push(...vars);
    pos.i++;
  } else pos.i = save;
  const cmds: Command[] = [];
  let operands: Operand[] = [];
  for (;;) {
    const t = toks[pos.i];
    if (t === undefined || t.t === 'rparen') {
      if (t?.t === 'rparen' && !inParen) throw new TemplateError('unexpected right paren');
      if (t?.t === 'rparen') pos.i++;
      break;
    }
    pos.i++;
    switch (t.t) {
      case 'field':
        operands.push({ k: 'field', path: t.path });
        break;
      case 'var':
        operands.push({ k: 'var', name: t.name, path: t.path });
        break;
      case 'str':
      case 'num':
        operands.push({ k: 'lit', v: t.v });
        break;
      case 'ident':
        if (t.v === 'true' || t.v === 'false') operands.push({ k: 'lit', v: t.v === 'true' });
        else if (t.v === 'nil') operands.push({ k: 'lit', v: null });
        else operands.push({ k: 'fn', name: t.v });
        break;
      case 'lparen':
        operands.push({ k: 'pipe', p: parsePipeline(toks, pos, true) });
        break;
      case 'pipe':
        if (operands.length === 0) throw new TemplateError('missing command in pipeline');
        cmds.push({ operands });
        operands = [];
        break;
      default:
        throw new TemplateError(`unexpected token in pipeline`);
    }
  }
  if (operands.length > 0) cmds.push({ operands });
  if (cmds.length === 0) throw new TemplateError('missing value for command');
  return { decl, cmds };
}

/** Parses a template into nodes. */
function parse(src: string): Node[] {
  const root: Node[] = [];
  type Frame = { node: Node & { body: Node[]; alt: Node[] }; inAlt: boolean; chained: number };
  const stack: Frame[] = [];
  const target = (): Node[] => {
    const top = stack[stack.length - 1];
    if (top === undefined) return root;
    return top.inAlt ? top.node.alt : top.node.body;
  };
  let i = 0;
  let trimNext = false;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    let text = open < 0 ? src.slice(i) : src.slice(i, open);
    if (trimNext) text = text.replace(/^\s+/, '');
    trimNext = false;
    if (open < 0) {
      if (text !== '') target().push({ n: 'text', v: text });
      break;
    }
    let start = open + 2;
    if (src.startsWith('- ', start) || src.startsWith('-\t', start) || src.startsWith('-\n', start)) {
      text = text.replace(/\s+$/, '');
      start += 1;
    }
    if (text !== '') target().push({ n: 'text', v: text });
    const close = src.indexOf('}}', start);
    if (close < 0) throw new TemplateError('unclosed action');
    let body = src.slice(start, close);
    if (/\s-$/.test(body)) {
      body = body.slice(0, -1);
      trimNext = true;
    }
    i = close + 2;
    body = body.trim();
    if (body.startsWith('/*')) continue;
    const toks = lexAction(body);
    const first = toks[0];
    const kw = first?.t === 'ident' ? first.v : '';
    if (kw === 'if' || kw === 'range' || kw === 'with') {
      const p = parsePipeline(toks, { i: 1 }, false);
      const node = { n: kw, p, body: [] as Node[], alt: [] as Node[] } as Node & { body: Node[]; alt: Node[] };
      target().push(node);
      stack.push({ node, inAlt: false, chained: 0 });
    } else if (kw === 'else') {
      const top = stack[stack.length - 1];
      if (top === undefined) throw new TemplateError('unexpected {{else}}');
      const second = toks[1];
      if (second?.t === 'ident' && (second.v === 'if' || second.v === 'with')) {
        const p = parsePipeline(toks, { i: 2 }, false);
        const node = { n: second.v, p, body: [] as Node[], alt: [] as Node[] } as Node & { body: Node[]; alt: Node[] };
        top.inAlt = true;
        top.node.alt.push(node);
        stack.push({ node, inAlt: false, chained: top.chained + 1 });
      } else top.inAlt = true;
    } else if (kw === 'end') {
      const top = stack.pop();
      if (top === undefined) throw new TemplateError('unexpected {{end}}');
      for (let c = top.chained; c > 0; c--) stack.pop();
    } else if (kw === 'define' || kw === 'template' || kw === 'block') {
      throw new TemplateError(`"${kw}" is not supported`);
    } else {
      target().push({ n: 'action', p: parsePipeline(toks, { i: 0 }, false) });
    }
  }
  if (stack.length > 0) throw new TemplateError('unexpected EOF');
  return root;
}

// ---------------------------------------------------------------------------
// Values

type Fn = (...args: unknown[]) => unknown;

export function truthy(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

/** JSON as Go's encoding/json writes it: `<`, `>`, `&` escaped. */
export function goJson(v: unknown, indent?: string): string {
  const s = JSON.stringify(v ?? null, null, indent) ?? 'null';
  return s.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A value as Go's fmt %v prints it. */
export function goString(v: unknown): string {
  if (v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (typeof v === 'string') return v;
  if (typeof v === 'number') {
    if (Number.isInteger(v) && Math.abs(v) < 1e21) return String(v);
    const s = String(v);
    return s.replace(/e([+-])(\d)$/, 'e$10$2');
  }
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'function') return '<func>';
  if (Array.isArray(v)) return `[${v.map(goString).join(' ')}]`;
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => typeof o[k] !== 'function').sort();
    return `map[${keys.map((k) => `${k}:${goString(o[k])}`).join(' ')}]`;
  }
  return String(v);
}

function field(v: unknown, name: string): unknown {
  if (v === null || v === undefined) throw new TemplateError(`nil pointer evaluating .${name}`);
  if (typeof v !== 'object') throw new TemplateError(`can't evaluate field ${name} in type ${typeof v}`);
  const o = v as Record<string, unknown>;
  if (Object.prototype.hasOwnProperty.call(o, name)) return o[name];
  if (Array.isArray(v)) throw new TemplateError(`can't evaluate field ${name} in type slice`);
  return undefined;
}

function compare(a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  throw new TemplateError('incompatible types for comparison');
}

function sprintf(fmt: string, args: unknown[]): string {
  let n = 0;
  return fmt.replace(/%([-+ 0#]*)(\d*)(?:\.(\d+))?([vsdqfxXtT%])/g, (_m, fl: string, w: string, prec: string | undefined, verb: string) => {
    if (verb === '%') return '%';
    const a = args[n++];
    let s: string;
    switch (verb) {
      case 'q':
        s = JSON.stringify(goString(a));
        break;
      case 'd':
        s = String(Math.trunc(Number(a)));
        break;
      case 'f':
        s = Number(a).toFixed(prec === undefined ? 6 : Number(prec));
        break;
      case 'x':
      case 'X':
        s = typeof a === 'number' ? a.toString(16) : Buffer.from(goString(a)).toString('hex');
        if (verb === 'X') s = s.toUpperCase();
        break;
      case 'T':
        s = typeof a;
        break;
      default:
        s = goString(a);
        if (prec !== undefined && verb === 's') s = s.slice(0, Number(prec));
    }
    if (w !== '') s = fl.includes('-') ? s.padEnd(Number(w)) : s.padStart(Number(w), fl.includes('0') ? '0' : ' ');
    return s;
  });
}

/**
 * Marks a row object whose JSON docker produces with json.Marshal (HTML characters
 * escaped); the template `json` function otherwise writes them as they are.
 */
export const ESCAPED_JSON: unique symbol = Symbol('escapedJson');

const BUILTINS: Record<string, Fn> = {
  json: (v) => {
    const escaped = v !== null && typeof v === 'object' && (v as { [ESCAPED_JSON]?: boolean })[ESCAPED_JSON] === true;
    const s = JSON.stringify(v ?? null) ?? 'null';
    return escaped ? goJson(v) : s;
  },
  join: (list, sep) => (Array.isArray(list) ? list.map(goString).join(goString(sep)) : goString(list)),
  split: (s, sep) => goString(s).split(goString(sep)),
  upper: (s) => goString(s).toUpperCase(),
  lower: (s) => goString(s).toLowerCase(),
  title: (s) => goString(s).replace(/\b\w/g, (c) => c.toUpperCase()),
  truncate: (s, n) => Array.from(goString(s)).slice(0, Number(n)).join(''),
  pad: (s, l, r) => `${' '.repeat(Number(l))}${goString(s)}${' '.repeat(Number(r))}`,
  println: (...a) => `${a.map(goString).join(' ')}\n`,
  print: (...a) => a.map(goString).join(''),
  printf: (f, ...a) => sprintf(goString(f), a),
  len: (v) => {
    if (typeof v === 'string' || Array.isArray(v)) return v.length;
    if (v !== null && typeof v === 'object') return Object.keys(v).length;
    throw new TemplateError(`len of type ${typeof v}`);
  },
  index: (v, ...keys) => {
    let cur = v;
    for (const k of keys) {
      if (cur === null || cur === undefined) return undefined;
      if (Array.isArray(cur)) {
        const n = Number(k);
        if (!Number.isInteger(n) || n < 0 || n >= cur.length) throw new TemplateError(`error calling index: index out of range: ${String(k)}`);
        cur = cur[n];
      } else if (typeof cur === 'object') cur = (cur as Record<string, unknown>)[goString(k)];
      else throw new TemplateError(`can't index item of type ${typeof cur}`);
    }
    return cur;
  },
  slice: (v, a, b) => {
    if (typeof v === 'string' || Array.isArray(v)) return v.slice(Number(a ?? 0), b === undefined ? undefined : Number(b));
    throw new TemplateError('slice of a non-slice');
  },
  eq: (a, ...bs) => bs.some((b) => a === b),
  ne: (a, b) => a !== b,
  lt: (a, b) => compare(a, b) < 0,
  le: (a, b) => compare(a, b) <= 0,
  gt: (a, b) => compare(a, b) > 0,
  ge: (a, b) => compare(a, b) >= 0,
  not: (a) => !truthy(a),
  and: (...a) => {
    for (const x of a) if (!truthy(x)) return x;
    return a[a.length - 1];
  },
  or: (...a) => {
    for (const x of a) if (truthy(x)) return x;
    return a[a.length - 1];
  },
};

interface Scope {
  readonly vars: Map<string, unknown>;
}

function lookupVar(scopes: Scope[], name: string): unknown {
  for (let i = scopes.length - 1; i >= 0; i--) {
    const s = scopes[i] as Scope;
    if (s.vars.has(name)) return s.vars.get(name);
  }
  throw new TemplateError(`undefined variable: ${name}`);
}

function evalOperand(op: Operand, dot: unknown, scopes: Scope[], args: unknown[] | undefined): unknown {
  switch (op.k) {
    case 'lit':
      return op.v;
    case 'pipe':
      return evalPipeline(op.p, dot, scopes);
    case 'fn': {
      const f = BUILTINS[op.name];
      if (f === undefined) throw new TemplateError(`function "${op.name}" not defined`);
      return f(...(args ?? []));
    }
    case 'field':
    case 'var': {
      let v: unknown = op.k === 'var' ? lookupVar(scopes, op.name) : dot;
      for (let i = 0; i < op.path.length; i++) {
        v = field(v, op.path[i] as string);
        if (typeof v === 'function') {
          const last = i === op.path.length - 1;
          v = (v as Fn)(...(last ? args ?? [] : []));
        }
      }
      if (args !== undefined && args.length > 0 && op.path.length === 0) throw new TemplateError(`can't give argument to non-function`);
      return v;
    }
  }
}

function evalPipeline(p: Pipeline, dot: unknown, scopes: Scope[]): unknown {
  let prev: unknown;
  let hasPrev = false;
  for (const cmd of p.cmds) {
    const [head, ...rest] = cmd.operands;
    if (head === undefined) throw new TemplateError('empty command');
    const args = rest.map((o) => evalOperand(o, dot, scopes, undefined));
    if (hasPrev) args.push(prev);
    if (head.k === 'fn' || ((head.k === 'field' || head.k === 'var') && head.path.length > 0)) {
      prev = evalOperand(head, dot, scopes, args);
    } else {
      if (args.length > 0) throw new TemplateError(`can't give argument to non-function`);
      prev = evalOperand(head, dot, scopes, undefined);
    }
    hasPrev = true;
  }
  const top = scopes[scopes.length - 1];
  if (p.decl.length === 1 && top !== undefined) top.vars.set(p.decl[0] as string, prev);
  return prev;
}

function exec(nodes: Node[], dot: unknown, scopes: Scope[], out: string[]): void {
  for (const node of nodes) {
    switch (node.n) {
      case 'text':
        out.push(node.v);
        break;
      case 'action': {
        const v = evalPipeline(node.p, dot, scopes);
        if (node.p.decl.length === 0) out.push(goString(v));
        break;
      }
      case 'if':
      case 'with': {
        scopes.push({ vars: new Map() });
        const v = evalPipeline(node.p, dot, scopes);
        if (truthy(v)) exec(node.body, node.n === 'with' ? v : dot, scopes, out);
        else exec(node.alt, dot, scopes, out);
        scopes.pop();
        break;
      }
      case 'range': {
        const scope: Scope = { vars: new Map() };
        scopes.push(scope);
        const p: Pipeline = { decl: [], cmds: node.p.cmds };
        const v = evalPipeline(p, dot, scopes);
        let entries: Array<[unknown, unknown]>;
        if (Array.isArray(v)) entries = v.map((x, i) => [i, x]);
        else if (v !== null && typeof v === 'object') {
          entries = Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]);
        } else if (typeof v === 'number') entries = Array.from({ length: v }, (_x, i) => [i, i]);
        else if (v === null || v === undefined) entries = [];
        else throw new TemplateError(`range can't iterate over ${goString(v)}`);
        if (entries.length === 0) exec(node.alt, dot, scopes, out);
        for (const [k, x] of entries) {
          if (node.p.decl.length === 1) scope.vars.set(node.p.decl[0] as string, x);
          if (node.p.decl.length === 2) {
            scope.vars.set(node.p.decl[0] as string, k);
            scope.vars.set(node.p.decl[1] as string, x);
          }
          exec(node.body, x, scopes, out);
        }
        scopes.pop();
        break;
      }
    }
  }
}

export class Template {
  private readonly nodes: Node[];
  constructor(readonly source: string) {
    this.nodes = parse(source);
  }

  execute(data: unknown): string {
    const out: string[] = [];
    exec(this.nodes, data, [{ vars: new Map([['$', data]]) }], out);
    return out.join('');
  }
}
