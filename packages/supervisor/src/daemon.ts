/**
 * The daemon: load protos, initialise plugins in order, serve every gRPC
 * service on a UNIX socket (mode 0660, group "berth" when it exists), and shut
 * down cleanly: streams ended, server closed, plugins closed, socket removed.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { Logger, errnoCode, failedPrecondition, unavailable } from '@berth/base';
import { builtins } from './builtins.js';
import { bindService } from './grpc.js';
import { EventPlugin, GRPCPlugin, PluginSet } from './plugin.js';
import type { DaemonPaths, PluginRecord } from './plugin.js';
import { Protos } from './protos.js';

export interface DaemonOptions extends DaemonPaths {
  readonly log?: Logger;
  readonly plugins?: readonly PluginRecord<unknown>[];
  /** Group owning the socket; default: "berth" if /etc/group has it. */
  readonly socketGroup?: number | undefined;
}

/** containerd's default message size limits (16 MiB). */
const MAX_MESSAGE = 16 << 20;

function groupId(name: string): number | undefined {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const [n, , gid] = line.split(':');
      if (n === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
    }
  } catch {
    /* no group database: root only */
  }
  return undefined;
}

/** Whether something accepts connections on the socket. */
function socketLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Make the socket path usable: refuse a live socket or a non-socket file; remove a stale one. */
async function prepareSocket(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o711 });
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw failedPrecondition(`address ${path} exists and is not a socket`);
  if (await socketLive(path)) throw unavailable(`address ${path} is in use by a running server`);
  rmSync(path, { force: true });
}

export class Daemon {
  readonly paths: DaemonPaths;
  readonly plugins: PluginSet;
  readonly protos: Protos;
  private readonly log: Logger;
  private readonly server: Server;
  private stopping: Promise<void> | undefined;

  private constructor(paths: DaemonPaths, plugins: PluginSet, protos: Protos, server: Server, log: Logger) {
    this.paths = paths;
    this.plugins = plugins;
    this.protos = protos;
    this.server = server;
    this.log = log;
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const log = opts.log ?? new Logger({ level: 'info' });
    const paths: DaemonPaths = { address: opts.address, root: opts.root, state: opts.state };
    mkdirSync(paths.root, { recursive: true, mode: 0o700 });
    mkdirSync(paths.state, { recursive: true, mode: 0o711 });
    await prepareSocket(paths.address);

    const protos = Protos.load();
    const plugins = new PluginSet(opts.plugins ?? builtins);
    await plugins.initAll(paths, protos, log);
    const failed = plugins.info().filter((p) => p.status === 'error');
    if (failed.length > 0) {
      await plugins.closeAll(log);
      const first = failed[0];
      throw unavailable(`plugin ${first?.type ?? ''}.${first?.id ?? ''} failed to load: ${first?.error?.message ?? 'unknown error'}`, first?.error);
    }

    const server = new Server({
      'grpc.max_receive_message_length': MAX_MESSAGE,
      'grpc.max_send_message_length': MAX_MESSAGE,
    });
    const daemon = new Daemon(paths, plugins, protos, server, log);
    try {
      for (const svc of plugins.getAll(GRPCPlugin).values()) bindService(server, protos, svc, log);
      await new Promise<void>((resolve, reject) => {
        server.bindAsync(`unix:${paths.address}`, ServerCredentials.createInsecure(), (err) => {
          if (err) reject(unavailable(`listening on ${paths.address}: ${err.message}`, err));
          else resolve();
        });
      });
      chmodSync(paths.address, 0o660);
      const gid = opts.socketGroup ?? groupId('berth');
      if (gid !== undefined) chownSync(paths.address, 0, gid);
    } catch (e) {
      await daemon.stop();
      throw e;
    }
    log.info('serving', { address: paths.address, root: paths.root, state: paths.state, pid: process.pid });
    return daemon;
  }

  /** Stop serving: end event streams, close the server (forcing after a grace period), close plugins, remove the socket. */
  stop(graceMs = 3000): Promise<void> {
    this.stopping ??= (async () => {
      for (const exchange of this.plugins.getAll(EventPlugin).values()) exchange.close();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.server.forceShutdown();
          resolve();
        }, graceMs);
        this.server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await this.plugins.closeAll(this.log);
      rmSync(this.paths.address, { force: true });
      this.log.info('stopped');
    })();
    return this.stopping;
  }
}
