'use strict';
// One client, a new connection per request, against four pools side by side: dispatch and
// cluster SCHED_NONE, with 1 and with 2 workers each:
//   node bench/one-client-pools.js [reps=6]
// Warms each pool (2 s), then runs `wrk -t1 -c1 -d2s -H "Connection: close"` against each in
// alternating order, `reps` times, and prints each pool's median req/s and latency percentiles
// (µs, p50 to p99) and every run's p99. Whether the tail depends on the pool having a second
// worker, and where it starts. For dispatch pools also the share of connections whose hand-off
// (the primary's accept to the worker's read, stats().dispatchWait) took over 500 µs: the part
// of the tail that waited for a worker to read its channel.
const C = require('./contenders');
const wrk = require('./lib/wrk');

const reps = Number(process.argv[2] || 6);
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const PCTS = ['p50', 'p90', 'p95', 'p98', 'p99'];
const SLOW_HANDOFF_S = 0.0005;

/** Connections handed off, and of them those that waited past SLOW_HANDOFF_S (null: not herdless). */
async function handoffs(pool) {
  if (pool.name !== 'dispatch') return null;
  const { buckets } = (await pool.inst.command('stats')).stats.dispatchWait;
  const within = buckets.find((b) => b.le === SLOW_HANDOFF_S).count;
  return { count: buckets[buckets.length - 1].count, slow: buckets[buckets.length - 1].count - within };
}

(async () => {
  const pools = [];
  try {
    for (const [name, workers] of [['dispatch', 1], ['cluster-none', 1], ['dispatch', 2], ['cluster-none', 2]]) {
      pools.push({ name, key: `${name}, ${workers} worker${workers > 1 ? 's' : ''}`, inst: await C.start(C.byName(name), { workers }) });
    }
    const run = (p) => wrk.run({ url: p.inst.url('/'), seconds: 2, connections: 1, threads: 1, close: true });
    for (const p of pools) await run(p);
    const rows = new Map(pools.map((p) => [p.key, []]));
    for (let r = 0; r < reps; r++) {
      for (const p of r % 2 ? [...pools].reverse() : pools) {
        const before = await handoffs(p);
        const res = await run(p);
        const after = await handoffs(p);
        const row = { rps: res.rps };
        for (const k of PCTS) row[k] = 1000 * res.latency[k];
        if (before && after && after.count > before.count) row.slowHandoffs = (100 * (after.slow - before.slow)) / (after.count - before.count);
        rows.get(p.key).push(row);
      }
    }
    for (const [key, v] of rows) {
      const m = (k) => Math.round(median(v.map((x) => x[k])));
      const slow = v.every((x) => x.slowHandoffs !== undefined) ? `  hand-off > 500 µs ${median(v.map((x) => x.slowHandoffs)).toFixed(2)}%` : '';
      console.log(
        `${key.padEnd(24)} req/s ${m('rps')}  ${PCTS.map((k) => `${k} ${m(k)}`).join('  ')} µs${slow}  (p99 per run: ${v.map((x) => Math.round(x.p99)).join(', ')})`,
      );
    }
  } finally {
    for (const p of pools) await p.inst.stop();
  }
})();
