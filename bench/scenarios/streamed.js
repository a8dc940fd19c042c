'use strict';
// S8: a response written in three chunks on three ticks (a streaming, SSE or templating app
// that flushes early), fetched one at a time over one keep-alive connection. Here the socket
// options set on accept decide everything: with Nagle on (TCP_NODELAY unset), the second
// chunk waits for the client's delayed ACK, about 40 ms per response on Linux.
const { withInstances } = require('../lib/runner');
const c = require('./common');

const LOAD = { path: '/chunks', connections: 1, threads: 1, close: false };
const METRICS = [
  { key: 'mean', label: 'mean ms', short: 'mean', get: (s) => s.wrk.latency.mean, digits: 3, ratio: true },
  { key: 'p99', label: 'p99 ms', get: (s) => s.wrk.latency.p99, digits: 3 },
  { key: 'rps', label: 'req/s', get: (s) => s.wrk.rps, digits: 0 },
];

module.exports = {
  id: 'streamed',
  title: 'S8 · Streamed response',
  about:
    'wrk -t1 -c1 on /chunks: 300 bytes written in three chunks on three ticks, one request at a time over ' +
    'one keep-alive connection. Mean and p99 latency per response.',
  // nginx serves no chunked app from its config.
  contenders: ['dispatch', 'herd', 'reuseport', 'cluster-rr', 'cluster-none'],

  estimate: (ctx, list) => c.estimate(ctx, list.length, { workers: 2 }),

  async run(ctx, list) {
    const samples = await withInstances(ctx, list, { workers: 2 }, (instances) => c.loadRuns(ctx, instances, { load: LOAD }));
    const comparison = c.compare(samples, METRICS);
    const gap = c.dispatchMinus(comparison, 'cluster-none', 'mean');
    return {
      tables: [c.metricTable('2 workers', list, comparison, METRICS)],
      goals: [c.goal('S8: dispatch mean latency minus cluster SCHED_NONE mean (ms)', gap, 0.3, '<=')],
      raw: Object.fromEntries(samples),
      summary: c.strip(comparison),
    };
  },
};
