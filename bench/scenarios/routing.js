'use strict';
// S11: route: 'client-ip'. Clients with distinct source addresses (127.0.0.2, 127.0.0.3, ...:
// bench/lib/conn-load.js, since wrk cannot bind source addresses) open new connections, each
// answered with the pid of its worker (apps/pid.js). Three figures:
//   - stickiness: the share of clients all of whose connections reached one worker
//     (client-ip; least-loaded shown beside it, where nothing holds a client to a worker);
//   - resize: the share of clients whose worker changes when the pool grows from 4 to 5
//     workers (rendezvous hashing moves only the new worker's share, 1/5);
//   - cost: CPU of the accept thread (herdless-accept, /proc/<pid>/task/<tid>/schedstat) per
//     connection, client-ip minus least-loaded, measured in alternation as in S10 (hop-cost).
const contenders = require('../contenders');
const load = require('../lib/conn-load');
const proc = require('../lib/proc');
const stats = require('../lib/stats');
const { alternate } = require('../lib/runner');
const c = require('./common');

const ACCEPT_THREAD = 'herdless-accept';
const WORKERS = 4;
const SOURCES = 64;
const RESIZE_SOURCES = 400;
const GEN = { procs: 2, concurrency: 32 };

const METRICS = [
  { key: 'cps', label: 'connections/s', short: 'conn/s', get: (s) => s.connections / s.seconds, digits: 0, ratio: true },
  { key: 'acceptUs', label: 'accept-thread CPU µs / conn', get: (s) => (1e6 * s.acceptCpu) / s.connections, digits: 2 },
  { key: 'sticky', label: 'clients on one worker', get: (s) => s.sticky, digits: 3 },
  { key: 'errors', label: 'failed connections', get: (s) => s.errors, digits: 0 },
];

/** Share of clients (source addresses) whose connections all reached one worker. */
function stickyShare(bySource) {
  const clients = Object.values(bySource).filter((pids) => Object.keys(pids).length > 0);
  return clients.length ? clients.filter((pids) => Object.keys(pids).length === 1).length / clients.length : null;
}
/** Each client's worker: the pid that served most of its connections. */
const homes = (bySource) =>
  Object.fromEntries(Object.entries(bySource).map(([a, pids]) => [a, Object.entries(pids).sort((x, y) => y[1] - x[1])[0]?.[0]]));

const variant = (name, label, route) => ({
  name,
  label,
  herdless: true,
  start: (o) => contenders.byName('dispatch').start({ ...o, app: 'pid', route }),
});

module.exports = {
  id: 'routing',
  title: 'S11 · Routing by client address',
  about:
    `${WORKERS} workers, apps/pid.js. ${GEN.procs} bench/lib/conn-load.js processes × ${GEN.concurrency} lanes of ` +
    `Connection: close requests from ${SOURCES} loopback source addresses (one client each). Stickiness: share of ` +
    'clients whose connections all reached one worker. Resize: share of ' + RESIZE_SOURCES + ' clients whose worker ' +
    `changed when the pool grew from ${WORKERS} to ${WORKERS + 1}. Cost: accept-thread CPU (schedstat) per connection.`,
  contenders: ['dispatch'],

  estimate: (ctx) => 2 * ctx.profile.reps * (ctx.profile.seconds + 1) + 12,

  async run(ctx) {
    const p = ctx.profile;
    const seconds = ctx.smoke ? 1 : Math.min(p.seconds, 5);
    const reps = ctx.smoke ? 1 : p.reps;
    const instances = [];
    try {
      for (const v of [variant('dispatch', 'dispatch, least-loaded', 'least-loaded'), variant('client-ip', 'dispatch, client-ip', 'client-ip')]) {
        instances.push(await contenders.start(v, { workers: WORKERS, min: WORKERS, max: WORKERS + 1 }));
      }
      const samples = await alternate(ctx, instances, {
        reps,
        cost: seconds + 1,
        warmup: (inst) => load.runProcesses({ ...GEN, port: inst.port, seconds: 1, sources: SOURCES }),
        warmupCost: 1,
        measure: async (inst) => {
          const before = proc.threadCpu(inst.pid, ACCEPT_THREAD);
          const r = await load.runProcesses({ ...GEN, port: inst.port, seconds, sources: SOURCES });
          return { ...r, acceptCpu: proc.threadCpu(inst.pid, ACCEPT_THREAD) - before, sticky: stickyShare(r.bySource), bySource: undefined };
        },
      });
      const comparison = c.compare(samples, METRICS);
      // Resize, on the client-ip instance: each client's worker before and after growing by one.
      const sticky = instances[1];
      ctx.progress.note(`${sticky.label}: resize ${WORKERS} -> ${WORKERS + 1}`);
      const before = homes((await load.runProcesses({ ...GEN, port: sticky.port, seconds: 1.5, sources: RESIZE_SOURCES })).bySource);
      const grown = await sticky.command('grow');
      await c.sleep(300);
      const after = homes((await load.runProcesses({ ...GEN, port: sticky.port, seconds: 1.5, sources: RESIZE_SOURCES })).bySource);
      const both = Object.keys(before).filter((a) => before[a] && after[a]);
      const moved = both.filter((a) => before[a] !== after[a]);
      const oldPids = new Set(Object.values(before));
      const movedElsewhere = moved.filter((a) => oldPids.has(after[a])).length; // moved between old workers
      const movedShare = both.length ? moved.length / both.length : null;
      const costUs = (() => {
        const a = comparison['client-ip']?.acceptUs.values;
        const b = comparison.dispatch?.acceptUs.values;
        if (!a || !b) return null;
        const d = a.map((x, i) => (Number.isFinite(x) && Number.isFinite(b[i]) ? x - b[i] : null)).filter((x) => x !== null);
        return d.length ? stats.summary(d).median : null;
      })();
      const median = (name, key) => comparison[name]?.[key]?.summary.median ?? null;
      const bound = 1 / (WORKERS + 1) + 0.1;
      return {
        tables: [
          c.metricTable(`${WORKERS} workers, ${SOURCES} clients`, instances, comparison, METRICS),
          {
            title: `resize ${WORKERS} -> ${grown.size} (client-ip, ${both.length} clients)`,
            columns: ['clients', 'moved', 'moved share', 'expected share', 'moved between old workers'],
            rows: [[String(both.length), String(moved.length), movedShare === null ? '-' : movedShare.toFixed(3), (1 / (WORKERS + 1)).toFixed(3), String(movedElsewhere)]],
          },
        ],
        goals: [
          c.goal('S11: client-ip: share of healthy clients whose connections all reached one worker', median('client-ip', 'sticky'), 1, '>='),
          c.goal(`S11: client-ip: share of clients moved by a resize ${WORKERS} -> ${WORKERS + 1} (1/${WORKERS + 1} + 10%)`, movedShare, Number(bound.toFixed(3)), '<='),
          c.goal('S11: accept-thread CPU per connection, client-ip minus least-loaded (µs)', costUs, 1, '<='),
        ],
        raw: { samples: Object.fromEntries(samples), resize: { before, after, size: grown.size } },
        summary: { comparison: c.strip(comparison), resize: { clients: both.length, moved: moved.length, movedElsewhere } },
      };
    } finally {
      await Promise.all(instances.map((i) => i.stop().catch((err) => ctx.fail(`stopping ${i.label}: ${err.message}`))));
    }
  },
};
