/**
 * The task runtime plugin (io.containerd.runtime.v2 `task`: the task manager,
 * its shims and bundles) and containerd.services.tasks.v1.Tasks over it.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { invalid, notImplemented } from '@berth/base';
import { EventPlugin, GRPCPlugin, MetadataPlugin, pluginType } from '../plugin.js';
import type { PluginRecord } from '../plugin.js';
import type { GrpcService } from '../grpc.js';
import { anyMessage, isRecord, num, record, str, strList } from '../wire.js';
import type { Wire } from '../wire.js';
import { bundlesDir, shimsDir } from './bundle.js';
import type { Mount, Stdio } from './bundle.js';
import { TaskManager } from './manager.js';
import type { Binaries, ExitInfo, ProcView } from './manager.js';
import { metricsOf } from './metrics.js';

export const TASKS_SERVICE = 'containerd.services.tasks.v1.Tasks';

/**
 * How long after start the exits collected from the shims are published:
 * long enough for clients that lost their event stream with the old daemon to
 * subscribe again.
 */
export const RESTORED_EXITS_DELAY_MS = 2000;

/** native/out and berth-runc, found from this file (packages/supervisor/dist/tasks/); BERTH_NATIVE_DIR overrides native/out. */
export function defaultBinaries(env: NodeJS.ProcessEnv = process.env): Binaries {
  const here = dirname(fileURLToPath(import.meta.url));
  const packages = join(here, '..', '..', '..');
  const native = env['BERTH_NATIVE_DIR'] || join(packages, '..', 'native', 'out');
  return {
    shim: join(native, 'berth-shim'),
    executor: join(native, 'berth-executor'),
    berthRunc: join(packages, 'runtime', 'bin', 'berth-runc.js'),
  };
}

function mountsFrom(v: unknown): Mount[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalid('rootfs: expected a list of mounts');
  return v.map((m, i) => {
    const o = record(m, `rootfs[${i}]`);
    return {
      type: str(o, 'type', `rootfs[${i}]`),
      source: str(o, 'source', `rootfs[${i}]`),
      target: str(o, 'target', `rootfs[${i}]`),
      options: strList(o, 'options', `rootfs[${i}]`),
    };
  });
}

function stdioFrom(req: Wire): Stdio {
  return {
    stdin: str(req, 'stdin', 'request'),
    stdout: str(req, 'stdout', 'request'),
    stderr: str(req, 'stderr', 'request'),
    terminal: req['terminal'] === true,
  };
}

function processToWire(p: ProcView): object {
  return {
    container_id: p.containerId,
    id: p.execId === '' ? p.containerId : p.execId,
    pid: p.pid,
    status: p.status,
    stdin: p.io.stdin,
    stdout: p.io.stdout,
    stderr: p.io.stderr,
    terminal: p.io.terminal,
    exit_status: p.exitStatus,
    exited_at: p.exitedAt ?? null,
  };
}

function exitToWire(id: string, e: ExitInfo): object {
  return { id, pid: e.pid, exit_status: e.exitStatus, exited_at: e.exitedAt ?? null };
}

function containerId(req: Wire): string {
  const id = str(req, 'container_id', 'request');
  if (id === '') throw invalid('container_id must be set');
  return id;
}

export const TaskRuntimePlugin = pluginType<TaskManager>('io.containerd.runtime.v2');

/**
 * The task manager, as containerd's runtime v2 `task` plugin. Its exports say
 * where things are: `root` and `state` (the bundles:
 * <state>/<namespace>/<id>), and `shims`, under which each task's shim keeps
 * its sockets (<shims>/<namespace>/<id>/attach.sock, control.sock).
 */
export const taskRuntimePlugin: PluginRecord<TaskManager> = {
  type: TaskRuntimePlugin,
  id: 'task',
  requires: [MetadataPlugin, EventPlugin],
  init: async (ic) => {
    const manager = new TaskManager({
      state: ic.paths.state,
      protos: ic.protos,
      events: ic.get(EventPlugin),
      store: ic.get(MetadataPlugin),
      log: ic.log,
      binaries: defaultBinaries(),
    });
    ic.exports['root'] = ic.root;
    ic.exports['state'] = bundlesDir(ic.paths.state);
    ic.exports['shims'] = shimsDir(ic.paths.state);
    mkdirSync(ic.root, { recursive: true, mode: 0o711 });
    await manager.restore();
    return manager;
  },
};

export const tasksService: PluginRecord<GrpcService> = {
  type: GRPCPlugin,
  id: 'tasks',
  requires: [TaskRuntimePlugin],
  init: (ic) => {
    const manager = ic.get(TaskRuntimePlugin);
    const timer = setTimeout(() => manager.publishRestoredExits(), RESTORED_EXITS_DELAY_MS);
    timer.unref();
    return {
      service: TASKS_SERVICE,
      close: () => clearTimeout(timer),
      unary: {
        Create: async (req: Wire, ctx) => {
          const id = containerId(req);
          const checkpoint = isRecord(req['checkpoint']) && str(req['checkpoint'], 'digest', 'checkpoint') !== '';
          const { pid } = await manager.create(ctx.namespace(), {
            containerId: id,
            rootfs: mountsFrom(req['rootfs']),
            io: stdioFrom(req),
            checkpoint,
            options: anyMessage(req['options'], 'options'),
          });
          return { container_id: id, pid };
        },
        Start: async (req: Wire, ctx) => manager.start(ctx.namespace(), containerId(req), str(req, 'exec_id', 'request')),
        Delete: async (req: Wire, ctx) => {
          const id = containerId(req);
          return exitToWire(id, await manager.delete(ctx.namespace(), id));
        },
        DeleteProcess: async (req: Wire, ctx) => {
          const execId = str(req, 'exec_id', 'request');
          return exitToWire(execId, await manager.deleteProcess(ctx.namespace(), containerId(req), execId));
        },
        Get: (req: Wire, ctx) => ({ process: processToWire(manager.view(ctx.namespace(), containerId(req), str(req, 'exec_id', 'request'))) }),
        List: (_req: Wire, ctx) => ({ tasks: manager.list(ctx.namespace()).map(processToWire) }),
        Kill: async (req: Wire, ctx) => {
          await manager.kill(ctx.namespace(), containerId(req), str(req, 'exec_id', 'request'), num(req, 'signal', 'request'), req['all'] === true);
          return {};
        },
        Exec: async (req: Wire, ctx) => {
          const execId = str(req, 'exec_id', 'request');
          await manager.exec(ctx.namespace(), containerId(req), execId, stdioFrom(req), anyMessage(req['spec'], 'spec'));
          return {};
        },
        ResizePty: async (req: Wire, ctx) => {
          await manager.resize(ctx.namespace(), containerId(req), str(req, 'exec_id', 'request'), num(req, 'width', 'request'), num(req, 'height', 'request'));
          return {};
        },
        CloseIO: async (req: Wire, ctx) => {
          await manager.closeIO(ctx.namespace(), containerId(req), str(req, 'exec_id', 'request'), req['stdin'] === true);
          return {};
        },
        Pause: async (req: Wire, ctx) => {
          await manager.pause(ctx.namespace(), containerId(req));
          return {};
        },
        Resume: async (req: Wire, ctx) => {
          await manager.resume(ctx.namespace(), containerId(req));
          return {};
        },
        ListPids: async (req: Wire, ctx) => {
          const pids = await manager.pids(ctx.namespace(), containerId(req));
          return {
            processes: pids.map((p) => ({
              pid: p.pid,
              info: p.execId === '' ? null : ic.protos.pack('containerd.runc.v1.ProcessDetails', { exec_id: p.execId }),
            })),
          };
        },
        Checkpoint: () => {
          throw notImplemented('checkpoint is not supported');
        },
        Update: async (req: Wire, ctx) => {
          await manager.update(ctx.namespace(), containerId(req), anyMessage(req['resources'], 'resources'));
          return {};
        },
        Metrics: async (req: Wire, ctx) => ({
          metrics: await metricsOf(manager, ic.protos, ctx.namespace(), strList(req, 'filters', 'request')),
        }),
        Wait: async (req: Wire, ctx) => {
          const e = await manager.wait(ctx.namespace(), containerId(req), str(req, 'exec_id', 'request'), ctx.signal);
          return { exit_status: e.exitStatus, exited_at: e.exitedAt ?? null };
        },
      },
    };
  },
};
