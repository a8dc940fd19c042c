'use strict';
// A/B of two herdless builds on the hop's cost (the 'before' figures of issue 8):
//   node bench/hop-ab.js <lib dir> [workers=2] [connections=64]
// Starts one dispatch instance from <lib dir> (e.g. ./lib, or another checkout's lib), warms up
// 1 s, runs wrk -H "Connection: close" for 3 s and prints req/s, p50, the primary's CPU per
// connection, the accept thread's context switches per connection (a build without the thread
// name 'herdless-accept' reads 0), the workers' CPU per connection, and the dispatch wait's
// p50/p99 in µs from stats().dispatchWait (null for a build without it). Alternate the builds.
const proc = require('./lib/proc');
const { waitQuantileMs, waitDelta } = require('./lib/wait-quantile');
const wrk = require('./lib/wrk');
(async () => {
  const { Dispatcher } = require(require('node:path').resolve(process.argv[2] || 'lib'));
  const w = Number(process.argv[3] || 2), c = Number(process.argv[4] || 64);
  const d = await Dispatcher.start({ min: w, max: w, app: require('node:path').join(__dirname, 'apps/hello.js'), listen: { port: 0, host: '127.0.0.1' } });
  const url = `http://127.0.0.1:${d.address().port}/`;
  await wrk.run({ url, seconds: 1, connections: c, close: true });
  const w0 = d.stats().dispatchWait;
  const s0 = proc.snapshot(process.pid), t0 = proc.threadSwitches(process.pid, 'herdless-accept');
  const r = await wrk.run({ url, seconds: 3, connections: c, close: true, threads: Math.min(2, c) });
  const s1 = proc.snapshot(process.pid), t1 = proc.threadSwitches(process.pid, 'herdless-accept');
  const wait = waitDelta(d.stats().dispatchWait, w0);
  const us = (q) => { const ms = waitQuantileMs(wait, q); return ms === null ? null : Math.round(1000 * ms); };
  const pids = new Set(d.workers().map((x) => x.pid)); s0.workers = s0.workers.filter((x) => pids.has(x.pid)); s1.workers = s1.workers.filter((x) => pids.has(x.pid)); const dd = proc.delta(s0, s1); const n = r.connections;
  console.log(JSON.stringify({ lib: process.argv[2], rps: Math.round(r.rps), p50: r.latency.p50, primaryUs: +(1e6 * dd.primary.cpu / n).toFixed(1), acceptVol: +((t1.voluntary - t0.voluntary) / n).toFixed(3), acceptInvol: +((t1.involuntary - t0.involuntary) / n).toFixed(3), workerUs: +(1e6 * dd.workers.cpu / n).toFixed(1), waitP50Us: us(0.5), waitP99Us: us(0.99) }));
  await d.close();
})();
