'use strict';
// S15: one client, a new connection per request (wrk -t1 -c1 -H "Connection: close"): the
// lightest load there is, where a pool must not show its hop. Every request pays the accept,
// the hand-off to a worker and the worker's wake-up; under the shared handle the worker
// accepts itself. Nothing queues, so latency is the hop's cost: p50, p99 and req/s against
// cluster SCHED_NONE, run by run in alternation.
const c = require('./common');
const { withInstances } = require('../lib/runner');

const WORKERS = 2;
const LOAD = { path: '/', connections: 1, threads: 1, close: true };
const METRICS = [
  { key: 'rps', label: 'req/s', short: 'req/s', get: (s) => s.wrk.rps, digits: 0, ratio: true },
  { key: 'p50', label: 'p50 ms', get: (s) => s.wrk.latency.p50, digits: 3 },
  { key: 'p99', label: 'p99 ms', get: (s) => s.wrk.latency.p99, digits: 3 },
];

module.exports = {
  id: 'one-client',
  title: 'S15 · One client, Connection: close',
  about: `${WORKERS} workers, wrk -t1 -c1 -H "Connection: close": one request at a time, each on a new connection.`,
  contenders: ['dispatch', 'herd', 'cluster-rr', 'cluster-none'],

  estimate: (ctx, list) => c.estimate(ctx, list.length, { workers: WORKERS }),

  async run(ctx, list) {
    const samples = await withInstances(ctx, list, { workers: WORKERS }, (instances) => c.loadRuns(ctx, instances, { load: LOAD }));
    const comparison = c.compare(samples, METRICS);
    const gap = c.dispatchMinus(comparison, 'cluster-none', 'p50');
    return {
      tables: [c.metricTable(`${WORKERS} workers, one client`, list, comparison, METRICS)],
      notes: ['Latency at one client is the hop itself; on a shared machine the p99 mostly shows other processes.'],
      charts: [],
      goals: [
        c.goal('S15: one client, p50 minus SCHED_NONE p50 (µs)', gap === null ? null : 1000 * gap, 10, '<='),
        c.goal('S15: one client, p99 over SCHED_NONE p99', c.dispatchOver(comparison, 'cluster-none', 'p99'), 1.2, '<='),
        c.goal('S15: one client, req/s over SCHED_NONE', c.dispatchOver(comparison, 'cluster-none', 'rps'), 0.9, '>='),
      ],
      raw: Object.fromEntries(samples),
      summary: c.strip(comparison),
    };
  },
};
