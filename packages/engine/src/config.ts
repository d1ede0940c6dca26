/**
 * berthd's command line: dockerd's daemon flags where they apply, so that
 * isolated instances run side by side with each other and with a real dockerd.
 */
import { invalid, parseLogLevel } from '@berth/base';
import type { LogLevel } from '@berth/base';

export const DEFAULT_SOCKET = '/run/berth/berth.sock';
export const DEFAULT_DATA_ROOT = '/var/lib/berth/engine';
export const DEFAULT_EXEC_ROOT = '/run/berth';

export interface EngineConfig {
  hosts: string[];
  dataRoot: string;
  execRoot: string;
  /** A running supervisor's socket; empty: start and watch our own. */
  containerd: string;
  /** The supervisor's namespace for the engine's objects. */
  namespace: string;
  logLevel: LogLevel;
  tls: boolean;
  tlsVerify: boolean;
  tlsCaCert: string;
  tlsCert: string;
  tlsKey: string;
  insecureRegistries: string[];
  pidfile: string;
  /** Make the built-in busybox image on start (default true). */
  builtinImage: boolean;
}

export type Command = { kind: 'run'; config: EngineConfig } | { kind: 'help' } | { kind: 'version' };

export const USAGE = `Usage: berthd [OPTIONS]

A container engine serving the Docker Engine API.

Options:
  -H, --host list                 Daemon socket(s) to connect to (default unix://${DEFAULT_SOCKET})
      --data-root string          Root directory of persistent state (default "${DEFAULT_DATA_ROOT}")
      --exec-root string          Root directory for execution state files (default "${DEFAULT_EXEC_ROOT}")
      --containerd string         containerd grpc address (default: start berth-containerd)
      --containerd-namespace str  Containerd namespace to use (default "berth")
  -l, --log-level string          Set the logging level ("debug"|"info"|"warn"|"error"|"fatal") (default "info")
  -D, --debug                     Enable debug mode
  -p, --pidfile string            Path to use for daemon PID file
      --tls                       Use TLS; implied by --tlsverify
      --tlscacert string          Trust certs signed only by this CA
      --tlscert string            Path to TLS certificate file
      --tlskey string             Path to TLS key file
      --tlsverify                 Use TLS and verify the remote
      --insecure-registry list    Enable insecure registry communication
      --no-builtin-image          Do not create the built-in busybox image on start
  -v, --version                   Print version information and quit
  -h, --help                      Print usage
`;

export function parseArgs(argv: readonly string[]): Command {
  const c: EngineConfig = {
    hosts: [], dataRoot: DEFAULT_DATA_ROOT, execRoot: DEFAULT_EXEC_ROOT, containerd: '', namespace: 'berth',
    logLevel: 'info', tls: false, tlsVerify: false, tlsCaCert: '', tlsCert: '', tlsKey: '', insecureRegistries: [],
    pidfile: '', builtinImage: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i] ?? '';
    let flag = raw;
    let inline: string | undefined;
    const eq = raw.indexOf('=');
    if (raw.startsWith('--') && eq > 0) {
      flag = raw.slice(0, eq);
      inline = raw.slice(eq + 1);
    }
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw invalid(`flag needs an argument: ${flag}`);
      return v;
    };
    const boolValue = (): boolean => (inline === undefined ? true : !/^(0|false)$/i.test(inline));
    switch (flag) {
      case '-H': case '--host': c.hosts.push(value()); break;
      case '--data-root': case '-g': case '--graph': c.dataRoot = value(); break;
      case '--exec-root': c.execRoot = value(); break;
      case '--containerd': c.containerd = value(); break;
      case '--containerd-namespace': c.namespace = value(); break;
      case '-l': case '--log-level': c.logLevel = parseLogLevel(value()); break;
      case '-D': case '--debug': if (boolValue()) c.logLevel = 'debug'; break;
      case '-p': case '--pidfile': c.pidfile = value(); break;
      case '--tls': c.tls = boolValue(); break;
      case '--tlsverify': c.tlsVerify = boolValue(); if (c.tlsVerify) c.tls = true; break;
      case '--tlscacert': c.tlsCaCert = value(); break;
      case '--tlscert': c.tlsCert = value(); break;
      case '--tlskey': c.tlsKey = value(); break;
      case '--insecure-registry': c.insecureRegistries.push(value()); break;
      case '--no-builtin-image': c.builtinImage = !boolValue(); break;
      case '-h': case '--help': return { kind: 'help' };
      case '-v': case '--version': return { kind: 'version' };
      default: throw invalid(`unknown flag: ${flag}`);
    }
  }
  if (c.hosts.length === 0) c.hosts.push(`unix://${c.execRoot === DEFAULT_EXEC_ROOT ? DEFAULT_SOCKET : `${c.execRoot}/berth.sock`}`);
  if (c.tls && (c.tlsCert === '' || c.tlsKey === '')) throw invalid('--tls needs --tlscert and --tlskey');
  if (c.tlsVerify && c.tlsCaCert === '') throw invalid('--tlsverify needs --tlscacert');
  return { kind: 'run', config: c };
}
