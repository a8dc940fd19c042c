#!/usr/bin/env node
'use strict';
// node bench/burst-spread.js [--lib <dir>] [--workers N] [--runs N] [--connections N]
// A burst of keep-alive connections, as the issue #19 reproduction: `wrk -t2 -c<connections> -d1s`
// against a dispatch pool, `runs` times; after each run (once every connection is closed and
// read) each worker's new connectionsReceived, and the smallest share. A count, not a timing:
// valid on a shared machine. --lib: another build's lib/ (before/after).
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { parseArgs } = require('node:util');

const { values: o } = parseArgs({
  options: {
    lib: { type: 'string', default: path.join(__dirname, '../lib') },
    workers: { type: 'string', default: '2' },
    runs: { type: 'string', default: '20' },
    connections: { type: 'string', default: '1000' },
  },
});
const { Dispatcher } = require(path.resolve(o.lib));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const n = Number(o.workers);
  const d = await Dispatcher.start({ app: path.join(__dirname, 'apps/pid.js'), listen: { port: 0, host: '127.0.0.1' }, min: n, max: n });
  try {
    await sleep(500);
    const shares = [];
    for (let r = 0; r < Number(o.runs); r++) {
      const before = new Map(d.stats().workers.map((w) => [w.id, w.connectionsReceived]));
      execFileSync('wrk', ['-t2', `-c${o.connections}`, '-d1s', `http://127.0.0.1:${d.address().port}/`], { stdio: 'ignore' });
      const deadline = Date.now() + 30000;
      while (!d.stats().workers.every((w) => w.connectionsOpen === 0 && w.connectionsWaiting === 0) && Date.now() < deadline) await sleep(50);
      const got = d.stats().workers.map((w) => w.connectionsReceived - (before.get(w.id) ?? 0));
      const sum = got.reduce((a, b) => a + b, 0);
      shares.push(Math.min(...got) / sum);
      console.log(`run ${r + 1}: ${got.join(' / ')}  smallest share ${(Math.min(...got) / sum).toFixed(2)}`);
    }
    shares.sort((a, b) => a - b);
    console.log(`${n} workers, ${o.runs} runs: smallest share min ${shares[0].toFixed(2)}, median ${shares[shares.length >> 1].toFixed(2)} (even: ${(1 / n).toFixed(2)})`);
  } finally {
    await d.close();
  }
})();
