/**
 * A client connection to a control socket: requests in, one final answer each out. Used by the
 * CLI commands and by a starting primary that probes whether a socket path is still in use.
 */
import * as net from 'node:net';
import { CONTROL_VERSION, type ControlCommand, type ControlHello, type ControlReply } from './control';

export class ControlError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void; onEvent?: (e: Record<string, unknown>) => void };

export class ControlConnection {
  private nextId = 1;
  private buffered = '';
  private readonly pending = new Map<number, Pending>();
  private closedError: Error | undefined;
  /** Resolves when the other end closes (the primary exited, or refused us). */
  readonly closed: Promise<void>;

  private constructor(
    private readonly socket: net.Socket,
    readonly path: string,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.fail(this.closedError ?? new ControlError('ECONNRESET', `${path}: the primary closed the connection`));
        resolve();
      });
    });
    socket.on('error', (err) => (this.closedError ??= err));
  }

  /** Connect; rejects with the system error (ENOENT, ECONNREFUSED: nobody there; EACCES: not ours). */
  static connect(path: string, timeoutMs = 5000): Promise<ControlConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(path);
      const timer = setTimeout(() => socket.destroy(Object.assign(new Error(`${path}: no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new ControlConnection(socket, path));
      });
    });
  }

  request<T>(cmd: ControlCommand, args?: Record<string, unknown>, onEvent?: Pending['onEvent']): Promise<T> {
    if (this.closedError || this.socket.destroyed) return Promise.reject(this.closedError ?? new ControlError('ECONNRESET', `${this.path}: connection closed`));
    const id = this.nextId++;
    this.socket.write(`${JSON.stringify({ v: CONTROL_VERSION, id, cmd, args })}\n`);
    return new Promise<T>((resolve, reject) => this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onEvent }));
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      let msg: ControlReply;
      try {
        msg = JSON.parse(line);
      } catch {
        this.closedError = new ControlError('ERR_HERDLESS_CONTROL', `${this.path}: not a herdless control socket (bad answer)`);
        this.socket.destroy();
        return;
      }
      this.onMessage(msg);
    }
  }

  private onMessage(msg: ControlReply): void {
    if (msg.id === null && msg.error) {
      // Refused as a whole (another user): every request fails with it.
      this.closedError = new ControlError(msg.error.code, msg.error.message);
      return;
    }
    const p = this.pending.get(msg.id as number);
    if (!p) return;
    if (msg.event !== undefined) return p.onEvent?.(msg as unknown as Record<string, unknown>);
    this.pending.delete(msg.id as number);
    if (msg.error) p.reject(new ControlError(msg.error.code, msg.error.message));
    else p.resolve(msg.result);
  }

  private fail(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/**
 * Who serves on `path`: its hello, 'stale' (a socket file nobody listens on), or 'none' (no
 * file). Other errors (EACCES) are thrown.
 */
export async function probe(path: string, timeoutMs = 2000): Promise<ControlHello | 'stale' | 'none'> {
  let c: ControlConnection;
  try {
    c = await ControlConnection.connect(path, timeoutMs);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') return 'none';
    if (code === 'ECONNREFUSED') return 'stale';
    throw err;
  }
  try {
    return await c.request<ControlHello>('hello');
  } finally {
    c.close();
  }
}
