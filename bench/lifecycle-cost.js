'use strict';
// What a worker crash, a rolling reload and a burst cost a client under load.
//   node bench/lifecycle-cost.js
// 16 clients make connection-per-request calls for 9 s against min 2, max 4 workers;
// at 2 s a worker is SIGKILLed, at 5 s the pool is reloaded. Prints failures and latency
// around each event (requests grouped by when they started), and the pool size over time.
const http = require('node:http');
const path = require('node:path');
const { Dispatcher } = require('..');

const app = path.join(__dirname, 'apps', 'hello.js');

function once(port) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const req = http.get({ host: '127.0.0.1', port, agent: false, headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ ok: res.statusCode === 200, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    });
    req.on('error', (err) => resolve({ ok: false, ms: Number(process.hrtime.bigint() - t0) / 1e6, code: err.code }));
  });
}

async function main() {
  const d = await Dispatcher.start({ min: 2, max: 4, app, listen: { port: 0, host: '127.0.0.1' } });
  const { port } = d.address();
  const start = Date.now();
  const samples = [];
  const sizes = [];
  let stop = false;
  const lanes = Array.from({ length: 16 }, async () => {
    while (!stop) samples.push({ at: Date.now() - start, ...(await once(port)) });
  });
  const sizer = setInterval(() => sizes.push(`${((Date.now() - start) / 1000).toFixed(1)}s:${d.size}`), 500);
  await new Promise((r) => setTimeout(r, 2000));
  const victim = d.workers()[0].pid;
  const killedAt = Date.now() - start;
  process.kill(victim, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 3000));
  const reloadAt = Date.now() - start;
  await d.reload();
  const reloadDone = Date.now() - start;
  await new Promise((r) => setTimeout(r, 2000));
  stop = true;
  await Promise.all(lanes);
  clearInterval(sizer);
  const window = (from, to) => samples.filter((s) => s.at >= from && s.at < to);
  const summary = (list) => {
    const ms = list.filter((s) => s.ok).map((s) => s.ms).sort((a, b) => a - b);
    const q = (p) => (ms.length ? ms[Math.min(ms.length - 1, Math.floor(p * ms.length))].toFixed(1) : '-');
    const failed = list.filter((s) => !s.ok);
    const codes = failed.length ? ` (${[...new Set(failed.map((s) => `${s.code}@${s.at}ms`))].join(', ')})` : '';
    return `${list.length} requests, ${failed.length} failed${codes}, p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms`;
  };
  const stats = d.stats().dispatcher;
  console.log(`started 0-2 s (up to the kill):    ${summary(window(0, killedAt))}`);
  console.log(`started in the 1 s after SIGKILL:   ${summary(window(killedAt, killedAt + 1000))}`);
  console.log(`started during reload (${reloadAt}-${reloadDone} ms): ${summary(window(reloadAt, reloadDone))}`);
  console.log(`started after the reload:          ${summary(window(reloadDone, Infinity))}`);
  console.log(`re-dispatched: ${stats.redispatched}; accepted ${stats.accepted}; handed off ${stats.handedOff}`);
  console.log(`pool size: ${sizes.join(' ')}`);
  await d.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
