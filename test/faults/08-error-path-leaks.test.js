'use strict';
// Fault 8: error paths that leaked. The acceptor's constructor opened its epoll fd and
// eventfd, then threw when a listener could not be watched (epoll_ctl refuses a regular
// file, a closed fd), and a constructor that throws never runs its destructor: two fds
// lost per attempt. addWorker() threw on a page it cannot map, inside a promise handler in
// the pool (an unhandled rejection ends the primary): the pool now catches it.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { loadAddon } = require('../../lib/shared/binding');
const { fdCount, fdSnapshot, newFds } = require('../helpers');

describe('fault 8: error paths leak nothing', function () {
  const addon = loadAddon();
  let tmp;
  before(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-fault8-'))));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('new Acceptor() that throws (epoll_ctl EPERM, EBADF) closes its epoll fd and eventfd', () => {
    const file = fs.openSync(path.join(tmp, 'f'), 'w');
    const closed = 1_000_000; // above any fd limit: never open (a freed low number is reused at once)
    const good = addon.listenTcp('127.0.0.1', 0, 16, false, true);
    try {
      const before = fdCount();
      const snapshot = fdSnapshot();
      for (let i = 0; i < 50; i++) {
        // A good listener first, so the failure comes after the epoll fd and the eventfd exist.
        assert.throws(() => new addon.Acceptor([good, file], 0, 100, () => {}), { code: 'EPERM', syscall: 'epoll_ctl' });
        assert.throws(() => new addon.Acceptor([good, closed], 0, 100, () => {}), { code: 'EBADF', syscall: 'epoll_ctl' });
      }
      assert.equal(fdCount(), before, `fds left by 100 failed constructions: ${newFds(snapshot).slice(0, 4).join(', ')} ...`);
    } finally {
      fs.closeSync(file);
      addon.closeFd(good);
    }
  });

  it('addWorker() with a page it must not map (not a sealed scoreboard) throws and keeps nothing', () => {
    const acceptor = new addon.Acceptor([], 0, 100, () => {});
    const file = fs.openSync(path.join(tmp, 'board'), 'w+');
    fs.ftruncateSync(file, 64); // the right size, but a plain file anyone may shrink
    const [primaryEnd, workerEnd] = addon.socketpair();
    try {
      const before = fdCount();
      for (let i = 0; i < 20; i++) {
        assert.throws(() => acceptor.addWorker(i, primaryEnd, file), (err) => ['EINVAL', 'EPERM'].includes(err.code) && err.syscall === 'mmap');
      }
      assert.equal(fdCount(), before);
      assert.deepEqual(acceptor.stats().pendingByWorker, {}, 'no worker was added');
      // A real, sealed scoreboard is accepted.
      const board = addon.createScoreboard();
      acceptor.addWorker(7, primaryEnd, board.fd);
      assert.deepEqual(acceptor.stats().pendingByWorker, { 7: 0 });
      assert.equal(acceptor.removeWorker(7), true);
      addon.closeFd(board.fd);
    } finally {
      assert.equal(acceptor.stop(), 0);
      fs.closeSync(file);
      addon.closeFd(primaryEnd);
      addon.closeFd(workerEnd);
    }
  });
});
