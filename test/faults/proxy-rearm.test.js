'use strict';
// Issue 17, item 3: with proxyProtocol the accept thread disarms its listeners while the PROXY
// reader is full, and re-armed them only on the way out of an unpaused round. A pause that
// began while the reader was full (the only worker killed with a connection it had not read,
// its replacement slow to load), during which the waiting peers timed out, resumed straight
// into epoll_wait(-1) with every listener disarmed: nobody was accepted until some unrelated
// wake-up. Every way out of every pause must leave the listeners armed unless the reader is
// full at that moment. These drive each pause reason (no worker with room, fd exhaustion,
// reader full) in combination and then ask for a prompt answer.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { Dispatcher } = require('../..');
const { sleep, waitFor } = require('../helpers');

const app = require.resolve('../fixtures/proxy-spin.js');
const local = { port: 0, host: '127.0.0.1' };
const header = (n) => `PROXY TCP4 203.0.113.${n} 198.51.100.1 ${40000 + n} 80\r\n`;
const request = (p = '/') => `GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;

/** Opens a connection that writes `text` (nothing: silent); resolves with what came back once it closes. */
function exchange(port, text, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    const chunks = [];
    const t0 = Date.now();
    s.on('data', (c) => chunks.push(c));
    s.on('error', () => {});
    s.on('close', () => resolve({ data: Buffer.concat(chunks).toString(), ms: Date.now() - t0 }));
    if (text) s.write(text);
    exchange.open.push(s);
  });
}
exchange.open = [];

/** A proxied request that must be answered within `ms`. */
async function answeredWithin(port, ms, n = 99) {
  const t0 = Date.now();
  const r = await Promise.race([exchange(port, header(n) + request()), sleep(ms).then(() => null)]);
  assert.ok(r && r.data.startsWith('HTTP/1.1 200'), `a new request was not answered within ${ms} ms: the accept thread stopped accepting`);
  return Date.now() - t0;
}

describe('fault: the accept thread re-arms its listeners on every way out of every pause (proxyProtocol)', function () {
  this.timeout(30_000);
  let d;
  let tmp;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-rearm-'));
  });
  afterEach(async () => {
    for (const s of exchange.open.splice(0)) s.destroy();
    await d?.close({ timeout: 2000 });
    d = undefined;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('reader full, then a back-pressure pause (the only worker killed with an unread connection, a slow replacement), peers time out during it: a new request is answered at once', async () => {
    const slowFlag = path.join(tmp, 'slow');
    // proxyTimeout under 2 s: no TCP_DEFER_ACCEPT, every silent peer takes a reader slot.
    // backlog 64: the reader holds 64. stealAfter 0: nothing re-arms the thread by a timer.
    d = await Dispatcher.start({ app, listen: { ...local, backlog: 64 }, min: 1, max: 1, proxyProtocol: true, proxyTimeout: 1200, stealAfter: 0, env: { SLOW_LOAD_FILE: slowFlag, SLOW_LOAD_MS: '2000' } });
    const port = d.address().port;
    const [worker] = d.workers();
    // The worker's loop blocks; the next connection then waits unread in its channel.
    const spinning = exchange(port, header(1) + request('/spin?ms=3000'));
    await waitFor(() => d.stats().dispatcher.handedOff === 1, 3000);
    const unread = exchange(port, header(2) + request());
    await waitFor(() => d.stats().dispatcher.handedOff === 2, 3000);
    // 64 silent peers fill the reader; a 65th waits in the backlog, and makes the thread disarm.
    const silent = Array.from({ length: 65 }, () => exchange(port, ''));
    await waitFor(() => d.stats().proxy.waiting === 64 && d.stats().proxy.fullPauses > 0, 5000, 10, 'reader full, listeners disarmed');
    fs.writeFileSync(slowFlag, '');
    const pausesBefore = d.stats().dispatcher.backpressurePauses;
    process.kill(worker.pid, 'SIGKILL');
    // The unread connection comes back to the thread with no worker to take it: a pause while
    // the reader is full. The silent peers time out during it.
    await waitFor(() => d.stats().dispatcher.backpressurePauses > pausesBefore, 3000, 5, 'a back-pressure pause');
    await waitFor(() => d.stats().proxy.timedOut >= 64, 5000, 10, 'the silent peers timed out during the pause');
    assert.equal(d.workers().filter((w) => w.state === 'ready').length, 0, 'the replacement is still loading: the test proves nothing');
    await waitFor(() => d.workers().some((w) => w.state === 'ready' && w.pid !== worker.pid), 10_000, 20, 'the replacement');
    fs.rmSync(slowFlag);
    // The unread connection reached the replacement; a new one must be accepted at once.
    assert.ok((await unread).data.startsWith('HTTP/1.1 200'), 'the unread connection was answered by the replacement');
    const ms = await answeredWithin(port, 2000);
    assert.ok(ms < 1000, `answered after ${ms} ms`);
    await Promise.all([spinning, ...silent]);
  });
});
