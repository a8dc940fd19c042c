'use strict';
// Figures for per-worker health (issue 18, items 3-4), each its own mode:
//   node bench/health.js idle [--reps 3] [--seconds 10] [--settle 3]   idle pool of 4: context switches/s of every
//        thread of every process (primary and workers), health on vs off, alternating
//   node bench/health.js close [--reps 5] [--seconds 5]   Connection: close req/s (wrk), 2 workers,
//        health on vs off, alternating; medians
//   node bench/health.js scrape [--reps 5]                /metrics scrape time, 8 workers, the app's
//        prom-client metrics, one worker blocked for 2 s (and none blocked, for reference)
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Dispatcher } = require('..');
const { readScore } = require('../lib/shared/scoreboard');

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const local = { port: 0, host: '127.0.0.1' };

function switches(pids) {
  let n = 0;
  for (const pid of pids) {
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
      const s = fs.readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8');
      n += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(s)[1]) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(s)[1]);
    }
  }
  return n;
}

function get(port, p) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

async function idle() {
  const seconds = arg('seconds', 10);
  const results = { on: [], off: [] };
  for (let rep = 0; rep < arg('reps', 3); rep++) {
    for (const health of [true, false]) {
      const d = await Dispatcher.start({ app: path.join(__dirname, 'apps', 'hello.js'), listen: local, min: 4, max: 4, health });
      await sleep(arg('settle', 3) * 1000); // start-up settles (V8's post-load tasks)
      const workers = d.workers().map((w) => w.pid);
      const pids = [process.pid, ...workers];
      // The loops' own wake-up counters, read from the scoreboards directly: d.stats() would ask the workers.
      const boards = [...d.pool.workers.values()].map((w) => w.board);
      const loops = () => boards.reduce((n, b) => n + readScore(b, 'loopWakeups'), 0);
      const before = [switches(pids), switches(workers), loops()];
      await sleep(seconds * 1000);
      const after = [switches(pids), switches(workers), loops()];
      const [all, ofWorkers, wakeups] = after.map((v, i) => (v - before[i]) / seconds);
      results[health ? 'on' : 'off'].push(all);
      console.log(`health ${health ? 'on ' : 'off'}: ${all.toFixed(1)} context switches/s (primary and 4 workers, all threads), of which workers ${ofWorkers.toFixed(1)}; worker event-loop wake-ups ${wakeups.toFixed(1)}/s`);
      await d.close();
    }
  }
  console.log(`median: on ${median(results.on).toFixed(1)}/s, off ${median(results.off).toFixed(1)}/s`);
}

async function close() {
  const seconds = arg('seconds', 5);
  const results = { on: [], off: [] };
  const cpuUs = { on: [], off: [] };
  for (let rep = 0; rep < arg('reps', 5); rep++) {
    // Which goes first alternates too: a machine whose load drifts favours neither.
    for (const health of rep % 2 === 0 ? [true, false] : [false, true]) {
      const d = await Dispatcher.start({ app: path.join(__dirname, 'apps', 'hello.js'), listen: local, min: 2, max: 2, health });
      const cpu = () => d.workers().reduce((n, w) => {
        const f = fs.readFileSync(`/proc/${w.pid}/stat`, 'utf8').split(') ')[1].split(' ');
        return n + Number(f[11]) + Number(f[12]); // utime + stime, clock ticks (100/s)
      }, 0);
      const cpuBefore = cpu();
      const out = execFileSync('wrk', ['-t1', '-c32', `-d${seconds}s`, '-H', 'Connection: close', `http://127.0.0.1:${d.address().port}/`], { encoding: 'utf8' });
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
      const requests = Number(/(\d+) requests in/.exec(out)[1]);
      const usPerRequest = ((cpu() - cpuBefore) * 10_000) / requests;
      results[health ? 'on' : 'off'].push(rps);
      cpuUs[health ? 'on' : 'off'].push(usPerRequest);
      console.log(`health ${health ? 'on ' : 'off'}: ${rps} req/s, workers' CPU ${usPerRequest.toFixed(1)} µs/request`);
      await d.close();
    }
  }
  const on = median(results.on);
  const off = median(results.off);
  console.log(`median: on ${on} req/s, off ${off} req/s, on/off ${(on / off).toFixed(3)}`);
  console.log(`median workers' CPU per request: on ${median(cpuUs.on).toFixed(1)} µs, off ${median(cpuUs.off).toFixed(1)} µs`);
}

async function scrape() {
  const d = await Dispatcher.start({ app: path.join(__dirname, '..', 'test', 'fixtures', 'prom-app.js'), listen: local, min: 8, max: 8, metrics: { port: 0, host: '127.0.0.1' } });
  const port = d.address().port;
  const mport = d.metricsAddress().port;
  for (let i = 0; i < 400; i++) await get(port, '/');
  const timed = async () => {
    const t0 = process.hrtime.bigint();
    const text = await get(mport, '/metrics');
    return { ms: Number(process.hrtime.bigint() - t0) / 1e6, text };
  };
  const free = [];
  const blocked = [];
  for (let rep = 0; rep < arg('reps', 5); rep++) {
    free.push((await timed()).ms);
    const block = get(port, '/block?ms=2000');
    while (!d.stats().workers.some((w) => w.loopAwake && w.loopBusyMs >= 50)) await sleep(5);
    const { ms, text } = await timed();
    const stale = (text.match(/^herdless_worker_metrics_stale\{slot="\d+"\} 1$/gm) ?? []).length;
    const counted = (text.match(/^herdless_worker_metrics_stale\{slot="\d+"\} 0$/gm) ?? []).length;
    blocked.push(ms);
    console.log(`scrape, none blocked: ${free[rep].toFixed(1)} ms; one blocked: ${ms.toFixed(1)} ms (${counted} workers counted, ${stale} stale)`);
    await block;
  }
  console.log(`median: none blocked ${median(free).toFixed(1)} ms, one of 8 blocked ${median(blocked).toFixed(1)} ms`);
  await d.close();
}

const mode = process.argv[2];
({ idle, close, scrape })[mode]?.().catch((err) => {
  console.error(err);
  process.exit(1);
}) ?? console.error('usage: node bench/health.js idle|close|scrape');
