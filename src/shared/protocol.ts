/**
 * What the primary and a worker say to each other, besides the fds themselves.
 *
 * Control messages travel over Node's IPC channel (rare, small). Connections travel over a
 * private SEQPACKET socketpair with SCM_RIGHTS (see native/channel.h). Load figures travel
 * through a shared-memory scoreboard page (see native/scoreboard.h).
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

export interface WorkerConfig {
  id: number;
  /** Stable slot 0..max-1: a replacement takes the slot of the worker it replaces. */
  slot: number;
  app: string;
  mode: Mode;
  parentPid: number;
  sources: WorkerSource[];
  /** The primary's listeners, by the index that travels with each hand-off. */
  listeners: ListenerInfo[];
  serverTimeouts: { headersTimeout?: number; requestTimeout?: number; keepAliveTimeout?: number };
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
  | { herdless: 'ready' }
  | { herdless: 'load-error'; message: string; stack?: string }
  | { herdless: 'draining' }
  /** The answer to an ask: `metrics` is the app's prom-client getMetricsAsJSON(), null if it uses none. */
  | { herdless: 'health'; seq: number; health: HealthReport | null; metrics?: unknown[] | null; metricsError?: string };

/** drain: `deadline` is ms from now after which the primary kills the worker.
 *  ask: health figures, and the app's prom-client metrics if `metrics`. */
export type PrimaryMessage =
  | { herdless: 'drain'; reason: ShutdownReason; deadline: number }
  | { herdless: 'ask'; seq: number; metrics: boolean };

function tagged(m: unknown): boolean {
  return typeof m === 'object' && m !== null && typeof (m as { herdless?: unknown }).herdless === 'string';
}
export const isWorkerMessage = (m: unknown): m is WorkerMessage => tagged(m);
export const isPrimaryMessage = (m: unknown): m is PrimaryMessage => tagged(m);
