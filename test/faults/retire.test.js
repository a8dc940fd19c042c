'use strict';
// Fault 6 of issue 10: a worker that starts draining stops reading its channel at once, so
// connections already sent to it but not yet read used to wait until it exited (up to the
// shutdown timeout) while other workers idled. The primary now reads them back from its own
// copy of the worker's end as soon as it retires the worker, and hands them on.
// Found on the way: reading them back (then, or after a crash) while the primary was out of
// fds made the kernel close those it could not install (MSG_CTRUNC), resetting the clients.
// The primary now leaves them in the channel until it has the fds to take them.
const assert = require('node:assert/strict');
const { get, hammer, assertAllOk, waitFor, sleep, fdCount } = require('../helpers');
const { startFaultPrimary, running } = require('../helpers/fault-primary');

const BLOCK_MS = 8000;

describe('faults: connections sent to a retiring worker (fault 6)', function () {
  this.timeout(60_000);
  let primary;
  afterEach(async () => {
    await primary?.stop();
    primary = undefined;
  });

  it('reload: connections a blocked worker has not read are served by another worker before it even unblocks', async () => {
    primary = await startFaultPrimary({ env: { MIN: '1', MAX: '2' } });
    const { pid, port, call } = primary;
    assertAllOk(await hammer(10, 2, () => get(port)));
    const before = fdCount(pid);
    const [blocked] = (await call('state')).workers;
    // Block the one worker's loop (with two, the second is idle and would get the rest).
    const held = get(port, `/block?ms=${BLOCK_MS}`, { timeout: 60_000 }).then((r) => ({ ...r, at: Date.now() }));
    await waitFor(async () => (await call('stats')).stats.workers.find((w) => w.pid === blocked.pid).requestsInFlight === 1, 10_000);
    // With no other worker to take them, these go to the blocked one and wait unread in its channel.
    const handedOff = (await call('stats')).stats.dispatcher.handedOff;
    const n = 8;
    const pending = Array.from({ length: n }, () => get(port, '/', { timeout: 60_000 }).then((r) => ({ ...r, at: Date.now() })));
    await waitFor(async () => (await call('stats')).stats.dispatcher.handedOff >= handedOff + n, 10_000);
    // Retire the blocked worker while it cannot read: its successor must get them now.
    // (reload, recycling, resize and scale-down all retire a worker the same way.)
    const retiring = call('reload');
    const answers = await Promise.all(pending);
    const done = await held;
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.notEqual(a.text, String(blocked.pid), 'answered by the worker that was blocked');
      assert.ok(a.at < done.at, 'answered before the blocked worker even finished its request');
    }
    assert.equal(done.text, String(blocked.pid), 'the blocked request itself completes');
    await retiring;
    const stats = (await call('stats')).stats;
    // Handed on at drain, or taken back earlier because the worker's loop stayed busy.
    const { redispatched, stolen } = stats.dispatcher;
    assert.ok(redispatched + stolen >= n, `redispatched ${redispatched}, stolen ${stolen}`);
    assert.ok(running(pid));
    assertAllOk(await hammer(10, 2, () => get(port)));
    await waitFor(() => fdCount(pid) === before, 5000).catch(() => assert.fail(`primary fds ${fdCount(pid)} != ${before}`));
  });

  it('a worker SIGKILLed while the primary is out of fds: what it never read waits for fds and is served, none lost', async () => {
    primary = await startFaultPrimary({ wrap: ['prlimit', '--nofile=256:256'], env: { MIN: '1', MAX: '2' } });
    const { pid, port, call } = primary;
    assertAllOk(await hammer(10, 2, () => get(port)));
    const before = fdCount(pid);
    const [victim] = (await call('state')).workers;
    const held = get(port, `/block?ms=${BLOCK_MS}`, { timeout: 60_000 }).then(() => 'answered', (err) => err.code);
    await waitFor(async () => (await call('stats')).stats.workers[0].requestsInFlight === 1, 10_000);
    const handedOff = (await call('stats')).stats.dispatcher.handedOff;
    const n = 8;
    const pending = Array.from({ length: n }, () => get(port, '/', { timeout: 60_000 }));
    await waitFor(async () => (await call('stats')).stats.dispatcher.handedOff >= handedOff + n, 10_000);
    await call('fill', { free: 2 });
    await call('kill', { pid: victim.pid });
    await sleep(500);
    assert.ok(running(pid));
    await call('release');
    const answers = await Promise.all(pending);
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.notEqual(a.text, String(victim.pid));
    }
    assert.equal(await held, 'ECONNRESET', 'the request inside the killed worker is lost, as it must be');
    await waitFor(() => fdCount(pid) === before, 5000).catch(() => assert.fail(`primary fds ${fdCount(pid)} != ${before}`));
  });
});
