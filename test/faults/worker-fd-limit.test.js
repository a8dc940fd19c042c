'use strict';
// Issue #10, fault 3: a worker at its fd limit must not lose connections. Past RLIMIT_NOFILE
// the kernel drops fds arriving over SCM_RIGHTS (MSG_CTRUNC) and with them the connections;
// the worker must leave them in its channel instead, so that they wait or go elsewhere.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const { Dispatcher } = require('../..');
const { waitFor } = require('../helpers');

const app = require.resolve('../fixtures/hold.js');

function hold(port, ms) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: `/hold?ms=${ms}`, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ ok: res.statusCode === 200, status: res.statusCode, body: body.slice(0, 200) }));
    });
    req.on('error', (error) => resolve({ ok: false, error: error.code }));
    req.setTimeout(20000, () => req.destroy(new Error('timeout')));
  });
}

describe('faults: a worker at its fd limit', function () {
  this.timeout(30000);
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
  });

  it('checking for room grows no fd table: the worker\'s table stays far below its limit', async () => {
    // The check once made an fd near the limit (F_DUPFD at limit - 32), which grows the
    // kernel's fd table to the limit in every worker: 8 MB of kernel memory each at 1M fds.
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: { port: 0, host: '127.0.0.1' } });
    const { port } = d.address();
    const { pid } = d.workers()[0];
    const hard = Number(/^Max open files\s+\d+\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'))[1]);
    const limit = Math.min(4096, hard);
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${limit}:`]);
    const results = await Promise.all(Array.from({ length: 20 }, () => hold(port, 50)));
    assert.deepEqual(results.filter((r) => !r.ok), []);
    const fdSize = Number(/^FDSize:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
    assert.ok(fdSize < limit - 32, `the worker's fd table grew to ${fdSize} entries (limit ${limit})`);
  });

  for (const workers of [1, 2]) {
    it(`${workers} worker(s), one capped at 96 fds, 150 connections held open at once: none lost, no fd dropped by the kernel`, async () => {
      d = await Dispatcher.start({ min: workers, max: workers, app, listen: { port: 0, host: '127.0.0.1' } });
      const { port } = d.address();
      const capped = d.workers()[0];
      execFileSync('prlimit', ['--pid', String(capped.pid), '--nofile=96:96']);
      const results = await Promise.all(Array.from({ length: 150 }, () => hold(port, 1000)));
      const failed = results.filter((r) => !r.ok);
      assert.equal(failed.length, 0, `${failed.length} of 150 requests failed: ${JSON.stringify(failed.slice(0, 3))}`);
      const w = d.stats().workers.find((x) => x.pid === capped.pid);
      assert.equal(w.rejectedFds, 0, 'fds were dropped by the kernel');
      // Alone, the capped worker must have left connections in its channel; with a second
      // worker, placement may have sent it no more than fit.
      if (workers === 1) assert.ok(w.fdRoomStalls > 0, `the capped worker never stalled its channel: ${JSON.stringify(w)}`);
      // And it still serves once connections have closed.
      await waitFor(async () => (await hold(port, 0)).ok, 3000);
    });
  }
});
