'use strict';
// S9: a connection storm. 1,000 keep-alive clients connect at once (a deploy, a load
// balancer failing over, a reconnecting fleet). A server that accepts one connection per
// wake-up lets its listen queue overflow: the kernel drops SYNs, and those clients wait for a
// retransmission (1 s, then 3 s). Time to first byte shows it in p99 and in wrk's timeouts;
// the kernel's own count is TcpExtListenOverflows in /proc/net/netstat.
const fs = require('node:fs');
const wrk = require('../lib/wrk');
const { withInstances } = require('../lib/runner');
const c = require('./common');

const CONNECTIONS = 1000;
const METRICS = [
  { key: 'p99', label: 'p99 ms', short: 'p99', get: (s) => s.wrk.latency.p99, digits: 1, ratio: true },
  { key: 'max', label: 'max ms', get: (s) => s.wrk.latency.max, digits: 0 },
  { key: 'timeouts', label: 'timeouts', get: (s) => s.wrk.errors.timeout, digits: 0 },
  { key: 'connectErrors', label: 'connect errors', get: (s) => s.wrk.errors.connect, digits: 0 },
  { key: 'overflows', label: 'listen overflows', get: (s) => s.overflows, digits: 0 },
  { key: 'rps', label: 'req/s', get: (s) => s.wrk.rps, digits: 0 },
];

/** The kernel's TcpExt counters (machine-wide: contenders are measured one at a time). */
function tcpExt(name) {
  const lines = fs.readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
  if (lines.length < 2) return 0;
  const keys = lines[0].split(/\s+/);
  const values = lines[1].split(/\s+/);
  return Number(values[keys.indexOf(name)]) || 0;
}

module.exports = {
  id: 'storm',
  title: 'S9 · Connection storm',
  about:
    `wrk -t2 -c${CONNECTIONS} keep-alive, started cold: every client connects at the same instant. p99 and ` +
    'max latency (the first request of each connection includes its connect), timeouts, and listen-queue ' +
    'overflows counted by the kernel (TcpExtListenOverflows) during the run.',

  estimate: (ctx, list) => c.estimate(ctx, list.length, { workers: 2 }) + list.length * ctx.profile.reps,

  async run(ctx, list) {
    const connections = Math.min(CONNECTIONS, wrk.maxConnections());
    const p = ctx.profile;
    const { alternate } = require('../lib/runner');
    const samples = await withInstances(ctx, list, { workers: 2 }, (instances) =>
      alternate(ctx, instances, {
        reps: p.reps,
        cost: p.seconds + 1,
        // No warm-up run: a storm hits a server in whatever state it is; the settle time lets
        // the previous contender's connections close.
        measure: async (inst) => {
          await c.sleep(500);
          const before = tcpExt('ListenOverflows');
          const result = await wrk.run({ url: inst.url('/'), seconds: p.seconds, connections, threads: 2 });
          return { wrk: result, overflows: tcpExt('ListenOverflows') - before };
        },
      }),
    );
    const comparison = c.compare(samples, METRICS);
    const over = (name) => comparison[name]?.p99.ratio?.median ?? null;
    return {
      notes: ['Each connection is opened once and kept; wrk counts a request over 5 s as a timeout.'],
      tables: [c.metricTable(`2 workers, ${connections} connections at once`, list, comparison, METRICS)],
      goals: [
        c.goal('S9: cluster SCHED_NONE p99 over dispatch p99', over('cluster-none'), 2, '>='),
        c.goal('S9: dispatch timeouts (median)', comparison.dispatch?.timeouts.summary.median ?? null, 0, '<='),
      ],
      raw: Object.fromEntries(samples),
      summary: c.strip(comparison),
    };
  },
};
