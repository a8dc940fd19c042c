/**
 * Connections in: each fd from an Inbox becomes a net.Socket and a 'connection' on the
 * app's server, exactly as if the server had accepted it. Also the accounting that the
 * dispatcher reads from the scoreboard: open connections, requests in flight, served.
 */
import * as net from 'node:net';
import { Score } from '../scoreboard';

export class Intake {
  readonly sockets = new Set<net.Socket>();
  draining = false;

  constructor(
    readonly server: net.Server,
    private readonly board: Int32Array,
  ) {
    // prependListener: count the request before the app's handler runs (it may block).
    server.prependListener('request', (_req: unknown, res: NodeJS.EventEmitter & { shouldKeepAlive?: boolean }) => {
      Atomics.add(board, Score.inFlight, 1);
      if (this.draining) res.shouldKeepAlive = false;
      res.once('close', () => {
        Atomics.sub(board, Score.inFlight, 1);
        Atomics.add(board, Score.requests, 1);
      });
    });
  }

  /** Inbox callback: [fd, listenerIndex, ...] plus how many records that consumed. */
  take(handoffs: number[], consumed: number): void {
    const count = handoffs.length >> 1;
    Atomics.add(this.board, Score.open, count);
    // After `open`: the dispatcher's load figure never dips while a connection moves in.
    Atomics.add(this.board, Score.received, consumed);
    const allowHalfOpen = (this.server as { allowHalfOpen?: boolean }).allowHalfOpen ?? false;
    for (let i = 0; i < handoffs.length; i += 2) {
      const socket = new net.Socket({ fd: handoffs[i], readable: true, writable: true, allowHalfOpen });
      this.sockets.add(socket);
      socket.once('close', () => {
        this.sockets.delete(socket);
        Atomics.sub(this.board, Score.open, 1);
      });
      this.server.emit('connection', socket);
    }
  }
}
