'use strict';
// Fault 5: close() stops the accept thread first, then retires the workers. Connections a
// worker was sent but never read are read back from its channel when it exits and given to
// the acceptor again, which queued them for a thread that no longer existed: the clients
// hung until the garbage collector closed the acceptor, or forever while the application
// kept its closed dispatcher. Each is now served (handed to a worker with room) or closed.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const { Dispatcher } = require('../..');
const { loadAddon } = require('../../lib/shared/binding');
const { waitFor, collectGarbage, fdCount, fdSnapshot, newFds, assertNoChildren } = require('../helpers');

const app = require.resolve('../fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };

/** A raw client that has sent a request; `settled` resolves with how the connection ended. */
function client(port) {
  const socket = net.connect(port, '127.0.0.1');
  const c = { socket, data: '', ended: null };
  socket.on('data', (chunk) => (c.data += chunk));
  c.settled = new Promise((resolve) => {
    socket.on('error', (err) => resolve((c.ended ??= `error:${err.code}`)));
    socket.on('close', () => resolve((c.ended ??= 'close')));
  });
  socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
  return c;
}

describe('fault 5: connections read back from a worker after close() stopped the accept thread', function () {
  let d;
  let clients = [];
  afterEach(async () => {
    for (const c of clients) c.socket.destroy();
    clients = [];
    await d?.close({ timeout: 500 });
    d = undefined;
  });

  it('are closed at once, not left hanging; the primary holds no fd for them afterwards', async () => {
    // Warm-up: the first start in a process opens things that live as long as it does.
    await (await Dispatcher.start({ min: 1, max: 1, app, listen: local })).close();
    await collectGarbage();
    const before = fdCount();
    const snapshot = fdSnapshot();

    d = await Dispatcher.start({ min: 1, max: 1, app, listen: local });
    const [worker] = d.workers();
    // A stopped worker never reads its channel: what it is sent stays there.
    process.kill(worker.pid, 'SIGSTOP');
    clients = Array.from({ length: 6 }, () => client(d.address().port));
    await waitFor(() => d.stats().dispatcher.handedOff === 6, 5000);

    // The worker does not answer the drain request: after the timeout it is killed, and its
    // unread connections come back to the (stopped) acceptor.
    await d.close({ timeout: 300 });
    const endings = await Promise.race([
      Promise.all(clients.map((c) => c.settled)),
      new Promise((resolve) => setTimeout(() => resolve('still open 2 s after close() resolved'), 2000)),
    ]);
    assert.ok(Array.isArray(endings), endings);
    assert.ok(clients.every((c) => c.data === ''), 'no worker served them (it was stopped)');
    const { dispatcher } = d.stats();
    assert.equal(dispatcher.redispatched, 6, JSON.stringify(dispatcher));
    assert.equal(dispatcher.dropped, 6, JSON.stringify(dispatcher));
    assert.equal(dispatcher.handedOff + dispatcher.waiting + dispatcher.dropped, dispatcher.accepted + dispatcher.redispatched + dispatcher.stolen);

    for (const c of clients) c.socket.destroy();
    await assertNoChildren();
    // The closed dispatcher is still referenced (d): nothing may wait for its finalizer.
    await waitFor(() => fdCount() <= before, 2000).catch(() => {
      throw new Error(`the primary holds ${fdCount() - before} more fds than before start(): ${newFds(snapshot).join(', ')}`);
    });
  });

  it('dispatch() with the thread gone hands each connection to a worker with room now, or closes it now', () => {
    const addon = loadAddon();
    const acceptor = new addon.Acceptor([], 0, 100, () => {});
    acceptor.start();
    assert.equal(acceptor.stop(), 0);
    const board = addon.createScoreboard();
    const [primaryEnd, workerEnd] = addon.socketpair();
    const open = [board.fd, primaryEnd, workerEnd];
    try {
      // No worker: closed at once (a connection stands in for itself: one end of a socketpair).
      const [lost, lostPeer] = addon.socketpair();
      open.push(lostPeer);
      assert.equal(acceptor.dispatch([lost, 0]), 1);
      assert.throws(() => fs.fstatSync(lost), { code: 'EBADF' });
      // A worker with room: in its channel at once, the same socket.
      acceptor.addWorker(1, primaryEnd, board.fd);
      const [kept, keptPeer] = addon.socketpair();
      open.push(keptPeer);
      const socket = fs.readlinkSync(`/proc/self/fd/${kept}`);
      assert.equal(acceptor.dispatch([kept, 0]), 0);
      const [received, listener] = addon.drainChannel(workerEnd);
      open.push(received);
      assert.equal(fs.readlinkSync(`/proc/self/fd/${received}`), socket);
      assert.equal(listener, 0);
      const stats = acceptor.stats();
      assert.deepEqual([stats.redispatched, stats.handedOff, stats.dropped, stats.waiting], [2, 1, 1, 0]);
      assert.equal(acceptor.removeWorker(1), true);
    } finally {
      for (const fd of open) addon.closeFd(fd);
    }
  });
});
