/**
 * Prometheus metrics for a Dispatcher, served from the primary with prom-client.
 *
 * Every figure is read on scrape from one d.stats() call (shared-memory reads and one native
 * call) and from /proc/<pid>/statm for worker RSS; nothing is counted on the dispatch path, so
 * a scrape cannot slow it down. Per-worker series carry the worker id and disappear with the
 * worker. /healthz answers 200 while workers are serving (a readiness probe), 503 otherwise.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import { loadAddon } from '../shared/binding';
import type { DispatcherStats, DispatchWaitStats, WorkerStats } from './stats';
import type { WorkerReply } from './health';
import { appMetricsText, registerWorkerMetrics } from './worker-metrics';
import { registerProcessMetrics } from './process-metrics';
import { ConnectionChecks } from '../shared/connection-checks';

/** What the metrics read: a Dispatcher, or anything that answers like one. */
export interface StatsSource {
  stats(): DispatcherStats;
  readonly size: number;
  /** Each worker's health and, if `metrics`, its app's prom-client metrics (a Dispatcher has it). */
  askWorkers?(options: { metrics: boolean; timeout?: number }): Promise<WorkerReply[]>;
}
import { metricsKey, takeInherited } from './inherited';

export interface MetricsOptions {
  port: number;
  /** Default: loopback (127.0.0.1). Name '0.0.0.0' or '::' where something off the host scrapes
   *  it (a Kubernetes probe, Prometheus on another machine). */
  host?: string;
  /** Readiness for /healthz; default: at least one worker. */
  ready?: () => boolean;
  /** The app's own prom-client metrics per slot (a `slot` label) instead of merged across workers. */
  perWorker?: boolean;
}

export interface MetricsServer {
  address(): AddressInfo;
  /** Its listening socket's fd, handed over by an upgrade. */
  fd(): number | undefined;
  close(): Promise<void>;
}

type Dispatch = DispatcherStats['dispatcher'];

const COUNTERS: [string, string, (x: Dispatch) => number][] = [
  ['herdless_connections_accepted_total', 'Connections accepted by the primary.', (x) => x.accepted],
  ['herdless_connections_handed_off_total', 'Connections sent to a worker (a re-dispatched one counts twice).', (x) => x.handedOff],
  ['herdless_handoff_retries_total', 'Hand-offs retried on another worker because a channel was full.', (x) => x.handoffRetries],
  ['herdless_connections_redispatched_total', 'Connections read back from a dead worker and sent to another.', (x) => x.redispatched],
  ['herdless_connections_dropped_total', 'Connections closed without a hand-off: the dispatcher stopped while no worker had room.', (x) => x.dropped],
  ['herdless_connections_stolen_total', 'Connections taken back unread from a worker whose loop stayed busy past stealAfter (or, at light load, left unread 1 ms while another worker slept), and sent to another.', (x) => x.stolen],
  ['herdless_backpressure_pauses_total', 'Times accepting paused because no worker had room.', (x) => x.backpressurePauses],
  ['herdless_backpressure_paused_seconds_total', 'Time spent paused for lack of room.', (x) => x.backpressurePausedMs / 1000],
  ['herdless_fd_pauses_total', 'Times accepting paused on EMFILE/ENFILE.', (x) => x.fdPauses],
  ['herdless_fd_paused_seconds_total', 'Time spent paused for lack of file descriptors.', (x) => x.fdPausedMs / 1000],
];

const PER_WORKER: [string, string, 'counter' | 'gauge', (w: WorkerStats) => number][] = [
  ['herdless_worker_connections_open', 'Connections a worker holds.', 'gauge', (w) => w.connectionsOpen],
  ['herdless_worker_connections_received_total', 'Connections a worker has received.', 'counter', (w) => w.connectionsReceived],
  ['herdless_worker_requests_in_flight', 'Requests a worker is serving.', 'gauge', (w) => w.requestsInFlight],
  ['herdless_worker_requests_total', 'Requests a worker has served.', 'counter', (w) => w.requestsServed],
  ['herdless_worker_rejected_fds_total', 'Hand-off records a worker could not take whole (malformed, or fds dropped at its fd limit).', 'counter', (w) => w.rejectedFds],
  ['herdless_worker_fd_room_stalls_total', 'Times a worker stopped reading its channel near its fd limit.', 'counter', (w) => w.fdRoomStalls],
];

/**
 * herdless_dispatch_wait_seconds: the counts live in the workers' shared pages (see
 * DispatchWaitStats), so prom-client's Histogram, which counts observations itself, does not
 * fit; this is the same text it would write, from the counts as they are.
 */
function dispatchWaitHistogram(registry: Registry, read: () => DispatchWaitStats): void {
  const name = 'herdless_dispatch_wait_seconds';
  const help = "Time from the primary's accept to a worker taking the connection off its channel (dispatch mode).";
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: async () => {
      const w = read();
      const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = w.buckets.map((b) => ({
        metricName: `${name}_bucket`,
        labels: { le: b.le === Infinity ? '+Inf' : b.le },
        value: b.count,
      }));
      values.push({ metricName: `${name}_sum`, labels: {}, value: w.sumSeconds });
      values.push({ metricName: `${name}_count`, labels: {}, value: w.count });
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    },
  };
  // The registry reads only name, type and get() (its public contract for custom collectors).
  registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
}

/** The kernel's page size, from the auxiliary vector (AT_PAGESZ); statm counts pages. */
function pageSize(): number {
  try {
    const auxv = fs.readFileSync('/proc/self/auxv');
    for (let i = 0; i + 16 <= auxv.length; i += 16) {
      if (auxv.readBigUInt64LE(i) === 6n) return Number(auxv.readBigUInt64LE(i + 8));
    }
  } catch {
    // not Linux, or /proc hidden
  }
  return 4096;
}

function rssBytes(pid: number, page: number): number | undefined {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ')[1]) * page;
  } catch {
    return undefined; // exited between stats() and now
  }
}

/** Free fds under RLIMIT_NOFILE now (Infinity if unlimited; 0 if even looking needs one). */
function freeFds(): number {
  try {
    const limit = /^Max open files\s+(\S+)/m.exec(fs.readFileSync('/proc/self/limits', 'latin1'))?.[1];
    if (limit === undefined || limit === 'unlimited') return Infinity;
    return Number(limit) - fs.readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

/**
 * A registry whose metrics read `d` on every scrape. Exported for embedding in an app's own
 * server. Its metrics() first asks the workers (within about 500 ms, however many are
 * blocked), then appends the app's own prom-client metrics to herdless's.
 */
export function createRegistry(d: StatsSource, options: { perWorker?: boolean } = {}): Registry {
  const registry = new Registry();
  const page = pageSize();
  // One stats() per scrape, however many metrics read it.
  let snapshot: DispatcherStats | undefined;
  const stats = (): DispatcherStats => (snapshot ??= d.stats());
  let replies: WorkerReply[] = [];
  const origMetrics = registry.metrics.bind(registry);
  registry.metrics = async () => {
    snapshot = undefined;
    try {
      replies = d.askWorkers ? await d.askWorkers({ metrics: true }) : [];
      const own = await origMetrics();
      const taken = new Set(registry.getMetricsAsArray().map((m) => m.name));
      return own + (await appMetricsText(replies, options.perWorker === true, taken));
    } finally {
      snapshot = undefined;
    }
  };
  registerWorkerMetrics(registry, stats, () => replies);

  for (const [name, help, read] of COUNTERS) {
    new Counter({ name, help, registers: [registry], collect() {
      this.reset();
      this.inc(read(stats().dispatcher));
    } });
  }
  new Counter({ name: 'herdless_accept_errors_total', help: 'accept(2) failures by errno.', labelNames: ['errno'], registers: [registry], collect() {
    this.reset();
    for (const [errno, n] of Object.entries(stats().dispatcher.acceptErrors)) this.inc({ errno }, n);
  } });
  new Counter({ name: 'herdless_proxy_headers_total', help: 'PROXY protocol headers read (proxyProtocol), by kind: proxy (a client address) or local (v2 LOCAL, health checks).', labelNames: ['kind'], registers: [registry], collect() {
    this.reset();
    const p = stats().proxy;
    this.inc({ kind: 'proxy' }, p.accepted - p.local);
    this.inc({ kind: 'local' }, p.local);
  } });
  new Counter({ name: 'herdless_proxy_headers_untrusted_total', help: 'PROXY headers from peers outside proxyFrom: read and ignored (the connection keeps its own address). Not 0: someone reaches the port without the proxy, or proxyFrom misses the proxy.', registers: [registry], collect() {
    this.reset();
    this.inc(stats().proxy.untrusted ?? 0);
  } });
  new Counter({ name: 'herdless_proxy_header_errors_total', help: 'Connections closed for a malformed PROXY header, or none within proxyTimeout.', labelNames: ['reason'], registers: [registry], collect() {
    this.reset();
    const p = stats().proxy;
    this.inc({ reason: 'malformed' }, p.malformed);
    this.inc({ reason: 'timeout' }, p.timedOut);
  } });
  new Counter({ name: 'herdless_ipc_refused_total', help: 'What workers sent over IPC that the primary refused, by kind: handle (an fd, closed on arrival), channel (ended for an oversized or malformed message), throttled (reading paused for the message rate).', labelNames: ['kind'], registers: [registry], collect() {
    this.reset();
    const i = stats().ipc ?? { handlesClosed: 0, channelsClosed: 0, throttled: 0 }; // an older StatsSource
    this.inc({ kind: 'handle' }, i.handlesClosed);
    this.inc({ kind: 'channel' }, i.channelsClosed);
    this.inc({ kind: 'throttled' }, i.throttled);
  } });
  new Gauge({ name: 'herdless_connections_waiting', help: 'Accepted connections not yet handed off.', registers: [registry], collect() {
    this.set(stats().dispatcher.waiting);
  } });
  new Gauge({ name: 'herdless_workers', help: 'Workers taking connections (the pool size).', registers: [registry], collect() {
    this.set(d.size);
  } });
  for (const [name, help, type, read] of PER_WORKER) {
    const Metric = type === 'counter' ? Counter : Gauge;
    new Metric({ name, help, labelNames: ['worker'], registers: [registry], collect(this: Counter | Gauge) {
      this.reset();
      for (const w of stats().workers) this.inc({ worker: String(w.id) }, read(w));
    } });
  }
  new Gauge({ name: 'herdless_worker_resident_memory_bytes', help: 'Resident set size of a worker.', labelNames: ['worker'], registers: [registry], collect() {
    this.reset();
    for (const w of stats().workers) {
      const rss = rssBytes(w.pid, page);
      if (rss !== undefined) this.set({ worker: String(w.id) }, rss);
    }
  } });
  dispatchWaitHistogram(registry, () => stats().dispatchWait);
  for (const [name, help, key] of [
    ['herdless_listen_queue_length', "Connections in a listener's accept queue, not yet accepted (absent where the kernel cannot tell).", 'queued'],
    ['herdless_listen_queue_limit', "The most a listener's accept queue holds: its listen(2) backlog, capped by net.core.somaxconn.", 'backlog'],
  ] as const) {
    new Gauge({ name, help, labelNames: ['listener'], registers: [registry], collect() {
      this.reset();
      for (const l of stats().listeners) {
        const v = l[key];
        if (v !== null) this.set({ listener: l.address }, v);
      }
    } });
  }
  registerProcessMetrics(registry); // the primary's own CPU, memory, fds: no timer
  return registry;
}

/** Where the metrics server listens unless told: it speaks for the whole pool to anyone who asks. */
export const METRICS_DEFAULT_HOST = '127.0.0.1';

/**
 * The metrics server shares the primary's fd table with the accept thread, so what it may
 * hold is bounded: a scraper and a probe or two need a handful of connections, and one that
 * sends nothing is gone within seconds (Node's own defaults keep it for a minute).
 */
const MAX_CONNECTIONS = 32;
const HEADERS_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 10_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** Below HEADERS_TIMEOUT_MS: in Node 20 a connection that has sent nothing outlives a longer one. */
const IDLE_TIMEOUT_MS = 4_000;
/**
 * Free fds kept for the accept path and worker starts: a connection to the metrics server
 * that finds fewer is closed at once (two reads of /proc per connection; at most
 * MAX_CONNECTIONS are held, so a flood of them costs CPU here, never the accept thread's fds).
 */
const FD_RESERVE = 64;

export function startMetricsServer(d: StatsSource, options: MetricsOptions): Promise<MetricsServer> {
  const registry = createRegistry(d, { perWorker: options.perWorker });
  const ready = options.ready ?? (() => d.size >= 1);
  const server = http.createServer({ connectionsCheckingInterval: 1000, requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: HEADERS_TIMEOUT_MS, keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    } else if (path === '/healthz') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'not ready\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('try /metrics or /healthz\n');
    }
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.setTimeout(IDLE_TIMEOUT_MS);
  // The 1 s request-timeout check runs only while a scraper is connected: an idle primary sleeps.
  const checks = new ConnectionChecks(server);
  let open = 0;
  server.on('connection', (socket) => {
    checks.update(++open);
    socket.once('close', () => checks.update(--open));
    if (freeFds() < FD_RESERVE) socket.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // Closed once: after an upgrade hands the socket over, and again at exit.
    let closed: Promise<void> | undefined;
    const listening = () => {
      server.off('error', reject);
      resolve({
        address: () => server.address() as AddressInfo,
        fd: () => (server as unknown as { _handle?: { fd?: number } })._handle?.fd,
        close: () =>
          (closed ??= new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          })),
      });
    };
    // After an upgrade the old primary's socket is ours: the port never closes.
    const inherited = takeInherited(loadAddon(), metricsKey(options));
    if (inherited !== undefined) server.listen({ fd: inherited }, listening);
    else server.listen(options.port, options.host ?? METRICS_DEFAULT_HOST, listening);
  });
}
