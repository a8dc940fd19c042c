'use strict';
// The contenders, in report order. Each start() returns an instance:
//   { name, label, pid, port, url(path), workerPids(), counts(), command(cmd)|null, stop(), tmpDir }
// counts() resolves to Map pid -> { connections, requests } (null when not measurable).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startScript, killPids } = require('../lib/child');
const counters = require('../lib/counters');
const proc = require('../lib/proc');
const nginx = require('./nginx');

const APPS = {
  hello: path.join(__dirname, '../apps/hello.js'),
  close: path.join(__dirname, '../apps/close.js'),
  pid: path.join(__dirname, '../apps/pid.js'),
  'hello-listen': path.join(__dirname, '../apps/hello-listen.js'),
};

/** Run a Node server script with its own stats directory for apps/counters.js. withCounters:
 *  false leaves the directory unset, and with it the counters' flush timer (the idle scenario). */
async function nodeServer(script, args, withCounters = true) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-bench-stats-'));
  const h = await startScript(path.join(__dirname, script), args, { BENCH_STATS_DIR: withCounters ? dir : '' }).catch((err) => {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  return {
    ...h,
    tmpDir: dir,
    port: h.info.port,
    counts: () => counters.readStatsDir(dir),
    async stop() {
      await h.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const herdless = (mode) => ({ workers, min, max, app = 'hello', route, proxyProtocol, appListen, counters }) =>
  nodeServer('herdless.js', [
    '--mode', mode, '--min', String(min ?? workers), '--max', String(max ?? workers), '--app', APPS[app],
    ...(route ? ['--route', route] : []),
    ...(proxyProtocol ? ['--proxy-protocol'] : []),
    ...(appListen ? ['--app-listen'] : []),
  ], counters !== false);

const cluster = (policy) => ({ workers, app = 'hello', counters }) =>
  nodeServer('cluster.js', ['--policy', policy, '--workers', String(workers), '--app', APPS[app]], counters !== false);

const ALL = [
  { name: 'dispatch', label: 'herdless dispatch', herdless: true, start: herdless('dispatch') },
  { name: 'herd', label: 'herdless herd', herdless: true, start: herdless('herd') },
  { name: 'reuseport', label: 'herdless reuseport', herdless: true, start: herdless('reuseport') },
  { name: 'cluster-rr', label: 'Node cluster SCHED_RR', start: cluster('rr') },
  { name: 'cluster-none', label: 'Node cluster SCHED_NONE', start: cluster('none') },
  { name: 'nginx', label: 'nginx', nginx: true, start: (o) => nginx.start(o) },
];

// Instances not yet stopped, so that an interrupted harness can still kill them.
const live = new Set();

/** Start one contender; the instance carries its name and a few conveniences. */
async function start(contender, options) {
  const inst = await contender.start(options);
  const out = {
    ...inst,
    name: contender.name,
    label: contender.label,
    contender,
    url: (p = '/') => `http://127.0.0.1:${inst.port}${p}`,
    workerPids: () => proc.tree(inst.pid).slice(1),
    async stop() {
      await inst.stop();
      live.delete(out);
    },
  };
  live.add(out);
  return out;
}

/** SIGKILL every process of every live instance and remove its files, synchronously (for exit handlers). */
function killAll() {
  for (const inst of live) {
    killPids(proc.tree(inst.pid));
    if (inst.tmpDir) fs.rmSync(inst.tmpDir, { recursive: true, force: true });
  }
  live.clear();
}

const byName = (name) => ALL.find((c) => c.name === name);

module.exports = { ALL, byName, start, killAll, APPS };
