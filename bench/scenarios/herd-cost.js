'use strict';
// S3: what each connection costs the machine beyond serving it. With a shared listening
// socket every idle worker may be woken for a connection only one of them gets (the
// thundering herd); the waste shows up as voluntary context switches and CPU time. A light
// load leaves workers idle between connections, which is where the herd is worst.
const proc = require('../lib/proc');
const { withInstances } = require('../lib/runner');
const c = require('./common');

const WORKERS = 8;
const LOAD = { path: '/', connections: 8, threads: 2, close: true };

const perConn = (x, s) => x / s.wrk.connections;
const METRICS = [
  { key: 'rps', label: 'req/s', get: (s) => s.wrk.rps, digits: 0 },
  { key: 'workerCsw', label: 'worker vol. ctx switches / conn', short: 'worker csw', get: (s) => perConn(s.proc.workers.voluntary, s), digits: 2, ratio: true },
  { key: 'primaryCsw', label: 'primary vol. ctx switches / conn', get: (s) => perConn(s.proc.primary.voluntary, s), digits: 2 },
  { key: 'workerCpu', label: 'worker CPU s / 1,000 conns', short: 'worker CPU', get: (s) => 1000 * perConn(s.proc.workers.cpu, s), digits: 3, ratio: true },
  { key: 'primaryCpu', label: 'primary CPU s / 1,000 conns', get: (s) => 1000 * perConn(s.proc.primary.cpu, s), digits: 3 },
  { key: 'emptyWakeups', label: 'empty accept wake-ups / conn', get: (s) => (s.wakeups ? perConn(s.wakeups.empty, s) : null), digits: 2 },
];

/** herdless's own count of accept wake-ups that found nothing (herd and reuseport modes). */
async function wakeups(inst) {
  if (!inst.contender.herdless) return null;
  const { stats } = await inst.command('stats');
  return stats.workers.reduce((t, w) => ({ all: t.all + w.acceptWakeups, empty: t.empty + w.emptyWakeups }), { all: 0, empty: 0 });
}

module.exports = {
  id: 'herd-cost',
  title: 'S3 · Herd cost',
  about:
    `${WORKERS} workers, wrk -c${LOAD.connections} -H "Connection: close" (a light load, so workers sleep ` +
    'between connections). Voluntary context switches per connection, summed over all threads of all ' +
    'worker processes (and of the primary), and CPU seconds per 1,000 connections, from /proc.',

  estimate: (ctx, list) => c.estimate(ctx, list.length, { workers: WORKERS }),

  async run(ctx, list) {
    const samples = await withInstances(ctx, list, { workers: WORKERS }, (instances) =>
      c.loadRuns(ctx, instances, {
        load: LOAD,
        before: async (inst) => ({ snap: proc.snapshot(inst.pid), wake: await wakeups(inst) }),
        after: async (inst, before) => {
          const after = proc.snapshot(inst.pid);
          // herdless publishes worker counters every 100 ms; give them time to land.
          await c.sleep(300);
          const wake = await wakeups(inst);
          return {
            proc: proc.delta(before.snap, after),
            wakeups: wake && { all: wake.all - before.wake.all, empty: wake.empty - before.wake.empty },
          };
        },
      }),
    );
    const comparison = c.compare(samples, METRICS);
    return {
      tables: [c.metricTable(`${WORKERS} workers`, list, comparison, METRICS)],
      notes: [
        'Context switches count every thread, so they include libuv and V8 helper threads, and for ' +
          'herdless dispatch the native accept thread in the primary. "Empty accept wake-ups" is ' +
          "herdless's own count for its herd and reuseport modes; it does not apply to the others.",
      ],
      charts: [],
      goals: [],
      raw: Object.fromEntries(samples),
      summary: c.strip(comparison),
    };
  },
};
