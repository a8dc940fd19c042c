'use strict';
// The pool following load with real processes: growth, shrink, resize, recycling, stalls, slow clients.
const assert = require('node:assert/strict');
const net = require('node:net');
const { Dispatcher } = require('..');
const { get, sleep, waitFor } = require('./helpers');

const local = { port: 0, host: '127.0.0.1' };
const pidApp = require.resolve('./fixtures/pid.js');

describe('dynamic pool', function () {
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
  });

  it('grows to max under CPU-bound load within 2 s, and back to min after idleTimeout', async function () {
    this.timeout(30000);
    const idleTimeout = 1000;
    d = await Dispatcher.start({ min: 1, max: 4, app: require.resolve('./fixtures/cpu.js'), listen: local, scale: { idleTimeout } });
    const scales = [];
    d.on('scale', (e) => scales.push(e));
    const { port } = d.address();
    let stop = false;
    const lanes = Array.from({ length: 16 }, async () => {
      while (!stop) await get(port, '/?ms=50').catch(() => {});
    });
    await waitFor(() => d.size === 4, 2000, 10);
    await sleep(500);
    stop = true;
    await Promise.all(lanes);
    const t1 = Date.now();
    await waitFor(() => d.size === 1, idleTimeout + 3000, 20);
    assert.ok(Date.now() - t1 >= idleTimeout, `shrank after ${Date.now() - t1} ms, before idleTimeout`);
    assert.ok(scales.some((e) => e.to > e.from));
    assert.ok(scales.some((e) => e.to < e.from));
  });

  it('resize() grows and shrinks within [min, max]', async () => {
    d = await Dispatcher.start({ min: 1, max: 3, app: pidApp, listen: local });
    assert.equal(await d.resize(3), 3);
    assert.equal(d.size, 3);
    assert.equal(await d.resize(10), 3);
    assert.equal(await d.resize(0), 1);
    assert.equal(d.size, 1);
    assert.equal((await get(d.address().port)).status, 200);
  });

  it('recycles workers after maxRequestsPerWorker without failing a request', async function () {
    this.timeout(20000);
    d = await Dispatcher.start({ min: 2, max: 2, app: pidApp, listen: local, maxRequestsPerWorker: 50 });
    const exits = [];
    d.on('worker-exit', (e) => exits.push(e));
    const pids = new Set();
    const t0 = Date.now();
    let after = 0;
    // Keep the load on until both original workers were replaced, then a little longer.
    while (after < 50 && Date.now() - t0 < 10000) {
      const r = await get(d.address().port);
      assert.equal(r.status, 200);
      pids.add(r.text);
      if (exits.length >= 2) after++;
    }
    assert.ok(exits.length >= 2, `${exits.length} workers recycled`);
    assert.ok(exits.every((e) => e.reason === 'recycled'), JSON.stringify(exits));
    assert.ok(pids.size >= 3, `${pids.size} distinct workers served`);
  });

  it('replaces a worker stalled longer than stallTimeout', async function () {
    this.timeout(20000);
    d = await Dispatcher.start({ min: 2, max: 2, app: pidApp, listen: local, stallTimeout: 500 });
    const exits = [];
    d.on('worker-exit', (e) => exits.push(e));
    const stuck = get(d.address().port, '/block?ms=5000').catch((e) => e);
    await waitFor(() => exits.length === 1, 3000);
    assert.equal(exits[0].reason, 'stalled');
    assert.ok((await stuck) instanceof Error);
    await waitFor(() => d.size === 2, 5000);
  });

  it('keeps serving normal clients during a slowloris attack, and sheds the slow connections', async function () {
    this.timeout(20000);
    d = await Dispatcher.start({ min: 2, max: 2, app: pidApp, listen: local, headersTimeout: 2000, requestTimeout: 3000 });
    const { port } = d.address();
    const slow = [];
    let closedByServer = 0;
    for (let i = 0; i < 200; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.on('close', () => closedByServer++);
      s.write('GET / HTTP/1.1\r\n');
      slow.push(s);
    }
    const drip = setInterval(() => slow.forEach((s) => s.writable && s.write('X')), 500);
    const t0 = Date.now();
    let served = 0;
    try {
      while (Date.now() - t0 < 4500) {
        const r = await get(port, '/', { timeout: 1000 });
        assert.equal(r.status, 200);
        served++;
        await sleep(100);
      }
    } finally {
      clearInterval(drip);
    }
    assert.ok(served >= 30);
    assert.ok(closedByServer >= 180, `only ${closedByServer} slow connections were closed by the server`);
    slow.forEach((s) => s.destroy());
  });
});
