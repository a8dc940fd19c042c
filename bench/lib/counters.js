'use strict';
// Harness side of apps/counters.js: per-worker connection counts, read from the files the
// workers write, or for nginx from an access log of "$pid" lines.
const fs = require('node:fs');
const path = require('node:path');
const { FLUSH_MS } = require('../apps/counters');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Map pid -> { connections, requests } once every worker has flushed what it counted. */
async function readStatsDir(dir) {
  await sleep(FLUSH_MS * 3);
  const out = new Map();
  for (const name of fs.readdirSync(dir)) {
    if (!name.endsWith('.json')) continue;
    try {
      const c = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
      out.set(c.pid, { connections: c.connections, requests: c.requests });
    } catch {
      /* a worker exiting mid-write; the rename makes this rare */
    }
  }
  return out;
}

/** Map pid -> { connections } from a log with one "$pid" line per request (Connection: close). */
function readPidLog(file, workerPids) {
  const out = new Map(workerPids.map((pid) => [pid, { connections: 0, requests: 0 }]));
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  for (const line of text.split('\n')) {
    const pid = Number(line);
    if (!pid) continue;
    const c = out.get(pid) || { connections: 0, requests: 0 };
    c.connections++;
    c.requests++;
    out.set(pid, c);
  }
  return out;
}

/** Per-pid difference; pids only in `after` count from zero. */
function diff(before, after) {
  const out = new Map();
  for (const [pid, a] of after) {
    const b = before.get(pid) || { connections: 0, requests: 0 };
    out.set(pid, { connections: a.connections - b.connections, requests: a.requests - b.requests });
  }
  return out;
}

module.exports = { readStatsDir, readPidLog, diff };
