'use strict';
// S2: many long-lived connections, each carrying many requests. Connections are handed out
// once, so this checks that herdless costs nothing once a connection is in a worker.
const chart = require('../lib/chart');
const wrk = require('../lib/wrk');
const { withInstances } = require('../lib/runner');
const c = require('./common');

const WORKERS = 2;
const TARGET_CONNECTIONS = 1000;
const BODIES = [
  { path: '/', label: '40-byte body' },
  { path: '/big', label: '10,000-byte body' },
];
const METRICS = [
  { key: 'rps', label: 'req/s', short: 'req/s', get: (s) => s.wrk.rps, digits: 0, ratio: true },
  { key: 'p50', label: 'p50 ms', get: (s) => s.wrk.latency.p50, digits: 2 },
  { key: 'p99', label: 'p99 ms', get: (s) => s.wrk.latency.p99, digits: 2 },
];
const NODE = ['dispatch', 'herd', 'reuseport', 'cluster-rr', 'cluster-none'];

// 1,000 connections if wrk may open that many files (bench/lib/wrk.js raises its limit).
const connections = () => Math.min(TARGET_CONNECTIONS, wrk.maxConnections());

module.exports = {
  id: 'keep-alive',
  title: 'S2 · Keep-alive, high concurrency',
  about:
    `wrk -t2 -c${connections()} with keep-alive, ${WORKERS} workers, 40-byte and 10,000-byte bodies. ` +
    'Connections are handed out once; afterwards only the workers matter. Requests/s and latency.',

  estimate: (ctx, list) => c.estimate(ctx, list.length, { workers: WORKERS, loads: BODIES.length }),

  async run(ctx, list) {
    const n = connections();
    const notes = n < TARGET_CONNECTIONS ? [`Only ${n} connections: the hard fd limit (ulimit -Hn) is too low for 1,000.`] : [];
    const groups = await withInstances(ctx, list, { workers: WORKERS }, async (instances) => {
      const out = [];
      for (const body of BODIES) {
        const load = { path: body.path, connections: n, threads: 2, close: false };
        const samples = await c.loadRuns(ctx, instances, { load, what: `, ${body.label}` });
        out.push({ body, samples, comparison: c.compare(samples, METRICS) });
      }
      return out;
    });
    return {
      notes,
      tables: groups.map((g) => c.metricTable(g.body.label, list, g.comparison, METRICS)),
      charts: [
        {
          file: 's2-keep-alive.svg',
          spec: chart.bars({
            title: `Keep-alive, ${n} connections: requests/s (median, min–max)`,
            yTitle: 'requests/s',
            order: list.map((x) => x.label),
            rows: groups.flatMap((g) => c.barRows(list, g.comparison, 'rps', g.body.label)),
          }),
        },
      ],
      goals: groups.map((g) => withinBest(g)),
      raw: groups.map((g) => ({ body: g.body.path, samples: Object.fromEntries(g.samples) })),
      summary: groups.map((g) => ({ body: g.body.path, comparison: c.strip(g.comparison) })),
    };
  },
};

/** Goal: dispatch within 3% of the best Node contender (dispatch over best ≥ 0.97). */
function withinBest(g) {
  let best = null;
  for (const name of NODE.filter((x) => x !== c.BASELINE && g.comparison[x])) {
    const r = c.dispatchOver(g.comparison, name, 'rps');
    if (r !== null && (best === null || r < best.r)) best = { name, r };
  }
  const value = best ? Math.min(1, best.r) : null;
  const detail = best ? `best other Node contender: ${best.name}` : '';
  return c.goal(`S2, ${g.body.label}: dispatch req/s over the best Node contender (capped at 1)`, value, 0.97, '>=', detail);
}
