'use strict';
// Syscalls per connection in a worker, herdless against Node's own accept path, counted by
// strace (Debian's `strace`). Each contender runs with one worker; strace -c -f attaches to
// that worker while wrk opens connections with "Connection: close"; every count is divided
// by the connections the worker served. The difference is what adopting a handed-off fd
// costs beyond accept4 (herdless's recvmsg replaces accept4: one per batch).
//
//   node bench/syscalls.js [--seconds 3] [--contenders dispatch,herd,cluster-none]
const { spawn } = require('node:child_process');
const { parseArgs } = require('node:util');
const contenders = require('./contenders');
const wrk = require('./lib/wrk');

const { values: opt } = parseArgs({
  options: { seconds: { type: 'string', default: '3' }, contenders: { type: 'string', default: 'dispatch,cluster-none' } },
});

/** strace -c's table: { name: calls }. */
function parseSummary(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = line.trim().match(/^\d+\.\d+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/);
    if (m && m[2] !== 'total') out[m[2]] = Number(m[1]);
  }
  return out;
}

async function measure(name) {
  const inst = await contenders.start(contenders.byName(name), { workers: 1 });
  try {
    const url = inst.url('/');
    await wrk.run({ url, seconds: 1, connections: 4, close: true }); // warm-up
    const [worker] = inst.workerPids();
    const strace = spawn('strace', ['-c', '-f', '-p', String(worker)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let text = '';
    strace.stderr.on('data', (d) => (text += d));
    await new Promise((r) => setTimeout(r, 500)); // attached
    const result = await wrk.run({ url, seconds: Number(opt.seconds), connections: 4, close: true, threads: 2 });
    strace.kill('SIGINT');
    await new Promise((r) => strace.once('close', r));
    return { name, connections: result.connections, calls: parseSummary(text) };
  } finally {
    await inst.stop();
  }
}

async function main() {
  const names = opt.contenders.split(',');
  const runs = [];
  for (const n of names) runs.push(await measure(n));
  const all = [...new Set(runs.flatMap((r) => Object.keys(r.calls)))];
  const per = (r, s) => (r.calls[s] || 0) / r.connections;
  all.sort((a, b) => per(runs[0], b) - per(runs[0], a));
  console.log(`worker syscalls per connection (strace -c -f, wrk -c4 -H "Connection: close", ${opt.seconds} s)\n`);
  console.log(['syscall', ...names].map((x) => x.padStart(14)).join(''));
  for (const s of all) {
    if (runs.every((r) => per(r, s) < 0.005)) continue;
    console.log([s, ...runs.map((r) => per(r, s).toFixed(2))].map((x) => String(x).padStart(14)).join(''));
  }
  console.log(['total', ...runs.map((r) => all.reduce((t, s) => t + per(r, s), 0).toFixed(2))].map((x) => String(x).padStart(14)).join(''));
  console.log(['connections', ...runs.map((r) => r.connections)].map((x) => String(x).padStart(14)).join(''));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
