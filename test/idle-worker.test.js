'use strict';
// An idle pool sleeps (issue #19, item 2): a worker that holds no connection has nothing
// periodic to do. Node's http connection check (1 s, main.ts) runs only while the worker holds
// connections (src/shared/connection-checks.ts), so an idle worker's event loop never wakes.
// Counted, not timed: each worker counts its own loop wake-ups on its scoreboard
// (loopWakeups). V8 collects garbage a few times some seconds after the last activity, once,
// which wakes the loop too: the window starts after that has passed.
const assert = require('node:assert/strict');
const { Dispatcher } = require('..');
const { get, RawClient, sleep, waitFor } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };
const SETTLE_MS = 10000;
const WINDOW_MS = 6000;

describe('an idle worker sleeps', function () {
  this.timeout(60000);
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 3000 });
    d = undefined;
  });

  const wakeups = () => new Map(d.stats().workers.map((w) => [w.pid, w.loopWakeups]));
  /** Once every connection is gone and V8's after-activity GCs have passed: each worker's loop wake-ups over WINDOW_MS. */
  async function idleWakeups() {
    await waitFor(() => d.stats().workers.every((w) => w.connectionsOpen === 0), 5000, 20, 'connections closed');
    await sleep(SETTLE_MS);
    const before = wakeups();
    await sleep(WINDOW_MS);
    return [...wakeups()].map(([pid, n]) => n - before.get(pid));
  }

  it(`no loop wake-up in ${WINDOW_MS / 1000} s once its connections are gone; the request-timeout check runs while it holds one`, async () => {
    d = await Dispatcher.start({ app, listen: local, min: 2, max: 2, headersTimeout: 1500, requestTimeout: 2000 });
    const port = d.address().port;
    // Both workers serve something: each then holds, and loses, connections.
    const pids = new Set();
    for (let i = 0; i < 40 && pids.size < 2; i++) {
      const rs = await Promise.all([get(port, '/'), get(port, '/')]);
      for (const r of rs) pids.add(Number(r.text));
    }
    assert.equal(pids.size, 2, 'could not reach both workers');
    const woke = await idleWakeups();
    // Was one a second at least (the 1 s check): 6 or more each.
    for (const n of woke) assert.ok(n <= 1, `an idle worker's loop woke ${n} times in ${WINDOW_MS} ms: ${woke.join(', ')}`);

    // Held connections still get their deadlines: a client that never finishes its headers
    // is closed by the server after headersTimeout, checked by the re-armed timer.
    const c = await RawClient.connect(port);
    const t0 = Date.now();
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
    await waitFor(() => c.socket.destroyed || c.socket.readableEnded, 8000, 20, 'the server to close a connection past headersTimeout');
    const closedAfter = Date.now() - t0;
    assert.ok(closedAfter >= 1000, `closed after ${closedAfter} ms, before headersTimeout`);
    c.destroy();
  });

  it('a worker that never held a connection sleeps too (the check is taken from Node as the server listens)', async () => {
    // Node arms its check on 'listening'; taking it only at the first connection left a
    // worker that light load never reaches (placement concentrates it) waking every second.
    d = await Dispatcher.start({ app, listen: local, min: 2, max: 2 });
    assert.deepEqual(d.stats().workers.map((w) => w.connectionsReceived), [0, 0]);
    const woke = await idleWakeups();
    for (const n of woke) assert.ok(n <= 1, `an idle worker's loop woke ${n} times in ${WINDOW_MS} ms: ${woke.join(', ')}`);
  });

  it('herd mode too: the accept counters are written as they happen, and an idle worker\'s loop does not wake to copy them', async () => {
    d = await Dispatcher.start({ app, listen: local, min: 2, max: 2, mode: 'herd' });
    const port = d.address().port;
    const N = 20;
    for (let i = 0; i < N; i++) assert.equal((await get(port, '/')).status, 200);
    // One connection at a time: each was taken by some worker's wake-up.
    await waitFor(() => d.stats().workers.reduce((n, w) => n + w.acceptWakeups, 0) >= N, 2000, 20, 'every accept counted');
    const s = d.stats().workers;
    assert.ok(s.every((w) => w.emptyWakeups <= w.acceptWakeups));
    const woke = await idleWakeups();
    // Was ten a second (a 100 ms timer copied the counters): 60 or more each.
    for (const n of woke) assert.ok(n <= 1, `an idle herd worker's loop woke ${n} times in ${WINDOW_MS} ms: ${woke.join(', ')}`);
  });
});
