'use strict';
// Fault 1 (first half): a worker's app code could shrink its scoreboard memfd, and the
// primary's next read of that page (the accept thread choosing a worker, or stats()) died of
// SIGBUS, taking every worker with it. The page is now sealed against shrinking and growing
// before the worker starts, and the primary maps it read-only.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { get, hammer, assertAllOk, waitFor } = require('../helpers');
const { ChildPrimary } = require('../helpers/primary-proc');

const app = require.resolve('../fixtures/faults/truncate-app.js');

/** Permissions ('r--s', 'rw-s') of every mapping of a scoreboard page in `pid`. */
function scoreboardMappings(pid) {
  return fs
    .readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => l.includes('memfd:herdless-scoreboard'))
    .map((l) => l.split(/\s+/)[1]);
}

describe('fault 1: a worker truncating its scoreboard memfd', function () {
  let primary;
  afterEach(async () => primary?.kill());

  it('fails in the worker (EPERM); the primary keeps serving and stats() still works', async () => {
    primary = await ChildPrimary.start({ min: 2, max: 2, app, listen: { port: 0, host: '127.0.0.1' } });
    const { port } = primary;
    const fdsBefore = (await primary.stats()).fds;

    // Every worker tries to empty, to shrink and to grow its own page. (Unsealed, the
    // primary died of SIGBUS on its next read: the accept thread's, for the next request.)
    const attacks = [];
    for (let i = 0; i < 6; i++) {
      for (const path of ['/truncate?size=0', '/truncate?size=8', '/truncate?size=1048576', '/append']) {
        attacks.push(await get(port, path).then((r) => r.text, (err) => err.code));
      }
    }
    // The accept thread reads both pages for every connection; stats() reads them from JS.
    const after = await hammer(100, 8, () => get(port));
    await primary.stats(); // rejects if the primary died
    assert.deepEqual(new Set(attacks), new Set(['EPERM']), `the attacks answered ${attacks.join(' ')}`);
    assertAllOk(after);
    // The workers still publish their figures (a request counts once its response is done).
    const served = (s) => s.workers.reduce((n, w) => n + w.requestsServed, 0);
    const { stats, fds } = await waitFor(async () => {
      const s = await primary.stats();
      return served(s.stats) >= 124 && s;
    }, 5000);
    assert.equal(stats.workers.length, 2);
    assert.equal(fds, fdsBefore, 'the primary holds as many fds as before');

    // The primary's views are read-only (two per worker: the acceptor's and stats()'), the
    // workers' own are writable.
    const mine = scoreboardMappings(primary.pid);
    assert.equal(mine.length, 4, mine.join(' '));
    assert.ok(mine.every((perm) => perm === 'r--s'), `primary maps ${mine.join(' ')}`);
    // A worker maps its own page read-write (its JS view, and the native loop-state writer).
    for (const w of stats.workers) {
      const maps = scoreboardMappings(w.pid);
      assert.ok(maps.length >= 1 && maps.every((perm) => perm === 'rw-s'), `worker maps ${maps.join(' ')}`);
    }
  });
});
