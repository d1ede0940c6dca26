/**
 * The containers and exec endpoints of the Docker Engine API.
 */
import { Duplex } from 'node:stream';
import { invalid } from '@berth/base';
import { SERVICES } from '@berth/supervisor';
import { SNAPSHOTTER } from '../engine.js';
import { conflict } from '../server/errors.js';
import type { Engine } from '../engine.js';
import { signalNumber } from '../containers/service.js';
import type { ContainerService, WaitCondition } from '../containers/service.js';
import { filterContainers, summary } from '../containers/summary.js';
import type { ContainerRecord } from '../containers/record.js';
import type { Ctx, Router } from '../server/router.js';
import { streamLogs } from '../views/logs.js';

/** The inspect JSON of a container (a copy; engine-private fields dropped). */
export function inspectJSON(c: ContainerRecord): Record<string, unknown> {
  const cfg = c.Config;
  const opt = (k: string, v: unknown): Record<string, unknown> => (v === undefined || v === null || v === '' ? {} : { [k]: v });
  // Docker's field order and its nulls: clients compare `inspect -f '{{json .Config}}'` output.
  const config = {
    Hostname: cfg.Hostname ?? '', Domainname: cfg.Domainname ?? '', User: cfg.User ?? '',
    AttachStdin: cfg.AttachStdin ?? false, AttachStdout: cfg.AttachStdout ?? false, AttachStderr: cfg.AttachStderr ?? false,
    ...opt('ExposedPorts', cfg.ExposedPorts),
    Tty: cfg.Tty ?? false, OpenStdin: cfg.OpenStdin ?? false, StdinOnce: cfg.StdinOnce ?? false,
    Env: cfg.Env ?? null, Cmd: cfg.Cmd ?? null,
    ...opt('Healthcheck', cfg.Healthcheck), ...opt('ArgsEscaped', cfg.ArgsEscaped === true ? true : undefined),
    Image: cfg.Image ?? '', Volumes: cfg.Volumes ?? null, WorkingDir: cfg.WorkingDir ?? '', Entrypoint: cfg.Entrypoint ?? null,
    ...opt('NetworkDisabled', cfg.NetworkDisabled === true ? true : undefined), ...opt('MacAddress', cfg.MacAddress),
    OnBuild: cfg.OnBuild ?? null, Labels: cfg.Labels ?? {},
    ...opt('StopSignal', cfg.StopSignal), ...opt('StopTimeout', cfg.StopTimeout), ...opt('Shell', cfg.Shell),
  };
  return {
    Id: c.Id, Created: c.Created, Path: c.Path, Args: c.Args, State: c.State, Image: c.Image,
    ResolvConfPath: c.ResolvConfPath, HostnamePath: c.HostnamePath, HostsPath: c.HostsPath, LogPath: c.LogPath,
    Name: c.Name, RestartCount: c.RestartCount, Driver: c.Driver, Platform: c.Platform, MountLabel: c.MountLabel,
    ProcessLabel: c.ProcessLabel, AppArmorProfile: c.AppArmorProfile, ExecIDs: c.ExecIDs,
    // dockerd fills these from its defaults at create; clients (docker-py's
    // run reads HostConfig.LogConfig.Type) rely on them being there.
    HostConfig: {
      ...c.HostConfig,
      LogConfig: { Type: c.HostConfig.LogConfig?.Type || 'json-file', Config: c.HostConfig.LogConfig?.Config ?? {} },
      RestartPolicy: { Name: c.HostConfig.RestartPolicy?.Name || 'no', MaximumRetryCount: c.HostConfig.RestartPolicy?.MaximumRetryCount ?? 0 },
    },
    GraphDriver: { Name: 'overlay2', Data: null },
    Mounts: c.Mounts,
    Config: config,
    NetworkSettings: c.NetworkSettings,
  };
}

export function containerRoutes(router: Router, engine: Engine, containers: ContainerService): void {
  const imageMatches = (c: ContainerRecord, ref: string): boolean => {
    if (c.Config.Image === ref || c.Image === ref || c.Image.slice(7).startsWith(ref)) return true;
    const norm = ref.includes(':') ? ref : `${ref}:latest`;
    return c.Config.Image === norm;
  };

  router.get('/containers/json', async (ctx) => {
    const list = filterContainers(containers.all(), {
      all: ctx.bool('all'), limit: ctx.int('limit'), filters: ctx.filters(),
      resolveContainer: (r) => containers.find(r), imageMatches,
    });
    const out = list.map(summary);
    if (ctx.bool('size')) {
      await Promise.all(list.map(async (c, i) => Object.assign(out[i] ?? {}, await containerSizes(engine, c))));
    }
    ctx.send(200, out);
  });

  router.post('/containers/create', async (ctx) => {
    const body = await ctx.json();
    const r = await containers.create(body, ctx.str('name'), ctx.apiVersion);
    ctx.send(201, r);
  });

  router.get('/containers/{id}/json', async (ctx) => {
    const c = containers.find(ctx.params['id'] ?? '');
    const out = inspectJSON(c);
    if (ctx.bool('size')) Object.assign(out, await containerSizes(engine, c));
    ctx.send(200, out);
  });

  router.post('/containers/{id}/start', async (ctx) => {
    await containers.start(ctx.params['id'] ?? '');
    ctx.send(204);
  });

  router.post('/containers/{id}/stop', async (ctx) => {
    await containers.stop(ctx.params['id'] ?? '', ctx.str('signal') || undefined, ctx.int('t'));
    ctx.send(204);
  });

  router.post('/containers/{id}/restart', async (ctx) => {
    await containers.restart(ctx.params['id'] ?? '', ctx.str('signal') || undefined, ctx.int('t'));
    ctx.send(204);
  });

  router.post('/containers/{id}/kill', async (ctx) => {
    const id = ctx.params['id'] ?? '';
    const signal = ctx.str('signal') || undefined;
    await containers.kill(id, signal);
    // As dockerd: a SIGKILL answers once the container is down (up to 10 s),
    // so that a remove right after it does not find it still running.
    if (signalNumber(signal ?? 'KILL') === 9) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        containers.wait(id, 'not-running').catch(() => undefined),
        new Promise<void>((resolve) => { timer = setTimeout(resolve, 10_000); }),
      ]);
      clearTimeout(timer);
    }
    ctx.send(204);
  });

  router.post('/containers/{id}/pause', async (ctx) => {
    await containers.pause(ctx.params['id'] ?? '');
    ctx.send(204);
  });

  router.post('/containers/{id}/unpause', async (ctx) => {
    await containers.unpause(ctx.params['id'] ?? '');
    ctx.send(204);
  });

  router.post('/containers/{id}/update', async (ctx) => {
    ctx.send(200, await containers.update(ctx.params['id'] ?? '', await ctx.object()));
  });

  router.post('/containers/{id}/rename', (ctx) => {
    containers.rename(ctx.params['id'] ?? '', ctx.str('name') ?? '');
    ctx.send(204);
  });

  router.post('/containers/{id}/resize', async (ctx) => {
    await containers.resize(ctx.params['id'] ?? '', '', ctx.int('h', 0) ?? 0, ctx.int('w', 0) ?? 0);
    ctx.send(200);
  });

  router.delete('/containers/{id}', async (ctx) => {
    await containers.remove(ctx.params['id'] ?? '', { force: ctx.bool('force'), volumes: ctx.bool('v') });
    ctx.send(204);
  });

  router.post('/containers/{id}/wait', async (ctx) => {
    const cond = (ctx.str('condition') || 'not-running') as WaitCondition;
    if (!['not-running', 'next-exit', 'removed'].includes(cond)) throw invalid(`invalid condition: "${cond}"`);
    const p = containers.wait(ctx.params['id'] ?? '', cond);
    // Headers go out at once so that the client knows the wait is registered.
    const res = ctx.stream(200, 'application/json');
    const r = await p;
    res.end(JSON.stringify(r) + '\n');
  });

  router.post('/containers/{id}/attach', async (ctx) => attach(ctx, containers));

  router.post('/containers/prune', async (ctx) => {
    const f = ctx.filters();
    for (const k of f.keys()) if (k !== 'until' && k !== 'label' && k !== 'label!') throw invalid(`invalid filter '${k}'`);
    const deleted: string[] = [];
    for (const c of containers.all()) {
      if (c.State.Running || c.State.Restarting) continue;
      const labels = c.Config.Labels ?? {};
      if (!(f.get('label') ?? []).every((l) => matchLabel(labels, l))) continue;
      if ((f.get('label!') ?? []).some((l) => matchLabel(labels, l))) continue;
      const until = f.get('until');
      if (until !== undefined && until.some((u) => Date.parse(c.Created) >= untilMs(u))) continue;
      await containers.remove(c.Id, { force: false, volumes: false });
      deleted.push(c.Id);
    }
    engine.events.emit('container', 'prune', '', { reclaimed: '0' });
    ctx.send(200, { ContainersDeleted: deleted.length === 0 ? null : deleted, SpaceReclaimed: 0 });
  });

  // ---- exec ----

  router.post('/containers/{id}/exec', async (ctx) => {
    const body = await ctx.object();
    const id = containers.createExec(ctx.params['id'] ?? '', body);
    ctx.send(201, { Id: id });
  });

  router.post('/exec/{id}/start', async (ctx) => {
    const body = await ctx.object();
    const id = ctx.params['id'] ?? '';
    const ex = containers.findExec(id);
    const detach = body['Detach'] === true;
    const tty = typeof body['Tty'] === 'boolean' ? body['Tty'] : undefined;
    const cs = body['ConsoleSize'];
    if (Array.isArray(cs) && cs.length === 2 && cs.every((n) => Number.isInteger(n) && n > 0)) {
      ex.berth.consoleSize = { height: cs[0] as number, width: cs[1] as number };
    }
    if (detach) {
      await containers.startExec(id, undefined, tty);
      ctx.send(200);
      return;
    }
    if (ex.berth.started) await containers.startExec(id, undefined, tty); // answers 409
    const h = ctx.hijack(ex.ProcessConfig.tty || tty === true ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream');
    try {
      // As with dockerd, the stream ends only once the exit code is recorded:
      // clients inspect the exec right after EOF (docker-py's exec_run does).
      await containers.startExec(id, { stream: endingAfter(h.stream, ex.berth.exited), head: h.head }, tty);
    } catch (e) {
      // dockerd writes the error on the exec's stdout, then closes.
      const msg = `${e instanceof Error ? e.message : String(e)}\r\n`;
      if (h.stream.writable) h.stream.end(ex.ProcessConfig.tty ? msg : frame(1, msg));
    }
  });

  router.post('/exec/{id}/resize', async (ctx) => {
    const ex = containers.findExec(ctx.params['id'] ?? '');
    const h = ctx.int('h', 0) ?? 0;
    const w = ctx.int('w', 0) ?? 0;
    if (!ex.Running) {
      // Clients resize as they start the exec: the size is applied when it runs.
      if (h > 0 && w > 0) ex.berth.consoleSize = { height: h, width: w };
      ex.berth.resizePending = true;
      ctx.send(200);
      return;
    }
    await containers.resize(ex.ContainerID, ex.ID, h, w);
    ctx.send(200);
  });

  router.get('/exec/{id}/json', (ctx) => {
    const ex = containers.findExec(ctx.params['id'] ?? '');
    const { berth: _own, ...rest } = ex;
    void _own;
    ctx.send(200, rest);
  });
}

/** A view of a connection whose end() is held until `until` settles. */
function endingAfter(conn: Duplex, until: Promise<unknown>): Duplex {
  const view = new Duplex({
    read() {
      conn.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      // A client gone is no error of the exec's; its output is dropped.
      conn.write(chunk, () => cb());
    },
    final(cb) {
      void until.finally(() => {
        conn.end();
        cb();
      });
    },
    // Not passed on: a failed start leaves the connection to the caller,
    // which writes the error; a client gone closes it anyway.
    destroy(err, cb) {
      cb(err);
    },
  });
  conn.on('data', (b: Buffer) => {
    if (!view.push(b)) conn.pause();
  });
  conn.once('end', () => view.push(null));
  conn.once('close', () => view.destroy());
  conn.on('error', () => view.destroy());
  view.on('error', () => undefined);
  return view;
}

/** SizeRw (the container's own layer) and SizeRootFs (with its image's layers), from the snapshotter. */
export async function containerSizes(engine: Engine, c: ContainerRecord): Promise<{ SizeRw: number; SizeRootFs: number }> {
  const usage = async (key: string): Promise<number> => {
    try {
      const u = await engine.client.call<{ size: number }>(SERVICES.snapshots, 'Usage', { snapshotter: SNAPSHOTTER, key });
      return u.size;
    } catch {
      return 0;
    }
  };
  const rw = await usage(c.Id);
  let below = 0;
  try {
    const info = await engine.client.call<{ info: { parent: string } }>(SERVICES.snapshots, 'Stat', { snapshotter: SNAPSHOTTER, key: c.Id });
    let parent = info.info.parent;
    for (let i = 0; parent !== '' && i < 256; i++) {
      below += await usage(parent);
      const p = await engine.client.call<{ info: { parent: string } }>(SERVICES.snapshots, 'Stat', { snapshotter: SNAPSHOTTER, key: parent });
      parent = p.info.parent;
    }
  } catch {
    /* sizes are best effort */
  }
  return { SizeRw: rw, SizeRootFs: rw + below };
}

function frame(stream: 1 | 2, text: string): Buffer {
  const payload = Buffer.from(text);
  const h = Buffer.alloc(8);
  h[0] = stream;
  h.writeUInt32BE(payload.length, 4);
  return Buffer.concat([h, payload]);
}

function matchLabel(labels: Record<string, string>, f: string): boolean {
  const eq = f.indexOf('=');
  return eq < 0 ? f in labels : labels[f.slice(0, eq)] === f.slice(eq + 1);
}

/** `until` as Docker takes it: a unix timestamp, an RFC 3339 time or a duration before now. */
export function untilMs(u: string): number {
  if (/^\d+(\.\d+)?$/.test(u)) return Number(u) * 1000;
  const d = /^(\d+)(s|m|h)$/.exec(u);
  if (d !== null) return Date.now() - Number(d[1]) * ({ s: 1000, m: 60_000, h: 3_600_000 }[d[2] as 's' | 'm' | 'h']);
  const t = Date.parse(u);
  if (Number.isNaN(t)) throw invalid(`invalid filter 'until=${u}'`);
  return t;
}

async function attach(ctx: Ctx, containers: ContainerService): Promise<void> {
  const c = containers.find(ctx.params['id'] ?? '');
  const stream = ctx.bool('stream');
  const logs = ctx.bool('logs');
  if (!stream && !logs) throw invalid('at least one of stream or logs must be set');
  if (c.State.Paused) throw conflict('You cannot attach to a paused container, unpause it first');
  const h = ctx.hijack(c.Config.Tty === true ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream');
  if (logs) {
    // As dockerd: the log so far first, then (with stream) the live output.
    const abort = new AbortController();
    const gone = (): void => abort.abort();
    h.stream.once('close', gone);
    const stdout = ctx.bool('stdout');
    const stderr = ctx.bool('stderr');
    const maxFile = Number(c.HostConfig.LogConfig?.Config?.['max-file'] ?? '1');
    try {
      if (c.LogPath !== '' && (stdout || stderr)) {
        await streamLogs({
          path: c.LogPath, maxFiles: Number.isInteger(maxFile) && maxFile > 0 ? maxFile : 1, stdout, stderr,
          timestamps: false, follow: false, tty: c.Config.Tty === true, isRunning: () => false, signal: abort.signal,
          write: (chunk) => new Promise<void>((resolve) => {
            if (h.stream.write(chunk)) resolve();
            else h.stream.once('drain', () => resolve());
          }),
        });
      }
    } finally {
      h.stream.off('close', gone);
    }
    if (!stream) {
      h.stream.end();
      return;
    }
  }
  try {
    await containers.attach(c.Id, h.stream, h.head, {
      stdin: ctx.bool('stdin'), stdout: ctx.bool('stdout'), stderr: ctx.bool('stderr'), stdinOnce: false,
    }, ctx.str('detachKeys'));
  } catch (e) {
    h.stream.end();
    throw e;
  }
}
