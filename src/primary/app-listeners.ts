/**
 * Listeners the app opens itself: listen() in a worker asks the primary (protocol.ts
 * 'listen'), which opens the address once, adds it to the accept thread and answers with the
 * real address; every worker that listens on the same address joins the same listener, as
 * under `cluster` (listen(0) gives every worker the same port). The accept thread hands its
 * connections only to its members. It closes when its last member leaves (server.close() in
 * every worker, or the workers gone), removing a unix socket file as Node does.
 */
import type { Addon, NativeAcceptor } from '../shared/binding';
import type { AppListenSpec, ListenFailure, ListenerInfo, Mode, PrimaryMessage, WorkerMessage } from '../shared/protocol';
import { closeListeners, type Listener } from './listeners';
import { takeInherited, takeInheritedPrefix } from './inherited';

/** How an upgrade (SIGUSR2) hands an app listener to the new primary: by the key its workers ask for. */
const INHERITED_PREFIX = 'app ';

interface AppListener {
  index: number;
  listener: Listener;
  keys: string[];
  members: Set<number>;
}

/**
 * The listener a spec names. `exclusive` (as under `cluster`) is a socket of that worker's
 * own: never shared, so a second one on the same address fails with EADDRINUSE and listen(0)
 * gives each worker its own port; it still lives in the primary, like every other listener.
 */
function keyOf(spec: AppListenSpec, workerId: number): string {
  const where = spec.kind === 'unix' ? `unix:${spec.path}` : `tcp:${spec.ip ?? '*'}:${spec.port}${spec.ipv6Only ? ':v6only' : ''}`;
  return `${where}#${spec.nth}${spec.exclusive ? `!${workerId}` : ''}`;
}

export function infoOf(l: Listener): ListenerInfo {
  const { family, address, port, path } = l.info;
  return family === 'unix' ? { family, path: l.socketPath ?? path } : { family, address, port };
}

export class AppListeners {
  private readonly byKey = new Map<string, AppListener>();
  private readonly byIndex = new Map<number, AppListener>();

  constructor(
    private readonly addon: Addon,
    private readonly acceptor: NativeAcceptor,
  ) {}

  /** Opens (or joins) the listener for `spec` as worker `workerId`; throws a ListenFailure. */
  listen(workerId: number, spec: AppListenSpec): { index: number; info: ListenerInfo } {
    let l = this.byKey.get(keyOf(spec, workerId));
    if (!l) l = this.open(spec, workerId);
    if (!l.members.has(workerId)) {
      l.members.add(workerId);
      this.acceptor.joinListener(l.index, workerId, true);
    }
    return { index: l.index, info: infoOf(l.listener) };
  }

  private open(spec: AppListenSpec, workerId: number): AppListener {
    const listener = this.inherited(keyOf(spec, workerId), spec) ?? openSocket(this.addon, spec);
    let index: number;
    try {
      index = this.acceptor.addListener(listener.fd);
    } catch (err) {
      closeListeners(this.addon, [listener]);
      throw failure(err, spec);
    }
    const l: AppListener = { index, listener, keys: [keyOf(spec, workerId)], members: new Set() };
    // listen(0) then listen(<that port>) from another worker is the same listener.
    if (spec.kind === 'tcp' && spec.port === 0) l.keys.push(keyOf({ ...spec, port: listener.info.port! }, workerId));
    for (const k of l.keys) this.byKey.set(k, l);
    this.byIndex.set(index, l);
    return l;
  }

  /** After an upgrade: the old primary's socket for this address, so the port never closes (and listen(0) keeps its port). */
  private inherited(key: string, spec: AppListenSpec): Listener | undefined {
    const fd = takeInherited(this.addon, INHERITED_PREFIX + key);
    if (fd === undefined) return undefined;
    const info = this.addon.socketInfo(fd);
    if (!info.listening) {
      this.addon.closeFd(fd);
      return undefined;
    }
    return spec.kind === 'unix' ? { fd, info, socketPath: spec.path, backlog: spec.backlog } : { fd, info, backlog: spec.backlog };
  }

  /** Once the workers have started: inherited sockets nobody asked for again are closed. */
  closeUnclaimed(): void {
    for (const fd of takeInheritedPrefix(this.addon, INHERITED_PREFIX)) this.addon.closeFd(fd);
  }

  /** What upgrade() hands over: each listener's fd under the key a new worker's listen() asks for. */
  inheritable(): { fd: number; key: string }[] {
    return [...this.byIndex.values()].map((l) => ({ fd: l.listener.fd, key: INHERITED_PREFIX + l.keys[0] }));
  }

  /** Worker `workerId` no longer listens on `index` (its server closed). */
  unlisten(workerId: number, index: number): void {
    const l = this.byIndex.get(index);
    if (!l || !l.members.delete(workerId)) return;
    this.acceptor.joinListener(index, workerId, false);
    if (l.members.size === 0) this.close(l);
  }

  /** A worker is gone: it listens on nothing any more. */
  leaveAll(workerId: number): void {
    for (const l of [...this.byIndex.values()]) this.unlisten(workerId, l.index);
  }

  private close(l: AppListener): void {
    this.acceptor.removeListener(l.index);
    closeListeners(this.addon, [l.listener]);
    for (const k of l.keys) this.byKey.delete(k);
    this.byIndex.delete(l.index);
  }

  /** Open app listeners with their accept-thread index, in the order they opened. */
  list(): { index: number; listener: Listener }[] {
    return [...this.byIndex.values()].map(({ index, listener }) => ({ index, listener }));
  }

  get(index: number): Listener | undefined {
    return this.byIndex.get(index)?.listener;
  }

  /** After the accept thread stopped. unlink: false when a new primary serves the socket files. */
  closeAll(unlink: boolean): void {
    closeListeners(
      this.addon,
      [...this.byIndex.values()].map((l) => l.listener),
      unlink,
    );
    this.byKey.clear();
    this.byIndex.clear();
  }
}

/**
 * A worker's 'listen' or 'unlisten': the reply to send back (none for 'unlisten'). Without
 * app listeners (modes 'herd', 'reuseport') or while closing, listen() fails with a reason.
 */
export function answerListen(
  app: AppListeners | undefined,
  workerId: number,
  m: Extract<WorkerMessage, { herdless: 'listen' | 'unlisten' }>,
  closing: boolean,
  mode: Mode,
): PrimaryMessage | undefined {
  if (m.herdless === 'unlisten') {
    app?.unlisten(workerId, m.index);
    return undefined;
  }
  if (!app || closing) {
    const message = app ? 'the dispatcher is closing' : `listen() in a worker needs mode "dispatch" (this pool runs mode "${mode}"): pass listen addresses instead`;
    return { herdless: 'listen-error', seq: m.seq, error: { code: 'ERR_HERDLESS_INVALID_OPTION', message } };
  }
  try {
    const { index, info } = app.listen(workerId, m.spec);
    return { herdless: 'listening', seq: m.seq, index, info };
  } catch (err) {
    const e = err as { code?: string; message?: string; address?: string };
    return { herdless: 'listen-error', seq: m.seq, error: { code: e.code ?? 'EINVAL', message: e.message ?? String(err), address: e.address } };
  }
}

function failure(err: unknown, spec: AppListenSpec, address?: string): ListenFailure {
  const e = err as NodeJS.ErrnoException;
  return { code: e.code ?? 'EINVAL', message: e.message, address: address ?? (spec.kind === 'unix' ? spec.path : spec.ip) };
}

/** As Node's net.Server: "::" where it works, else "0.0.0.0" (an error says where it last failed). */
function openSocket(addon: Addon, spec: AppListenSpec): Listener {
  if (spec.kind === 'unix') {
    let fd: number;
    try {
      fd = addon.listenUnix(spec.path, spec.backlog, spec.readableAll || spec.writableAll ? unixMode(spec) : -1);
    } catch (err) {
      throw failure(err, spec);
    }
    return { fd, info: addon.socketInfo(fd), socketPath: spec.path, backlog: spec.backlog };
  }
  const tcp = (ip: string) => {
    const fd = addon.listenTcp(ip, spec.port, spec.backlog, false, true, spec.ipv6Only);
    return { fd, info: addon.socketInfo(fd), backlog: spec.backlog };
  };
  if (spec.ip !== undefined) {
    try {
      return tcp(spec.ip);
    } catch (err) {
      throw failure(err, spec);
    }
  }
  try {
    return tcp('::');
  } catch (err) {
    // Taken is taken on both; anything else (no IPv6) is tried on IPv4, as Node does.
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' || spec.ipv6Only) throw failure(err, spec, '::');
  }
  try {
    return tcp('0.0.0.0');
  } catch (err) {
    throw failure(err, spec, '0.0.0.0');
  }
}

/** listen({ path, readableAll, writableAll }): as Node's fchmod after listening. */
function unixMode(spec: Extract<AppListenSpec, { kind: 'unix' }>): number {
  // The owner keeps read/write, as Node's libuv (uv_pipe_chmod) adds to the file's mode.
  let mode = 0o600;
  if (spec.readableAll) mode |= 0o044;
  if (spec.writableAll) mode |= 0o022;
  return mode;
}
