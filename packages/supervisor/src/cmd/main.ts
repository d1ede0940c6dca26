/** berth-containerd's entry point: parse flags, run the daemon until SIGTERM/SIGINT. */
import { resolve } from 'node:path';
import { BerthError, Logger } from '@berth/base';
import { parseArgs, USAGE } from '../config.js';
import { Daemon } from '../daemon.js';
import { REVISION, VERSION } from '../services/version.js';

export async function main(argv: readonly string[]): Promise<number> {
  let cmd;
  try {
    cmd = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`berth-containerd: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  if (cmd.kind === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (cmd.kind === 'version') {
    process.stdout.write(`berth-containerd ${VERSION} ${REVISION}\n`);
    return 0;
  }
  const { config } = cmd;
  const log = new Logger({ level: config.logLevel });
  if (config.ignored.length > 0) {
    log.warn('config file settings not supported, ignored', { file: config.configFile, keys: config.ignored });
  }
  let daemon: Daemon;
  try {
    daemon = await Daemon.start({
      address: resolve(config.address), root: resolve(config.root), state: resolve(config.state), log,
    });
  } catch (e) {
    log.error('failed to start', { error: e instanceof Error ? e.message : String(e) });
    if (!(e instanceof BerthError) && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
  return new Promise<number>((done) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      log.info('shutting down', { signal: sig });
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      daemon.stop().then(() => done(0), (e: unknown) => {
        log.error('shutdown failed', { error: e instanceof Error ? e.message : String(e) });
        done(1);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
