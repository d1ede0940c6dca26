/**
 * berth: the command line. Global flags pick the daemon (`-H`, `BERTH_HOST`,
 * `DOCKER_HOST`, TLS files) and the config dir; the command tree has docker's
 * top-level commands and the `container`, `image` and `system` groups; errors
 * end with docker's messages and exit codes.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { BerthError } from '@berth/base';
import { Client, DEFAULT_HOST, parseHost } from './api.js';
import type { TlsFiles } from './api.js';
import { UsageError, formatFlags, parseArgs } from './args.js';
import type { FlagDef, Parsed } from './args.js';
import { PROG, StatusError, checkArgs, daemonMessage, usageError } from './command.js';
import type { Command, Context } from './command.js';
import { TemplateError } from './format.js';
import { login, logout } from './commands/auth.js';
import * as C from './commands/containers.js';
import { build } from './commands/build.js';
import { commit } from './commands/commit.js';
import { cp } from './commands/cp.js';
import * as I from './commands/images.js';
import * as N from './commands/networks.js';
import * as R from './commands/run.js';
import * as S from './commands/system.js';
import * as V from './commands/volumes.js';
import { CLI_VERSION } from './version.js';

interface Group {
  readonly name: string;
  readonly description: string;
  readonly commands: ReadonlyArray<readonly [string, Command, readonly string[]]>;
}

/** A command as a group member: its usage line names the group and the subcommand. */
function member(group: string, sub: string, cmd: Command): Command {
  const rest = cmd.usage.startsWith(`${group} `) ? cmd.usage.split(' ').slice(2).join(' ') : cmd.usage.split(' ').slice(1).join(' ');
  return { ...cmd, name: sub, usage: `${group} ${sub}${rest === '' ? '' : ` ${rest}`}` };
}

const TOP: ReadonlyArray<Command> = [
  R.attach, build, commit, cp, R.create, C.diff, S.events, R.exec, C.exportCmd, I.history, I.images, I.importCmd, S.info, C.inspect,
  C.kill, I.load, login, logout, C.logs, C.pause, C.port, C.ps, I.pull, I.push, C.rename, C.restart, C.rm, I.rmi,
  R.run, I.save, R.start, C.stats, C.stop, I.tag, C.top, C.unpause, C.update, S.version, C.wait,
];

const GROUPS: readonly Group[] = [
  {
    name: 'container',
    description: 'Manage containers',
    commands: [
      ['attach', R.attach, []], ['commit', commit, []], ['cp', cp, []], ['create', R.create, []], ['diff', C.diff, []], ['exec', R.exec, []],
      ['export', C.exportCmd, []],
      ['inspect', C.typedInspect('container', 'inspect', 'Display detailed information on one or more containers', 'container inspect [OPTIONS] CONTAINER [CONTAINER...]'), []],
      ['kill', C.kill, []], ['logs', C.logs, []], ['ls', C.ps, ['ps', 'list']], ['pause', C.pause, []], ['port', C.port, []],
      ['prune', C.prune, []], ['rename', C.rename, []], ['restart', C.restart, []], ['rm', C.rm, ['remove']], ['run', R.run, []],
      ['start', R.start, []], ['stats', C.stats, []], ['stop', C.stop, []], ['top', C.top, []], ['unpause', C.unpause, []],
      ['update', C.update, []], ['wait', C.wait, []],
    ],
  },
  {
    name: 'image',
    description: 'Manage images',
    commands: [
      ['build', build, []], ['history', I.history, []], ['import', I.importCmd, []],
      ['inspect', C.typedInspect('image', 'inspect', 'Display detailed information on one or more images', 'image inspect [OPTIONS] IMAGE [IMAGE...]'), []],
      ['load', I.load, []], ['ls', I.images, ['list']], ['prune', I.imagePrune, []], ['pull', I.pull, []], ['push', I.push, []],
      ['rm', I.rmi, ['remove']], ['save', I.save, []], ['tag', I.tag, []],
    ],
  },
  {
    name: 'volume',
    description: 'Manage volumes',
    commands: [['create', V.create, []], ['inspect', V.inspect, []], ['ls', V.ls, ['list']], ['prune', V.prune, []], ['rm', V.rm, ['remove']]],
  },
  {
    name: 'network',
    description: 'Manage networks',
    commands: [
      ['connect', N.connect, []], ['create', N.create, []], ['disconnect', N.disconnect, []], ['inspect', N.inspect, []],
      ['ls', N.ls, ['list']], ['prune', N.prune, []], ['rm', N.rm, ['remove']],
    ],
  },
  {
    name: 'system',
    description: 'Manage the engine',
    commands: [['df', S.df, []], ['events', S.events, []], ['info', S.info, []], ['prune', S.systemPrune, []]],
  },
];

const GLOBAL_FLAGS: readonly FlagDef[] = [
  { long: 'config', kind: 'string', help: 'Location of client config files (default "~/.berth")' },
  { long: 'context', short: 'c', kind: 'string', help: 'Name of the context to use (only "default")' },
  { long: 'debug', short: 'D', kind: 'bool', help: 'Enable debug mode' },
  { long: 'host', short: 'H', kind: 'list', help: 'Daemon socket to connect to' },
  { long: 'log-level', short: 'l', kind: 'string', help: 'Set the logging level ("debug", "info", "warn", "error", "fatal")', default: 'info' },
  { long: 'tls', kind: 'bool', help: 'Use TLS; implied by --tlsverify' },
  { long: 'tlscacert', kind: 'string', help: 'Trust certs signed only by this CA' },
  { long: 'tlscert', kind: 'string', help: 'Path to TLS certificate file' },
  { long: 'tlskey', kind: 'string', help: 'Path to TLS key file' },
  { long: 'tlsverify', kind: 'bool', help: 'Use TLS and verify the remote' },
  { long: 'version', short: 'v', kind: 'bool', help: 'Print version information and quit' },
];

function mainHelp(): string {
  const line = (name: string, desc: string): string => `  ${name.padEnd(11)} ${desc.split('\n')[0] ?? ''}`;
  const common = ['run', 'exec', 'ps', 'pull', 'push', 'images', 'login', 'logout', 'version', 'info'];
  const byName = new Map(TOP.map((c) => [c.name, c]));
  return [
    `Usage:  ${PROG} [OPTIONS] COMMAND`,
    '',
    'A container engine client with the docker CLI\'s commands',
    '',
    'Common Commands:',
    ...common.map((n) => line(n, byName.get(n)?.description ?? '')),
    '',
    'Management Commands:',
    ...GROUPS.map((g) => line(g.name, g.description)),
    '',
    'Commands:',
    ...TOP.filter((c) => !common.includes(c.name)).map((c) => line(c.name, c.description)),
    '',
    'Global Options:',
    formatFlags(GLOBAL_FLAGS),
    '',
    `Run '${PROG} COMMAND --help' for more information on a command.`,
    '',
  ].join('\n');
}

function groupHelp(g: Group): string {
  return [
    `Usage:  ${PROG} ${g.name} COMMAND`,
    '',
    g.description,
    '',
    'Commands:',
    ...g.commands.map(([n, c]) => `  ${n.padEnd(11)} ${c.description.split('\n')[0] ?? ''}`),
    '',
    `Run '${PROG} ${g.name} COMMAND --help' for more information on a command.`,
    '',
  ].join('\n');
}

function commandHelp(cmd: Command, aliases: readonly string[]): string {
  const parts = [`Usage:  ${PROG} ${cmd.usage}`, '', cmd.description, ''];
  if (aliases.length > 1) parts.push('Aliases:', `  ${aliases.map((a) => `${PROG} ${a}`).join(', ')}`, '');
  parts.push('Options:', formatFlags(cmd.flags), '');
  return parts.join('\n');
}

/** Every name a command answers to, for the Aliases line of its help. */
function aliasesOf(cmd: Command): string[] {
  const out: string[] = [];
  for (const g of GROUPS) {
    for (const [n, c, more] of g.commands) {
      if (c === cmd) out.push(`${g.name} ${n}`, ...more.map((m) => `${g.name} ${m}`));
    }
  }
  if (TOP.includes(cmd)) out.push(cmd.name);
  return out;
}

export interface MainIO {
  readonly stdin?: Context['stdin'];
  readonly stdout?: Context['stdout'];
  readonly stderr?: Context['stderr'];
  readonly env?: NodeJS.ProcessEnv;
}

function readTlsFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new StatusError(1, `could not read TLS file ${path}: ${(err as Error).message}`);
  }
}

/** Runs berth with `argv` (without the program name); resolves to the exit code. */
export async function main(argv: readonly string[], io: MainIO = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const stdin = io.stdin ?? process.stdin;
  const env = io.env ?? process.env;
  const err = (s: string): void => {
    stderr.write(s);
  };
  let cmdPath = '';
  try {
    let global: Parsed;
    try {
      global = parseArgs(argv, GLOBAL_FLAGS, { stopAtPositional: true });
    } catch (e) {
      if (e instanceof UsageError) throw new StatusError(125, `${e.message}\nSee '${PROG} --help'.`);
      throw e;
    }
    if (global.flags.bool('version')) {
      stdout.write(`Berth version ${CLI_VERSION}\n`);
      return 0;
    }
    const [name, ...rest] = global.args;
    if (name === undefined || global.help) {
      (name === undefined && !global.help ? stderr : stdout).write(mainHelp());
      return 0;
    }
    let cmd: Command | undefined;
    let args = rest;
    const group = GROUPS.find((g) => g.name === name);
    if (group !== undefined) {
      const [sub, ...more] = rest;
      if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
        stdout.write(groupHelp(group));
        return 0;
      }
      const entry = group.commands.find(([n, , aliases]) => n === sub || aliases.includes(sub));
      if (entry === undefined) {
        throw new StatusError(1, `${PROG}: unknown command: ${PROG} ${name} ${sub}\n\nUsage:  ${PROG} ${name}\n\nRun '${PROG} ${name} --help' for more information`);
      }
      cmd = member(group.name, sub, entry[1]);
      cmdPath = `${name} ${sub}`;
      args = more;
      const original = entry[1];
      cmd = { ...cmd, run: original.run };
      return await runCommand(cmd, aliasesOf(original), cmdPath, args);
    }
    if (name === 'help') {
      stdout.write(mainHelp());
      return 0;
    }
    cmd = TOP.find((c) => c.name === name);
    if (cmd === undefined) {
      throw new StatusError(1, `${PROG}: unknown command: ${PROG} ${name}\n\nRun '${PROG} --help' for more information`);
    }
    cmdPath = name;
    return await runCommand(cmd, aliasesOf(cmd), cmdPath, args);

    async function runCommand(c: Command, aliases: readonly string[], path: string, cargs: readonly string[]): Promise<number> {
      let parsed;
      try {
        parsed = parseArgs(cargs, c.flags, c.stopAtPositional === true ? { stopAtPositional: true } : {});
      } catch (e) {
        if (e instanceof UsageError) throw usageError(path, c.usage, e.message);
        throw e;
      }
      if (parsed.help) {
        stdout.write(commandHelp(c, aliases));
        return 0;
      }
      checkArgs(path, c, parsed.args);
      const configDir = global.flags.string('config') ?? env.BERTH_CONFIG ?? join(homedir(), '.berth');
      const hosts = global.flags.list('host');
      if (hosts.length > 1) throw new StatusError(1, 'Specify only one -H');
      const hostValue = hosts[0] ?? (env.BERTH_HOST || undefined) ?? (env.DOCKER_HOST || undefined) ?? DEFAULT_HOST;
      const verify = global.flags.bool('tlsverify') || (env.DOCKER_TLS_VERIFY !== undefined && env.DOCKER_TLS_VERIFY !== '');
      const useTls = verify || global.flags.bool('tls');
      let tls: TlsFiles | undefined;
      if (useTls) {
        const certDir = env.DOCKER_CERT_PATH || configDir;
        const file = (flag: string, def: string): Buffer | undefined => {
          const given = global.flags.string(flag);
          if (given !== undefined) return readTlsFile(given);
          try {
            return readFileSync(join(certDir, def));
          } catch {
            return undefined;
          }
        };
        const ca = file('tlscacert', 'ca.pem');
        const cert = file('tlscert', 'cert.pem');
        const key = file('tlskey', 'key.pem');
        tls = { verify, ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}) };
      }
      let client: Client | undefined;
      const ctx: Context = {
        stdin,
        stdout,
        stderr,
        configDir,
        out: (s) => {
          stdout.write(s);
        },
        err,
        client: async () => {
          if (client === undefined) {
            const cl = new Client(parseHost(hostValue, tls));
            await cl.negotiate();
            client = cl;
          }
          return client;
        },
      };
      try {
        return await c.run(ctx, parsed.flags, parsed.args);
      } catch (e) {
        // a typed flag value found bad while the command reads it: a flag error, as pflag reports it
        if (e instanceof UsageError) throw usageError(path, c.usage, e.message);
        throw e;
      }
    }
  } catch (e) {
    if (e instanceof StatusError) {
      if (e.message !== '') err(`${e.message}\n`);
      return e.code;
    }
    if (e instanceof TemplateError) {
      err(`template parsing error: ${e.message}\n`);
      return 1;
    }
    if (e instanceof BerthError) {
      err(`${daemonMessage(e)}\n`);
      return 1;
    }
    err(`${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
