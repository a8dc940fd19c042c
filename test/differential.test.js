'use strict';
// The same unmodified app file, run by `node` + cluster (a primary forking N workers that run
// it as their main module) and by `herdless app.js`: everything the app and its clients can
// observe must be the same, once pids and the picked port are named instead of numbered.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { runCli, killAll } = require('./ship/cli-proc');
const { get } = require('./ship/http');

const APPS = path.join(__dirname, 'fixtures', 'apps');
const CLUSTER_PRIMARY = path.join(APPS, 'cluster-primary.js');
const N = 2;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const RUNNERS = {
  cluster: (app, env) => runCli([String(N), app, '--flag', 'v'], { command: [process.execPath, CLUSTER_PRIMARY], env }),
  herdless: (app, env) => runCli(['-w', String(N), app, '--', '--flag', 'v'], { env }),
};

function readReport(file) {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(25);
  }
}

/** Runs the app under `runner` and returns what was observed, with pids and the port named. */
async function observe(runner, app) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `herdless-diff-${runner}-`));
  const report = path.join(tmp, 'report.jsonl');
  const proc = RUNNERS[runner](app, { REPORT: report, HOST: '127.0.0.1', PORT: '0' });
  try {
    const listened = await until(`${runner}: ${N} workers listening\n${proc.log()}`, () => {
      const l = readReport(report).filter((e) => e.event === 'listening');
      return l.length >= N && l;
    });
    const ports = [...new Set(listened.map((e) => e.address.port))];
    const port = ports[0];
    const name = (p) => (p === port ? 'PORT' : p);

    const answers = new Map();
    // N at once: one request at a time may stay on one warm worker.
    for (let i = 0; i < 100 && answers.size < N; i++) {
      for (const r of await Promise.all(Array.from({ length: N }, () => get(port, '/x?y=1')))) {
        assert.equal(r.status, 200);
        const b = JSON.parse(r.body);
        answers.set(b.pid, b);
      }
    }
    const pids = [...answers.keys()];
    const workers = [...answers.values()].map((b) => ({
      url: b.url,
      address: { ...b.address, port: name(b.address.port) },
      listening: b.listening,
      listeningEvents: b.listeningEvents,
      local: `${b.localAddress}:${name(b.localPort)}`,
      remote: `${b.remoteAddress} ${b.remoteFamily}`,
      isMain: b.isMain,
      argv1: b.argv1,
      args: b.args,
      isPrimary: b.isPrimary,
      isWorker: b.isWorker,
      workerIdInRange: Number.isInteger(b.workerId) && b.workerId >= 1 && b.workerId <= N,
    }));
    const workerIds = [...answers.values()].map((b) => b.workerId).sort();

    // SIGTERM to one worker: the app's own handler closes its server.
    const victim = pids[0];
    process.kill(victim, 'SIGTERM');
    const events = await until(`${runner}: close callback\n${proc.log()}`, () => {
      const e = readReport(report).filter((x) => x.pid === victim);
      return e.some((x) => x.event === 'closed') && e;
    });
    // The others keep serving; none of it reaches the closed server.
    const after = [];
    for (let i = 0; i < 6; i++) {
      const r = await get(port, '/');
      after.push(r.status === 200 && JSON.parse(r.body).pid !== victim);
    }
    return {
      ports: ports.length,
      listeningPerWorker: pids.map((p) => listened.filter((e) => e.pid === p).length),
      workers,
      distinctWorkerIds: new Set(workerIds).size,
      closedWorker: events.map(({ event, error, listening }) => ({ event, ...(error !== undefined && { error }), ...(listening !== undefined && { listening }) })),
      afterClose: after,
    };
  } finally {
    killAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

describe('differential: node + cluster vs herdless, the same unmodified app', function () {
  this.timeout(120000);
  afterEach(() => killAll());

  for (const file of ['differential.js', 'differential.mjs']) {
    it(`${file}: answers, address(), socket ends, listening, main module, cluster, close callback and SIGTERM handler all agree`, async () => {
      const app = path.join(APPS, file);
      const cluster = await observe('cluster', app);
      const herdless = await observe('herdless', app);
      // The baseline itself is what we expect of Node (so that the comparison cannot pass vacuously).
      assert.equal(cluster.ports, 1, 'listen(0): one port for every worker');
      assert.equal(cluster.workers.length, N);
      assert.equal(cluster.workers[0].isMain, true);
      assert.deepEqual(cluster.closedWorker.map((e) => e.event), ['listening', 'listen-callback', 'sigterm', 'after-close', 'closed']);
      assert.deepEqual(herdless, cluster);
    });
  }
});
