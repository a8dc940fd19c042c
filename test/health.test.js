'use strict';
// Per-worker health in stats().workers[].health and /metrics: real workers under real load,
// a worker whose loop is really blocked, and the figures its next answer carries.
const assert = require('node:assert/strict');
const { Dispatcher } = require('..');
const { get, hammer, sleep, waitFor } = require('./helpers');
const { parsePrometheus } = require('./helpers/prom');

const APP = require.resolve('./fixtures/prom-app.js');
const local = { port: 0, host: '127.0.0.1' };

function assertSane(h, label) {
  assert.ok(h, `${label}: no health`);
  assert.equal(h.stale, false, label);
  const { p50, p99, max } = h.eventLoopDelay;
  assert.ok(p50 >= 0 && p50 <= p99 && p99 <= max, `${label}: delay ${JSON.stringify(h.eventLoopDelay)}`);
  assert.ok(h.elu >= 0 && h.elu <= 1, `${label}: elu ${h.elu}`);
  assert.ok(h.heapUsed > 1e6 && h.heapUsed <= h.heapTotal, `${label}: heap ${h.heapUsed}/${h.heapTotal}`);
  assert.ok(h.rss > h.heapTotal, `${label}: rss ${h.rss}`);
  assert.ok(Number.isInteger(h.gcCount) && h.gcCount >= 0 && h.gcMs >= 0, `${label}: gc ${h.gcCount} ${h.gcMs}`);
  assert.ok(h.handles >= 1, `${label}: handles ${h.handles}`);
  assert.ok(h.requestsPerSecond >= 0, `${label}: rps ${h.requestsPerSecond}`);
}

describe('per-worker health', function () {
  let d;
  afterEach(async () => {
    await d?.close();
    d = undefined;
  });

  it('stats().workers[].health is there and sane after load; stats() alone asks the workers nothing', async () => {
    d = await Dispatcher.start({ app: APP, listen: local, min: 2, max: 2, metrics: { port: 0, host: '127.0.0.1' } });
    // Nothing asked yet: unknown, and polling stats() sends no ask (it would wake every worker).
    assert.deepEqual(d.stats().workers.map((w) => w.health), [undefined, undefined]);
    await sleep(300);
    assert.deepEqual(d.stats().workers.map((w) => w.health), [undefined, undefined]);
    await d.refreshHealth();
    assert.ok(d.stats().workers.every((w) => w.health));
    const results = await hammer(300, 8, () => get(d.address().port, '/'));
    assert.ok(results.every((r) => r.status === 200));
    await d.refreshHealth();
    const workers = d.stats().workers;
    for (const w of workers) assertSane(w.health, `slot ${w.slot}`);
    // 300 requests, each at least one wake-up of some worker's loop.
    assert.ok(workers.some((w) => w.health.eventLoopDelay.max > 0));
    assert.ok(workers.reduce((n, w) => n + w.health.requestsPerSecond, 0) > 0);
    // The same figures by slot in /metrics.
    const values = parsePrometheus((await get(d.metricsAddress().port, '/metrics')).text);
    for (const w of workers) {
      assert.ok(values[`herdless_worker_heap_total_bytes{slot="${w.slot}"}`] > 1e6);
      assert.ok(values[`herdless_worker_eventloop_utilization{slot="${w.slot}"}`] >= 0);
      assert.ok(values[`herdless_worker_gc_total{slot="${w.slot}"}`] >= 0);
    }
  });

  it('a blocked worker is marked stale within the bound while the others answer; its next answer carries the block', async () => {
    d = await Dispatcher.start({ app: APP, listen: local, min: 3, max: 3 });
    await d.refreshHealth();
    const blocked = get(d.address().port, '/block?ms=1500');
    let slot;
    await waitFor(() => {
      slot = d.stats().workers.find((x) => x.loopAwake && x.loopBusyMs >= 100)?.slot;
      return slot !== undefined;
    }, 5000);
    const t0 = Date.now();
    await d.refreshHealth(500);
    const took = Date.now() - t0;
    assert.ok(took < 1000, `refreshHealth took ${took} ms`);
    for (const w of d.stats().workers) {
      assert.ok(w.health, `slot ${w.slot}: no health`);
      assert.equal(w.health.stale, w.slot === slot, `slot ${w.slot} (blocked: ${slot})`);
    }
    assert.equal(JSON.parse((await blocked).text).slot, slot);
    await d.refreshHealth();
    const h = d.stats().workers.find((w) => w.slot === slot).health;
    assertSane(h, `slot ${slot} after the block`);
    assert.ok(h.eventLoopDelay.max >= 1400, `the 1.5 s block shows as a delay of ${h.eventLoopDelay.max} ms`);
  });

  it('health: false: no figures in stats(), even after refreshHealth()', async () => {
    d = await Dispatcher.start({ app: APP, listen: local, min: 1, max: 1, health: false });
    d.stats();
    await d.refreshHealth();
    assert.equal(d.stats().workers[0].health, undefined);
  });
});
