'use strict';
// S12: the PROXY protocol's cost. New-connection throughput (Connection: close) with every
// connection starting with a PROXY header, v1 text or v2 binary, against the same load
// without one, on a server without proxyProtocol. wrk cannot send a PROXY header: the load is
// bench/lib/conn-load.js (Node, several processes), the same generator for all three, so
// only the header differs. Also the accept thread's CPU per connection (it reads the headers).
const contenders = require('../contenders');
const load = require('../lib/conn-load');
const proc = require('../lib/proc');
const { alternate } = require('../lib/runner');
const c = require('./common');

const ACCEPT_THREAD = 'herdless-accept';
const WORKERS = 2;
const GEN = { procs: 2, concurrency: 32, sources: 16 };

const METRICS = [
  { key: 'cps', label: 'connections/s', short: 'conn/s', get: (s) => s.connections / s.seconds, digits: 0, ratio: true },
  { key: 'acceptUs', label: 'accept-thread CPU µs / conn', short: 'accept CPU', get: (s) => (1e6 * s.acceptCpu) / s.connections, digits: 2, ratio: true },
  { key: 'errors', label: 'failed connections', get: (s) => s.errors, digits: 0 },
];

module.exports = {
  id: 'proxy-protocol',
  title: 'S12 · PROXY protocol cost',
  about:
    `${WORKERS} workers, apps/pid.js; ${GEN.procs} bench/lib/conn-load.js processes × ${GEN.concurrency} lanes of ` +
    'Connection: close requests. "dispatch": no header, proxyProtocol off; "proxy v1" / "proxy v2": the same load, ' +
    'each connection starting with a v1 / v2 header, proxyProtocol on. Accept-thread CPU from schedstat.',
  contenders: ['dispatch'],

  estimate: (ctx) => 3 * ctx.profile.reps * (ctx.profile.seconds + 1) + 6,

  async run(ctx) {
    const p = ctx.profile;
    const seconds = ctx.smoke ? 1 : Math.min(p.seconds, 5);
    const reps = ctx.smoke ? 1 : p.reps;
    const dispatch = contenders.byName('dispatch');
    const servers = [];
    try {
      const plain = await contenders.start({ ...dispatch, start: (o) => dispatch.start({ ...o, app: 'pid' }) }, { workers: WORKERS });
      servers.push(plain);
      const proxied = await contenders.start({ ...dispatch, start: (o) => dispatch.start({ ...o, app: 'pid', proxyProtocol: true }) }, { workers: WORKERS });
      servers.push(proxied);
      const instances = [
        { ...plain, name: 'dispatch', label: 'no header', header: 'none' },
        { ...proxied, name: 'proxy-v1', label: 'PROXY v1', header: 'v1' },
        { ...proxied, name: 'proxy-v2', label: 'PROXY v2', header: 'v2' },
      ];
      const samples = await alternate(ctx, instances, {
        reps,
        cost: seconds + 1,
        warmup: (inst) => load.runProcesses({ ...GEN, port: inst.port, seconds: 1, header: inst.header }),
        warmupCost: 1,
        measure: async (inst) => {
          const before = proc.threadCpu(inst.pid, ACCEPT_THREAD);
          const r = await load.runProcesses({ ...GEN, port: inst.port, seconds, header: inst.header });
          return { connections: r.connections, errors: r.errors, seconds: r.seconds, acceptCpu: proc.threadCpu(inst.pid, ACCEPT_THREAD) - before };
        },
      });
      const comparison = c.compare(samples, METRICS);
      const ratio = (name) => comparison[name]?.cps.ratio?.median ?? null;
      return {
        tables: [c.metricTable(`${WORKERS} workers, new connections`, instances, comparison, METRICS)],
        goals: [
          c.goal('S12: new connections/s with a PROXY v1 header over without (within 10%)', ratio('proxy-v1'), 0.9, '>='),
          c.goal('S12: new connections/s with a PROXY v2 header over without (within 10%)', ratio('proxy-v2'), 0.9, '>='),
        ],
        raw: { samples: Object.fromEntries(samples) },
        summary: { comparison: c.strip(comparison) },
      };
    } finally {
      await Promise.all(servers.map((i) => i.stop().catch((err) => ctx.fail(`stopping ${i.label}: ${err.message}`))));
    }
  },
};
