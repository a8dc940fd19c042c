'use strict';
// S10: what the hop costs. Every request on a new connection; for each connection, the CPU
// time of the primary and of the workers, and the context switches of herdless's accept
// thread (a thread that wakes once per connection costs a context switch each time; one
// that wakes per batch costs a fraction). Three loads: saturating with 2 and with 8 workers,
// and one client at a time (light load, where nothing may get slower: p50 latency).
const proc = require('../lib/proc');
const { withInstances } = require('../lib/runner');
const c = require('./common');

const ACCEPT_THREAD = 'herdless-accept';
const CONFIGS = [
  { workers: 2, load: { path: '/', connections: 64, threads: 2, close: true } },
  { workers: 8, load: { path: '/', connections: 64, threads: 2, close: true } },
  { workers: 2, load: { path: '/', connections: 1, threads: 1, close: true } },
];

const perConn = (x, s) => x / s.wrk.connections;
const METRICS = [
  { key: 'rps', label: 'req/s', short: 'req/s', get: (s) => s.wrk.rps, digits: 0, ratio: true },
  { key: 'p50', label: 'p50 ms', get: (s) => s.wrk.latency.p50, digits: 3 },
  { key: 'primaryCpu', label: 'primary CPU µs / conn', get: (s) => 1e6 * perConn(s.proc.primary.cpu, s), digits: 1 },
  { key: 'workerCpu', label: 'worker CPU µs / conn', short: 'worker CPU', get: (s) => 1e6 * perConn(s.proc.workers.cpu, s), digits: 1, ratio: true },
  { key: 'acceptCsw', label: 'accept-thread ctx switches / conn', get: (s) => (s.accept ? perConn(s.accept, s) : null), digits: 3 },
];

const acceptSwitches = (pid) => {
  const t = proc.threadSwitches(pid, ACCEPT_THREAD);
  return t.voluntary + t.involuntary;
};

module.exports = {
  id: 'hop-cost',
  title: 'S10 · Cost of the hop',
  about:
    'wrk -H "Connection: close": -c64 with 2 and with 8 workers (saturated), and -c1 with 2 workers (light). ' +
    "Per connection: CPU time of the primary and of all workers (utime+stime from /proc), and context " +
    `switches of herdless's accept thread (/proc/<pid>/task/<tid>/status of the thread named ${ACCEPT_THREAD}).`,
  contenders: ['dispatch', 'herd', 'reuseport', 'cluster-rr', 'cluster-none'],

  estimate: (ctx, list) => CONFIGS.reduce((t, cfg) => t + c.estimate(ctx, list.length, { workers: cfg.workers }), 0),

  async run(ctx, list) {
    const groups = [];
    for (const cfg of ctx.smoke ? CONFIGS.slice(0, 1) : CONFIGS) {
      const what = `, ${cfg.workers} workers, -c${cfg.load.connections}`;
      const samples = await withInstances(ctx, list, { workers: cfg.workers }, (instances) =>
        c.loadRuns(ctx, instances, {
          load: cfg.load,
          what,
          before: (inst) => ({ snap: proc.snapshot(inst.pid), accept: acceptSwitches(inst.pid) }),
          after: (inst, before) => {
            const accept = acceptSwitches(inst.pid) - before.accept;
            return { proc: proc.delta(before.snap, proc.snapshot(inst.pid)), accept: inst.contender.name === 'dispatch' ? accept : null };
          },
        }),
      );
      groups.push({ cfg, what, comparison: c.compare(samples, METRICS), samples });
    }
    const at = (i) => groups[i]?.comparison || {};
    const median = (cmp, name, key) => cmp[name]?.[key]?.summary.median ?? null;
    const gap = c.dispatchMinus(at(2), 'cluster-none', 'p50');
    const p50gap = gap === null ? null : 1000 * gap; // µs
    return {
      tables: groups.map((g) => c.metricTable(`${g.cfg.workers} workers, -c${g.cfg.load.connections}`, list, g.comparison, METRICS)),
      goals: [
        c.goal('S10: primary CPU µs per connection (dispatch, 2 workers, -c64)', median(at(0), 'dispatch', 'primaryCpu'), 5, '<='),
        c.goal('S10: accept-thread context switches per connection (2 workers, -c64)', median(at(0), 'dispatch', 'acceptCsw'), 0.15, '<='),
        c.goal('S10: 2 workers: dispatch req/s over cluster SCHED_NONE', c.dispatchOver(at(0), 'cluster-none', 'rps'), 1.0, '>='),
        c.goal('S10: 2 workers: dispatch req/s over herdless herd', c.dispatchOver(at(0), 'herd', 'rps'), 1.0, '>='),
        c.goal('S10: 8 workers: dispatch req/s over cluster SCHED_NONE', c.dispatchOver(at(1), 'cluster-none', 'rps'), 1.05, '>='),
        c.goal('S10: 8 workers: worker CPU per connection, dispatch over SCHED_NONE', c.dispatchOver(at(1), 'cluster-none', 'workerCpu'), 1.0, '<='),
        c.goal('S10: light load (-c1): dispatch p50 minus SCHED_NONE p50 (µs)', p50gap, 50, '<='),
      ],
      raw: groups.map((g) => ({ workers: g.cfg.workers, connections: g.cfg.load.connections, samples: Object.fromEntries(g.samples) })),
      summary: groups.map((g) => ({ workers: g.cfg.workers, connections: g.cfg.load.connections, comparison: c.strip(g.comparison) })),
    };
  },
};
