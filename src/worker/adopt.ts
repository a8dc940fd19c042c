/**
 * Adopting a handed-off fd exactly as net.Server's own accept path (lib/net.js onconnection)
 * would have: the same maxConnections check and 'drop' event, the same socket options
 * (allowHalfOpen, pauseOnConnect, highWaterMark, noDelay, keepAlive), the same connection
 * count (getConnections()), socket.server, the 'connection' event and the
 * `net.server.socket` diagnostics channel. An app cannot tell the difference.
 *
 * Wrapping the fd: libuv's accept path puts an accepted fd straight into a uv_tcp_t. The
 * public `new net.Socket({ fd })` first guesses what the fd is (isatty, fstat, getsockopt,
 * getsockname) and then opens it, about 5 syscalls per connection. We know what it is (the
 * primary accepted it on a listener whose family we were told), so where Node's handle
 * classes are reachable we open the fd into a TCP or Pipe handle directly: one ioctl
 * (FIONBIO) beyond the accept path. That needs process.binding(), which Node may remove or
 * warn about, so it is feature-tested once and the public path is the fallback.
 */
import * as dc from 'node:diagnostics_channel';
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { ListenerInfo } from '../shared/protocol';


interface UvHandle {
  open(fd: number): number;
  close(): void;
  getsockname?(out: Record<string, unknown>): number;
  getpeername?(out: Record<string, unknown>): number;
}
type HandleClass = new (type: number) => UvHandle;

/** net.Server's accept-time settings and bookkeeping (all set by its constructor). */
interface ServerState extends net.Server {
  _connections: number;
  allowHalfOpen: boolean;
  pauseOnConnect: boolean;
  noDelay: boolean;
  keepAlive: boolean;
  keepAliveInitialDelay: number; // seconds
  highWaterMark: number;
}

export type AdoptPath = 'handle' | 'public';

/** The client a PROXY header named (proxyProtocol), presented as the socket's remote end. */
export interface Peer {
  address: string;
  port: number;
  family: string;
}

const serverSocketChannel = dc.channel('net.server.socket');

interface Handles {
  tcp: HandleClass;
  pipe: HandleClass;
  socketType: number;
}

/** Node's TCP and Pipe handle classes, if this Node exposes them without a warning. */
function findHandles(): Handles | null {
  // HERDLESS_ADOPT=public forces the fallback (the tests run both paths).
  if (process.env.HERDLESS_ADOPT === 'public') return null;
  // --pending-deprecation makes process.binding() print DEP0111: not worth a warning.
  if (process.execArgv.includes('--pending-deprecation') || /--pending-deprecation/.test(process.env.NODE_OPTIONS ?? '')) return null;
  if (process.env.NODE_PENDING_DEPRECATION === '1') return null;
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
    const tcp = binding('tcp_wrap') as { TCP?: HandleClass; constants?: { SOCKET?: number } };
    const pipe = binding('pipe_wrap') as { Pipe?: HandleClass; constants?: { SOCKET?: number } };
    const socketType = tcp.constants?.SOCKET;
    if (typeof tcp.TCP !== 'function' || typeof pipe.Pipe !== 'function' || typeof socketType !== 'number') return null;
    if (pipe.constants?.SOCKET !== socketType) return null;
    // The shape we rely on: a handle that can open an fd and is accepted by net.Socket.
    const probe = new tcp.TCP(socketType);
    const usable = typeof probe.open === 'function' && typeof probe.close === 'function';
    probe.close();
    return usable ? { tcp: tcp.TCP, pipe: pipe.Pipe, socketType } : null;
  } catch {
    return null;
  }
}

export class Adopter {
  readonly path: AdoptPath;
  private readonly handles: Handles | null;

  constructor(
    private readonly server: net.Server,
    private readonly listeners: ListenerInfo[],
  ) {
    this.handles = findHandles();
    this.path = this.handles ? 'handle' : 'public';
  }

  /** Turns fd into a connection of the server; returns the socket, or null if dropped. */
  adopt(fd: number, listener: number, peer?: Peer): net.Socket | null {
    const s = this.server as ServerState;
    const handle = this.open(fd, listener);
    if (handle === null) return null;
    if (s.maxConnections && s._connections >= s.maxConnections) {
      this.drop(s, handle, peer);
      return null;
    }
    const options = {
      allowHalfOpen: s.allowHalfOpen,
      pauseOnCreate: s.pauseOnConnect,
      readable: true,
      writable: true,
      readableHighWaterMark: s.highWaterMark,
      writableHighWaterMark: s.highWaterMark,
    };
    const socket = typeof handle === 'number' ? new net.Socket({ fd: handle, ...options }) : new net.Socket({ handle, ...options } as net.SocketConstructorOpts);
    if (peer) presentPeer(socket, peer);
    if (s.noDelay) socket.setNoDelay(true);
    if (s.keepAlive) socket.setKeepAlive(true, s.keepAliveInitialDelay * 1000);
    s._connections++;
    // Both names, as net.js sets them: `_server` is what decrements the count on close.
    (socket as net.Socket & { server: net.Server; _server: net.Server }).server = s;
    (socket as net.Socket & { _server: net.Server })._server = s;
    s.emit('connection', socket);
    if (serverSocketChannel.hasSubscribers) serverSocketChannel.publish({ socket });
    return socket;
  }

  /** A uv handle owning fd, or (public path) the fd itself; null if it could not be opened. */
  private open(fd: number, listener: number): UvHandle | number | null {
    if (!this.handles) return fd;
    const unix = this.listeners[listener]?.family === 'unix';
    const handle = new (unix ? this.handles.pipe : this.handles.tcp)(this.handles.socketType);
    if (handle.open(fd) !== 0) {
      handle.close();
      closeFd(fd);
      return null;
    }
    return handle;
  }

  /** maxConnections reached: as Node, tell 'drop' listeners who it was, then close. */
  private drop(s: ServerState, handle: UvHandle | number, peer?: Peer): void {
    if (s.listenerCount('drop') > 0) {
      const data: Record<string, unknown> = { __proto__: null };
      if (typeof handle === 'number') {
        const probe = new net.Socket({ fd: handle, readable: false, writable: false });
        Object.assign(data, {
          localAddress: probe.localAddress,
          localPort: probe.localPort,
          localFamily: probe.localFamily,
          remoteAddress: probe.remoteAddress,
          remotePort: probe.remotePort,
          remoteFamily: probe.remoteFamily,
        });
        probe.destroy();
        if (peer) Object.assign(data, { remoteAddress: peer.address, remotePort: peer.port, remoteFamily: peer.family });
        s.emit('drop', data);
        return;
      }
      const local: Record<string, unknown> = {};
      const remote: Record<string, unknown> = {};
      handle.getsockname?.(local);
      handle.getpeername?.(remote);
      Object.assign(data, {
        localAddress: local.address,
        localPort: local.port,
        localFamily: local.family,
        remoteAddress: remote.address,
        remotePort: remote.port,
        remoteFamily: remote.family,
      });
      if (peer) Object.assign(data, { remoteAddress: peer.address, remotePort: peer.port, remoteFamily: peer.family });
      s.emit('drop', data);
    }
    if (typeof handle === 'number') closeFd(handle);
    else handle.close();
  }
}

/**
 * Behind a proxy the socket's peer is the proxy; the client is who the PROXY header named.
 * Own-property getters shadow net.Socket's prototype ones (remoteAddress, remotePort,
 * remoteFamily), net's own cache of getpeername() and the handle's getpeername() hold the
 * same, so everything that asks (req.socket, req.connection, _getpeername(), a TLS socket
 * layered on top, the 'drop' path) sees one answer.
 * socket.address() stays the local end, as it is.
 */
function presentPeer(socket: net.Socket, peer: Peer): void {
  const name = { address: peer.address, port: peer.port, family: peer.family };
  (socket as net.Socket & { _peername?: unknown })._peername = name;
  // A TLS socket (https, http2 secure) over this one asks its handle: Node's TLSWrap forwards
  // getpeername() to the handle below it, this socket's own.
  const handle = (socket as net.Socket & { _handle?: { getpeername?: (out: Record<string, unknown>) => number } })._handle;
  if (handle) {
    handle.getpeername = (out) => {
      Object.assign(out, name);
      return 0;
    };
  }
  Object.defineProperties(socket, {
    remoteAddress: { get: () => name.address, configurable: true, enumerable: false },
    remotePort: { get: () => name.port, configurable: true, enumerable: false },
    remoteFamily: { get: () => name.family, configurable: true, enumerable: false },
  });
}

function closeFd(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already gone
  }
}
