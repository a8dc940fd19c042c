'use strict';
// Issue 17, item 9: the PROXY reader kept its deadlines in a FIFO and expired only from its
// front. With a deferring listener (proxyTimeout >= 2 s: TCP_DEFER_ACCEPT, 1 s), a silent peer
// is handed over after waiting in the kernel and is due that much sooner: one accepted after a
// peer that sent part of a header, but due before it, waited behind it and was closed up to a
// second late. (The FIFO also kept an entry per connection until it reached the front: with a
// long proxyTimeout, one silent peer at the front let it grow without bound. The reader now
// keeps a heap of the waiting slots, never more than its capacity.)
const assert = require('node:assert/strict');
const net = require('node:net');
const { Dispatcher } = require('../..');
const { sleep } = require('../helpers');

function open(port, text) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('error', () => {});
    s.on('close', () => resolve(Date.now() - t0));
    if (text) s.write(text);
  });
}

describe('fault: PROXY header deadlines expire in deadline order (TCP_DEFER_ACCEPT)', function () {
  this.timeout(30_000);
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
  });

  it('a silent peer that waited in the kernel is closed at its own deadline, not behind a later one', async () => {
    d = await Dispatcher.start({ app: require.resolve('../fixtures/proxy-peer.js'), listen: { port: 0, host: '127.0.0.1' }, min: 1, max: 1, proxyProtocol: true, proxyTimeout: 2000 });
    const port = d.address().port;
    const silent = open(port, ''); // deferred 1 s by the kernel, then due 1 s after that
    await sleep(850);
    const partial = open(port, 'PROXY TCP4 203.0.113.'); // accepted at once (data came), due 2 s later
    const [silentMs, partialMs] = await Promise.all([silent, partial]);
    assert.ok(partialMs >= 1700, `the partial header was closed after ${partialMs} ms (proxyTimeout 2000)`);
    assert.ok(silentMs < 2500, `the silent peer was closed after ${silentMs} ms, behind the later deadline (proxyTimeout 2000)`);
    assert.equal(d.stats().proxy.timedOut, 2);
  });
});
