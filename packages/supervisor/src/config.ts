/**
 * berth-containerd's command line, with containerd's daemon flags where they
 * apply, and the few settings of containerd's TOML config file that mean
 * something here (root, state, [grpc] address, [debug] level).
 */
import { readFileSync } from 'node:fs';
import { invalid, parseLogLevel as parseLevel } from '@berth/base';
import type { LogLevel } from '@berth/base';

export const DEFAULT_ADDRESS = '/run/berth/containerd/containerd.sock';
export const DEFAULT_ROOT = '/var/lib/berth/containerd';
export const DEFAULT_STATE = '/run/berth/containerd';

export interface DaemonConfig {
  address: string;
  root: string;
  state: string;
  logLevel: LogLevel;
  configFile: string | undefined;
  /** Settings in the config file that were not understood (reported as a warning). */
  ignored: string[];
}

export type Command =
  | { kind: 'run'; config: DaemonConfig }
  | { kind: 'version' }
  | { kind: 'help' };

export const USAGE = `Usage: berth-containerd [options]

A container supervisor serving containerd's gRPC API.

Options:
  -a, --address <path>    gRPC socket (default ${DEFAULT_ADDRESS})
      --root <dir>        persistent data (default ${DEFAULT_ROOT})
      --state <dir>       runtime state (default ${DEFAULT_STATE})
  -l, --log-level <lvl>   trace, debug, info, warn, error, fatal, panic (default info)
  -c, --config <file>     containerd-style TOML config (root, state, [grpc] address, [debug] level)
  -v, --version           print the version and exit
  -h, --help              show this help
`;

/** containerd's (logrus) levels onto ours. */
export function parseLogLevel(s: string): LogLevel {
  return parseLevel(s, '--log-level');
}

/** A TOML basic or literal string, or a bare integer/boolean (returned as text). */
function tomlValue(raw: string, where: string): string {
  const v = raw.trim();
  if (v.startsWith('"')) {
    const m = /^"((?:[^"\\]|\\.)*)"\s*(#.*)?$/.exec(v);
    if (m === null) throw invalid(`${where}: unterminated string`);
    return (m[1] ?? '').replace(/\\(["\\nt])/g, (_s, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
  }
  if (v.startsWith("'")) {
    const m = /^'([^']*)'\s*(#.*)?$/.exec(v);
    if (m === null) throw invalid(`${where}: unterminated string`);
    return m[1] ?? '';
  }
  return v.replace(/\s*#.*$/, '');
}

/** The settings of a containerd config file that apply, as dotted keys. */
export function parseConfigFile(text: string, file: string): Map<string, string> {
  const out = new Map<string, string>();
  let section = '';
  text.split('\n').forEach((line, i) => {
    const where = `${file}:${i + 1}`;
    const l = line.trim();
    if (l === '' || l.startsWith('#')) return;
    const sec = /^\[\s*([^\]]+?)\s*\]\s*(#.*)?$/.exec(l);
    if (sec !== null) {
      section = (sec[1] ?? '').replace(/\s+/g, '');
      return;
    }
    const eq = l.indexOf('=');
    if (eq <= 0) throw invalid(`${where}: expected key = value`);
    const key = l.slice(0, eq).trim().replace(/^"(.*)"$/, '$1');
    out.set(section === '' ? key : `${section}.${key}`, tomlValue(l.slice(eq + 1), where));
  });
  return out;
}

const FLAGS: Readonly<Record<string, 'address' | 'root' | 'state' | 'log-level' | 'config'>> = {
  a: 'address', address: 'address', root: 'root', state: 'state', l: 'log-level', 'log-level': 'log-level', c: 'config', config: 'config',
};

export function parseArgs(argv: readonly string[]): Command {
  const given = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '-v' || arg === '--version') return { kind: 'version' };
    if (arg === '-h' || arg === '--help') return { kind: 'help' };
    const m = /^--?([a-z-]+)(?:=(.*))?$/.exec(arg);
    const name = m?.[1];
    const flag = name === undefined ? undefined : FLAGS[name];
    if (m === null || flag === undefined) throw invalid(`unknown argument ${JSON.stringify(arg)}\n\n${USAGE}`);
    let value = m[2];
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw invalid(`flag ${arg} needs a value`);
    }
    given.set(flag, value);
  }

  const config: DaemonConfig = {
    address: DEFAULT_ADDRESS, root: DEFAULT_ROOT, state: DEFAULT_STATE, logLevel: 'info', configFile: undefined, ignored: [],
  };
  const file = given.get('config');
  if (file !== undefined) {
    config.configFile = file;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw invalid(`--config ${file}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    for (const [key, value] of parseConfigFile(text, file)) {
      switch (key) {
        case 'root': config.root = value; break;
        case 'state': config.state = value; break;
        case 'grpc.address': config.address = value; break;
        case 'debug.level': if (value !== '') config.logLevel = parseLogLevel(value); break;
        case 'version': break;
        default: config.ignored.push(key);
      }
    }
  }
  const address = given.get('address');
  if (address !== undefined) config.address = address;
  if (config.address.startsWith('unix://')) config.address = config.address.slice('unix://'.length);
  const root = given.get('root');
  if (root !== undefined) config.root = root;
  const state = given.get('state');
  if (state !== undefined) config.state = state;
  const level = given.get('log-level');
  if (level !== undefined) config.logLevel = parseLogLevel(level);
  for (const [k, v] of [['--address', config.address], ['--root', config.root], ['--state', config.state]] as const) {
    if (v === '') throw invalid(`${k} must not be empty`);
  }
  return { kind: 'run', config };
}
