'use strict';
// Placement and stealing with real processes (issue #9): the accept thread reads each
// worker's loop state (asleep in poll, or awake since t) from its scoreboard, prefers a
// sleeping worker, passes over one that has been busy, takes back what a stalled worker has
// not read, and an idle pool does not wake up. Handlers block with Atomics.wait (no CPU), so
// the figures show placement rather than CPU contention.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const readline = require('node:readline');
const { Dispatcher } = require('..');
const { childrenOf, get, RawClient, sleep, waitFor } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };

/** Context switches (voluntary + involuntary) of every thread of `pid`, from /proc. */
function contextSwitches(pid) {
  let n = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      n += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)[1]) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)[1]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return n;
}

describe('placement by loop state, and stealing (real processes)', function () {
  let d;
  const clients = [];
  const primaries = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    for (const p of primaries.splice(0)) {
      const exited = new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', r)));
      p.kill('SIGTERM');
      await exited;
    }
    await d?.close({ timeout: 3000 });
    d = undefined;
  });

  const worker = (pid) => d.stats().workers.find((w) => w.pid === Number(pid));
  /** Start, then wait until every worker's loop is asleep (start-up work done). */
  async function startPool(options) {
    d = await Dispatcher.start({ app, listen: local, ...options });
    await waitFor(() => d.stats().workers.every((w) => !w.loopAwake), 3000, 5, 'every worker asleep after start');
    return d.address().port;
  }
  /** A keep-alive connection and the pid of the worker that holds it. */
  async function holdConnection(port) {
    const c = await RawClient.connect(port);
    clients.push(c);
    return { c, pid: Number((await c.send('/')).text) };
  }
  /** Two keep-alive connections, one on each worker (sequential connects may concentrate on one). */
  async function oneOnEach(port) {
    const held = [];
    while (new Set(held.map((h) => h.pid)).size < 2) {
      assert.ok(held.length < 20, 'could not get a connection on each worker');
      // Two at once: while the first is unread, the second goes to the other, free, worker.
      held.push(...(await Promise.all([holdConnection(port), holdConnection(port)])));
    }
    const a = held.find((h) => h.pid === held[0].pid);
    const b = held.find((h) => h.pid !== a.pid);
    return [a, b];
  }

  it('a worker asleep in poll is preferred over a busy one, even one holding fewer connections', async () => {
    const port = await startPool({ min: 2, max: 2 });
    // Ten keep-alive connections at once spread over both workers; then the one to block
    // keeps one and the other keeps all of its own: by counts alone the idle worker is the
    // busier one (several open against 2 for the blocked worker: 1 open, 1 in flight).
    const held = await Promise.all(Array.from({ length: 10 }, () => holdConnection(port)));
    const pids = [...new Set(held.map((h) => h.pid))];
    assert.equal(pids.length, 2, `10 concurrent connections all went to ${pids}`);
    const mine = (pid) => held.filter((h) => h.pid === pid);
    const [idlePid, busyPid] = mine(pids[0]).length >= mine(pids[1]).length ? pids : [pids[1], pids[0]];
    const busy = mine(busyPid)[0];
    const idle = mine(idlePid)[0];
    for (const h of mine(busyPid).slice(1)) h.c.destroy();
    await waitFor(() => worker(busyPid).connectionsOpen === 1, 2000, 10, 'one connection left on the worker to block');
    assert.ok(worker(idlePid).connectionsOpen >= 5);
    const blocked = busy.c.send('/wait?ms=1500');
    await waitFor(() => worker(busy.pid).requestsInFlight === 1, 2000, 2, 'the request blocking the busy worker');
    const s = d.stats().workers;
    assert.equal(worker(busy.pid).loopAwake, true, JSON.stringify(s));
    assert.equal(worker(idle.pid).loopAwake, false, JSON.stringify(s));
    const stolen = d.stats().dispatcher.stolen;
    const served = await Promise.all(Array.from({ length: 10 }, () => get(port, '/', { timeout: 1200 })));
    for (const r of served) assert.equal(Number(r.text), idle.pid, `served by ${r.text}; the busy worker is ${busy.pid}`);
    assert.equal(d.stats().dispatcher.stolen, stolen, 'nothing was sent to the busy worker, so nothing was taken back');
    assert.equal(Number((await blocked).text), busy.pid);
  });

  it('a worker busy past the threshold gets nothing while another is free: 40 connections at once', async () => {
    const port = await startPool({ min: 2, max: 2 });
    const [busy, free] = await oneOnEach(port);
    const received = worker(busy.pid).connectionsReceived;
    const stolen = d.stats().dispatcher.stolen;
    const blocked = busy.c.send('/wait?ms=1500');
    await waitFor(() => worker(busy.pid).loopBusyMs >= 5, 2000, 2, 'the busy worker past the threshold');
    const served = await Promise.all(Array.from({ length: 40 }, () => get(port, '/', { timeout: 1200 })));
    for (const r of served) assert.equal(Number(r.text), free.pid, `served by ${r.text}; the busy worker is ${busy.pid}`);
    const s = d.stats();
    assert.equal(worker(busy.pid).connectionsReceived, received, 'the busy worker read a connection');
    // Past the free worker's 10 queued records the overflow waits in the backlog for it (a
    // back-pressure pause) rather than in the busy worker's channel. On a loaded machine the
    // free worker's own loop can stay awake past avoid_us while it serves the burst; it is then
    // no better than the busy one (by design: a full worker that stays awake may be stuck too)
    // and a few may go to the busy worker, to be taken back before it reads them (above).
    const taken = s.dispatcher.stolen - stolen;
    if (taken > 0) console.log(`      ${taken} of 40 went to the busy worker and were taken back (the free one was awake past avoid_us too)`);
    assert.ok(taken <= 20, `${taken} of 40 connections went to the busy worker`);
    assert.equal(Number((await blocked).text), busy.pid);
  });

  it('steals back what a worker blocked for 1 s has not read: served by another soon after it is free, none lost or served twice', async function () {
    this.timeout(10000);
    const port = await startPool({ min: 2, max: 2 });
    const [stuck, other] = await oneOnEach(port);
    const before = d.stats();
    // The other worker blocks first (200 ms), then the stuck one (1 s): the stuck one has
    // been busy for less time, so new connections go to it, and wait there unread.
    const otherFree = other.c.send('/wait?ms=200').then(() => Date.now());
    await waitFor(() => worker(other.pid).requestsInFlight === 1, 2000, 1, 'the other worker blocked');
    await sleep(40);
    const stuckDone = stuck.c.send('/wait?ms=1000').then(() => Date.now());
    await waitFor(() => worker(stuck.pid).requestsInFlight === 1, 2000, 1, 'the stuck worker blocked');
    const N = 10;
    const fast = Array.from({ length: N }, () => get(port, `/?`, { timeout: 3000 }).then((r) => ({ pid: Number(r.text), at: Date.now() })));
    await waitFor(() => d.stats().dispatcher.accepted - before.dispatcher.accepted === N, 2000, 2, 'the fast connections accepted');
    const sentToStuck = d.stats().dispatcher.handedOff - before.dispatcher.handedOff;
    const freeAt = await otherFree;
    const results = await Promise.all(fast);
    const after = d.stats();
    const delays = results.map((r) => r.at - freeAt);
    const worst = Math.max(...delays);
    // The criterion is 50 ms; a shared 2-core CI machine gets some slack.
    console.log(`      stolen ${after.dispatcher.stolen} of ${N}; served ${Math.min(...delays)}-${worst} ms after the other worker was free`);
    for (const r of results) assert.equal(r.pid, other.pid, `a fast request was served by ${r.pid}, the stuck worker is ${stuck.pid}`);
    assert.ok(after.dispatcher.stolen >= 1, `nothing stolen (handed off ${sentToStuck}): ${JSON.stringify(after.dispatcher)}`);
    assert.ok(worst < 300, `the last fast request was served ${worst} ms after a worker was free (${delays.join(', ')})`);
    await stuckDone;
    // Exact accounting: each connection was read by exactly one worker, once.
    const got = (pid) => after.workers.find((w) => w.pid === pid).connectionsReceived - before.workers.find((w) => w.pid === pid).connectionsReceived;
    assert.equal(got(stuck.pid), 0, 'the stuck worker read a connection it had been sent');
    assert.equal(got(other.pid), N);
    await waitFor(() => worker(stuck.pid).requestsInFlight === 0, 2000, 10, 'the stuck worker free again');
    const s = d.stats();
    assert.equal(s.dispatcher.handedOff, s.dispatcher.accepted + s.dispatcher.redispatched + s.dispatcher.stolen - s.dispatcher.waiting, JSON.stringify(s.dispatcher));
    assert.equal(s.workers.reduce((n, w) => n + w.connectionsReceived, 0), s.dispatcher.accepted, 'connections received in all = accepted');
    // The stuck worker serves again once free, and what it never read does not come back.
    assert.equal((await stuck.c.send('/')).status, 200);
  });

  it('light load: what a worker leaves unread 1 ms goes to a sleeping one (the hedge), long before stealAfter: a stopped worker\'s connection is served by the other', async function () {
    this.timeout(20000);
    // stealAfter 2 s: a worker that looks asleep would keep it for 8 s (4 x stealAfter) without the hedge.
    const port = await startPool({ min: 2, max: 2, stealAfter: 2000 });
    // Whoever answers this fell asleep last, so it is the warmest: light load sends it the next
    // connection. No connection stays open (an open one arms Node's 1 s request-timeout check,
    // which would wake the other worker and make it the warmer).
    const stopped = Number((await get(port, '/')).text);
    const other = d.workers().find((w) => w.pid !== stopped).pid;
    await waitFor(() => d.stats().workers.every((w) => !w.loopAwake && w.requestsInFlight === 0 && w.connectionsOpen === 0), 3000, 2, 'the pool at rest');
    const before = d.stats();
    process.kill(stopped, 'SIGSTOP');
    try {
      const r = await get(port, '/', { timeout: 3000 });
      assert.equal(Number(r.text), other, `served by ${r.text}; ${stopped} is stopped`);
      const after = d.stats();
      assert.ok(after.dispatcher.stolen - before.dispatcher.stolen >= 1, `not taken back: ${JSON.stringify(after.dispatcher)}`);
      assert.equal(worker(stopped).connectionsReceived, before.workers.find((w) => w.pid === stopped).connectionsReceived);
    } finally {
      process.kill(stopped, 'SIGCONT');
    }
    // Once it runs again it finds nothing of it: its channel held only what was taken back.
    await waitFor(() => !worker(stopped).loopAwake, 3000, 5, 'the stopped worker asleep again');
    assert.equal(worker(stopped).connectionsReceived, before.workers.find((w) => w.pid === stopped).connectionsReceived, 'read a connection that was taken back');
    const s = d.stats();
    assert.equal(s.dispatcher.handedOff, s.dispatcher.accepted + s.dispatcher.redispatched + s.dispatcher.stolen - s.dispatcher.waiting, JSON.stringify(s.dispatcher));
    assert.equal(s.workers.reduce((n, w) => n + w.connectionsReceived, 0), s.dispatcher.accepted, 'connections received in all = accepted');
  });

  it('without V8\'s before-call hook (HERDLESS_LOOP_JS_HOOK=0, as on a Node that lacks it) a blocked worker\'s connections are still taken back', async function () {
    this.timeout(10000);
    // The check handle alone marks the loop awake only after the poll phase, so a handler
    // blocking inside it looks asleep: what it is sent is taken back once unread for 20 ms.
    const port = await startPool({ min: 2, max: 2, env: { HERDLESS_LOOP_JS_HOOK: '0' } });
    const [stuck, other] = await oneOnEach(port);
    const stuckDone = stuck.c.send('/wait?ms=1000');
    await waitFor(() => worker(stuck.pid).requestsInFlight === 1, 2000, 1, 'the stuck worker blocked');
    const t0 = Date.now();
    const served = await Promise.all(Array.from({ length: 10 }, () => get(port, '/', { timeout: 3000 })));
    const took = Date.now() - t0;
    for (const r of served) assert.equal(Number(r.text), other.pid, `served by ${r.text}; the stuck worker is ${stuck.pid}`);
    assert.ok(took < 800, `the fast requests took ${took} ms: they waited for the stuck worker`);
    await stuckDone;
  });

  it('stealAfter: 0 leaves connections with the worker they were sent to', async function () {
    this.timeout(10000);
    const port = await startPool({ min: 2, max: 2, stealAfter: 0 });
    const [stuck, other] = await oneOnEach(port);
    const otherFree = other.c.send('/wait?ms=150');
    await waitFor(() => worker(other.pid).requestsInFlight === 1, 2000, 1, 'the other worker blocked');
    await sleep(40);
    const stuckDone = stuck.c.send('/wait?ms=500');
    await waitFor(() => worker(stuck.pid).requestsInFlight === 1, 2000, 1, 'the stuck worker blocked');
    const fast = await Promise.all(Array.from({ length: 4 }, () => get(port, '/', { timeout: 3000 })));
    await Promise.all([otherFree, stuckDone]);
    assert.equal(d.stats().dispatcher.stolen, 0);
    assert.ok(fast.some((r) => Number(r.text) === stuck.pid), `every fast request went elsewhere: ${fast.map((r) => r.text)}`);
  });

  it('an idle pool sleeps: almost no context switches over 3 s in the workers (all threads) or the primary; load still grows it within an interval', async function () {
    this.timeout(30000);
    // The primary in its own process (min 4, max 6, default 200 ms sampling), so that its
    // threads can be counted apart from mocha's.
    const child = spawn(process.execPath, [require.resolve('./fixtures/idle-primary.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
    primaries.push(child);
    const lines = readline.createInterface({ input: child.stdout });
    const events = [];
    const first = new Promise((resolve) => lines.once('line', resolve));
    const info = JSON.parse(await Promise.race([first, sleep(15000).then(() => 'null')]));
    assert.ok(info, 'the primary did not start');
    lines.on('line', (l) => events.push(JSON.parse(l)));
    for (let i = 0; i < 8; i++) assert.equal((await get(info.port, '/')).status, 200);
    await sleep(4000); // start-up work done, and the supervisor's sampling has slowed down
    const pids = childrenOf(info.pid);
    assert.equal(pids.length, 4);
    const all = [info.pid, ...pids];
    const before = all.map(contextSwitches);
    await sleep(3000);
    const [primary, ...workers] = all.map((pid, i) => contextSwitches(pid) - before[i]);
    console.log(`      context switches over 3 s idle: primary ${primary}, workers ${workers.join(', ')}`);
    // Was ~200 per worker (25 ms heartbeat, 100 ms utilisation and 50 ms parent-watch timers)
    // and ~30 in the primary (sampling every 200 ms). Node's http connection check now runs
    // only while a worker holds connections (connection-checks.ts; test/idle-worker.test.js
    // counts that exactly); what remains here is V8 collecting garbage a few times some
    // seconds after the last activity, once.
    for (const n of workers) assert.ok(n <= 12, `a worker made ${n} context switches in 3 s idle: ${workers.join(', ')}`);
    assert.ok(primary <= 6, `the primary made ${primary} context switches in 3 s idle`);

    // Load arrives: every worker blocked, more waiting. The pool grows within about one
    // interval (the next connection brings the sampling back at once).
    const t0 = Date.now();
    const blocked = Array.from({ length: 10 }, () => get(info.port, '/wait?ms=800', { timeout: 5000 }).catch((e) => e));
    await waitFor(() => events.some((e) => e.scale), 3000, 10, 'a scale event');
    const grewAfter = events.find((e) => e.scale).at - t0;
    console.log(`      grew ${grewAfter} ms after load arrived (scale.interval 200 ms)`);
    assert.ok(grewAfter < 1000, `grew ${grewAfter} ms after load arrived`);
    await Promise.all(blocked);
  });

  it('the primary sleeps while it serves /metrics: its own process metrics run no timer', async function () {
    this.timeout(45000);
    const child = spawn(process.execPath, [require.resolve('./fixtures/idle-primary.js')], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, IDLE_PRIMARY_METRICS: '1' },
    });
    primaries.push(child);
    const lines = readline.createInterface({ input: child.stdout });
    const first = new Promise((resolve) => lines.once('line', resolve));
    const info = JSON.parse(await Promise.race([first, sleep(15000).then(() => 'null')]));
    assert.ok(info && info.metricsPort, 'the primary did not start with metrics');
    for (let i = 0; i < 4; i++) assert.equal((await get(info.port, '/')).status, 200);
    const scrape = await get(info.metricsPort, '/metrics');
    assert.equal(scrape.status, 200);
    assert.match(scrape.text, /^nodejs_eventloop_lag_seconds \d/m, 'the lag is still reported');
    assert.match(scrape.text, /^process_cpu_seconds_total \d/m);
    // V8's memory reducer collects garbage some 8 s after the last activity (a burst of
    // helper-thread switches), and may do so again 8 s later: the windows start after the
    // first, and a timer shows in every window where such a collection shows in one. Up to
    // three windows of 4 s; one quiet window is enough.
    await sleep(12000);
    const windows = [];
    for (let i = 0; i < 3 && !(windows.at(-1) <= 3); i++) {
      const before = contextSwitches(info.pid);
      await sleep(4000);
      windows.push(contextSwitches(info.pid) - before);
    }
    console.log(`      context switches per 4 s idle, serving /metrics: primary ${windows.join(', ')}`);
    // Was ~400 (prom-client's event-loop-lag histogram: a 10 ms timer, for good), then ~5 (the
    // metrics server's own 1 s request-timeout check, now run only while a scraper is connected).
    assert.ok(Math.min(...windows) <= 3, `the primary serving /metrics made ${windows.join(', ')} context switches in 4 s windows idle`);
  });
});
