/**
 * Docker's JSON-message display for pull, push, load and import streams: on a
 * terminal one line per layer (its ID, status and a progress bar), redrawn in
 * place with cursor movement; otherwise plain status lines, progress updates
 * left out. An `error` message ends the stream with that error.
 */
import type { Writable } from 'node:stream';
import { jsonLines } from './api.js';
import { humanSize } from './format.js';

export interface JsonMessage {
  status?: string;
  id?: string;
  stream?: string;
  from?: string;
  time?: number;
  progress?: string;
  progressDetail?: { current?: number; total?: number; start?: number; units?: string; hidecounts?: boolean };
  error?: string;
  errorDetail?: { code?: number; message?: string };
  aux?: unknown;
}

export class JsonMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JsonMessageError';
  }
}

/** The progress bar docker draws for a message (empty when there is nothing to show). */
export function progressBar(p: NonNullable<JsonMessage['progressDetail']>, width: number, now = Date.now()): string {
  const current = p.current ?? 0;
  const total = p.total ?? 0;
  if (current <= 0 && total <= 0) return '';
  if (total <= 0) return p.units === undefined || p.units === '' ? humanSize(current).padStart(8) : `${current} ${p.units}`;
  let pct = Math.trunc((current / total) * 100) >> 1;
  if (pct > 50) pct = 50;
  let bar = '';
  if (width > 110) bar = `[${'='.repeat(pct)}>${' '.repeat(Math.max(0, 50 - pct))}] `;
  let numbers = '';
  if (p.hidecounts !== true) {
    if (p.units === undefined || p.units === '') {
      numbers = current > total ? humanSize(current).padStart(8) : `${humanSize(current).padStart(8)}/${humanSize(total)}`;
    } else numbers = current > total ? `${current} ${p.units}` : `${current}/${total} ${p.units}`;
  }
  let left = '';
  const start = p.start ?? 0;
  if (current > 0 && start > 0 && pct < 50 && width > 50) {
    const elapsed = now - start * 1000;
    const secs = Math.trunc(((total - current) * (elapsed / current)) / 1000);
    left = ` ${goDuration(secs)}`;
  }
  return bar + numbers + left;
}

function goDuration(secs: number): string {
  if (secs <= 0) return '0s';
  const h = Math.trunc(secs / 3600);
  const m = Math.trunc((secs % 3600) / 60);
  const s = secs % 60;
  return `${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${s}s`;
}

/**
 * Writes a JSON-message stream to `out`. Resolves when the stream ends; rejects
 * with the first `error` message. `onAux` receives `aux` payloads (push digests).
 */
export async function displayJsonMessages(
  source: AsyncIterable<Uint8Array>,
  out: Writable,
  tty: boolean,
  width = 80,
  onAux?: (aux: unknown) => void,
): Promise<void> {
  const ids = new Map<string, number>();
  const w = (s: string): void => {
    out.write(s);
  };
  for await (const m of jsonLines<JsonMessage>(source)) {
    if (m.aux !== undefined) {
      onAux?.(m.aux);
      continue;
    }
    const hasProgress = m.progressDetail !== undefined || (m.progress !== undefined && m.progress !== '');
    let diff = 0;
    if (m.id !== undefined && m.id !== '' && hasProgress) {
      let line = ids.get(m.id);
      if (line === undefined) {
        line = ids.size;
        ids.set(m.id, line);
        if (tty) w('\n');
      }
      diff = ids.size - line;
      if (tty && diff > 0) w(`\x1b[${diff}A`);
    } else ids.clear();
    if (m.error !== undefined || m.errorDetail?.message !== undefined) {
      throw new JsonMessageError(m.errorDetail?.message ?? m.error ?? 'unknown error');
    }
    const bar = m.progressDetail !== undefined ? progressBar(m.progressDetail, width) : '';
    let endl = '';
    let skip = false;
    if (tty && m.stream === undefined && m.progressDetail !== undefined) {
      w('\x1b[2K\r');
      endl = '\r';
    } else if (m.progressDetail !== undefined && bar !== '') skip = true;
    if (!skip) {
      let s = '';
      if (m.id !== undefined && m.id !== '') s += `${m.id}: `;
      if (m.from !== undefined && m.from !== '') s += `(from ${m.from}) `;
      if (m.progressDetail !== undefined && tty) s += `${m.status ?? ''} ${bar}${endl}`;
      else if (m.progress !== undefined && m.progress !== '') s += `${m.status ?? ''} ${m.progress}${endl}`;
      else if (m.stream !== undefined) s += `${m.stream}${endl}`;
      else s += `${m.status ?? ''}${endl}\n`;
      w(s);
    }
    if (tty && m.id !== undefined && m.id !== '' && diff > 0) w(`\x1b[${diff}B`);
  }
}
