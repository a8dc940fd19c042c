'use strict';
// S6: how many connections per second the accepting side can take and pass on when the
// workers do nothing but close what they get (apps/close.js; nginx: return 444). If this is
// well above what workers serve in S1, the single acceptor is not the bottleneck.
const { withInstances } = require('../lib/runner');
const c = require('./common');

const WORKERS = 2;
const LOAD = { path: '/close', connections: 64, threads: 2, close: true, allowClose: true };
const METRICS = [
  { key: 'cps', label: 'connections/s', short: 'conn/s', get: (s) => s.wrk.connPerSec, digits: 0, ratio: true },
  { key: 'accepted', label: 'accepted/s (herdless count)', get: (s) => s.acceptedPerSec, digits: 0 },
];

async function accepted(inst) {
  if (!inst.contender.herdless) return null;
  return (await inst.command('stats')).stats.dispatcher.accepted;
}

module.exports = {
  id: 'ceiling',
  title: 'S6 · Dispatcher ceiling',
  about:
    `${WORKERS} workers that close every connection they receive without reading it; wrk -c${LOAD.connections} ` +
    'reconnects after each close. Connections per second completed (wrk: responses plus closed-without-answer).',
  contenders: (ctx) => (ctx.full ? null : ['dispatch', 'cluster-rr', 'nginx']),

  estimate: (ctx, list) => c.estimate(ctx, list.length, { workers: WORKERS }),

  async run(ctx, list) {
    const samples = await withInstances(ctx, list, { workers: WORKERS, app: 'close' }, (instances) =>
      c.loadRuns(ctx, instances, {
        load: LOAD,
        before: accepted,
        after: async (inst, before, result) => {
          if (before === null) return { acceptedPerSec: null };
          await c.sleep(300); // herdless publishes its counters every 100 ms; wrk has exited
          return { acceptedPerSec: ((await accepted(inst)) - before) / result.seconds };
        },
      }),
    );
    const comparison = c.compare(samples, METRICS);
    const served = servedInS1(ctx);
    const ceiling = comparison.dispatch?.cps.summary.median;
    return {
      notes: [
        served
          ? `For comparison, S1 (same run, ${WORKERS} workers) served ${Math.round(served).toLocaleString('en-US')} req/s with herdless dispatch.`
          : 'S1 did not run, so there is no served rate to compare the ceiling with.',
        "accepted/s is the herdless primary's own count of accepted connections over wrk's duration.",
      ],
      tables: [c.metricTable(`${WORKERS} workers, close on receipt`, list, comparison, METRICS)],
      charts: [],
      goals: [
        c.goal('S6: dispatch ceiling over what dispatch serves in S1 (2 workers)', ceiling && served ? ceiling / served : null, 1.5, '>='),
        c.goal('S6: dispatch ceiling over cluster SCHED_RR ceiling', c.dispatchOver(comparison, 'cluster-rr', 'cps'), 1.0, '>='),
      ],
      raw: Object.fromEntries(samples),
      summary: c.strip(comparison),
    };
  },
};

/** Median dispatch req/s with 2 workers in S1, if S1 ran in this suite. */
function servedInS1(ctx) {
  const s1 = ctx.results['conn-per-request'];
  const g = s1?.summary?.find((x) => x.workers === WORKERS);
  return g?.comparison.dispatch?.rps.summary.median ?? null;
}
