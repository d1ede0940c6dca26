/**
 * Attach: a client's hijacked connection joined to a process's stdio at the
 * shim's attach socket (native/shim/PROTOCOL.md), so output never passes
 * through a buffer of the engine's beyond the socket's own. Detach keys
 * (ctrl-p ctrl-q by default) end the client's attachment, not the process.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { failedPrecondition, invalid, unavailable } from '@berth/base';

export interface AttachStreams {
  readonly execId: string;
  readonly stdin: boolean;
  readonly stdout: boolean;
  readonly stderr: boolean;
  readonly stdinOnce: boolean;
}

/** Docker's detach key syntax: `ctrl-p,ctrl-q`, `a`, `ctrl-@`... as bytes. */
export function parseDetachKeys(spec: string | undefined): Buffer | undefined {
  const s = spec ?? 'ctrl-p,ctrl-q';
  if (s === '') return undefined;
  const out: number[] = [];
  for (const part of s.split(',')) {
    if (part.length === 1) {
      out.push(part.charCodeAt(0));
    } else if (/^ctrl-[a-z@[\\\]^_]$/i.test(part)) {
      const c = part.slice(5);
      const code = c === '@' ? 0 : c >= 'a' && c <= 'z' ? c.charCodeAt(0) - 96 : c >= 'A' && c <= 'Z' ? c.charCodeAt(0) - 64 : c.charCodeAt(0) - 64;
      out.push(code);
    } else {
      throw invalid(`Invalid detach keys (${s}) provided`);
    }
  }
  return Buffer.from(out);
}

/** Connect to a shim's attach socket and do the handshake; the stream starts after it. */
export async function connectShim(socketPath: string, s: AttachStreams): Promise<{ socket: Socket; terminal: boolean; rest: Buffer }> {
  const socket = connect(socketPath);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (e) => reject(unavailable(`attaching to the container: ${e.message}`, e)));
  });
  socket.write(JSON.stringify({ exec_id: s.execId, stdin: s.stdin, stdout: s.stdout, stderr: s.stderr, stdin_once: s.stdinOnce }) + '\n');
  let buf = Buffer.alloc(0);
  const line = await new Promise<string>((resolve, reject) => {
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      const nl = buf.indexOf(10);
      if (nl >= 0) {
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.pause();
        const l = buf.subarray(0, nl).toString();
        buf = buf.subarray(nl + 1);
        resolve(l);
      }
    };
    const onEnd = (): void => reject(unavailable('attaching to the container: the shim closed the connection'));
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', reject);
  });
  let ans: { ok?: boolean; terminal?: boolean; error?: string };
  try {
    ans = JSON.parse(line) as typeof ans;
  } catch {
    socket.destroy();
    throw unavailable(`attaching to the container: bad answer ${JSON.stringify(line)}`);
  }
  if (ans.ok !== true) {
    socket.destroy();
    throw failedPrecondition(ans.error ?? 'attach refused');
  }
  return { socket, terminal: ans.terminal === true, rest: buf };
}

/**
 * Join the client and the shim until the output ends, the client leaves or
 * types the detach keys. Resolves with how it ended.
 */
export function relay(client: Duplex, head: Buffer, shim: Socket, rest: Buffer, withStdin: boolean, detachKeys: Buffer | undefined,
  beforeEnd?: () => Promise<void>): Promise<'ended' | 'detached' | 'client-gone'> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (how: 'ended' | 'detached' | 'client-gone'): void => {
      if (done) return;
      done = true;
      if (how === 'ended') {
        // The exit is recorded before the client sees the end (it asks for the exit code next).
        const end = (): void => { client.end(); };
        if (beforeEnd === undefined) end();
        else void beforeEnd().then(end, end);
      } else {
        if (how === 'detached') client.end();
        shim.destroy();
      }
      resolve(how);
    };
    if (rest.length > 0) client.write(rest);
    shim.on('data', (c: Buffer) => {
      if (!client.write(c)) {
        shim.pause();
        client.once('drain', () => shim.resume());
      }
    });
    shim.once('end', () => finish('ended'));
    shim.once('close', () => finish('ended'));
    shim.on('error', () => finish('ended'));
    shim.resume();

    let matched = 0;
    const input = (c: Buffer): void => {
      if (!withStdin) return;
      if (detachKeys !== undefined) {
        // Bytes that may start the detach sequence are held back until it is told apart.
        const out: number[] = [];
        for (const b of c) {
          if (b === detachKeys[matched]) {
            matched++;
            if (matched === detachKeys.length) {
              if (out.length > 0) shim.write(Buffer.from(out));
              finish('detached');
              return;
            }
            continue;
          }
          for (let k = 0; k < matched; k++) out.push(detachKeys[k] ?? 0);
          matched = 0;
          if (b === detachKeys[0]) matched = 1;
          else out.push(b);
        }
        if (out.length > 0) shim.write(Buffer.from(out));
        return;
      }
      shim.write(c);
    };
    if (head.length > 0) input(head);
    client.on('data', input);
    client.resume();
    client.once('end', () => {
      if (withStdin) shim.end();
    });
    client.once('close', () => {
      if (!done) {
        if (withStdin) shim.end();
        // Keep the shim's end of things going only while the client can read.
        finish('client-gone');
      }
    });
    client.on('error', () => finish('client-gone'));
  });
}
