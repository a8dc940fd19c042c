'use strict';
// Promise-based HTTP client for the pool tests: one request, { status, body } or an error
// with err.code (ECONNRESET, ECONNREFUSED, ETIMEDOUT, ...).
const http = require('node:http');
const { sleep, waitFor } = require('./wait');

/**
 * GET `path` on 127.0.0.1:`port`.
 * opts.agent: an http.Agent (keep-alive) or false (a new connection per request, the default).
 * opts.timeout: ms before the request is destroyed with ETIMEDOUT (default 10000).
 */
function get(port, path = '/', opts = {}) {
  const agent = opts.agent === undefined ? false : opts.agent;
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'GET',
        agent,
        headers: agent === false ? { connection: 'close' } : {},
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
        res.on('error', reject);
        res.on('aborted', () => reject(Object.assign(new Error('response aborted'), { code: 'ECONNRESET' })));
      },
    );
    req.on('error', (err) => {
      if (!err.code) err.code = 'EUNKNOWN';
      reject(err);
    });
    req.setTimeout(opts.timeout ?? 10000, () => req.destroy(Object.assign(new Error(`timeout on ${path}`), { code: 'ETIMEDOUT' })));
    req.end();
  });
}

/** A keep-alive agent. */
function keepAliveAgent(maxSockets = 4) {
  return new http.Agent({ keepAlive: true, maxSockets });
}

/**
 * Run `fn(i)` `total` times with `concurrency` in flight. Each result is
 * { i, ok: true, value, t0, t1 } or { i, ok: false, error, t0, t1 } (times from Date.now()).
 * `total` may be Infinity: then it runs until `signal.stop` is set.
 */
async function load({ total = Infinity, concurrency = 8, signal = {} }, fn) {
  const results = [];
  let next = 0;
  async function lane() {
    while (next < total && !signal.stop) {
      const i = next++;
      const t0 = Date.now();
      try {
        const value = await fn(i);
        results.push({ i, ok: true, value, t0, t1: Date.now() });
      } catch (error) {
        results.push({ i, ok: false, error, t0, t1: Date.now() });
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane));
  return results;
}

/** Summarise failed results by error code, for assertion messages. */
function failureSummary(results) {
  const byCode = {};
  for (const r of results) if (!r.ok) byCode[r.error.code || r.error.message] = (byCode[r.error.code || r.error.message] || 0) + 1;
  return byCode;
}

module.exports = { get, keepAliveAgent, load, sleep, waitFor, failureSummary };
