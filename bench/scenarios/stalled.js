'use strict';
// S5: some workers are stalled (a request holds their event loop for 200 ms) while fast
// requests keep arriving. A balancer that sends connections to stalled workers makes fast
// requests wait behind slow ones; that shows in the fast requests' p99 and max. The fast
// requests are timed raw by lib/latency-client.js (see there why not wrk).
//
// Two variants: 'stalled' blocks in Atomics.wait (no CPU used, as a synchronous file or
// child-process call blocks: placement alone shows), 'stalled-spin' burns the CPU for the
// same 200 ms (on 2 cores the two blocked workers then take most of the CPU from everyone,
// and scheduling delay sets a floor that no placement removes).
const chart = require('../lib/chart');
const blocker = require('../lib/blocker');
const client = require('../lib/latency-client');
const { withInstances, alternate } = require('../lib/runner');
const c = require('./common');

const WORKERS = 4;
const BLOCK = { concurrency: 2, ms: 200 }; // about half the workers stalled at any time
const FAST = { concurrency: 4 };
const METRICS = [
  { key: 'p50', label: 'fast p50 ms', get: (s) => s.fast.latency.p50, digits: 2 },
  { key: 'p90', label: 'fast p90 ms', get: (s) => s.fast.latency.p90, digits: 2 },
  { key: 'p99', label: 'fast p99 ms', short: 'p99', get: (s) => s.fast.latency.p99, digits: 2, ratio: true },
  { key: 'max', label: 'fast max ms', get: (s) => s.fast.latency.max, digits: 1 },
  { key: 'slow', label: `fast ≥ ${client.SLOW_MS} ms (%)`, get: (s) => 100 * s.fast.slowShare, digits: 2 },
  { key: 'rps', label: 'fast req/s', get: (s) => s.fast.rps, digits: 0 },
  { key: 'blocked', label: 'slow requests done', get: (s) => s.blocked.completed, digits: 0 },
];

async function measure(inst, seconds, spin) {
  const b = blocker.start(inst.url('/'), { ...BLOCK, spin });
  await c.sleep(BLOCK.ms); // let the stalls begin before measuring
  let fast;
  let blocked;
  try {
    fast = await client.run({ url: inst.url('/'), concurrency: FAST.concurrency, seconds });
  } finally {
    blocked = await b.stop();
  }
  if (fast.requests === 0 || fast.errors > 0.01 * fast.requests) throw new Error(`${fast.errors} failed fast requests`);
  return { fast, blocked };
}

const variant = ({ id, title, spin, file }) => ({
  id,
  title,
  about:
    `${WORKERS} workers. In the background ${BLOCK.concurrency} clients in a loop request /block?ms=${BLOCK.ms}${spin ? '&spin=1' : ''}, ` +
    `each on a new connection, which holds a worker's event loop for ${BLOCK.ms} ms ` +
    `(${spin ? 'a busy loop, burning the CPU' : 'in Atomics.wait, using no CPU'}). Meanwhile ${FAST.concurrency} ` +
    'clients send fast requests, one connection each, timed from connect to the end of the response.',
  // nginx has no way to hold a worker's event loop from its config.
  contenders: ['dispatch', 'herd', 'reuseport', 'cluster-rr', 'cluster-none'],

  estimate: (ctx, list) => c.estimate(ctx, list.length, { workers: WORKERS }) + list.length * ctx.profile.reps * 0.5,

  async run(ctx, list) {
    const p = ctx.profile;
    const samples = await withInstances(ctx, list, { workers: WORKERS }, (instances) =>
      alternate(ctx, instances, {
        reps: p.reps,
        cost: p.seconds + 0.5,
        warmupCost: p.warmup + 0.5,
        warmup: p.warmup ? (inst) => client.run({ url: inst.url('/'), concurrency: FAST.concurrency, seconds: p.warmup }) : null,
        measure: (inst) => measure(inst, p.seconds, spin),
      }),
    );
    const comparison = c.compare(samples, METRICS);
    // Other p99 over dispatch p99, run by run (the table's "× dispatch" column).
    const over = (name) => comparison[name]?.p99.ratio?.median ?? null;
    return {
      notes: [
        'Latencies are raw (every request timed, no coordinated-omission correction), from opening the connection.',
        'nginx is left out: its config cannot stall a worker the way the Node app does.',
      ],
      tables: [c.metricTable(`${WORKERS} workers, ${BLOCK.concurrency} stalling clients`, list, comparison, METRICS)],
      charts: [
        {
          file,
          spec: chart.bars({
            title: `Fast requests beside ${spin ? 'spinning' : 'stalled'} workers: p99 latency, ms (median, min–max)`,
            yTitle: 'p99 ms',
            order: list.map((x) => x.label),
            rows: c.barRows(list, comparison, 'p99', 'p99'),
          }),
        },
      ],
      goals: [
        c.goal(`${title.split(' ')[0]}: cluster SCHED_RR fast p99 over dispatch fast p99`, over('cluster-rr'), 5, '>='),
        c.goal(`${title.split(' ')[0]}: herdless reuseport fast p99 over dispatch fast p99`, over('reuseport'), 5, '>='),
      ],
      raw: Object.fromEntries(samples),
      summary: c.strip(comparison),
    };
  },
});

module.exports = variant({ id: 'stalled', title: 'S5 · Stalled workers', spin: false, file: 's5-stalled.svg' });
module.exports.spin = variant({ id: 'stalled-spin', title: 'S5b · Stalled workers, CPU-bound', spin: true, file: 's5b-stalled-spin.svg' });
