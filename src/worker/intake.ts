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
import type * as net from 'node:net';
import { Score } from '../shared/scoreboard';
import type { ListenerInfo, Protocol } from '../shared/protocol';
import { protocolOf } from './protocol-of';
import { Adopter, type Peer } from './adopt';
import { ConnectionChecks } from '../shared/connection-checks';

const kInFlight = Symbol('herdless.inFlight');
type Counted = net.Socket & { [kInFlight]?: number };
interface HttpMessage {
  server: unknown;
  socket: Counted;
  response: http.ServerResponse;
}

interface Route {
  server: net.Server;
  adopter: Adopter;
}

/** Connections of one listener index that came before its server was known (a reply in flight). */
type Early = { fd: number; peer?: Peer }[];

/**
 * An http or https server (HTTP/1: counted through its request events). https.Server is a
 * tls.Server, not an http.Server; loading node:https costs every worker about 0.5 MB and a
 * few ms at start, so it is loaded only to look at a server that does TLS (whose app has
 * loaded tls already).
 */
function isHttp1(server: net.Server): boolean {
  if (server instanceof http.Server) return true;
  if (typeof (server as { setSecureContext?: unknown }).setSecureContext !== 'function') return false;
  const https = require('node:https') as typeof import('node:https'); // eslint-disable-line @typescript-eslint/no-require-imports
  return server instanceof https.Server;
}

export class Intake {
  readonly sockets = new Set<net.Socket>();
  draining = false;
  private readonly onSocketClose: (this: net.Socket) => void;
  /** By listener index: the server its connections join. */
  private readonly routes: (Route | undefined)[] = [];
  /** What each listener index is (the adopter opens a TCP or a Pipe handle by it). */
  private readonly infos: ListenerInfo[];
  private readonly early = new Map<number, Early>();
  private readonly http1 = new Set<unknown>();
  private readonly counted = new Set<net.Server>();
  /** Node's request-timeout check per server, running only while we hold connections. */
  private readonly checks = new Map<net.Server, ConnectionChecks>();

  constructor(
    private readonly board: Int32Array,
    configured: ListenerInfo[],
  ) {
    this.infos = [...configured];
    const sockets = this.sockets;
    const updateChecks = (open: number) => this.updateChecks(open);
    // One function for every socket: `this` is the socket.
    this.onSocketClose = function (this: Counted) {
      sockets.delete(this);
      if (sockets.size === 0) updateChecks(0);
      Atomics.sub(board, Score.open, 1);
      const unfinished = this[kInFlight] ?? 0;
      if (unfinished > 0) {
        this[kInFlight] = 0;
        Atomics.sub(board, Score.inFlight, unfinished);
        Atomics.add(board, Score.requests, unfinished);
      }
    };
  }

  private updateChecks(open: number): void {
    for (const checks of this.checks.values()) checks.update(open);
  }

  /** [listener index, what its server speaks] for every listener routed here. */
  protocols(): [number, Protocol][] {
    const out: [number, Protocol][] = [];
    this.routes.forEach((r, index) => {
      if (r) out.push([index, protocolOf(r.server)]);
    });
    return out;
  }

  /** Every server that takes connections here. */
  servers(): net.Server[] {
    return [...this.counted];
  }

  /** Connections of listener `index` become connections of `server` from now on. */
  route(index: number, server: net.Server, info?: ListenerInfo): void {
    if (info) this.infos[index] = info;
    this.routes[index] = { server, adopter: new Adopter(server, this.infos) };
    if (!this.counted.has(server)) {
      this.counted.add(server);
      this.checks.set(server, new ConnectionChecks(server));
      if (isHttp1(server)) {
        if (this.http1.size === 0) this.countHttp1();
        this.http1.add(server);
      } else {
        this.countByListener(server);
      }
    }
    const early = this.early.get(index);
    if (early) {
      this.early.delete(index);
      for (const { fd, peer } of early) this.adoptOne(fd, index, peer);
      this.updateChecks(this.sockets.size);
    }
  }

  private countHttp1(): void {
    const { board, http1 } = this;
    dc.subscribe('http.server.request.start', (message) => {
      const m = message as HttpMessage;
      if (!http1.has(m.server)) return;
      Atomics.add(board, Score.inFlight, 1);
      m.socket[kInFlight] = (m.socket[kInFlight] ?? 0) + 1;
      // Public API: Node ends the connection after a response that says so.
      if (this.draining && !m.response.headersSent) m.response.setHeader('Connection', 'close');
    });
    dc.subscribe('http.server.response.finish', (message) => {
      const m = message as HttpMessage;
      if (!http1.has(m.server) || !(m.socket[kInFlight]! > 0)) return;
      m.socket[kInFlight]!--;
      Atomics.sub(board, Score.inFlight, 1);
      Atomics.add(board, Score.requests, 1);
    });
  }

  private countByListener(server: net.Server): void {
    const { board } = this;
    const done = () => {
      Atomics.sub(board, Score.inFlight, 1);
      Atomics.add(board, Score.requests, 1);
    };
    // prependListener: count the request before the app's handler runs (it may block).
    server.prependListener('request', (_req: unknown, res: http.ServerResponse) => {
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
    const { board } = this;
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
      this.adoptOne(handoffs[i], handoffs[i + 1], peer);
    }
    this.updateChecks(this.sockets.size);
    // The app may change it at any time; the dispatcher caps what it sends us by it.
    const server = this.routes.find((r) => r !== undefined)?.server;
    if (server) Atomics.store(board, Score.maxConnections, server.maxConnections > 0 ? Math.min(server.maxConnections, 0x7fffffff) | 0 : 0);
  }

  private adoptOne(fd: number, listener: number, peer: Peer | undefined): void {
    const route = this.routes[listener];
    if (!route) {
      // Its server's listen() answer is still on its way (IPC and the channel race): soon.
      const early = this.early.get(listener) ?? [];
      early.push({ fd, peer });
      this.early.set(listener, early);
      return;
    }
    const socket = route.adopter.adopt(fd, listener, peer);
    if (socket === null) {
      Atomics.sub(this.board, Score.open, 1);
      return;
    }
    this.sockets.add(socket);
    socket.on('close', this.onSocketClose);
  }
}
