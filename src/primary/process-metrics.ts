/**
 * The primary's own process metrics (CPU, memory, fds, handles, heap, GC, version):
 * prom-client's defaults, less one collector. prom-client's event-loop lag keeps
 * perf_hooks.monitorEventLoopDelay enabled, a 10 ms timer that wakes the primary 100 times a
 * second for as long as /metrics is served, idle or not. The lag is measured at the scrape
 * instead (one setImmediate), under the same name; the primary's loop only dispatches
 * control work (the accept thread is native), so a percentile series of it says little.
 */
import { createRequire } from 'node:module';
import { collectDefaultMetrics, Gauge, type Registry } from 'prom-client';

const requireHere = createRequire(__filename);
const TIMER_DRIVEN = new Set(['eventLoopLag']);

type Collector = (registry: Registry, config: Record<string, unknown>) => void;

export function registerProcessMetrics(registry: Registry): void {
  for (const name of collectDefaultMetrics.metricsList) {
    if (TIMER_DRIVEN.has(name)) continue;
    let collector: Collector | undefined;
    try {
      collector = requireHere(`prom-client/lib/metrics/${name}`) as Collector;
    } catch {
      continue; // a prom-client laid out otherwise: that one metric is missing, nothing else
    }
    if (typeof collector === 'function') collector(registry, {});
  }
  new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of event loop in seconds (measured at the scrape).',
    registers: [registry],
    async collect() {
      const start = process.hrtime.bigint();
      await new Promise((resolve) => setImmediate(resolve));
      this.set(Number(process.hrtime.bigint() - start) / 1e9);
    },
  });
}
