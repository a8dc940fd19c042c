'use strict';
// S16: keep-alive at a steady, moderate concurrency (wrk -t1 -c256), 2 and 8 workers, against
// the shared handle. Once a connection is in a worker it is a plain Node socket; whatever
// herdless still does per request (its diagnostics-channel counters, the loop-state hooks)
// must cost nothing measurable here (issue 19, item 4). S2 is the same question under a
// 1,000-connection storm with six contenders; this one isolates the per-request cost.
const c = require('./common');
const proc = require('../lib/proc');
const { withInstances } = require('../lib/runner');

const CONFIGS = [2, 8];
const LOAD = { path: '/', connections: 256, threads: 1, close: false };
const METRICS = [
  { key: 'rps', label: 'req/s', short: 'req/s', get: (s) => s.wrk.rps, digits: 0, ratio: true },
  { key: 'p50', label: 'p50 ms', get: (s) => s.wrk.latency.p50, digits: 2 },
  { key: 'p99', label: 'p99 ms', get: (s) => s.wrk.latency.p99, digits: 2 },
  // What the workers spend per request: on 2 shared cores req/s also moves with what wrk and
  // the scheduler take, this is the cost itself (utime+stime of every worker, /proc).
  { key: 'workerCpu', label: 'worker CPU µs / request', short: 'worker CPU', get: (s) => (1e6 * s.proc.workers.cpu) / s.wrk.requests, digits: 2, ratio: true },
];

module.exports = {
  id: 'keep-alive-steady',
  title: 'S16 · Keep-alive, 256 connections',
  about: `wrk -t1 -c${LOAD.connections} with keep-alive, 40-byte body, with ${CONFIGS.join(' and ')} workers: req/s and the workers' CPU per request against cluster SCHED_NONE, run by run in alternation.`,
  contenders: ['dispatch', 'cluster-none'],

  estimate: (ctx, list) => CONFIGS.reduce((t, workers) => t + c.estimate(ctx, list.length, { workers }), 0),

  async run(ctx, list) {
    const tables = [];
    const goals = [];
    const summary = {};
    const raw = {};
    for (const workers of CONFIGS) {
      const samples = await withInstances(ctx, list, { workers }, (instances) =>
        c.loadRuns(ctx, instances, {
          load: LOAD,
          what: `, ${workers} workers`,
          before: (inst) => proc.snapshot(inst.pid),
          after: (inst, snap) => ({ proc: proc.delta(snap, proc.snapshot(inst.pid)) }),
        }),
      );
      const comparison = c.compare(samples, METRICS);
      tables.push(c.metricTable(`${workers} workers, ${LOAD.connections} keep-alive connections`, list, comparison, METRICS));
      goals.push(c.goal(`S16: keep-alive, ${workers} workers: dispatch req/s over SCHED_NONE`, c.dispatchOver(comparison, 'cluster-none', 'rps'), 0.99, '>='));
      summary[workers] = c.strip(comparison);
      raw[workers] = Object.fromEntries(samples);
    }
    return {
      tables,
      notes: ['Both contenders serve the same app; wrk shares the CPUs with them, so absolute figures depend on the machine.'],
      charts: [],
      goals,
      raw,
      summary,
    };
  },
};
