'use strict';
// S4: how evenly connections are spread over the workers. Every Node contender serves the
// same app, which counts connections per process (apps/counters.js); nginx logs "$pid" per
// request instead (one request per connection here), in its own instance so the log's cost
// does not touch the other scenarios.
const chart = require('../lib/chart');
const stats = require('../lib/stats');
const format = require('../lib/format');
const { withInstances } = require('../lib/runner');
const c = require('./common');

const WORKERS = 8;
const LOAD = { path: '/', connections: 32, threads: 2, close: true };
const METRICS = [
  { key: 'maxMin', label: 'max/min', get: (s) => s.maxMin, digits: 2 },
  { key: 'cv', label: 'coefficient of variation', get: (s) => s.cv, digits: 3 },
  { key: 'rps', label: 'req/s', get: (s) => s.wrk.rps, digits: 0 },
];

/** Per-worker connections during one run -> shares, sorted largest first, and spread. */
function fairness(perWorker) {
  const counts = [...perWorker.values()].map((x) => x.connections).sort((a, b) => b - a);
  const total = counts.reduce((a, b) => a + b, 0);
  const min = counts[counts.length - 1];
  return {
    perPid: Object.fromEntries(perWorker),
    counts,
    shares: counts.map((x) => (total ? x / total : 0)),
    maxMin: min > 0 ? counts[0] / min : Infinity,
    cv: stats.cv(counts),
  };
}

module.exports = {
  id: 'fairness',
  title: 'S4 · Fairness',
  about:
    `${WORKERS} workers, wrk -c${LOAD.connections} -H "Connection: close". Each worker's share of the ` +
    'connections: max/min (1.00 is perfectly even) and coefficient of variation (0 is perfectly even).',

  estimate: (ctx, list) => c.estimate(ctx, list.length, { workers: WORKERS }),

  async run(ctx, list) {
    const samples = await withInstances(ctx, list, { workers: WORKERS, accessLog: true }, (instances) =>
      c.loadRuns(ctx, instances, {
        load: LOAD,
        before: (inst) => inst.counts(),
        after: async (inst, before) => {
          const after = await inst.counts();
          const perWorker = new Map([...after].filter(([pid]) => inst.workerPids().includes(pid)));
          for (const [pid, a] of perWorker) {
            const b = before.get(pid) || { connections: 0 };
            perWorker.set(pid, { connections: a.connections - b.connections });
          }
          if (perWorker.size !== WORKERS) throw new Error(`counted ${perWorker.size} workers, expected ${WORKERS}`);
          return fairness(perWorker);
        },
      }),
    );
    const comparison = c.compare(samples, METRICS);
    const pooled = new Map([...samples].map(([name, runs]) => [name, pool(runs)]));
    const table = c.metricTable(`${WORKERS} workers`, list, comparison, METRICS, [
      { label: 'max/min, all runs pooled', cell: (name) => format.num(pooled.get(name)?.maxMin, 2) },
    ]);
    return {
      notes: [
        'max/min per run is noisy: with a few hundred connections per worker, chance alone moves a count by ' +
          'several percent. The pooled column adds up each worker\'s connections over all repetitions first.',
      ],
      tables: [table, sharesTable(list, samples)],
      charts: [
        {
          file: 's4-fairness.svg',
          spec: chart.shares({
            title: `Connections per worker relative to an even share, ${WORKERS} workers`,
            order: list.map((x) => x.label),
            rows: shareRows(list, samples),
          }),
        },
      ],
      goals: [c.goal('S4: dispatch max/min connections per worker (all runs pooled)', pooled.get('dispatch')?.maxMin, 1.15, '<=')],
      raw: Object.fromEntries(samples),
      summary: c.strip(comparison),
    };
  },
};

/** Fairness over the sum of each worker's connections in every run (same pids throughout). */
function pool(runs) {
  const total = new Map();
  for (const r of runs.filter(Boolean)) {
    for (const [pid, x] of Object.entries(r.perPid)) total.set(pid, (total.get(pid) || 0) + x.connections);
  }
  return total.size ? fairness(new Map([...total].map(([pid, n]) => [pid, { connections: n }]))) : null;
}

/** Median share of the busiest, second busiest, ... worker over the repetitions. */
function medianShares(runs) {
  const ok = runs.filter(Boolean);
  if (!ok.length) return [];
  return ok[0].shares.map((_, rank) => stats.median(ok.map((r) => r.shares[rank])));
}

const shareRows = (list, samples) =>
  list.filter((x) => samples.has(x.name)).flatMap((x) =>
    medianShares(samples.get(x.name)).map((share, i, all) => ({ contender: x.label, worker: i + 1, relative: share * all.length })));

function sharesTable(list, samples) {
  const rows = list
    .filter((x) => samples.has(x.name))
    .map((x) => [x.label, medianShares(samples.get(x.name)).map((s) => `${(s * 100).toFixed(1)}%`).join(' · ')]);
  return { title: 'Share of each worker, busiest first (median per rank)', columns: ['contender', 'shares'], rows };
}
