'use strict';
// Issue 17, item 5: the metrics server runs in the primary and shares its fd table with the
// accept thread. It had no connection cap and Node's 60 s header timeout: 300 idle
// connections to /metrics under a 256-fd limit took every free fd, and the accept thread
// paused on EMFILE (no request served for seconds).
const assert = require('node:assert/strict');
const net = require('node:net');
const { get, sleep } = require('../helpers');
const { fdCount } = require('../helpers/proc');
const { startFaultPrimary } = require('../helpers/fault-primary');
const { startMetricsServer } = require('../../lib/primary/metrics');

/** Opens `n` connections to `port` that send nothing; resolves once each is connected (or refused). */
async function idleConnections(port, n) {
  const sockets = [];
  await Promise.all(
    Array.from({ length: n }, () => new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', resolve);
      s.on('error', resolve);
      s.on('close', resolve);
      sockets.push(s);
    })),
  );
  return sockets;
}

describe('security: the metrics server cannot starve the accept thread', function () {
  this.timeout(60000);
  let primary;
  let sockets = [];
  afterEach(async () => {
    for (const s of sockets) s.destroy();
    sockets = [];
    await primary?.stop();
  });

  it('300 idle connections to /metrics under a 256-fd limit do not stop dispatch', async () => {
    primary = await startFaultPrimary({
      wrap: ['prlimit', '--nofile=256:256'],
      env: { MIN: '2', MAX: '2', METRICS: JSON.stringify({ port: 0, host: '127.0.0.1' }) },
    });
    sockets = await idleConnections(primary.metricsPort, 300);
    await sleep(300);
    const held = fdCount(primary.pid);
    // Every request is answered, each promptly; the accept thread never paused for fds.
    for (let i = 0; i < 40; i++) {
      const t0 = Date.now();
      const res = await get(primary.port, '/', { timeout: 3000 });
      assert.equal(res.status, 200);
      assert.ok(Date.now() - t0 < 1500, `request ${i} took ${Date.now() - t0} ms`);
    }
    const { stats } = await primary.call('stats');
    assert.equal(stats.dispatcher.fdPauses, 0, `accept paused ${stats.dispatcher.fdPauses} times (${stats.dispatcher.fdPausedMs} ms) on EMFILE`);
    assert.ok(held < 200, `the primary held ${held} fds of 256`);
    // /metrics itself still answers once the idle ones are gone.
    for (const s of sockets) s.destroy();
    await sleep(200);
    assert.equal((await get(primary.metricsPort, '/healthz')).status, 200);
  });

  it('binds loopback unless told otherwise, and drops connections that send nothing', async () => {
    const m = await startMetricsServer({ stats: () => ({}), size: 1 }, { port: 0 });
    try {
      assert.equal(m.address().address, '127.0.0.1');
      const s = net.connect(m.address().port, '127.0.0.1');
      const closed = new Promise((resolve) => s.on('close', resolve));
      s.on('error', () => {});
      const t0 = Date.now();
      await closed;
      assert.ok(Date.now() - t0 < 15000, `an idle connection was kept ${Date.now() - t0} ms`);
    } finally {
      await m.close();
    }
  });
});
