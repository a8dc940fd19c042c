'use strict';
// S13: an app that calls listen() itself (issue 16) against the same app exporting its
// handler, side by side: Connection: close requests/s with 2 workers. The listener the app
// opens is the primary's as a configured one is, so the two should not differ.
const contenders = require('../contenders');
const c = require('./common');

const WORKERS = 2;
const LOAD = { path: '/', connections: 50, threads: 2, close: true };
const METRICS = [
  { key: 'rps', label: 'req/s', short: 'req/s', get: (s) => s.wrk.rps, digits: 0, ratio: true },
  { key: 'p50', label: 'p50 ms', get: (s) => s.wrk.latency.p50, digits: 2 },
  { key: 'p99', label: 'p99 ms', get: (s) => s.wrk.latency.p99, digits: 2 },
];

module.exports = {
  id: 'app-listen',
  title: 'S13 · App calls listen() itself',
  about:
    `${WORKERS} workers, wrk -t${LOAD.threads} -c${LOAD.connections} -H "Connection: close". "dispatch": apps/hello.js exports ` +
    'its handler and herdless listens; "app listen()": apps/hello-listen.js calls listen() itself, no listen option.',
  contenders: ['dispatch'],

  estimate: (ctx) => c.estimate(ctx, 2, { configs: 1, workers: 5 }),

  async run(ctx) {
    const dispatch = contenders.byName('dispatch');
    const servers = [];
    try {
      const handler = await contenders.start(dispatch, { workers: WORKERS });
      servers.push(handler);
      const listening = await contenders.start({ ...dispatch, start: (o) => dispatch.start({ ...o, app: 'hello-listen', appListen: true }) }, { workers: WORKERS });
      servers.push(listening);
      const instances = [
        { ...handler, name: 'dispatch', label: 'exports a handler' },
        { ...listening, name: 'app-listen', label: 'app listen()' },
      ];
      const samples = await c.loadRuns(ctx, instances, { load: LOAD, what: `, ${WORKERS} workers` });
      const comparison = c.compare(samples, METRICS);
      return {
        tables: [c.metricTable(`${WORKERS} workers, Connection: close`, instances, comparison, METRICS)],
        goals: [c.goal('S13: req/s, app calls listen() over app exports a handler', comparison['app-listen']?.rps.ratio?.median ?? null, 0.98, '>=')],
        raw: { samples: Object.fromEntries(samples) },
        summary: { comparison: c.strip(comparison) },
      };
    } finally {
      await Promise.all(servers.map((i) => i.stop().catch((err) => ctx.fail(`stopping ${i.label}: ${err.message}`))));
    }
  },
};
