'use strict';
// One client, a new connection per request, against four pools side by side: dispatch and
// cluster SCHED_NONE, with 1 and with 2 workers each:
//   node bench/one-client-pools.js [reps=6]
// Warms each pool (2 s), then runs `wrk -t1 -c1 -d2s -H "Connection: close"` against each in
// alternating order, `reps` times, and prints each pool's median req/s, p50 and p99 (µs) and
// every run's p99. Whether the tail depends on the pool having a second worker.
const C = require('./contenders');
const wrk = require('./lib/wrk');

const reps = Number(process.argv[2] || 6);
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

(async () => {
  const pools = [];
  try {
    for (const [name, workers] of [['dispatch', 1], ['cluster-none', 1], ['dispatch', 2], ['cluster-none', 2]]) {
      pools.push({ key: `${name}, ${workers} worker${workers > 1 ? 's' : ''}`, inst: await C.start(C.byName(name), { workers }) });
    }
    const run = (p) => wrk.run({ url: p.inst.url('/'), seconds: 2, connections: 1, threads: 1, close: true });
    for (const p of pools) await run(p);
    const rows = new Map(pools.map((p) => [p.key, []]));
    for (let r = 0; r < reps; r++) {
      for (const p of r % 2 ? [...pools].reverse() : pools) {
        const res = await run(p);
        rows.get(p.key).push({ rps: res.rps, p50: 1000 * res.latency.p50, p99: 1000 * res.latency.p99 });
      }
    }
    for (const [key, v] of rows) {
      const m = (k) => Math.round(median(v.map((x) => x[k])));
      console.log(`${key.padEnd(26)} req/s ${m('rps')}  p50 ${m('p50')} µs  p99 ${m('p99')} µs  (p99 per run: ${v.map((x) => Math.round(x.p99)).join(', ')})`);
    }
  } finally {
    for (const p of pools) await p.inst.stop();
  }
})();
