'use strict';
// herdless's own IPC messages (listen answers, health asks, drain orders) travel as Node's
// internal messages, as cluster's do: an app's process.on('message') and cluster.worker's
// 'message' in a worker never see them, and the Dispatcher's 'message' carries exactly what
// the app sent, even a message shaped like herdless's. Before, the app saw every one of them
// and a { herdless: ... } of its own was taken for herdless's.
const assert = require('node:assert/strict');
const { Dispatcher } = require('..');
const { get } = require('./helpers');
const { waitFor } = require('./helpers/wait');

const app = require.resolve('./fixtures/ipc-private.js');

describe("herdless's IPC messages are private", function () {
  this.timeout(30_000);
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
  });

  it("an app sees none of them after listen(), a health ask and a reload; its own reach the Dispatcher's 'message'", async () => {
    d = await Dispatcher.start({ app, min: 1, max: 1 });
    const got = [];
    d.on('message', (worker, message) => got.push([worker.pid, message]));
    const [w] = d.workers();
    const port = d.address().port;

    await d.refreshHealth();
    assert.ok(d.stats().workers[0].health, 'the health ask was not answered');
    assert.deepEqual(JSON.parse((await get(port, '/seen')).text).seen, []);

    assert.equal((await get(port, '/send')).status, 200);
    await waitFor(() => got.length === 2);
    assert.deepEqual(got, [
      [w.pid, { from: 'app', n: 1 }],
      [w.pid, { herdless: 'draining' }],
    ]);
    // An app's { herdless: 'draining' } is not the worker's own: it keeps serving.
    assert.equal(JSON.parse((await get(port, '/seen')).text).pid, w.pid);
    assert.deepEqual(d.workers().map((x) => x.pid), [w.pid]);

    got.length = 0;
    await d.reload();
    await waitFor(() => got.some(([pid]) => pid === w.pid), 10_000);
    assert.deepEqual(got, [[w.pid, { from: 'app', shutdown: 'reload', seen: [] }]]);
    const fresh = JSON.parse((await get(port, '/seen')).text);
    assert.notEqual(fresh.pid, w.pid);
    assert.deepEqual(fresh.seen, []);
  });
});
