'use strict';
// Stable slots: each worker holds a number 0..max-1 that its replacement takes over (after a
// crash, a reload, a resize), as pm2's NODE_APP_INSTANCE, so "only slot 0 runs the cron" holds.
const assert = require('node:assert/strict');
const { Dispatcher } = require('..');
const { get } = require('./helpers');
const { waitFor } = require('./helpers/wait');

const app = require.resolve('./fixtures/slot.js');

/**
 * Ask until every live worker has answered: pid -> what it said. Several at once: one request
 * at a time stays on the warm worker (placement concentrates light load).
 */
async function askAll(d) {
  const seen = new Map();
  await waitFor(async () => {
    const ready = d.workers().filter((w) => w.state === 'ready');
    const answers = await Promise.all(Array.from({ length: 2 * ready.length }, () => get(d.address().port, '/', { headers: { connection: 'close' } })));
    for (const r of answers) {
      const body = JSON.parse(r.text);
      seen.set(body.pid, body);
    }
    return d.workers().filter((w) => w.state === 'ready').every((w) => seen.has(w.pid));
  }, 10_000);
  return seen;
}

const slotsOf = (d) => d.workers().filter((w) => w.state === 'ready').map((w) => w.slot).sort();

describe('stable slots', function () {
  this.timeout(60_000);
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
  });

  it('workers hold slots 0..n-1, and say so through HERDLESS_SLOT, NODE_APP_INSTANCE and workerSlot()', async () => {
    d = await Dispatcher.start({ min: 3, max: 3, app, listen: { port: 0, host: '127.0.0.1' } });
    assert.deepEqual(slotsOf(d), [0, 1, 2]);
    const seen = await askAll(d);
    for (const w of d.workers()) {
      const b = seen.get(w.pid);
      assert.deepEqual([b.slot, b.instance, b.api], [String(w.slot), String(w.slot), w.slot], `worker ${w.id}`);
    }
    assert.deepEqual(d.stats().workers.map((w) => w.slot).sort(), [0, 1, 2]);
  });

  it('a SIGKILLed worker is replaced in its own slot; a reload keeps the set of slots; growing takes the next', async () => {
    d = await Dispatcher.start({ min: 3, max: 4, app, listen: { port: 0, host: '127.0.0.1' } });
    const victim = d.workers().find((w) => w.slot === 1);
    const started = new Promise((resolve) => d.on('worker-start', resolve));
    process.kill(victim.pid, 'SIGKILL');
    const info = await started;
    assert.equal(info.slot, 1, 'the replacement took another slot');
    await waitFor(() => d.workers().filter((w) => w.state === 'ready').length === 3, 10_000);
    assert.deepEqual(slotsOf(d), [0, 1, 2]);

    const before = new Map(d.workers().map((w) => [w.slot, w.pid]));
    await d.reload();
    assert.deepEqual(slotsOf(d), [0, 1, 2]);
    for (const w of d.workers()) assert.notEqual(before.get(w.slot), w.pid, `slot ${w.slot} was not replaced`);
    const seen = await askAll(d);
    for (const w of d.workers()) assert.equal(seen.get(w.pid).slot, String(w.slot));

    await d.resize(4);
    assert.deepEqual(slotsOf(d), [0, 1, 2, 3]);
  });
});
