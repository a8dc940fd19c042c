/**
 * Opening the primary's listening sockets. In 'dispatch' and 'herd' modes these are the
 * real listeners; in 'reuseport' mode the primary only binds (without listening) to hold
 * the port, and each worker opens its own SO_REUSEPORT listener on the same address.
 */
import * as dns from 'node:dns/promises';
import * as net from 'node:net';
import * as fs from 'node:fs';
import type { Addon, FdKind, SocketInfo } from '../shared/binding';
import { invalidOption } from '../shared/errors';
import { closeUnclaimed, listenKey, takeInherited } from './inherited';
import type { Mode, NormalizedListen } from './options';

export interface Listener {
  fd: number;
  info: SocketInfo;
  /** Set for unix sockets we created: removed on close. */
  socketPath?: string;
  /** The listen(2) backlog asked for (not known for an inherited fd). */
  backlog?: number;
  /** Set in reuseport mode: what each worker binds. */
  reusePort?: { ip: string; port: number; backlog: number };
}

async function resolveHost(host: string): Promise<string> {
  if (net.isIP(host)) return host;
  const { address } = await dns.lookup(host);
  return address;
}

function openTcp(addon: Addon, ip: string, port: number, backlog: number, mode: Mode): number {
  return mode === 'reuseport' ? addon.listenTcp(ip, port, backlog, true, false) : addon.listenTcp(ip, port, backlog, false, true);
}

/** An upgrade's inherited socket for this entry: the port stays open from one primary to the next. */
function adoptInherited(addon: Addon, spec: NormalizedListen): Listener | undefined {
  if (spec.kind === 'fd') return undefined;
  const fd = takeInherited(addon, listenKey(spec));
  if (fd === undefined) return undefined;
  const info = addon.socketInfo(fd);
  if (!info.listening) {
    addon.closeFd(fd);
    return undefined;
  }
  return spec.kind === 'unix' ? { fd, info, socketPath: spec.path } : { fd, info };
}

async function openOne(addon: Addon, spec: NormalizedListen, mode: Mode): Promise<Listener> {
  const inherited = mode === 'reuseport' ? undefined : adoptInherited(addon, spec);
  if (inherited) return inherited;
  if (spec.kind === 'unix') {
    const fd = addon.listenUnix(spec.path, spec.backlog, spec.mode);
    return { fd, info: addon.socketInfo(fd), socketPath: spec.path, backlog: spec.backlog };
  }
  if (spec.kind === 'fd') {
    let info: SocketInfo;
    try {
      checkInherited(addon.inspectFd(spec.fd), spec.fd);
      info = addon.socketInfo(spec.fd);
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_HERDLESS_INVALID_OPTION') throw err;
      throw invalidOption('listen.fd', `fd ${spec.fd} is not a usable socket (${(err as Error).message}); ${EXPECTED}`);
    }
    // Our own duplicate (close-on-exec, non-blocking): the caller keeps its fd, and closing
    // ours never pulls a socket out from under the caller's event loop.
    return { fd: addon.adoptFd(spec.fd), info };
  }
  let ip: string;
  if (spec.host === undefined) {
    // Like net.Server: dual-stack "::" where IPv6 exists, else "0.0.0.0".
    try {
      const fd = openTcp(addon, '::', spec.port, spec.backlog, mode);
      return tcpListener(addon, fd, '::', spec.backlog, mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT') throw err;
      ip = '0.0.0.0';
    }
  } else {
    ip = await resolveHost(spec.host);
  }
  const fd = openTcp(addon, ip, spec.port, spec.backlog, mode);
  return tcpListener(addon, fd, ip, spec.backlog, mode);
}

const EXPECTED = 'expected a listening SOCK_STREAM socket of AF_INET, AF_INET6 (TCP) or AF_UNIX';
const STREAM_FAMILIES = new Set(['AF_INET', 'AF_INET6', 'AF_UNIX']);
const IPPROTO_TCP = 6;
const IPPROTO_MPTCP = 262;

/**
 * An inherited fd must be a listening TCP or unix stream socket: anything else (a UDP or
 * AF_PACKET socket, an AF_VSOCK listener, a file) would pass accept() on to workers fds that
 * they cannot serve, and they would crash in a loop. Say what was given and what is expected.
 */
function checkInherited(k: FdKind, fd: number): void {
  let given: string | undefined;
  if (k.kind !== 'socket') given = `a ${k.kind}`;
  else if (k.type !== 'SOCK_STREAM' || !STREAM_FAMILIES.has(k.domain!)) given = `a ${k.domain} ${k.type} socket`;
  else if (k.domain !== 'AF_UNIX' && k.protocol !== IPPROTO_TCP && k.protocol !== IPPROTO_MPTCP)
    given = `a ${k.domain} SOCK_STREAM socket of protocol ${k.protocol}, not TCP`;
  else if (!k.listening) given = `a ${k.domain} SOCK_STREAM socket that is not listening (connected, or listen() was never called)`;
  if (given) throw invalidOption('listen.fd', `fd ${fd} is ${given.replace(/^a (?=[AEIOU])/, 'an ')}; ${EXPECTED}`);
}

function tcpListener(addon: Addon, fd: number, ip: string, backlog: number, mode: Mode): Listener {
  const info = addon.socketInfo(fd);
  return mode === 'reuseport' ? { fd, info, backlog, reusePort: { ip, port: info.port!, backlog } } : { fd, info, backlog };
}

/**
 * A listener in words, as stats(), metrics labels and errors name it: "127.0.0.1:8080",
 * "[::1]:8080" (brackets, as in a URL), or the unix socket's path.
 */
export function describeListener(l: Listener): string {
  const { info } = l;
  if (info.family === 'unix') return info.path || `unnamed unix socket (fd ${l.fd})`;
  if (info.family === 'IPv6') return `[${info.address}]:${info.port}`;
  if (info.family === 'IPv4') return `${info.address}:${info.port}`;
  return `fd ${l.fd}`;
}

export async function openListeners(addon: Addon, specs: NormalizedListen[], mode: Mode): Promise<Listener[]> {
  const opened: Listener[] = [];
  try {
    for (const spec of specs) opened.push(await openOne(addon, spec, mode));
    closeUnclaimed(addon);
    return opened;
  } catch (err) {
    closeListeners(addon, opened);
    throw err;
  }
}

/** unlink: false after an upgrade, when the socket file is the new primary's to serve and remove. */
export function closeListeners(addon: Addon, listeners: Listener[], unlink = true): void {
  for (const l of listeners) {
    addon.closeFd(l.fd);
    if (l.socketPath && unlink) fs.rmSync(l.socketPath, { force: true });
  }
}
