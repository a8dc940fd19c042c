/**
 * What the primary and a worker say to each other, besides the fds themselves.
 *
 * Control messages travel over Node's IPC channel (rare, small), hidden from the app's as
 * Node's internal messages (HERDLESS_CMD). Connections travel over a private SEQPACKET
 * socketpair with SCM_RIGHTS (see native/channel.h). Load figures travel through a
 * shared-memory scoreboard page (see native/scoreboard.h).
 *
 * A worker's file descriptors, as spawn() lays them out:
 *   3 Node IPC  4 scoreboard memfd  5 hand-off channel ('dispatch')
 *   5.. the shared listeners ('herd')
 */
/** How connections reach workers: our accept thread, a shared listening socket, or SO_REUSEPORT. */
export type Mode = 'dispatch' | 'herd' | 'reuseport';

export const SCOREBOARD_FD = 4;
export const FIRST_EXTRA_FD = 5;
export const CONFIG_ENV = 'HERDLESS_WORKER_CONFIG';

export type WorkerSource =
  | { kind: 'channel'; fd: number }
  | { kind: 'listener'; fd: number }
  | { kind: 'reuseport'; ip: string; port: number; backlog: number };

/** What a worker is told about each of the primary's listeners (by index). */
export interface ListenerInfo {
  family: 'IPv4' | 'IPv6' | 'unix' | 'other';
  address?: string;
  port?: number;
  path?: string;
}

/**
 * What an app's listen() asks the primary to open (or join), host already resolved to an IP.
 * nth: the how-manyth server of this worker listening on that address now (0 first), as in
 * Node's cluster child: two listen(0) in one worker are two ports; worker A's first and
 * worker B's first are one.
 */
export type AppListenSpec =
  | { kind: 'tcp'; ip?: string; port: number; backlog: number; ipv6Only: boolean; nth: number; exclusive?: boolean }
  | { kind: 'unix'; path: string; backlog: number; readableAll: boolean; writableAll: boolean; nth: number; exclusive?: boolean };

/** What a listener's connections speak, as the worker serving it says (its server's class). */
export type Protocol = 'http' | 'https' | 'tls' | 'tcp';
const PROTOCOLS: readonly string[] = ['http', 'https', 'tls', 'tcp'];
/** A worker's word is checked before it is kept (it only ever labels a listener). */
export const isProtocol = (p: unknown): p is Protocol => typeof p === 'string' && PROTOCOLS.includes(p);

/** A failed app listen(), as the worker rebuilds Node's error from it. */
export interface ListenFailure {
  code: string;
  message: string;
  /** Where Node would say it failed: '::' or '0.0.0.0' for a port without host, the path for unix. */
  address?: string;
}

export interface WorkerConfig {
  id: number;
  /** Stable slot 0..max-1: a replacement takes the slot of the worker it replaces. */
  slot: number;
  app: string;
  /** The app's own arguments: process.argv.slice(2) in the worker. */
  args?: string[];
  mode: Mode;
  parentPid: number;
  sources: WorkerSource[];
  /** The primary's listeners, by the index that travels with each hand-off. */
  listeners: ListenerInfo[];
  serverTimeouts: { headersTimeout?: number; requestTimeout?: number; keepAliveTimeout?: number };
  /** startTimeout, and when it ends (Date.now() ms; the primary started counting at spawn): an
   *  app that neither exports a server nor calls listen() by then fails to load. */
  startTimeout: number;
  startDeadline: number;
  /** listen() in the app goes to the primary (dispatch mode only). */
  appListen: boolean;
  /** Keep the figures a health ask answers with (the GC observer); off: asks answer health null. */
  health: boolean;
  /** Who to become before the app loads, when setpriv(1) has not done it already. */
  credentials?: { uid: number; gid: number; user?: string; initGroups: boolean };
}

/** Why a worker stops taking connections, as its onShutdown hooks are told. */
export type ShutdownReason = 'reload' | 'scale-down' | 'recycle' | 'closed' | 'signal' | 'primary-gone' | 'shutdown';

/**
 * A worker's health as it answers an ask (src/worker/health.ts): delays in µs over the
 * wake-ups of the last 10-20 s, elu over the same window, the rest as of now.
 */
export interface HealthReport {
  delayUs: { count: number; p50: number; p99: number; max: number };
  elu: number;
  heapUsed: number;
  heapTotal: number;
  rss: number;
  gcCount: number;
  gcMs: number;
  handles: number;
}

export type WorkerMessage =
  /** protocols: [listener index, what its server speaks] for the listeners it serves. */
  | { herdless: 'ready'; protocols?: [number, Protocol][] }
  | { herdless: 'load-error'; message: string; stack?: string }
  | { herdless: 'draining' }
  | { herdless: 'listen'; seq: number; spec: AppListenSpec; protocol?: Protocol }
  | { herdless: 'unlisten'; index: number }
  /** The answer to an ask: `metrics` is the app's prom-client getMetricsAsJSON(), null if it uses none. */
  | { herdless: 'health'; seq: number; health: HealthReport | null; metrics?: unknown[] | null; metricsError?: string };

/** drain: `deadline` is ms from now after which the primary kills the worker.
 *  ask: health figures, and the app's prom-client metrics if `metrics`. */
export type PrimaryMessage =
  | { herdless: 'drain'; reason: ShutdownReason; deadline: number }
  | { herdless: 'listening'; seq: number; index: number; info: ListenerInfo }
  | { herdless: 'listen-error'; seq: number; error: ListenFailure }
  | { herdless: 'ask'; seq: number; metrics: boolean };

/**
 * Node's child_process layer emits a message whose `cmd` starts with `NODE_` as
 * 'internalMessage' instead of 'message' (lib/internal/child_process.js isInternal), as
 * `cluster` hides its own NODE_CLUSTER: ours travel as NODE_HERDLESS, so that an app's
 * process.on('message') in a worker sees only what is meant for it, and the primary's
 * 'message' only what the app sent. Not a name Node acts on (NODE_HANDLE*, NODE_CLUSTER).
 */
export const HERDLESS_CMD = 'NODE_HERDLESS';
/** The event ours arrive as, on `process` and on a ChildProcess (the typings know only 'message'). */
export const HERDLESS_EVENT = 'internalMessage' as 'message';

/** The message as it goes over the channel: send this, listen on 'internalMessage'. */
export function wire<T extends WorkerMessage | PrimaryMessage>(m: T): T & { cmd: typeof HERDLESS_CMD } {
  return { cmd: HERDLESS_CMD, ...m };
}

function tagged(m: unknown): boolean {
  if (typeof m !== 'object' || m === null) return false;
  const t = m as { cmd?: unknown; herdless?: unknown };
  return t.cmd === HERDLESS_CMD && typeof t.herdless === 'string';
}
export const isWorkerMessage = (m: unknown): m is WorkerMessage => tagged(m);
export const isPrimaryMessage = (m: unknown): m is PrimaryMessage => tagged(m);
