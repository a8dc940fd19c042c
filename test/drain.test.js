'use strict';
// A draining worker (reload, scale-down, close) ends busy keep-alive connections the way an
// HTTP server should: the next response says "Connection: close" and the connection closes
// after it, so a client that keeps sending never sees a reset. Pins the public mechanism
// (setHeader('Connection', 'close')) that replaced Node's internal res.shouldKeepAlive.
const assert = require('node:assert/strict');
const net = require('node:net');
const { Dispatcher } = require('..');
const { get, sleep } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');

describe('draining a busy keep-alive connection', function () {
  this.timeout(20000);
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
  });

  it('reload(): a client sending on one keep-alive connection gets Connection: close, then EOF, and no failed request', async () => {
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: { port: 0, host: '127.0.0.1' } });
    const socket = net.connect(d.address().port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    let buf = '';
    const responses = [];
    let ended = false;
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => {
      buf += chunk;
      for (;;) {
        const head = buf.indexOf('\r\n\r\n');
        if (head < 0) return;
        const headers = buf.slice(0, head).toLowerCase();
        const length = Number(/content-length: (\d+)/.exec(headers)?.[1] ?? 0);
        if (buf.length < head + 4 + length) return;
        responses.push({ close: /\r\nconnection: close/.test(headers), body: buf.slice(head + 4, head + 4 + length) });
        buf = buf.slice(head + 4 + length);
      }
    });
    socket.on('end', () => (ended = true));
    const errors = [];
    socket.on('error', (e) => errors.push(e.code));
    // One request at a time on the same connection (each after the previous answer, no
    // pipelining), every 20 ms, through the reload.
    const reloading = sleep(200).then(() => d.reload());
    let sent = 0;
    while (!ended && sent < 300) {
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      sent++;
      for (let waited = 0; responses.length < sent && !ended && waited < 5000; waited += 5) await sleep(5);
      if (responses.some((r) => r.close)) break;
      await sleep(20);
    }
    await reloading;
    await sleep(300);
    assert.deepEqual(errors, []);
    const closing = responses.findIndex((r) => r.close);
    assert.ok(closing >= 0, `no response said Connection: close (${responses.length} responses)`);
    assert.equal(closing, responses.length - 1, 'responses came after the one that said Connection: close');
    assert.equal(responses.length, sent, `${sent} requests sent, ${responses.length} answered`);
    assert.ok(ended, 'the server did not end the connection after Connection: close');
    assert.ok(responses.every((r) => r.body === responses[0].body), 'one connection, one worker');
  });

  it("server.close() in the app: that worker takes no more connections and leaves, a fresh one takes its place at once, not as a crash", async () => {
    d = await Dispatcher.start({ min: 1, max: 1, app: require.resolve('./fixtures/closes-server.js'), listen: { port: 0, host: '127.0.0.1' } });
    const { port } = d.address();
    const exits = [];
    const errors = [];
    d.on('worker-exit', (e) => exits.push(e));
    d.on('error', (e) => errors.push(e));
    const [first] = d.workers();
    const closing = await get(port, '/close');
    assert.equal(String(closing.body), `closing ${first.pid}`);
    const { waitFor } = require('./helpers');
    await waitFor(() => exits.length === 1 && d.workers().length === 1 && d.workers()[0].pid !== first.pid && d.workers()[0].state === 'ready', 5000, 20, 'replaced');
    assert.equal(exits[0].pid, first.pid);
    assert.equal(exits[0].reason, 'closed');
    assert.equal(exits[0].code, 0);
    for (let i = 0; i < 20; i++) assert.equal(String((await get(port, '/')).body), String(d.workers()[0].pid));
    assert.deepEqual(errors, []);
  });
});
