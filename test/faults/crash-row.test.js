'use strict';
// Found while soaking (issue 10): the crash-loop halt counted quick deaths "in a row" across
// any stretch of time. Only the death of a worker older than 10 s reset the count, so five
// SIGKILLs of young workers (the OOM killer, an operator, a chaos test) spread over days
// halted a healthy pool. A worker that has lived 10 s now breaks the row.
const assert = require('node:assert/strict');
const { Dispatcher } = require('../..');
const { get, hammer, assertAllOk, waitFor, sleep } = require('../helpers');

describe('faults: quick crashes far apart are not a crash loop', function () {
  this.timeout(60_000);
  let d;
  afterEach(() => d?.close({ timeout: 2000 }));

  it('four young workers SIGKILLed, a worker living 10 s, a fifth young one killed: no ERR_HERDLESS_CRASH_LOOP', async () => {
    d = await Dispatcher.start({ min: 1, max: 2, app: require.resolve('../fixtures/pid.js'), listen: { port: 0, host: '127.0.0.1' } });
    const errors = [];
    d.on('error', (err) => errors.push(err));
    const killYoung = async () => {
      const w = d.workers().sort((a, b) => b.id - a.id)[0]; // the newest
      const n = d.workers().length;
      process.kill(w.pid, 'SIGKILL');
      await waitFor(() => !d.workers().some((x) => x.pid === w.pid), 5000);
      await waitFor(() => errors.length > 0 || d.workers().filter((x) => x.state === 'ready').length === n, 20_000);
      assert.deepEqual(errors.map((e) => e.code), []);
    };
    for (let i = 0; i < 4; i++) await killYoung();
    await sleep(10_500); // the current worker proves itself (and stays)
    await d.resize(2); // a young one to kill
    await killYoung();
    assert.deepEqual(errors.map((e) => e.code), []);
    assertAllOk(await hammer(10, 2, () => get(d.address().port)));
  });
});
