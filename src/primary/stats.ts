/** What Dispatcher.stats() answers: plain data, read by the CLI's status and the metrics server. */
import type { AcceptorStats, ProxyStats } from '../shared/binding';
import type { Mode } from './options';
import type { IpcCounts } from './ipc-guard';
import type { Protocol } from '../shared/protocol';

export interface WorkerStats {
  id: number;
  /** Stable 0..max-1, reused by a replacement (HERDLESS_SLOT, NODE_APP_INSTANCE in the worker). */
  slot: number;
  /** Workers started in this slot after its first one: crashes, reloads, recycles, stalls. */
  restarts: number;
  /** When this worker was started (Date.now() ms). */
  startedAt: number;
  pid: number;
  state: string;
  connectionsReceived: number;
  connectionsOpen: number;
  /** dispatch mode: connections sent to it that it has not read yet. */
  connectionsWaiting: number;
  requestsInFlight: number;
  requestsServed: number;
  /** Hand-off records that were malformed or lost fds to the kernel (MSG_CTRUNC). */
  rejectedFds: number;
  /** Times the worker left connections in its channel because it was near its fd limit. */
  fdRoomStalls: number;
  /** herd/reuseport: times the worker woke to accept, and how often it found nothing. */
  acceptWakeups: number;
  emptyWakeups: number;
  /** Its event loop: asleep in the poll phase (free to take a connection at once), or awake. */
  loopAwake: boolean;
  /** How long the loop has been awake, ms (0 while asleep). */
  loopBusyMs: number;
  /** Times the loop woke from sleep. */
  loopWakeups: number;
  health?: { eventLoopDelay: { p50: number; p99: number; max: number } /* ms */; elu: number /* 0..1 */; heapUsed: number; heapTotal: number; rss: number /* bytes */; gcCount: number; gcMs: number; handles: number; requestsPerSecond: number; stale: boolean };
}

/** One listener's accept queue in the kernel, read when stats() is called. */
export interface ListenerStats {
  /** "127.0.0.1:8080", "[::1]:8080", or the unix socket's path. */
  address: string;
  /** What its connections speak, as the app's server in the workers says: 'http' (http, and
   *  http2 without TLS), 'https' (https, http2 with TLS), 'tls' (another tls.Server), 'tcp' (a
   *  net.Server); null until a worker serving it is ready. */
  protocol: Protocol | null;
  /** Connections the kernel completed that nobody has accepted yet; null where it cannot tell
   *  (reuseport mode: each worker has its own queue; a unix socket without unix_diag). */
  queued: number | null;
  /** The queue's limit: the listen(2) backlog, capped by net.core.somaxconn (as configured where the kernel cannot tell). */
  backlog: number | null;
}

/** Time from the primary's accept to a worker taking the connection (dispatch mode; cumulative, like Prometheus). */
export interface DispatchWaitStats {
  count: number;
  sumSeconds: number;
  /** Cumulative: connections that waited at most `le` seconds; the last is le: Infinity (= count). */
  buckets: { le: number; count: number }[];
  /** Workers whose histogram page could not be true (a count or sum out of bounds, or one that
   *  went down): their last plausible figures count instead. */
  refusedPages: number;
}

export interface DispatcherStats {
  mode: Mode;
  listeners: ListenerStats[];
  dispatchWait: DispatchWaitStats;
  /** The accept thread's counts (their meanings: AcceptorStats in shared/binding.ts). Herd modes
   *  have no such thread: `accepted` sums the workers' own counts, the rest are 0 or false. */
  dispatcher: Omit<AcceptorStats, 'pendingByWorker' | 'proxy'>;
  /** What workers sent over IPC that the primary refused: handles closed on arrival, channels
   *  ended for an oversized or malformed message, reads paused for a worker's message rate. */
  ipc: IpcCounts;
  /** PROXY protocol headers (proxyProtocol): all 0 without it. */
  proxy: ProxyStats;
  workers: WorkerStats[];
}
