'use strict';
// The accept thread asks the scheduler for a short slice (native/primary/short-slice.cc):
// on Linux 6.12 and later it runs sooner when a connection wakes it. stats() says whether the
// kernel took it, and /proc says the same thing independently.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const { Dispatcher } = require('..');
const { get } = require('./helpers');

const acceptThread = () => fs.readdirSync('/proc/self/task').find((t) => fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'herdless-accept');
const [major, minor] = os.release().split('.').map(Number);
const eevdfSlices = major > 6 || (major === 6 && minor >= 12);

describe('the accept thread runs with a short scheduler slice', function () {
  this.timeout(20000);
  let d;
  afterEach(async () => {
    await d?.close();
    d = undefined;
  });

  it(`stats().dispatcher.shortSlice is ${eevdfSlices} on Linux ${os.release()}, and /proc agrees; connections are served as before`, async () => {
    d = await Dispatcher.start({ min: 1, max: 1, app: require.resolve('./fixtures/pid.js'), listen: { port: 0, host: '127.0.0.1' } });
    assert.equal((await get(d.address().port, '/')).status, 200);
    assert.equal(d.stats().dispatcher.shortSlice, eevdfSlices);
    const tid = acceptThread();
    assert.ok(tid, 'a thread named herdless-accept');
    const sched = `/proc/self/task/${tid}/sched`;
    if (fs.existsSync(sched)) {
      const slice = Number(/se\.slice\s*:\s*(\d+)/.exec(fs.readFileSync(sched, 'utf8'))?.[1]);
      if (eevdfSlices) assert.equal(slice, 100000);
    }
    // The JS thread keeps the default: only the accept thread asked.
    const mine = `/proc/self/task/${process.pid}/sched`;
    if (eevdfSlices && fs.existsSync(mine)) assert.notEqual(Number(/se\.slice\s*:\s*(\d+)/.exec(fs.readFileSync(mine, 'utf8'))?.[1]), 100000);
  });

  it('herd mode has no accept thread: shortSlice is false', async () => {
    d = await Dispatcher.start({ mode: 'herd', min: 1, max: 1, app: require.resolve('./fixtures/pid.js'), listen: { port: 0, host: '127.0.0.1' } });
    assert.equal(d.stats().dispatcher.shortSlice, false);
  });
});
