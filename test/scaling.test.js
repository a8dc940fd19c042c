'use strict';
// The sizing policy as a pure function: decideScale(sample, cfg) from lib/primary/scaling.
const assert = require('node:assert/strict');
const { decideScale, DEFAULT_SCALE } = require('../lib/primary/scaling');

const cfg = { interval: 200, idleTimeout: 1000, upUtilization: 0.75, downUtilization: 0.25, targetUtilization: 0.6, maxSpawn: 8 };

/** A worker sample; idle unless told otherwise. */
const w = (id, o = {}) => ({ id, utilization: 0, inFlight: 0, open: 0, pending: 0, idleFor: 0, ...o });
/** A saturated worker: loop fully used, one request running, `queued` more connections waiting on it. */
const busy = (id, queued = 0) => w(id, { utilization: 1, inFlight: 1, open: 1, pending: queued });
const sample = (o) => ({ min: 1, max: 4, workers: [], starting: 0, backpressure: false, ...o });

describe('scaling policy: decideScale()', function () {
  it('has sane defaults (down < up, target between them, positive interval and spawn rate)', () => {
    assert.ok(DEFAULT_SCALE.downUtilization < DEFAULT_SCALE.upUtilization);
    assert.ok(DEFAULT_SCALE.targetUtilization <= DEFAULT_SCALE.upUtilization);
    assert.ok(DEFAULT_SCALE.targetUtilization > DEFAULT_SCALE.downUtilization);
    assert.ok(DEFAULT_SCALE.interval > 0 && DEFAULT_SCALE.maxSpawn >= 1 && DEFAULT_SCALE.idleTimeout > 0);
  });

  it('does nothing when workers are idle and the pool is at min', () => {
    assert.deepEqual(decideScale(sample({ workers: [w(0, { idleFor: 60_000 })] }), cfg), { action: 'none' });
  });

  it('grows to min when below it (counting workers already starting)', () => {
    const d = decideScale(sample({ min: 3, max: 8, workers: [w(0)] }), cfg);
    assert.equal(d.action, 'grow');
    assert.equal(d.count, 2);
    const d2 = decideScale(sample({ min: 3, max: 8, workers: [w(0)], starting: 1 }), cfg);
    assert.equal(d2.action, 'grow');
    assert.equal(d2.count, 1);
    assert.deepEqual(decideScale(sample({ min: 3, max: 8, workers: [w(0)], starting: 2 }), cfg), { action: 'none' });
    // From nothing (every worker died).
    const d3 = decideScale(sample({ min: 2, max: 4, workers: [] }), cfg);
    assert.equal(d3.action, 'grow');
    assert.equal(d3.count, 2);
  });

  it('grows when every worker is busy with work waiting: one worker per waiting connection', () => {
    // 2 workers, each running a request with 1 more queued: 2 connections waiting -> 4 workers.
    const d = decideScale(sample({ max: 8, workers: [busy(0, 1), busy(1, 1)] }), cfg);
    assert.equal(d.action, 'grow');
    assert.equal(d.count, 2);
    assert.equal(typeof d.reason, 'string');
  });

  it('counts connections a busy worker holds without a request in flight as waiting', () => {
    // open 4, inFlight 1: three connections queued in the worker behind the running request.
    const d = decideScale(sample({ max: 8, workers: [w(0, { utilization: 1, inFlight: 1, open: 4 })] }), cfg);
    assert.equal(d.action, 'grow');
    assert.equal(d.count, 3);
  });

  it('untrusted samples: nonsense from one worker neither grows the pool while another idles, nor counts as a huge queue', () => {
    // One worker says it is saturated with 2^31 connections waiting; the other is idle.
    const liar = w(0, { utilization: 7, inFlight: -3, open: 2 ** 31, pending: Infinity });
    assert.deepEqual(decideScale(sample({ max: 8, workers: [liar, w(1, { idleFor: 0 })] }), cfg), { action: 'none' });
    // Even alone, negative counts and NaN read as 0: no growth from nonsense alone.
    assert.deepEqual(decideScale(sample({ max: 8, workers: [w(0, { utilization: NaN, open: -5, pending: -5 })] }), cfg), { action: 'none' });
  });

  it('caps growth at max', () => {
    const d = decideScale(sample({ max: 4, workers: [busy(0, 10), busy(1, 10)] }), cfg);
    assert.equal(d.action, 'grow');
    assert.equal(d.count, 2);
  });

  it('caps growth at maxSpawn per interval', () => {
    const d = decideScale(sample({ max: 64, workers: [busy(0, 30)] }), { ...cfg, maxSpawn: 3 });
    assert.equal(d.action, 'grow');
    assert.equal(d.count, 3);
    const d1 = decideScale(sample({ max: 64, workers: [busy(0, 30)] }), { ...cfg, maxSpawn: 1 });
    assert.equal(d1.count, 1);
  });

  it('grows by utilisation towards targetUtilization when busy without a queue', () => {
    // 3 workers at 0.9: load 2.7 / 0.6 = 4.5 -> 5 workers.
    const d = decideScale(sample({ max: 16, workers: [0, 1, 2].map((id) => w(id, { utilization: 0.9, inFlight: 1, open: 1 })) }), cfg);
    assert.equal(d.action, 'grow');
    assert.equal(d.count, 2);
  });

  it('treats back-pressure (the dispatcher paused accepting) as waiting work', () => {
    const d = decideScale(sample({ max: 8, workers: [busy(0), busy(1)], backpressure: true }), { ...cfg, targetUtilization: 1 });
    assert.equal(d.action, 'grow');
    assert.ok(d.count >= 1);
  });

  it('does not grow while a worker is still starting', () => {
    assert.deepEqual(decideScale(sample({ max: 8, workers: [busy(0, 5), busy(1, 5)], starting: 1 }), cfg), { action: 'none' });
  });

  it('does not grow when one worker is not busy, however long the queue elsewhere', () => {
    const d = decideScale(sample({ max: 8, workers: [busy(0, 5), w(1, { utilization: 0.5, inFlight: 1, open: 1 })] }), cfg);
    assert.notEqual(d.action, 'grow');
  });

  it('does not grow at max', () => {
    assert.deepEqual(decideScale(sample({ max: 2, workers: [busy(0, 5), busy(1, 5)] }), cfg), { action: 'none' });
  });

  it('shrinks only after idleTimeout, and picks the idlest worker', () => {
    const workers = [w(0, { idleFor: 1200 }), w(1, { idleFor: 5000 }), w(2, { idleFor: 3000 })];
    const d = decideScale(sample({ workers }), cfg);
    assert.equal(d.action, 'shrink');
    assert.equal(d.worker, 1);
    const young = [w(0, { idleFor: 999 }), w(1, { idleFor: 500 })];
    assert.deepEqual(decideScale(sample({ workers: young }), cfg), { action: 'none' });
    // Exactly idleTimeout is enough.
    const exact = decideScale(sample({ workers: [w(0, { idleFor: 0 }), w(1, { idleFor: 1000 })] }), cfg);
    assert.equal(exact.action, 'shrink');
    assert.equal(exact.worker, 1);
  });

  it('never retires a worker with a request in flight', () => {
    const workers = [w(0, { utilization: 0.1, inFlight: 1, open: 1, idleFor: 9000 }), w(1, { idleFor: 2000 })];
    const d = decideScale(sample({ workers }), cfg);
    assert.equal(d.action, 'shrink');
    assert.equal(d.worker, 1);
    assert.deepEqual(decideScale(sample({ workers: [workers[0], w(1, { inFlight: 2, open: 2, idleFor: 9000 })] }), cfg), {
      action: 'none',
    });
  });

  it('never shrinks below min', () => {
    const workers = [w(0, { idleFor: 60_000 }), w(1, { idleFor: 60_000 })];
    assert.deepEqual(decideScale(sample({ min: 2, workers }), cfg), { action: 'none' });
    assert.equal(decideScale(sample({ min: 1, workers }), cfg).action, 'shrink');
  });

  it('does not shrink while a worker is starting', () => {
    const workers = [w(0, { idleFor: 60_000 }), w(1, { idleFor: 60_000 })];
    assert.deepEqual(decideScale(sample({ workers, starting: 1 }), cfg), { action: 'none' });
  });

  it('does not shrink when every worker is busy', () => {
    const workers = [w(0, { utilization: 0.9, idleFor: 60_000 }), w(1, { utilization: 0.9, idleFor: 60_000 })];
    assert.notEqual(decideScale(sample({ max: 2, workers }), cfg).action, 'shrink');
  });

  it('is pure: the same sample gives the same decision, and the sample is not modified', () => {
    const s = sample({ max: 8, workers: [busy(0, 2), busy(1, 1)] });
    const copy = JSON.parse(JSON.stringify(s));
    const a = decideScale(s, cfg);
    const b = decideScale(s, cfg);
    assert.deepEqual(a, b);
    assert.deepEqual(s, copy);
  });
});
