'use strict';
// Queue metrics (issue 11): each listener's accept queue in the kernel (stats().listeners,
// herdless_listen_queue_length/limit), and how long connections wait between the primary's
// accept and a worker taking them (stats().dispatchWait, herdless_dispatch_wait_seconds).
// Real listeners, real clients, a real worker whose event loop is blocked.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { Dispatcher } = require('..');
const { loadAddon } = require('../lib/shared/binding');
const { get, request, RawClient, waitFor } = require('./helpers');

const APP = path.join(__dirname, 'fixtures', 'pid.js');
const SOMAXCONN = Number(fs.readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
/** What Linux reports as an accept queue's limit for listen(fd, n). */
const limitFor = (n) => Math.min(n, SOMAXCONN);

const { parsePrometheus: parse } = require('./helpers/prom');

function ipv6Loopback() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}

/** Connections that waited longer than `seconds`, from the cumulative buckets. */
function waitedLongerThan(wait, seconds) {
  const within = wait.buckets.find((b) => b.le === seconds);
  assert.ok(within, `no bucket le=${seconds} in ${JSON.stringify(wait.buckets)}`);
  return wait.count - within.count;
}

describe('queue metrics', function () {
  this.timeout(30000);
  let d;
  let socketPath;
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
    if (socketPath) fs.rmSync(socketPath, { force: true });
  });

  it('stats().listeners: one { address, queued, backlog } per listener, TCP v4, v6 and unix', async function () {
    const v6 = await ipv6Loopback();
    socketPath = path.join(os.tmpdir(), `herdless-queue-${process.pid}.sock`);
    const listen = [
      { port: 0, host: '127.0.0.1', backlog: 64 },
      { path: socketPath, backlog: 32 },
      ...(v6 ? [{ port: 0, host: '::1', backlog: 48 }] : []),
    ];
    d = await Dispatcher.start({ app: APP, min: 1, max: 1, listen });
    const { listeners } = d.stats();
    assert.equal(listeners.length, listen.length);
    const port4 = d.address().port;
    assert.deepEqual(listeners[0], { address: `127.0.0.1:${port4}`, protocol: 'http', queued: 0, backlog: limitFor(64) });
    // unix_diag answers for unix sockets (what `ss -xl` uses); CI kernels have it.
    assert.deepEqual(listeners[1], { address: socketPath, protocol: 'http', queued: 0, backlog: limitFor(32) });
    if (v6) {
      assert.match(listeners[2].address, /^\[::1\]:\d+$/);
      assert.deepEqual({ ...listeners[2], address: 'x' }, { address: 'x', protocol: 'http', queued: 0, backlog: limitFor(48) });
      const port6 = Number(listeners[2].address.split(':').pop());
      assert.equal((await request({ host: '::1', port: port6, path: '/' })).status, 200);
    } else {
      this.test.title += ' (no ::1 here: IPv6 part not run)';
    }
    // Each one really is that listener: a request through each counts on the right one.
    assert.equal((await get(port4)).status, 200);
    assert.equal((await request({ socketPath, path: '/' })).status, 200);
    assert.equal(d.stats().dispatchWait.count, v6 ? 3 : 2);
  });

  it('herd mode reads the shared listener\'s queue; reuseport cannot (one queue per worker); neither has a dispatch wait', async () => {
    d = await Dispatcher.start({ app: APP, mode: 'herd', min: 1, max: 1, listen: { port: 0, host: '127.0.0.1', backlog: 40 } });
    assert.equal((await get(d.address().port)).status, 200);
    let s = d.stats();
    assert.deepEqual(s.listeners, [{ address: `127.0.0.1:${d.address().port}`, protocol: 'http', queued: 0, backlog: limitFor(40) }]);
    assert.equal(s.dispatchWait.count, 0, 'no hand-off, no wait');
    await d.close();
    d = await Dispatcher.start({ app: APP, mode: 'reuseport', min: 1, max: 1, listen: { port: 0, host: '127.0.0.1', backlog: 40 } });
    assert.equal((await get(d.address().port)).status, 200);
    s = d.stats();
    assert.deepEqual(s.listeners, [{ address: `127.0.0.1:${d.address().port}`, protocol: 'http', queued: null, backlog: 40 }]);
    assert.equal(s.dispatchWait.count, 0);
  });

  it('a full worker leaves connections in the kernel: queued grows, the limit is the backlog', async () => {
    // One worker that may hold one connection: while it holds it, the accept thread has
    // nowhere to send the next ones and leaves them in the listener's queue.
    d = await Dispatcher.start({ app: APP, min: 1, max: 1, maxConnectionsPerWorker: 1, listen: { port: 0, host: '127.0.0.1', backlog: 100 } });
    const port = d.address().port;
    const holder = await RawClient.connect(port);
    await waitFor(() => d.stats().workers[0].connectionsOpen === 1);
    const queued = await Promise.all(Array.from({ length: 6 }, () => RawClient.connect(port)));
    const listener = await waitFor(() => {
      const l = d.stats().listeners[0];
      return l.queued === 6 && l;
    });
    assert.equal(listener.backlog, limitFor(100));
    assert.equal(d.stats().dispatcher.accepted, 1, 'the six were not accepted');

    // Room again: the queue empties and every queued connection is served.
    holder.socket.destroy();
    const served = await Promise.all(
      queued.map(async (c) => {
        c.socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        const res = await new Promise((resolve) => c.socket.on('close', () => resolve(c.buffer.toString())));
        return res.split(' ')[1];
      }),
    );
    assert.deepEqual(served, Array(6).fill('200'));
    assert.equal(d.stats().listeners[0].queued, 0);
    // They waited in the kernel, not after the accept: the dispatch wait does not see it
    // (one connection at a time: never more than a few ms even on a loaded machine).
    const wait = d.stats().dispatchWait;
    assert.equal(wait.count, 7);
    assert.equal(waitedLongerThan(wait, 0.25), 0, JSON.stringify(wait));
  });

  it('/metrics (the metrics option): the histogram counts every connection, the queue gauges name each listener', async () => {
    d = await Dispatcher.start({ app: APP, min: 2, max: 2, listen: { port: 0, host: '127.0.0.1', backlog: 77 }, metrics: { port: 0, host: '127.0.0.1' } });
    const port = d.address().port;
    const metricsPort = d.metricsAddress().port;
    for (let i = 0; i < 8; i++) assert.equal((await get(port)).status, 200);
    const text = (await get(metricsPort, '/metrics')).text;
    assert.match(text, /^# TYPE herdless_dispatch_wait_seconds histogram$/m);
    assert.match(text, /^# HELP herdless_dispatch_wait_seconds \S/m);
    assert.match(text, /^# TYPE herdless_listen_queue_length gauge$/m);
    assert.match(text, /^# TYPE herdless_listen_queue_limit gauge$/m);
    const m = parse(text);
    const bucket = (le) => m[`herdless_dispatch_wait_seconds_bucket{le="${le}"}`];
    assert.equal(m.herdless_dispatch_wait_seconds_count, 8);
    assert.equal(bucket('+Inf'), 8);
    assert.ok(m.herdless_dispatch_wait_seconds_sum > 0, text);
    // Cumulative, over the documented bounds.
    const bounds = ['0.00005', '0.0001', '0.00025', '0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '+Inf'];
    for (let i = 1; i < bounds.length; i++) assert.ok(bucket(bounds[i]) >= bucket(bounds[i - 1]), `le=${bounds[i]}`);
    assert.equal(m[`herdless_listen_queue_length{listener="127.0.0.1:${port}"}`], 0);
    assert.equal(m[`herdless_listen_queue_limit{listener="127.0.0.1:${port}"}`], limitFor(77));
    // The same figures in stats().
    const wait = d.stats().dispatchWait;
    assert.equal(wait.count, 8);
    assert.equal(wait.sumSeconds, m.herdless_dispatch_wait_seconds_sum);
    assert.deepEqual(wait.buckets.map((b) => b.count), bounds.map(bucket));

    // Counts of workers that are gone stay in the sum: a histogram never goes down.
    await d.reload();
    const after = d.stats().dispatchWait;
    assert.equal(after.count, 8);
    assert.equal(after.sumSeconds, wait.sumSeconds);
    assert.equal(parse((await get(metricsPort, '/metrics')).text).herdless_dispatch_wait_seconds_count, 8);
  });

  it('a connection accepted while the worker loop is blocked shows up in a bucket above 250 ms', async () => {
    d = await Dispatcher.start({ app: APP, min: 1, max: 1, stealAfter: 0, listen: { port: 0, host: '127.0.0.1' } });
    const port = d.address().port;
    const blocking = get(port, '/block?ms=500');
    // The worker is running the busy loop now: its loop has been awake for a while.
    await waitFor(() => {
      const w = d.stats().workers[0];
      return w.loopAwake && w.loopBusyMs >= 50;
    }, 5000, 5);
    const waiting = get(port, '/');
    // The accept thread takes it at once and sends it; it waits in the worker's channel.
    await waitFor(() => d.stats().dispatcher.accepted === 2, 5000, 5);
    assert.equal((await blocking).status, 200);
    assert.equal((await waiting).status, 200);
    const wait = d.stats().dispatchWait;
    assert.equal(wait.count, 2);
    assert.equal(waitedLongerThan(wait, 0.25), 1, JSON.stringify(wait));
    assert.ok(wait.sumSeconds >= 0.25, JSON.stringify(wait));
    assert.equal(d.stats().listeners[0].queued, 0, 'the accept queue stayed empty: the wait was after the accept');
  });

  it('a connection taken back from a stopped worker keeps its accept time: its wait counts from the first accept', async () => {
    // The only worker is stopped: what it is sent stays in its channel. Once a second worker
    // is up, the accept thread takes those back and gives them to it, which measures the
    // wait since the first accept (a few hundred ms: the new worker's start).
    d = await Dispatcher.start({ app: APP, min: 1, max: 2, stealAfter: 25, listen: { port: 0, host: '127.0.0.1' } });
    const port = d.address().port;
    const [stopped] = d.workers();
    process.kill(stopped.pid, 'SIGSTOP');
    try {
      const requests = Array.from({ length: 3 }, () => get(port));
      await waitFor(() => d.stats().dispatcher.handedOff === 3, 5000, 5);
      await d.resize(2);
      const results = await Promise.all(requests);
      assert.deepEqual(results.map((r) => r.status), Array(3).fill(200));
    } finally {
      process.kill(stopped.pid, 'SIGCONT');
    }
    const { dispatcher, dispatchWait } = d.stats();
    // At least once each (one can move twice: the new worker is slow to read as it starts).
    assert.ok(dispatcher.stolen >= 3, JSON.stringify(dispatcher));
    assert.equal(dispatchWait.count, 3, 'each connection counted once, by the worker that took it');
    assert.equal(waitedLongerThan(dispatchWait, 0.05), 3, JSON.stringify({ dispatcher, dispatchWait }));
  });

  it('re-dispatch (a dead worker\'s unread connections) keeps each one\'s accept time', () => {
    const addon = loadAddon();
    const acceptor = new addon.Acceptor([], 0, 100, () => {});
    acceptor.start();
    acceptor.stop(); // with the thread gone, dispatch() delivers at once
    const board = addon.createScoreboard();
    const [primaryEnd, workerEnd] = addon.socketpair();
    const [conn, peer] = addon.socketpair(); // stands in for an accepted connection
    const open = [board.fd, primaryEnd, workerEnd, peer];
    try {
      acceptor.addWorker(1, primaryEnd, board.fd);
      // CLOCK_MONOTONIC, as process.hrtime() reads it: accepted a second ago.
      const acceptedAt = Number(process.hrtime.bigint()) - 1e9;
      assert.equal(acceptor.dispatch([conn, 0], [acceptedAt]), 0);
      const times = [];
      const [received] = addon.drainChannel(workerEnd, times);
      open.push(received);
      assert.deepEqual(times, [acceptedAt]);
      // Without a time, one from now: never older than the call.
      const [conn2, peer2] = addon.socketpair();
      open.push(peer2);
      const before = Number(process.hrtime.bigint());
      acceptor.dispatch([conn2, 0]);
      const times2 = [];
      open.push(addon.drainChannel(workerEnd, times2)[0]);
      assert.ok(times2[0] >= before && times2[0] <= Number(process.hrtime.bigint()), `${times2[0]} vs ${before}`);
      acceptor.removeWorker(1);
    } finally {
      for (const fd of open) addon.closeFd(fd);
    }
  });
});
