'use strict';
// Issue 17, item 8: the dispatch-wait histogram lives in each worker's scoreboard page, which
// the worker writes. Its counts were summed unchecked, and a retired worker's last page was
// kept for the primary's lifetime: one worker writing 2^64-1 left /metrics with a count of
// 2.7e20 for good. A page that cannot be true now counts as the worker's last plausible one.
const assert = require('node:assert/strict');
const { get, waitFor } = require('../helpers');
const { ChildPrimary } = require('../helpers/primary-proc');

const app = require.resolve('../fixtures/faults/poison-app.js');

describe('fault: a worker writing nonsense into its histogram page', function () {
  this.timeout(60000);
  let primary;
  afterEach(async () => primary?.kill());

  /** The pool's histogram once the workers have counted at least `n` connections. */
  const waitStats = (n) =>
    waitFor(async () => {
      const { stats } = await primary.stats();
      return stats.dispatchWait.count >= n && stats.dispatchWait;
    }, 10000);

  for (const attack of ['/poison', '/poison-sum', '/shrink']) {
    it(`${attack}: totals stay true while the worker lives and after it is gone`, async () => {
      primary = await ChildPrimary.start({ min: 1, max: 1, app, listen: { port: 0, host: '127.0.0.1' } });
      for (let i = 0; i < 10; i++) await get(primary.port, '/');
      const honest = await waitStats(10);
      await get(primary.port, attack); // the 11th connection, then nonsense
      for (let i = 0; i < 5; i++) await get(primary.port, '/');
      const during = (await primary.stats()).stats.dispatchWait;
      // At most every connection so far, and waits no longer than this test has run.
      assert.ok(during.count >= honest.count && during.count <= 16, `count ${during.count} with 16 connections made`);
      assert.ok(during.sumSeconds <= 60, `sumSeconds ${during.sumSeconds}`);
      assert.equal(during.refusedPages, 1);
      // The worker goes; its page is final, and what counts of it is what could be believed.
      const [worker] = primary.workers;
      process.kill(worker.pid, 'SIGKILL');
      await waitFor(async () => (await primary.stats()).stats.workers.some((w) => w.pid !== worker.pid && w.state === 'ready'), 15000);
      for (let i = 0; i < 5; i++) await get(primary.port, '/');
      const after = await waitStats(during.count + 5);
      assert.ok(after.count <= 21, `count ${after.count} with 21 connections made`);
      assert.ok(after.sumSeconds <= 60, `sumSeconds ${after.sumSeconds}`);
      const cumulative = after.buckets.map((b) => b.count);
      assert.deepEqual(cumulative, [...cumulative].sort((a, b) => a - b), 'buckets are cumulative');
    });
  }
});
