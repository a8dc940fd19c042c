'use strict';
// S1: every request on a new connection. The app does almost nothing, so this measures what
// it costs to get a connection from the kernel to a worker: accept, hand-off, wake-ups.
const chart = require('../lib/chart');
const { withInstances } = require('../lib/runner');
const c = require('./common');

const LOAD = { path: '/', connections: 50, threads: 2, close: true };
const METRICS = [
  { key: 'rps', label: 'req/s', short: 'req/s', get: (s) => s.wrk.rps, digits: 0, ratio: true },
  { key: 'p50', label: 'p50 ms', get: (s) => s.wrk.latency.p50, digits: 2 },
  { key: 'p99', label: 'p99 ms', get: (s) => s.wrk.latency.p99, digits: 2 },
];

const workerCounts = (ctx) => (ctx.smoke ? [2] : ctx.full ? [2, 4, 8] : [2, 8]);

module.exports = {
  id: 'conn-per-request',
  title: 'S1 · Connection per request',
  about:
    `wrk -t${LOAD.threads} -c${LOAD.connections} -H "Connection: close", 40-byte body: every request is a new ` +
    'connection, so accepting and handing off dominate. Requests/s and latency (p50, p99).',

  estimate: (ctx, list) => c.estimate(ctx, list.length, { configs: workerCounts(ctx).length, workers: 5 }),

  async run(ctx, list) {
    const groups = [];
    for (const workers of workerCounts(ctx)) {
      const samples = await withInstances(ctx, list, { workers }, (instances) =>
        c.loadRuns(ctx, instances, { load: LOAD, what: `, ${workers} workers` }),
      );
      groups.push({ workers, samples, comparison: c.compare(samples, METRICS) });
    }
    const at = (w) => groups.find((g) => g.workers === w)?.comparison || {};
    return {
      tables: groups.map((g) => c.metricTable(`${g.workers} workers`, list, g.comparison, METRICS)),
      charts: [
        {
          file: 's1-conn-per-request.svg',
          spec: chart.bars({
            title: 'Connection per request: requests/s (median, min–max)',
            yTitle: 'requests/s',
            order: list.map((x) => x.label),
            rows: groups.flatMap((g) => c.barRows(list, g.comparison, 'rps', `${g.workers} workers`)),
          }),
        },
      ],
      goals: [
        c.goal('S1, 2 workers: dispatch req/s over cluster SCHED_RR', c.dispatchOver(at(2), 'cluster-rr', 'rps'), 1.8, '>='),
        c.goal('S1, 2 workers: dispatch req/s over cluster SCHED_NONE', c.dispatchOver(at(2), 'cluster-none', 'rps'), 1.0, '>='),
        c.goal('S1, 8 workers: dispatch req/s over cluster SCHED_NONE', c.dispatchOver(at(8), 'cluster-none', 'rps'), 1.5, '>='),
      ],
      raw: groups.map((g) => ({ workers: g.workers, samples: Object.fromEntries(g.samples) })),
      summary: groups.map((g) => ({ workers: g.workers, comparison: c.strip(g.comparison) })),
    };
  },
};
