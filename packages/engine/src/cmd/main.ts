/** berthd's entry point: parse flags, serve until SIGTERM/SIGINT. */
import { resolve } from 'node:path';
import { BerthError, Logger } from '@berth/base';
import { USAGE, parseArgs } from '../config.js';
import type { Command } from '../config.js';
import { EngineDaemon } from '../daemon.js';
import { ENGINE_VERSION } from '../routes/system.js';

export async function main(argv: readonly string[]): Promise<number> {
  let cmd: Command;
  try {
    cmd = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`berthd: ${e instanceof Error ? e.message : String(e)}\nSee 'berthd --help'.\n`);
    return 125;
  }
  if (cmd.kind === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (cmd.kind === 'version') {
    process.stdout.write(`Berth Engine version ${ENGINE_VERSION}\n`);
    return 0;
  }
  const config = { ...cmd.config, dataRoot: resolve(cmd.config.dataRoot), execRoot: resolve(cmd.config.execRoot) };
  const log = new Logger({ level: config.logLevel });
  let daemon: EngineDaemon;
  try {
    daemon = await EngineDaemon.start(config, log);
  } catch (e) {
    log.error('failed to start daemon', { error: e instanceof Error ? e.message : String(e) });
    if (!(e instanceof BerthError) && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
  return new Promise<number>((done) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      log.info('stopping', { signal: sig });
      daemon.stop().then(() => done(0), (e: unknown) => {
        log.error('stop failed', { error: e instanceof Error ? e.message : String(e) });
        done(1);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
