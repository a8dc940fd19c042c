'use strict';
// A closed-loop client that times every request raw: from opening the connection to the end
// of the response, one new connection per request. wrk corrects its percentiles for
// coordinated omission (each slow response adds synthetic samples), which turns a handful
// of stalled requests into a wall of them; the "stalled workers" scenario asks how many
// fast requests really waited, so it needs the raw figure. Runs as its own process, so the
// harness's own work does not add to the latencies.
//   node latency-client.js <url> <concurrency> <seconds>  ->  one JSON line on stdout
const net = require('node:net');
const { spawn } = require('node:child_process');

const SLOW_MS = 50; // a fast request that took this long was held up

function request(host, port, path) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const socket = net.connect(port, host);
    let head = '';
    socket.setNoDelay(true);
    socket.on('connect', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    socket.on('data', (d) => {
      if (head.length < 12) head += d.toString('latin1', 0, 12);
    });
    // The server closes after answering "Connection: close": the end is the whole response.
    socket.on('end', () => resolve({ ok: head.startsWith('HTTP/1.1 200'), ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    socket.on('error', () => resolve({ ok: false }));
  });
}

async function main([url, concurrency, seconds]) {
  const u = new URL(url);
  const until = Date.now() + Number(seconds) * 1000;
  const times = [];
  let errors = 0;
  await Promise.all(Array.from({ length: Number(concurrency) }, async () => {
    while (Date.now() < until) {
      const r = await request(u.hostname, Number(u.port), u.pathname);
      if (r.ok) times.push(r.ms);
      else errors++;
    }
  }));
  times.sort((a, b) => a - b);
  const at = (q) => (times.length ? times[Math.min(times.length - 1, Math.floor(q * times.length))] : null);
  process.stdout.write(`${JSON.stringify({
    requests: times.length,
    errors,
    rps: times.length / Number(seconds),
    latency: { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: times[times.length - 1] ?? null },
    slowShare: times.length ? times.filter((t) => t >= SLOW_MS).length / times.length : null,
  })}\n`);
}

/** Run the client in a child process; resolves with its result. */
function run({ url, concurrency, seconds }) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [__filename, url, String(concurrency), String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`latency client exited ${code}`))));
  });
}

if (require.main === module) main(process.argv.slice(2));

module.exports = { run, SLOW_MS };
