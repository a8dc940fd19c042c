'use strict';
// Running wrk and reading its result. wrk is spawned through bash so its fd limit can be
// raised first: 1,000 connections need more than the usual soft limit of 1,024.
const { spawn, execFileSync } = require('node:child_process');
const path = require('node:path');

const REPORT = path.join(__dirname, 'wrk-report.lua');
const FD_HEADROOM = 64; // wrk's own files, epoll, pipes

const hardLimit = () => Number(execFileSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim()) || 1024;

/** Most connections one wrk can open here (its fd limit can be raised up to the hard limit). */
const maxConnections = () => {
  const hard = hardLimit();
  return Math.max(1, Math.min(hard, 65535) - FD_HEADROOM);
};

/**
 * Run wrk once. Resolves with { rps, connPerSec, requests, errors, latency (ms), seconds }.
 *   close: send "Connection: close", so every request is a new connection
 */
function run({ url, seconds, connections, threads = 2, close = false, timeout = 5 }) {
  const args = [
    '-t', String(Math.min(threads, connections)),
    '-c', String(connections),
    '-d', `${Math.max(1, Math.round(seconds))}s`, // wrk takes whole seconds only
    '--timeout', `${timeout}s`,
    '-s', REPORT,
  ];
  if (close) args.push('-H', 'Connection: close');
  args.push(url);
  const limit = Math.min(65535, hardLimit());
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const script = `ulimit -n ${limit} 2>/dev/null; exec wrk ${quoted}`;
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (code !== 0 || !line) return reject(new Error(`wrk failed (exit ${code}): ${out.slice(-1000)}`));
      resolve(parse(JSON.parse(line.slice(9))));
    });
  });
}

function parse(r) {
  const seconds = r.duration_us / 1e6;
  const ms = (us) => us / 1000;
  const e = r.errors;
  // A connection the server closed without answering is a read (or write) error to wrk;
  // each one still was a connection accepted and handed to a worker.
  const connections = r.requests + e.read + e.write;
  return {
    seconds,
    requests: r.requests,
    rps: r.requests / seconds,
    connPerSec: connections / seconds,
    connections,
    bytes: r.bytes,
    errors: e,
    latency: {
      min: ms(r.latency_us.min), max: ms(r.latency_us.max), mean: ms(r.latency_us.mean),
      p50: ms(r.latency_us.p50), p90: ms(r.latency_us.p90), p95: ms(r.latency_us.p95), p98: ms(r.latency_us.p98),
      p99: ms(r.latency_us.p99), p999: ms(r.latency_us.p999),
    },
  };
}

/** Requests that went wrong: socket errors other than expected ones, timeouts, non-2xx. */
const badCount = (r, { allowClose = false } = {}) =>
  r.errors.connect + r.errors.timeout + r.errors.status + (allowClose ? 0 : r.errors.read + r.errors.write);

module.exports = { run, maxConnections, badCount };
