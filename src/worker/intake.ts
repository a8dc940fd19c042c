/**
 * Connections in: each fd from an Inbox becomes a connection of the app's server, exactly as
 * if the server had accepted it (see adopt.ts). Also the accounting that the dispatcher reads
 * from the scoreboard: open connections, requests in flight, requests served.
 *
 * Requests are counted without a listener or a closure per request. For HTTP/1 (http and
 * https servers) Node publishes every request's start and every response's finish on
 * diagnostics channels; a response that never finishes (the client went away) is settled
 * when its socket closes, from a per-socket count. HTTP/2 publishes nothing in Node 20, so
 * there a 'request' listener counts, as before.
 */
import * as dc from 'node:diagnostics_channel';
import * as http from 'node:http';
import * as https from 'node:https';
import type * as net from 'node:net';
import { Score } from '../shared/scoreboard';
import type { ListenerInfo } from '../shared/protocol';
import { Adopter, type Peer } from './adopt';
import { ConnectionChecks } from './connection-checks';

const kInFlight = Symbol('herdless.inFlight');
type Counted = net.Socket & { [kInFlight]?: number };
interface HttpMessage {
  server: unknown;
  socket: Counted;
  response: http.ServerResponse;
}

export class Intake {
  readonly sockets = new Set<net.Socket>();
  readonly adopter: Adopter;
  /** Node's request-timeout check, running only while we hold connections. */
  readonly checks: ConnectionChecks;
  draining = false;
  private readonly onSocketClose: (this: net.Socket) => void;

  constructor(
    readonly server: net.Server,
    private readonly board: Int32Array,
    listeners: ListenerInfo[],
  ) {
    this.adopter = new Adopter(server, listeners);
    const checks = (this.checks = new ConnectionChecks(server));
    const sockets = this.sockets;
    // One function for every socket: `this` is the socket.
    this.onSocketClose = function (this: Counted) {
      sockets.delete(this);
      if (sockets.size === 0) checks.update(0);
      Atomics.sub(board, Score.open, 1);
      const unfinished = this[kInFlight] ?? 0;
      if (unfinished > 0) {
        this[kInFlight] = 0;
        Atomics.sub(board, Score.inFlight, unfinished);
        Atomics.add(board, Score.requests, unfinished);
      }
    };
    if (server instanceof http.Server || server instanceof https.Server) this.countHttp1();
    else this.countByListener();
  }

  private countHttp1(): void {
    const { board, server } = this;
    dc.subscribe('http.server.request.start', (message) => {
      const m = message as HttpMessage;
      if (m.server !== server) return;
      Atomics.add(board, Score.inFlight, 1);
      m.socket[kInFlight] = (m.socket[kInFlight] ?? 0) + 1;
      // Public API: Node ends the connection after a response that says so.
      if (this.draining && !m.response.headersSent) m.response.setHeader('Connection', 'close');
    });
    dc.subscribe('http.server.response.finish', (message) => {
      const m = message as HttpMessage;
      if (m.server !== server || !(m.socket[kInFlight]! > 0)) return;
      m.socket[kInFlight]!--;
      Atomics.sub(board, Score.inFlight, 1);
      Atomics.add(board, Score.requests, 1);
    });
  }

  private countByListener(): void {
    const { board } = this;
    const done = () => {
      Atomics.sub(board, Score.inFlight, 1);
      Atomics.add(board, Score.requests, 1);
    };
    // prependListener: count the request before the app's handler runs (it may block).
    this.server.prependListener('request', (_req: unknown, res: http.ServerResponse) => {
      Atomics.add(board, Score.inFlight, 1);
      res.once('close', done);
    });
  }

  /**
   * Inbox callback: [fd, listenerIndex, ...] plus how many records that consumed, and for
   * connections behind a PROXY header [i, address, port, family, ...] (i: the connection's
   * position in handoffs, counting pairs).
   */
  take(handoffs: number[], consumed: number, proxied?: (number | string)[]): void {
    const { board, server } = this;
    Atomics.add(board, Score.open, handoffs.length >> 1);
    // After `open`: the dispatcher's load figure never dips while a connection moves in.
    Atomics.add(board, Score.received, consumed);
    let next = 0; // the next entry of proxied
    for (let i = 0; i < handoffs.length; i += 2) {
      let peer: Peer | undefined;
      if (proxied !== undefined && proxied[next] === i >> 1) {
        peer = { address: proxied[next + 1] as string, port: proxied[next + 2] as number, family: proxied[next + 3] as string };
        next += 4;
      }
      const socket = this.adopter.adopt(handoffs[i], handoffs[i + 1], peer);
      if (socket === null) {
        Atomics.sub(board, Score.open, 1);
        continue;
      }
      this.sockets.add(socket);
      socket.on('close', this.onSocketClose);
    }
    this.checks.update(this.sockets.size);
    // The app may change it at any time; the dispatcher caps what it sends us by it.
    Atomics.store(board, Score.maxConnections, server.maxConnections > 0 ? Math.min(server.maxConnections, 0x7fffffff) | 0 : 0);
  }
}
