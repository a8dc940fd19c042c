/**
 * The one place that loads the native addon, and the exact shape of what it exports.
 * Loading is lazy so that `require('herdless')` works everywhere; only starting a
 * dispatcher needs Linux.
 */
import * as path from 'node:path';
import { HerdlessError } from './errors';

export interface SocketInfo {
  stream: boolean;
  listening: boolean;
  family: 'IPv4' | 'IPv6' | 'unix' | 'other';
  address?: string;
  port?: number;
  path?: string;
}

/** What an fd is (native inspectFd): `kind` from fstat; for sockets, names as in <sys/socket.h>. */
export interface FdKind {
  kind: 'socket' | 'regular file' | 'directory' | 'pipe' | 'character device' | 'block device' | 'other';
  domain?: string;
  type?: string;
  protocol?: number;
  listening?: boolean;
}

/** The accept thread's counts; stats().dispatcher is these but pendingByWorker and proxy (src/primary/stats.ts). */
export interface AcceptorStats {
  accepted: number;
  handedOff: number;
  handoffRetries: number;
  redispatched: number;
  /** Connections taken back unread from a worker whose loop stayed busy past stealAfter (or, at light load, left unread 1 ms while another worker slept), and given to another. */
  stolen: number;
  /** Times that happened (each takes back one or more connections). */
  steals: number;
  backpressurePauses: number;
  backpressurePausedMs: number;
  fdPauses: number;
  fdPausedMs: number;
  /** The accept thread runs with a short scheduler slice (Linux 6.12+ EEVDF), so a new connection waits less for it; false elsewhere. */
  shortSlice: boolean;
  /** Closed without a hand-off: the dispatcher stopped while no worker had room. */
  dropped: number;
  acceptErrors: Record<string, number>;
  /** Accepted and not yet handed off (at most one, plus re-dispatched ones). */
  waiting: number;
  pendingByWorker: Record<string, number>;
  /** proxyProtocol: headers read (`accepted`, of which v2 `local`), connections closed for a
   *  `malformed` header or none within proxyTimeout (`timedOut`), headers still awaited. */
  proxy: ProxyStats;
}

export interface ProxyStats {
  accepted: number;
  local: number;
  /** Of `accepted`: from a peer outside proxyFrom, so read and ignored (the socket's own address stands). */
  untrusted: number;
  malformed: number;
  timedOut: number;
  /** Times accepting paused because the most connections allowed were awaiting their header. */
  fullPauses: number;
  waiting: number;
}

export interface NativeAcceptor {
  start(): void;
  /** Joins the thread; returns how many accepted connections could not be handed off. */
  stop(): number;
  /** workerEndFd: the primary's copy of the worker's end, to take back what it has not read. */
  /** routeKey: the worker's client-ip key (its slot, so that a replacement keeps its clients); default id. */
  addWorker(id: number, channelFd: number, scoreboardFd: number, workerEndFd?: number, routeKey?: number): void;
  removeWorker(id: number): boolean;
  pauseWorker(id: number, paused: boolean): void;
  /** Queues re-dispatched connections; with the thread gone, delivers or closes each now (returns how many were closed).
   *  acceptedAt (from drainChannel): each one's accept time, CLOCK_MONOTONIC ns; default now. */
  dispatch(handoffs: number[], acceptedAt?: number[]): number;
  setMaxConnections(max: number): void;
  /** Take back connections a worker has held unread this long (ms); 0 disables. */
  setStealAfter(ms: number): void;
  /** cb() once on the next accepted connection; call again to re-arm; null releases it. */
  watchActivity(cb: (() => void) | null): void;
  /** Before start(): true routes each client address to its own worker (route: 'client-ip'). */
  /** secret: the pool's 16-byte key for the client-address hash (src/primary/route-secret.ts). */
  setRoute(clientIp: boolean, secret?: Buffer): void;
  /** Before start(): read a PROXY header (v1/v2) from every connection before the hand-off. */
  /** trusted: proxyFrom's rules, 18 bytes each ({ family 0|4|6, prefix, addr[16] }); absent: every peer. */
  setProxyProtocol(timeoutMs: number, maxWaiting: number, trusted?: Buffer): void;
  stats(): AcceptorStats;
  /** A listener the app opened in a worker: watched from now on; returns its index (never reused). */
  addListener(fd: number): number;
  /** Stop watching it; the caller closes the fd afterwards. */
  removeListener(index: number): boolean;
  /** Worker `workerId` listens on app listener `index` (joined), or no longer does. */
  joinListener(index: number, workerId: number, joined: boolean): void;
}

export interface NativeInbox {
  /** Stop reading; closeListener: also take a listener's queue and close its fd. */
  close(closeListener?: boolean): void;
  counters(): { wakeups: number; emptyWakeups: number; rejected: number; acceptErrors: number; fdRoomStalls: number };
}

/** proxied: [i, address, port, family, ...] for connections whose client a PROXY header named. */
export type InboxCallback = (handoffs: number[] | null, consumed: number, proxied?: (number | string)[]) => void;

export interface Addon {
  supported: true;
  listenTcp(ip: string, port: number, backlog: number, reusePort: boolean, listen: boolean, ipv6Only?: boolean): number;
  listenUnix(path: string, backlog: number, mode: number): number;
  socketInfo(fd: number): SocketInfo;
  inspectFd(fd: number): FdKind;
  /** Duplicates an inherited listener as a close-on-exec, non-blocking fd of our own. */
  adoptFd(fd: number): number;
  closeFd(fd: number): void;
  socketpair(): [number, number];
  /** [fd, listener, ...] not yet read; appends each one's accept time (CLOCK_MONOTONIC ns) to acceptedAt. */
  drainChannel(fd: number, acceptedAt?: number[]): number[];
  /** A listener's accept queue now (TCP_INFO, or unix_diag for unix sockets); null if the kernel cannot tell. */
  listenQueue(fd: number): { queued: number; backlog: number } | null;
  createScoreboard(): { fd: number; buffer: ArrayBuffer };
  mapScoreboard(fd: number): ArrayBuffer;
  monotonicMillis(): number;
  /** False where the runtime refuses ArrayBuffers over foreign memory (V8 sandbox). */
  externalBuffersAllowed(): boolean;
  /** Publish this process's event-loop state into its scoreboard (worker only, once). */
  watchLoop(scoreboardFd: number, useJsHook?: boolean): { jsHook: boolean };
  /** How long each wake-up of the watched loop kept it awake (µs), over the last 10-20 s and the span under way; null before watchLoop(). */
  loopDelay(): { count: number; p50: number; p99: number; max: number; mean: number } | null;
  /** The placement policy as a pure function (native/placement.h); for tests. */
  pickForTest(
    workers: Record<string, number | boolean>[],
    now: { us: number; ms?: number },
    options?: { maxConnections?: number; avoidUs?: number; stealAfterUs?: number; start?: number },
  ): { pick: number; tiers: string[]; steal: boolean[] };
  /** One sd_notify(3) datagram to `socket` (a path, or "@name" for an abstract one). */
  sdNotify(socket: string, message: string): void;
  /** Client-ip routing (native/primary/route-hash.h PickByClient) as a pure function; for tests. */
  pickByClientForTest(
    workers: Record<string, number | boolean>[],
    keys: number[],
    address: string,
    now?: { us: number; ms?: number },
    options?: { maxConnections?: number; avoidUs?: number; stallUs?: number },
  ): number;
  /** The hash client-ip routing uses for an address (hex; '0' for no address); for tests. */
  clientHashForTest(address: string): string;
  /** SO_PEERCRED of a connected Unix socket: who connected (the control socket checks the uid). */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  setParentDeathSignal(signal: number): void;
  raiseFdLimit(): number;
  /** Exit `graceMs` after the parent is gone, even if JS is blocked. */
  watchParent(parentPid: number, graceMs: number): void;
  Acceptor: new (
    listenFds: number[],
    maxConnectionsPerWorker: number,
    stallMs: number,
    onError: (err: Error) => void,
  ) => NativeAcceptor;
  /** board: this worker's scoreboard (the inbox publishes rejected records and fd stalls);
   *  listenerIndex: what a listener inbox reports as each connection's listener. */
  Inbox: new (fd: number, kind: 'channel' | 'listener', cb: InboxCallback, board?: ArrayBuffer, listenerIndex?: number) => NativeInbox;
}

let addon: Addon | undefined;

export function loadAddon(): Addon {
  if (addon) return addon;
  if (process.platform !== 'linux') {
    throw new HerdlessError(
      'ERR_HERDLESS_UNSUPPORTED_PLATFORM',
      `herdless runs on Linux only (this is ${process.platform}): it relies on epoll, accept4 and SCM_RIGHTS.`,
    );
  }
  // HERDLESS_ADDON: another build of the addon (npm run test:asan's, with AddressSanitizer);
  // workers inherit it with the environment.
  const other = process.env.HERDLESS_ADDON;
  const loaded = (
    other
      ? require(path.resolve(other)) // eslint-disable-line @typescript-eslint/no-require-imports
      : require('node-gyp-build')(path.join(__dirname, '..', '..'))
  ) as Addon | { supported: false };
  if (!loaded.supported) {
    throw new HerdlessError('ERR_HERDLESS_UNSUPPORTED_PLATFORM', 'herdless was built without Linux support.');
  }
  addon = loaded;
  return addon;
}
