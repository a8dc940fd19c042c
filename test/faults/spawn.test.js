'use strict';
// Fault 2 of issue 10: a worker start that cannot even create its process (the primary is
// out of fds: EMFILE; or out of processes: EAGAIN from RLIMIT_NPROC). Before the fix the
// primary died of a TypeError (child.stderr was null) or an unhandled 'error', or its pool
// hung with a worker 'starting' forever, and the fds made for that worker leaked. Each test
// produces the shortage for real in a primary of its own, and checks that the primary
// lives, requests sent meanwhile are all answered, the pool recovers by itself once the
// resource is back, and the primary ends with exactly the fds it had.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const { get, hammer, assertAllOk, waitFor, sleep, fdCount, childrenOf } = require('../helpers');
const { startFaultPrimary, running, nprocLimits } = require('../helpers/fault-primary');

/** The 'worker-exit' events since `from` whose process could not be created. */
const spawnFailures = (state, from, code) => state.exits.slice(from).filter((e) => e.reason === 'start-failed' && e.error === code);

/** Wait until the primary's fd count settles back to `expected` (closes may trail an exit). */
async function assertFdsBack(pid, expected) {
  await waitFor(() => fdCount(pid) === expected, 5000).catch(() => {
    throw new Error(`the primary has ${fdCount(pid)} fds, it had ${expected} before the fault`);
  });
}

describe('faults: a worker process that cannot be created (fault 2)', function () {
  this.timeout(90_000);
  let primary;
  afterEach(async () => {
    await primary?.stop();
    primary = undefined;
  });

  it('EMFILE in the primary: no crash, requests wait and are served, resize() resolves once fds are back, no fd leaks', async () => {
    primary = await startFaultPrimary({ wrap: ['prlimit', '--nofile=256:256'] });
    const { pid, port, call } = primary;
    assertAllOk(await hammer(10, 2, () => get(port)));
    const before = fdCount(pid);
    // None free, and just too few for a start (which needs several fds at once).
    for (const free of [0, 31]) {
      const { exits: seen, workers } = await call('state');
      await call('fill', { free });
      // A crashed worker is refilled, and resize() asks for one more: both starts fail.
      await call('kill', { pid: workers[0].pid });
      const resized = call('resize', { n: 3 });
      await waitFor(async () => spawnFailures(await call('state'), seen.length, 'EMFILE').length >= 3, 20_000);
      assert.ok(running(pid), 'the primary is alive');
      // The accept thread is out of fds too: these wait in the backlog, and none is lost.
      const requests = hammer(10, 10, () => get(port, '/', { timeout: 30_000 }));
      await sleep(200);
      await call('release');
      assert.equal((await resized).size, 3);
      assertAllOk(await requests);
      const state = await call('state');
      assert.deepEqual(state.workers.map((w) => w.state), ['ready', 'ready', 'ready']);
      assert.deepEqual(state.errors, [], 'no crash loop, no error');
      assert.equal((await call('resize', { n: 2 })).size, 2);
      await assertFdsBack(pid, before);
    }
    assertAllOk(await hammer(20, 4, () => get(port)));
  });

  it('EAGAIN from RLIMIT_NPROC: no crash, resize() and reload() resolve once processes are back, close() never hangs', async () => {
    // RLIMIT_NPROC does not bind root: as root, the primary runs as nobody. The limit of
    // another user's process can only be changed as that user (or with CAP_SYS_RESOURCE).
    const asUser = process.getuid() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--'] : [];
    primary = await startFaultPrimary({ wrap: asUser });
    const { pid, port, call } = primary;
    const { hard } = nprocLimits(pid);
    const setSoft = (soft) => execFileSync(asUser.length ? 'setpriv' : 'prlimit', [...asUser.slice(1), ...(asUser.length ? ['prlimit'] : []), '--pid', String(pid), `--nproc=${soft}:`]);
    assertAllOk(await hammer(10, 2, () => get(port)));
    const before = fdCount(pid);

    const { exits: seen, workers } = await call('state');
    setSoft(1);
    await call('kill', { pid: workers[0].pid });
    const resized = call('resize', { n: 3 });
    await waitFor(async () => spawnFailures(await call('state'), seen.length, 'EAGAIN').length >= 3, 20_000);
    assert.ok(running(pid), 'the primary is alive');
    const reloaded = call('reload');
    // The one worker left serves meanwhile.
    assertAllOk(await hammer(20, 4, () => get(port)));
    setSoft(hard);
    assert.equal((await resized).size, 3);
    await reloaded;
    const state = await call('state');
    assert.deepEqual(state.workers.map((w) => w.state), ['ready', 'ready', 'ready']);
    assert.deepEqual(state.errors, []);
    assertAllOk(await hammer(20, 4, () => get(port)));
    assert.equal((await call('resize', { n: 2 })).size, 2);
    await assertFdsBack(pid, before);

    // Out of processes again, a start pending: close() still ends promptly, nothing left.
    setSoft(1);
    const growing = call('resize', { n: 4 });
    await sleep(500);
    const t0 = Date.now();
    await call('close');
    await growing;
    assert.ok(Date.now() - t0 < 10_000, `close() took ${Date.now() - t0} ms`);
    assert.deepEqual(childrenOf(pid), []);
    assert.ok(running(pid), 'the primary is alive');
  });
});
