/**
 * What /metrics says of each worker beyond herdless's counters: its health, by slot (bounded
 * cardinality: a replacement takes over its slot's series), and the app's own prom-client
 * metrics, merged across workers with each metric's aggregator by prom-client's own
 * AggregatorRegistry (as under `cluster`), or per slot (`metrics.perWorker`).
 *
 * Both come from one ask per scrape (src/primary/health.ts); a worker that does not answer in
 * time is left out and marked: herdless_worker_metrics_stale{slot} 1.
 */
import { AggregatorRegistry, Counter, Gauge, type Registry } from 'prom-client';
import type { WorkerReply } from './health';
import type { DispatcherStats, WorkerStats } from './stats';

type Health = NonNullable<WorkerStats['health']>;

const HEALTH: [string, string, 'counter' | 'gauge', (h: Health) => number][] = [
  ['herdless_worker_eventloop_delay_p50_seconds', 'Median time a wake-up of the worker\'s event loop kept it busy, over the last 10-20 s.', 'gauge', (h) => h.eventLoopDelay.p50 / 1000],
  ['herdless_worker_eventloop_delay_p99_seconds', '99th percentile of the time a wake-up kept the event loop busy, over the last 10-20 s.', 'gauge', (h) => h.eventLoopDelay.p99 / 1000],
  ['herdless_worker_eventloop_delay_max_seconds', 'Longest a wake-up kept the event loop busy (the longest an event waited), over the last 10-20 s.', 'gauge', (h) => h.eventLoopDelay.max / 1000],
  ['herdless_worker_eventloop_utilization', 'Share of time the event loop was busy over the last 10-20 s (0..1).', 'gauge', (h) => h.elu],
  ['herdless_worker_heap_used_bytes', 'V8 heap in use.', 'gauge', (h) => h.heapUsed],
  ['herdless_worker_heap_total_bytes', 'V8 heap allocated.', 'gauge', (h) => h.heapTotal],
  ['herdless_worker_rss_bytes', 'Resident set size.', 'gauge', (h) => h.rss],
  ['herdless_worker_gc_total', 'Garbage collections since the worker started.', 'counter', (h) => h.gcCount],
  ['herdless_worker_gc_seconds_total', 'Time spent in garbage collection since the worker started.', 'counter', (h) => h.gcMs / 1000],
  ['herdless_worker_active_handles', 'Handles, requests and timers keeping the event loop alive.', 'gauge', (h) => h.handles],
];

/** Registers the per-slot health series and the stale marker; `replies` is this scrape's ask. */
export function registerWorkerMetrics(registry: Registry, stats: () => DispatcherStats, replies: () => WorkerReply[]): void {
  for (const [name, help, type, read] of HEALTH) {
    const Metric = type === 'counter' ? Counter : Gauge;
    new Metric({ name, help, labelNames: ['slot'], registers: [registry], collect(this: Counter | Gauge) {
      this.reset();
      const answered = new Set(replies().filter((r) => r.answered).map((r) => r.id));
      for (const w of stats().workers) {
        if (w.health && !w.health.stale && answered.has(w.id)) this.inc({ slot: String(w.slot) }, read(w.health));
      }
    } });
  }
  new Gauge({ name: 'herdless_worker_metrics_stale', help: 'A worker that did not answer this scrape in time (1): its health and app metrics are left out.', labelNames: ['slot'], registers: [registry], collect() {
    this.reset();
    for (const r of replies()) this.set({ slot: String(r.slot) }, r.answered ? 0 : 1);
  } });
}

interface MetricJson {
  name: string;
  values?: { labels?: Record<string, string | number> }[];
}

/**
 * The app's metrics from every worker that answered, in Prometheus text: merged with each
 * metric's aggregator, or, `perWorker`, each worker's series labelled with its slot. A
 * metric named like one of herdless's own (`taken`: the primary's process_* and nodejs_*,
 * from an app that collects default metrics) is left out: one name cannot appear twice.
 */
export async function appMetricsText(replies: WorkerReply[], perWorker: boolean, taken: Set<string>): Promise<string> {
  const sets: MetricJson[][] = [];
  for (const r of replies) {
    if (!r.answered || !Array.isArray(r.metrics)) continue;
    let list = (r.metrics as MetricJson[]).filter((m) => m && typeof m.name === 'string' && !taken.has(m.name));
    if (perWorker) {
      const slot = String(r.slot);
      list = list.map((m) => ({ ...m, values: (m.values ?? []).map((v) => ({ ...v, labels: { ...v.labels, slot } })) }));
    }
    sets.push(list);
  }
  if (sets.length === 0) return '';
  const merged = AggregatorRegistry.aggregate(sets as Parameters<typeof AggregatorRegistry.aggregate>[0]);
  return merged.metrics();
}
