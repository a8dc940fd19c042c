'use strict';
// Issue #10, fault 4: in reuseport mode each worker has its own listening socket, and the
// kernel keeps queueing connections on it for as long as it is open. A retiring worker that
// kept it open until it exited let connections queue there, then reset them all at exit.
const assert = require('node:assert/strict');
const http = require('node:http');
const { Dispatcher } = require('../..');
const { sleep } = require('../helpers');

const app = require.resolve('../fixtures/pid.js');

/** `concurrency` clients, each making a new connection per request until stop(). */
function loop(port, concurrency) {
  let running = true;
  const tally = { ok: 0, failed: [] };
  const one = () =>
    new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) tally.ok++;
          else tally.failed.push(`status ${res.statusCode}`);
          resolve();
        });
      });
      req.on('error', (e) => {
        tally.failed.push(e.code || e.message);
        resolve();
      });
    });
  const clients = Array.from({ length: concurrency }, async () => {
    while (running) await one();
  });
  return {
    tally,
    async stop() {
      running = false;
      await Promise.all(clients);
      return tally;
    },
  };
}

describe('faults: reuseport workers retiring under load', function () {
  this.timeout(30000);
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
  });

  it('reload() and resize() under connection-per-request load: no connection reset', async () => {
    d = await Dispatcher.start({ mode: 'reuseport', min: 3, max: 3, app, listen: { port: 0, host: '127.0.0.1' } });
    const load = loop(d.address().port, 8);
    await sleep(500);
    await d.reload();
    await sleep(300);
    await d.resize(1);
    await sleep(300);
    await d.resize(3);
    await sleep(300);
    const tally = await load.stop();
    assert.ok(tally.ok > 100, `only ${tally.ok} requests served`);
    assert.deepEqual(tally.failed, [], `${tally.failed.length} of ${tally.ok + tally.failed.length} requests failed`);
  });
});
