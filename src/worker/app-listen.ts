/**
 * listen() in a worker goes to the primary, as a `cluster` worker's does: every net.Server
 * (http, https, http2, tls, net) asks the primary to open or join the address, and becomes
 * listening exactly as in plain Node once it answers: the callback and 'listening' run on the
 * next tick, `listening` is true, address() is the real address (the same port in every
 * worker for listen(0)), and a failure ('EADDRINUSE', 'EACCES', ...) is the 'error' Node
 * itself would emit (code, errno, syscall 'listen', address, port). server.close() takes this
 * worker off the listener; the primary closes it when no worker listens on it any more.
 *
 * Argument handling follows lib/net.js (normalizeArgs, Server.prototype.listen); { fd } and
 * { handle } stay the worker's own, as they name an fd or handle of this process.
 */
import * as dns from 'node:dns';
import * as net from 'node:net';
import * as os from 'node:os';
import * as util from 'node:util';
import type { AppListenSpec, ListenerInfo, ListenFailure, PrimaryMessage, WorkerMessage } from '../shared/protocol';
import { HERDLESS_EVENT, isPrimaryMessage, wire } from '../shared/protocol';
import { standInHandle, type Listenable } from './listen-handle';
import { protocolOf } from './protocol-of';
import { state } from './state';

export interface AppListenHooks {
  /** Before 'listening' is emitted: connections of listener `index` belong to `server` now. */
  listening(server: net.Server, index: number, info: ListenerInfo): void;
  /** The app closed `server` (listening on `index`). */
  closed(server: net.Server, index: number): void;
}

type Pending = (reply: PrimaryMessage) => void;

const DEFAULT_BACKLOG = 511;

function toNumber(x: unknown): number | false {
  const n = Number(x);
  return n >= 0 ? n : false;
}

function isPipeName(s: unknown): s is string {
  return typeof s === 'string' && toNumber(s) === false;
}

/** lib/net.js normalizeArgs: [options, cb]. */
function normalizeArgs(args: unknown[]): [Record<string, unknown>, ((...a: unknown[]) => void) | null] {
  if (args.length === 0) return [{}, null];
  const arg0 = args[0];
  let options: Record<string, unknown> = {};
  if (typeof arg0 === 'object' && arg0 !== null) options = arg0 as Record<string, unknown>;
  else if (isPipeName(arg0)) options.path = arg0;
  else {
    options.port = arg0;
    if (args.length > 1 && typeof args[1] === 'string') options.host = args[1];
  }
  const cb = args[args.length - 1];
  return [options, typeof cb === 'function' ? (cb as (...a: unknown[]) => void) : null];
}

function nodeError(Base: ErrorConstructor | RangeErrorConstructor | TypeErrorConstructor, code: string, message: string): Error {
  const e = new Base(message) as Error & { code: string };
  e.code = code;
  // Node's own: `RangeError [ERR_SOCKET_BAD_PORT]: ...` in stacks, name stays the class's.
  return e;
}

/** lib/internal/validators.js validatePort, as listen() applies it. */
function validatePort(port: unknown): number {
  if (
    (typeof port !== 'number' && typeof port !== 'string') ||
    (typeof port === 'string' && port.trim().length === 0) ||
    +port !== +port >>> 0 ||
    +port > 0xffff
  ) {
    throw nodeError(RangeError, 'ERR_SOCKET_BAD_PORT', `options.port should be >= 0 and < 65536. Received ${util.inspect(port)}.`);
  }
  return +port | 0;
}

/** Node's UVExceptionWithHostPort for what the primary reported. */
function listenError(f: ListenFailure, address: string | null, port: number): Error {
  const errno = os.constants.errno[f.code as keyof typeof os.constants.errno];
  if (errno === undefined) {
    return Object.assign(new Error(`listen ${f.code}: ${f.message}`), { code: f.code, syscall: 'listen', address, port });
  }
  const uv = -errno;
  const uvmsg = util.getSystemErrorMap().get(uv)?.[1] ?? f.message;
  const where = f.address ?? address;
  const details = port && port > 0 ? ` ${where}:${port}` : where ? ` ${where}` : '';
  const e = new Error(`listen ${f.code}: ${uvmsg}${details}`) as NodeJS.ErrnoException & { address?: string; port?: number };
  e.code = f.code;
  e.errno = uv;
  e.syscall = 'listen';
  e.address = where ?? undefined;
  if (port) e.port = port;
  return e;
}

/** Per address, the nth slots (AppListenSpec.nth) this worker's servers hold. */
const held = new Map<string, Set<number>>();
const kSlot = Symbol('herdless.listenSlot');
type Slotted = net.Server & { [kSlot]?: { key: string; nth: number } };

function takeSlot(server: net.Server, key: string): number {
  const set = held.get(key) ?? new Set<number>();
  held.set(key, set);
  let nth = 0;
  while (set.has(nth)) nth++;
  set.add(nth);
  (server as Slotted)[kSlot] = { key, nth };
  return nth;
}

function releaseSlot(server: net.Server): void {
  const slot = (server as Slotted)[kSlot];
  if (!slot) return;
  (server as Slotted)[kSlot] = undefined;
  held.get(slot.key)?.delete(slot.nth);
}

export function routeAppListen(hooks: AppListenHooks): void {
  const pending = new Map<number, Pending>();
  let seq = 0;
  process.on(HERDLESS_EVENT, (m: unknown) => {
    if (!isPrimaryMessage(m) || (m.herdless !== 'listening' && m.herdless !== 'listen-error')) return;
    const done = pending.get(m.seq);
    pending.delete(m.seq);
    done?.(m);
  });
  const ask = (server: net.Server, spec: AppListenSpec, then: Pending) => {
    const id = ++seq;
    pending.set(id, then);
    const message: WorkerMessage = { herdless: 'listen', seq: id, spec, protocol: protocolOf(server) };
    if (process.connected) process.send!(wire(message));
  };

  const original = net.Server.prototype.listen;
  function listen(this: net.Server, ...args: unknown[]): net.Server {
    const s = this as Listenable;
    const [given, cb] = normalizeArgs(args);
    let options = (given._handle ?? given.handle ?? given) as Record<string, unknown>;
    // An fd or handle of this process: it stays this worker's own.
    if (options !== given || (typeof options.fd === 'number' && options.fd >= 0)) return (original as (...a: unknown[]) => net.Server).apply(this, args);
    if (s._handle) throw nodeError(Error, 'ERR_SERVER_ALREADY_LISTEN', 'Listen method has been called more than once without closing.');
    if (cb !== null) this.once('listening', cb);
    const backlogFromArgs = toNumber(args.length > 1 && args[1]) || toNumber(args.length > 2 && args[2]);
    if (args.length === 0 || typeof args[0] === 'function' || (options.port === undefined && 'port' in options) || options.port === null) {
      options = { ...options, port: 0 };
    }
    const backlog = Number(options.backlog || backlogFromArgs) || DEFAULT_BACKLOG;
    state.listenCalls++;
    if (typeof options.port === 'number' || typeof options.port === 'string') {
      const port = validatePort(options.port);
      const host = options.host as string | undefined;
      const ipv6Only = options.ipv6Only === true;
      const exclusive = options.exclusive === true;
      const go = (ip: string | undefined) => {
        const nth = takeSlot(this, `tcp:${ip ?? '*'}:${port}:${ipv6Only}`);
        ask(this, { kind: 'tcp', ip, port, backlog, ipv6Only, nth, exclusive }, (reply) => settle(this, reply, ip ?? null, port, hooks));
      };
      if (host) {
        dns.lookup(host, (err, ip) => {
          if (err) this.emit('error', err);
          else go(ip);
        });
      } else {
        go(undefined);
      }
      return this;
    }
    if (options.path && isPipeName(options.path)) {
      const path = options.path;
      s._pipeName = path;
      const nth = takeSlot(this, `unix:${path}`);
      const spec: AppListenSpec = { kind: 'unix', path, backlog, readableAll: options.readableAll === true, writableAll: options.writableAll === true, nth, exclusive: options.exclusive === true };
      ask(this, spec, (reply) => settle(this, reply, path, -1, hooks));
      return this;
    }
    state.listenCalls--;
    const e = nodeError(TypeError, 'ERR_INVALID_ARG_VALUE', `The argument 'options' ${'port' in options || 'path' in options ? 'is invalid' : 'must have the property "port" or "path"'}. Received ${util.inspect(options)}`);
    throw e;
  }
  net.Server.prototype.listen = listen as typeof net.Server.prototype.listen;
}

function settle(server: net.Server, reply: PrimaryMessage, address: string | null, port: number, hooks: AppListenHooks): void {
  const s = server as Listenable;
  if (reply.herdless === 'listen-error') {
    releaseSlot(server);
    process.nextTick(() => server.emit('error', listenError(reply.error, address, port)));
    return;
  }
  if (reply.herdless !== 'listening') return;
  const { index, info } = reply;
  s._handle = standInHandle(info, () => {
    releaseSlot(server);
    hooks.closed(server, index);
  });
  s._connectionKey = info.family === 'unix' ? `-1:${info.path}:-1` : `${info.family === 'IPv6' ? 6 : 4}:${info.address}:${info.port}`;
  hooks.listening(server, index, info);
  // As setupListenHandle: 'listening' on the next tick, and only if still listening then.
  process.nextTick(() => {
    if (s._handle) server.emit('listening');
  });
}
