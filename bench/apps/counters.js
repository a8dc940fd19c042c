'use strict';
// Per-process connection/request counters, shared by every bench app and so identical for
// every Node contender. Each process writes <BENCH_STATS_DIR>/<pid>.json at load (so a worker
// that never gets a connection still shows up with zeros), then every FLUSH_MS when a count
// changed, and at exit. The harness reads the files after a run: a load balancer gives no
// way to address one worker over HTTP, the file system does.
const fs = require('node:fs');
const path = require('node:path');

const FLUSH_MS = 100; // the harness waits a few of these after a run (lib/counters.js)
const dir = process.env.BENCH_STATS_DIR;
const counts = { pid: process.pid, connections: 0, requests: 0 };
const SEEN = Symbol('bench.seen');
let written = -1;

function flush() {
  if (!dir) return;
  const version = counts.connections + counts.requests;
  if (version === written) return;
  written = version;
  const file = path.join(dir, `${process.pid}.json`);
  // Write then rename, so the harness never reads half a file.
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(counts));
  fs.renameSync(`${file}.tmp`, file);
}

/** Count a socket once, however many requests it carries. */
function countConnection(socket) {
  if (socket[SEEN]) return;
  socket[SEEN] = true;
  counts.connections++;
}

function countRequest(req) {
  counts.requests++;
  countConnection(req.socket);
}

if (dir) {
  flush();
  setInterval(flush, FLUSH_MS).unref();
  process.on('exit', flush);
}

module.exports = { countRequest, countConnection, FLUSH_MS };
