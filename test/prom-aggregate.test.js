'use strict';
// The app's own prom-client metrics in the primary's /metrics: a real prom-client in the
// app, merged across real workers with each metric's aggregator (AggregatorRegistry), or per
// slot, and a scrape that answers within its bound while one worker's loop is blocked.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Dispatcher } = require('..');
const { normalizeOptions } = require('../lib/primary/options');
const { get, hammer, waitFor } = require('./helpers');
const { parsePrometheus } = require('./helpers/prom');

const APP = require.resolve('./fixtures/prom-app.js');
const local = { port: 0, host: '127.0.0.1' };

async function start(extra = {}) {
  return Dispatcher.start({ app: APP, listen: local, min: 4, max: 4, metrics: { port: 0, host: '127.0.0.1', ...extra } });
}

async function scrape(d) {
  const t0 = Date.now();
  const r = await get(d.metricsAddress().port, '/metrics');
  assert.equal(r.status, 200, r.text);
  return { text: r.text, values: parsePrometheus(r.text), ms: Date.now() - t0 };
}

/** `total` requests to /, 8 at a time; resolves how many each slot served (the app says). */
async function load(d, total) {
  const bySlot = {};
  const results = await hammer(total, 8, () => get(d.address().port, '/'));
  for (const r of results) {
    assert.ok(!(r instanceof Error), String(r));
    const { slot } = JSON.parse(r.text);
    bySlot[slot] = (bySlot[slot] ?? 0) + 1;
  }
  return bySlot;
}

describe("the app's prom-client metrics, aggregated", function () {
  let d;
  afterEach(async () => {
    await d?.close();
    d = undefined;
  });

  it("the app's counter, summed over the workers, equals the requests sent; each metric keeps its aggregator", async () => {
    d = await start();
    const bySlot = await load(d, 200);
    assert.ok(Object.keys(bySlot).length >= 2, `one worker took every request: ${JSON.stringify(bySlot)}`);
    const { text, values } = await scrape(d);
    assert.equal(values['app_requests_total{route="/"}'], 200, text);
    assert.match(text, /^# TYPE app_requests_total counter$/m);
    assert.equal(values.app_slot_max, 3, 'aggregator max');
    assert.equal(values.app_slot_min, 0, 'aggregator min');
    assert.ok(!text.includes('app_hidden'), 'aggregator omit');
    for (const slot of [0, 1, 2, 3]) assert.equal(values[`herdless_worker_metrics_stale{slot="${slot}"}`], 0, text);
    // One name once: the app's default metrics (process_*, nodejs_*) never repeat the primary's own.
    const types = text.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
    assert.ok(types.includes('process_cpu_user_seconds_total') && types.includes('nodejs_heap_size_used_bytes'), 'the default metrics are missing');
    assert.equal(new Set(types).size, types.length, `a metric is declared twice: ${types.filter((t, i) => types.indexOf(t) !== i)}`);
  });

  it('metrics.perWorker: each slot its own series, with its own count', async () => {
    d = await start({ perWorker: true });
    const bySlot = await load(d, 120);
    const { text, values } = await scrape(d);
    for (const slot of [0, 1, 2, 3]) {
      assert.equal(values[`app_requests_total{route="/",slot="${slot}"}`] ?? 0, bySlot[slot] ?? 0, text);
    }
    assert.equal(values['app_requests_total{route="/"}'], undefined, 'merged too');
  });

  it('a worker blocked for 2 s: the scrape answers within 1 s, marks it stale and counts the others', async () => {
    d = await start();
    const bySlot = await load(d, 80);
    const blocked = get(d.address().port, '/block?ms=2000');
    let slot;
    await waitFor(() => {
      const w = d.stats().workers.find((x) => x.loopAwake && x.loopBusyMs >= 100);
      slot = w?.slot;
      return w !== undefined;
    }, 5000);
    const { text, values, ms } = await scrape(d);
    assert.ok(ms < 1000, `the scrape took ${ms} ms`);
    assert.equal(values[`herdless_worker_metrics_stale{slot="${slot}"}`], 1, text);
    for (const other of [0, 1, 2, 3].filter((s) => s !== slot)) assert.equal(values[`herdless_worker_metrics_stale{slot="${other}"}`], 0, text);
    assert.equal(values['app_requests_total{route="/"}'], 80 - (bySlot[slot] ?? 0), `served by slot: ${JSON.stringify(bySlot)}, blocked ${slot}\n${text}`);
    assert.equal(values['app_requests_total{route="/block"}'], undefined, "the blocked worker's figures were counted");
    assert.equal(values[`herdless_worker_heap_used_bytes{slot="${slot}"}`], undefined, "the blocked worker's health was shown as fresh");
    assert.equal(JSON.parse((await blocked).text).slot, slot);
    // Unblocked, it answers again.
    const after = await scrape(d);
    assert.equal(after.values[`herdless_worker_metrics_stale{slot="${slot}"}`], 0);
    assert.equal(after.values['app_requests_total{route="/block"}'], 1, after.text);
  });

  it('an app that does not use prom-client has none loaded in its workers by a scrape', async () => {
    d = await Dispatcher.start({ app: require.resolve('./fixtures/prom-free.js'), listen: local, min: 1, max: 1, metrics: { port: 0, host: '127.0.0.1' } });
    const { values } = await scrape(d);
    assert.equal(values['herdless_worker_metrics_stale{slot="0"}'], 0);
    assert.ok(values['herdless_worker_heap_used_bytes{slot="0"}'] > 0);
    assert.deepEqual(JSON.parse((await get(d.address().port)).text), { promLoaded: false });
  });

  it('metrics.perWorker is checked by the options and documented in the options table (docs/configuration.md)', () => {
    assert.equal(normalizeOptions({ app: APP, listen: local, metrics: { port: 0, perWorker: true } }).metrics.perWorker, true);
    assert.equal(normalizeOptions({ app: APP, listen: local, metrics: { port: 0 } }).metrics.perWorker, false);
    assert.throws(
      () => normalizeOptions({ app: APP, listen: local, metrics: { port: 0, perWorker: 'yes' } }),
      (err) => err.code === 'ERR_HERDLESS_INVALID_OPTION' && err.option === 'metrics.perWorker',
    );
    const readme = fs.readFileSync(path.join(__dirname, '..', 'docs', 'configuration.md'), 'utf8');
    const row = readme.split('\n').find((l) => l.startsWith('| `metrics`'));
    assert.ok(row?.includes('perWorker'), `the options table's metrics row does not mention perWorker: ${row}`);
  });
});
