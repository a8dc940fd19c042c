'use strict';
// Fault 9 (the scoreboard part): each worker's load figures are a shared-memory page that
// JS sees through an external ArrayBuffer, and V8-sandboxed builds (Electron, for one)
// refuse those. Dispatcher.start() now asks the runtime first and fails loudly, before it
// opens a listener or starts a worker, instead of failing obscurely in every worker.
// HERDLESS_TEST_REFUSE_EXTERNAL_BUFFERS=1 makes the native check answer as such a build does.
const assert = require('node:assert/strict');
const { Dispatcher } = require('../..');
const { loadAddon } = require('../../lib/shared/binding');
const { get, waitFor, assertNoChildren, listeningSockets } = require('../helpers');

const app = require.resolve('../fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };

describe('fault 9: a runtime that refuses external ArrayBuffers', function () {
  afterEach(() => delete process.env.HERDLESS_TEST_REFUSE_EXTERNAL_BUFFERS);

  it('this Node allows them: the check passes and the scoreboard works', async () => {
    assert.equal(loadAddon().externalBuffersAllowed(), true);
    const d = await Dispatcher.start({ min: 1, max: 1, app, listen: local });
    try {
      assert.equal((await get(d.address().port)).status, 200);
      await waitFor(() => d.stats().workers[0].requestsServed === 1, 2000); // read through the page
    } finally {
      await d.close();
    }
  });

  it('refused: start() rejects with ERR_HERDLESS_UNSUPPORTED_PLATFORM and starts nothing', async () => {
    const listeners = listeningSockets(process.pid).length;
    process.env.HERDLESS_TEST_REFUSE_EXTERNAL_BUFFERS = '1';
    assert.equal(loadAddon().externalBuffersAllowed(), false);
    await assert.rejects(Dispatcher.start({ min: 1, max: 1, app, listen: local }), (err) => {
      assert.equal(err.code, 'ERR_HERDLESS_UNSUPPORTED_PLATFORM');
      assert.match(err.message, /refuses external ArrayBuffers.*V8 sandbox/);
      return true;
    });
    await assertNoChildren(1000);
    assert.equal(listeningSockets(process.pid).length, listeners, 'no listener was opened');
  });
});
