'use strict';
// Prometheus metrics for a live Dispatcher: the text format, counters that follow traffic,
// per-worker series that follow the pool, worker RSS from /proc, and /healthz.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Dispatcher } = require('..');
const { startMetricsServer } = require('../lib/primary/metrics');
const { get } = require('./ship/http');

const APP = path.join(__dirname, 'fixtures', 'cli', 'app.js');

const { parsePrometheus: parse } = require('./helpers/prom');

function vmRssBytes(pid) {
  return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
}

describe('metrics', function () {
  let d;
  let m;
  before(async () => {
    d = await Dispatcher.start({ app: APP, min: 2, max: 2, listen: { port: 0, host: '127.0.0.1' } });
    m = await startMetricsServer(d, { port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await m?.close();
    await d?.close();
  });
  const scrape = async () => {
    const r = await get(m.address().port, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    return r.body;
  };

  it('declares counters and gauges with help text', async () => {
    const text = await scrape();
    for (const [name, type] of [
      ['herdless_connections_accepted_total', 'counter'],
      ['herdless_connections_handed_off_total', 'counter'],
      ['herdless_connections_redispatched_total', 'counter'],
      ['herdless_connections_dropped_total', 'counter'],
      ['herdless_connections_stolen_total', 'counter'],
      ['herdless_accept_errors_total', 'counter'],
      ['herdless_backpressure_pauses_total', 'counter'],
      ['herdless_workers', 'gauge'],
      ['herdless_worker_connections_open', 'gauge'],
      ['herdless_worker_requests_total', 'counter'],
      ['herdless_worker_resident_memory_bytes', 'gauge'],
    ]) {
      assert.match(text, new RegExp(`^# HELP ${name} \\S`, 'm'));
      assert.match(text, new RegExp(`^# TYPE ${name} ${type}$`, 'm'));
    }
  });

  it('counters follow the traffic; per-worker series match d.stats()', async () => {
    const before = parse(await scrape());
    for (let i = 0; i < 6; i++) assert.equal((await get(d.address().port)).status, 200);
    // A worker counts a request when its response closes, just after the client has it.
    let after;
    for (let i = 0; i < 50; i++) {
      after = parse(await scrape());
      const served = d.workers().reduce((n, w) => n + after[`herdless_worker_requests_total{worker="${w.id}"}`], 0);
      if (served >= 6) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(after.herdless_connections_accepted_total - before.herdless_connections_accepted_total, 6);
    // Every send counts: a connection stolen back from a busy worker and handed on counts twice.
    assert.ok(after.herdless_connections_handed_off_total - before.herdless_connections_handed_off_total >= 6);
    assert.equal(after.herdless_workers, 2);
    const stats = d.stats();
    for (const w of stats.workers) {
      assert.equal(after[`herdless_worker_requests_total{worker="${w.id}"}`], w.requestsServed);
      assert.equal(after[`herdless_worker_connections_received_total{worker="${w.id}"}`], w.connectionsReceived);
      const rss = after[`herdless_worker_resident_memory_bytes{worker="${w.id}"}`];
      const real = vmRssBytes(w.pid);
      assert.ok(Math.abs(rss - real) < real * 0.2, `worker ${w.id} RSS ${rss} vs VmRSS ${real}`);
    }
  });

  it('series of a replaced worker go away with it', async () => {
    const old = d.workers().map((w) => w.id);
    await d.reload();
    const now = d.workers().map((w) => w.id);
    const text = await scrape();
    for (const id of old) assert.doesNotMatch(text, new RegExp(`worker="${id}"`));
    for (const id of now) assert.match(text, new RegExp(`herdless_worker_connections_open\\{worker="${id}"\\} 0`));
  });

  it('/healthz is 200 while workers serve, 503 once the dispatcher is closed', async () => {
    assert.equal((await get(m.address().port, '/healthz')).status, 200);
    assert.equal((await get(m.address().port, '/nope')).status, 404);
    await d.close();
    assert.equal((await get(m.address().port, '/healthz')).status, 503);
  });
});

describe('the Dispatcher metrics option', function () {
  it('serves /metrics and /healthz from the primary and stops with close()', async () => {
    const d = await Dispatcher.start({ min: 1, max: 1, app: APP, listen: { port: 0, host: '127.0.0.1' }, metrics: { port: 0, host: '127.0.0.1' } });
    let port;
    try {
      port = d.metricsAddress().port;
      await get(d.address().port, '/');
      const text = (await get(port, '/metrics')).body;
      assert.equal(parse(text).herdless_connections_accepted_total, 1);
      assert.equal((await get(port, '/healthz')).status, 200);
    } finally {
      await d.close();
    }
    await assert.rejects(get(port, '/healthz'), { code: 'ECONNREFUSED' });
  });

  it('fails the start cleanly when the metrics port is taken', async () => {
    const taken = require('node:net').createServer();
    await new Promise((r) => taken.listen(0, '127.0.0.1', r));
    try {
      const err = await Dispatcher.start({ min: 1, max: 1, app: APP, listen: { port: 0, host: '127.0.0.1' }, metrics: { port: taken.address().port, host: '127.0.0.1' } }).catch((e) => e);
      assert.equal(err.code, 'EADDRINUSE');
    } finally {
      taken.close();
    }
  });
});
