import { Logger, BerthError, ErrorKind } from '@berth/base';
import type { LogLevel } from '@berth/base';
import { Runtime } from '../container/runtime.js';
import { DEFAULT_ROOT, OCI_VERSION } from '../container/state.js';
import { parseArgs, str, bool } from './args.js';
import type { FlagSpec } from './args.js';
import { commands, summaries } from './commands.js';
import { VERSION } from './features.js';

const globalFlags: FlagSpec[] = [
  { name: 'root', value: true },
  { name: 'log', value: true },
  { name: 'log-format', value: true },
  { name: 'debug' },
  { name: 'systemd-cgroup' },
  { name: 'criu', value: true },
  { name: 'rootless', value: true },
  { name: 'help', aliases: ['h'] },
  { name: 'version', aliases: ['v'] },
];

function usage(): string {
  const names = Object.keys(summaries).sort();
  return [
    'NAME:',
    '   berth-runc - Open Container Initiative runtime (runc command line)',
    '',
    'USAGE:',
    '   berth-runc [global options] command [command options] [arguments...]',
    '',
    'COMMANDS:',
    ...names.map((n) => `   ${n.padEnd(12)}${summaries[n]}`),
    '',
    'GLOBAL OPTIONS:',
    '   --debug             enable debug logging',
    '   --log value         set the log file to write runtime logs to (default: stderr)',
    '   --log-format value  set the log format (\'text\' (default), or \'json\')',
    `   --root value        root directory for storage of container state (default: "${DEFAULT_ROOT}")`,
    '   --systemd-cgroup    (not supported: cgroupfs is always used)',
    '   --help, -h          show help',
    '   --version, -v       print the version',
    '',
  ].join('\n');
}

/** Exit status for an error, so scripts can tell "no such container" from other failures. */
function report(log: Logger, err: unknown): number {
  const msg = err instanceof Error ? err.message : String(err);
  log.error(msg);
  // containerd and podman read the error from --log; people read stderr.
  if (log.file) process.stderr.write(`${msg}\n`);
  if (!(err instanceof BerthError) && log.enabled('debug') && err instanceof Error) {
    process.stderr.write(`${err.stack}\n`);
  }
  return err instanceof BerthError && err.kind === ErrorKind.Internal ? 2 : 1;
}

export async function main(argv: string[]): Promise<number> {
  // Global flags come before the command name.
  let i = 0;
  while (i < argv.length && (argv[i] as string).startsWith('-')) {
    const spec = globalFlags.find((f) => [f.name, ...(f.aliases ?? [])].includes((argv[i] as string).replace(/^--?/, '').split('=')[0] as string));
    i += spec?.value && !(argv[i] as string).includes('=') ? 2 : 1;
  }
  const bootLog = new Logger({ level: 'warn' });
  let g;
  try {
    g = parseArgs(argv.slice(0, i), globalFlags);
  } catch (e) {
    return report(bootLog, e);
  }
  const format = str(g, 'log-format') ?? 'text';
  const log = new Logger({
    level: (bool(g, 'debug') ? 'debug' : 'warn') as LogLevel,
    file: str(g, 'log'),
    format: format === 'json' ? 'json' : 'text',
  });
  if (format !== 'text' && format !== 'json') return report(log, new BerthError(ErrorKind.InvalidArgument, `invalid log-format: ${format}`));
  if (bool(g, 'version')) {
    process.stdout.write(`berth-runc version ${VERSION}\nspec: ${OCI_VERSION}\n`);
    return 0;
  }
  const name = argv[i];
  if (bool(g, 'help') || name === undefined || name === 'help') {
    process.stdout.write(usage());
    return name === undefined && !bool(g, 'help') ? 1 : 0;
  }
  const cmd = commands[name];
  if (!cmd) return report(log, new BerthError(ErrorKind.InvalidArgument, `No help topic for '${name}'`));
  const rest = argv.slice(i + 1);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`berth-runc ${name} - ${summaries[name] ?? ''}\n`);
    return 0;
  }
  const rt = new Runtime(str(g, 'root') ?? DEFAULT_ROOT, log);
  try {
    return await cmd({ rt, out: (s) => process.stdout.write(s) }, rest);
  } catch (e) {
    return report(log, e);
  }
}
