/**
 * The app's server never listens in a worker (the primary owns the listening sockets), yet
 * Node's net.Server behaves differently without a listening handle: `listening` is false,
 * address() is null, close(cb) fails with ERR_SERVER_NOT_RUNNING, http servers never start
 * the connection tracking that enforces headersTimeout/requestTimeout (Node starts it on
 * 'listening'), and every time its connection count falls to zero the server emits 'close'
 * (net.js's _emitCloseIfDrained waits only for the handle to be gone). A cluster worker's
 * server has a handle; ours gets a stand-in that reports the primary's listening address and
 * turns server.close() into "take no more connections".
 *
 * This sets net.Server's `_handle`, a property every Node release since 0.x has used for the
 * same purpose; start() checks the behaviour it relies on and fails loudly if Node changed.
 */
import type * as net from 'node:net';
import type { ListenerInfo } from '../shared/protocol';

export interface Listenable extends net.Server {
  _handle: unknown;
  _connectionKey?: string;
  _pipeName?: string;
}

/** What net.Server asks of its handle: close() (server.close()), ref/unref, getsockname (address()). */
export function standInHandle(listener: ListenerInfo | undefined, onClose: () => void): Record<string, unknown> {
  const standIn: Record<string, unknown> = {
    close: onClose,
    ref() {},
    unref() {},
  };
  if (listener && listener.family !== 'unix') {
    standIn.getsockname = (out: Record<string, unknown>) => {
      out.address = listener.address;
      out.family = listener.family;
      out.port = listener.port;
      return 0;
    };
  }
  return standIn;
}

export class ListenHandleError extends Error {}

/** Marks `server` as listening on `listener` (the primary's first); `onClose` runs on server.close(). */
export function attachListenHandle(server: net.Server, listener: ListenerInfo | undefined, onClose: () => void): void {
  const s = server as Listenable;
  if (!('_handle' in s) || s._handle !== null) {
    throw new ListenHandleError("this Node's net.Server has no `_handle` slot: herdless cannot mark the app's server as listening");
  }
  if (listener?.family === 'unix') s._pipeName = listener.path;
  s._handle = standInHandle(listener, onClose);
  s._connectionKey = `herdless:${listener?.address ?? listener?.path ?? ''}:${listener?.port ?? ''}`;
  if (!s.listening) throw new ListenHandleError("this Node's net.Server ignores `_handle`: herdless cannot mark the app's server as listening");
  // As net.Server does once it listens: http servers start their connection tracking here.
  s.emit('listening');
}
