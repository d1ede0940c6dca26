/**
 * Docker's JSON progress messages (pull, push, load, import), made from the
 * supervisor's Transfer progress: one line per layer step, with Docker's
 * words and layer IDs (12 hex digits of the blob digest).
 */
import type { TransferProgress } from '@berth/supervisor';

export interface JsonMessage {
  status?: string;
  id?: string;
  progressDetail?: { current?: number; total?: number };
  progress?: string;
  stream?: string;
  aux?: Record<string, unknown>;
  errorDetail?: { message: string };
  error?: string;
}

export type Emit = (m: JsonMessage) => void;

/** Sizes as Docker's units.HumanSize: 4 significant digits, decimal units. */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}

/** The `progress` string: a 50-wide bar and `current/total`. */
export function progressBar(current: number, total: number): string {
  const cur = humanSize(current).padStart(8);
  if (total <= 0) return cur;
  const pct = Math.min(50, Math.floor(Math.floor((current / total) * 100) / 2));
  return `[${'='.repeat(pct)}>${' '.repeat(Math.max(0, 50 - pct))}] ${cur}/${humanSize(total)}`;
}

/** `layer-sha256:abc…` → { kind: layer, digest }. */
function refOf(name: string): { kind: string; digest: string } | undefined {
  const i = name.indexOf('-sha256:');
  if (i < 0) return undefined;
  return { kind: name.slice(0, i), digest: name.slice(i + 1) };
}

export const layerId = (digest: string): string => digest.replace(/^sha256:/, '').slice(0, 12);

type LayerState = 'new' | 'waiting' | 'downloading' | 'downloaded' | 'exists' | 'extracting' | 'done';

/** Pull progress: the supervisor's events per layer as Docker's lines. */
export class PullReporter {
  private readonly layers = new Map<string, LayerState>();
  private readonly lastShown = new Map<string, number>();
  /** Whether the registry answered (the manifest was found): from then on the answer streams. */
  resolved = false;

  constructor(private readonly emit: Emit) {}

  private readonly earlyExtract = new Set<string>();

  on(p: TransferProgress): void {
    if (p.event.startsWith('Pulling from ')) {
      this.resolved = true;
      return;
    }
    const ref = refOf(p.name);
    if (ref === undefined) return;
    if (ref.kind === 'index' || ref.kind === 'manifest') this.resolved = true;
    if (ref.kind !== 'layer') return;
    const id = layerId(ref.digest);
    const state = this.layers.get(id) ?? 'new';
    const set = (s: LayerState): void => void this.layers.set(id, s);
    const detail = (status: string): void => {
      this.emit({ status, progressDetail: { current: p.progress, total: p.total }, progress: progressBar(p.progress, p.total), id });
    };
    switch (p.event) {
      case 'waiting':
        if (state === 'new') {
          this.emit({ status: 'Pulling fs layer', progressDetail: {}, id });
          this.emit({ status: 'Waiting', progressDetail: {}, id });
          set('waiting');
        }
        break;
      case 'downloading':
        if (state === 'new') this.emit({ status: 'Pulling fs layer', progressDetail: {}, id });
        if (state === 'new' || state === 'waiting' || state === 'downloading') {
          // At most one line per 1% of the layer, and always the last.
          const step = Math.max(1, Math.floor(p.total / 100));
          const last = this.lastShown.get(id) ?? -1;
          if (last < 0 || p.progress - last >= step || p.progress >= p.total) {
            this.lastShown.set(id, p.progress);
            detail('Downloading');
          }
          set('downloading');
        }
        break;
      case 'complete':
        if (state === 'new') this.emit({ status: 'Pulling fs layer', progressDetail: {}, id });
        if (state !== 'downloaded' && state !== 'extracting' && state !== 'done' && state !== 'exists') {
          this.emit({ status: 'Verifying Checksum', progressDetail: {}, id });
          this.emit({ status: 'Download complete', progressDetail: {}, id });
          set('downloaded');
          if (this.earlyExtract.delete(id)) {
            detail('Extracting');
            set('extracting');
          }
        }
        break;
      case 'already exists':
        if (state === 'new' || state === 'waiting') {
          this.emit({ status: 'Already exists', progressDetail: {}, id });
          set('exists');
        }
        break;
      case 'extracting':
        // Layers extract while they download: Docker's display still says "Download complete" first.
        if (state === 'new' || state === 'waiting' || state === 'downloading') {
          this.earlyExtract.add(id);
        } else if (state !== 'done') {
          detail('Extracting');
          set('extracting');
        }
        break;
      case 'extracted':
        if (state === 'extracting' || state === 'downloaded') {
          if (state === 'downloaded') detail('Extracting');
          this.emit({ status: 'Pull complete', progressDetail: {}, id });
          set('done');
        } else if (state === 'new') {
          this.emit({ status: 'Already exists', progressDetail: {}, id });
          set('done');
        }
        break;
      default:
        break;
    }
  }
}

/** Push progress: per layer `Preparing`, `Waiting`, `Pushing`, `Pushed` or `Layer already exists`. */
export class PushReporter {
  private readonly layers = new Map<string, 'preparing' | 'pushing' | 'done'>();
  private readonly lastShown = new Map<string, number>();

  constructor(private readonly emit: Emit) {}

  on(p: TransferProgress): void {
    const ref = refOf(p.name);
    if (ref === undefined || ref.kind !== 'layer') return;
    const id = layerId(ref.digest);
    const state = this.layers.get(id);
    const prepare = (): void => {
      if (state === undefined) {
        this.emit({ status: 'Preparing', progressDetail: {}, id });
        this.layers.set(id, 'preparing');
      }
    };
    /** The layer's last line, once. */
    const finish = (status: string): void => {
      prepare();
      if (state === 'done') return;
      this.emit({ status, progressDetail: {}, id });
      this.layers.set(id, 'done');
    };
    switch (p.event) {
      case 'waiting':
        prepare();
        if (state === undefined) this.emit({ status: 'Waiting', progressDetail: {}, id });
        break;
      case 'uploading': {
        prepare();
        if (state === 'done') break;
        const step = Math.max(1, Math.floor(p.total / 100));
        const last = this.lastShown.get(id) ?? -1;
        if (last < 0 || p.progress - last >= step || p.progress >= p.total) {
          this.lastShown.set(id, p.progress);
          this.emit({ status: 'Pushing', progressDetail: { current: p.progress, total: p.total }, progress: progressBar(p.progress, p.total), id });
        }
        this.layers.set(id, 'pushing');
        break;
      }
      case 'complete':
        finish('Pushed');
        break;
      case 'already exists':
        finish('Layer already exists');
        break;
      default:
        break;
    }
  }
}
