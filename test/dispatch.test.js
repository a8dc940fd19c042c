'use strict';
// The connection path in mode 'dispatch': one acceptor, SCM_RIGHTS hand-off, load-aware choice.
const assert = require('node:assert/strict');
const net = require('node:net');
const crypto = require('node:crypto');
const http = require('node:http');
const { Dispatcher } = require('..');
const { get, request, hammer, sleep, waitFor, listeningInodes } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };

describe('dispatch mode', function () {
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
  });

  it('spreads 1,000 connection-per-request calls over both workers; the primary serves none', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const { port } = d.address();
    const results = await hammer(1000, 20, () => get(port));
    const byPid = {};
    for (const r of results) {
      assert.ok(!(r instanceof Error), `request failed: ${r && r.message}`);
      assert.equal(r.status, 200);
      byPid[r.text] = (byPid[r.text] || 0) + 1;
    }
    const pids = d.workers().map((w) => String(w.pid));
    assert.deepEqual(Object.keys(byPid).sort(), pids.sort());
    assert.ok(!(String(process.pid) in byPid));
    for (const pid of pids) assert.ok(byPid[pid] >= 300, `worker ${pid} served ${byPid[pid]} of 1000`);
    const s = d.stats();
    assert.equal(s.dispatcher.accepted, 1000);
    assert.equal(s.dispatcher.handedOff, 1000);
    assert.equal(s.workers.reduce((n, w) => n + w.requestsServed, 0), 1000);
  });

  it('no worker holds a listening socket; the primary does', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: [local, { port: 0, host: '::1' }] });
    assert.equal(listeningInodes(process.pid).size >= 2, true);
    for (const w of d.workers()) assert.equal(listeningInodes(w.pid).size, 0, `worker ${w.pid} has a listener`);
  });

  it('passes a blocked worker over: 20 new connections go to the other, each fast', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const { port } = d.address();
    const blocked = get(port, '/block?ms=2000');
    await waitFor(() => d.stats().workers.some((w) => w.requestsInFlight === 1));
    const busy = d.stats().workers.find((w) => w.requestsInFlight === 1).pid;
    await sleep(150); // its heartbeat is now stale
    for (let i = 0; i < 20; i++) {
      const t0 = Date.now();
      const r = await get(port);
      assert.notEqual(r.text, String(busy));
      assert.ok(Date.now() - t0 < 300, `request ${i} took ${Date.now() - t0} ms`);
    }
    assert.equal((await blocked).text, String(busy));
  });

  it('back-pressure: with maxConnectionsPerWorker, the 11th connection waits in the backlog, then is served', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local, maxConnectionsPerWorker: 5 });
    const { port } = d.address();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
    const held = await Promise.all(Array.from({ length: 10 }, () => request({ port, agent, path: '/slow?ms=300' })));
    for (const r of held) assert.equal(r.status, 200);
    await waitFor(() => d.stats().workers.every((w) => w.connectionsOpen === 5));
    const t0 = Date.now();
    let servedAt = 0;
    const eleventh = get(port).then((r) => ((servedAt = Date.now()), r));
    await sleep(500);
    assert.equal(servedAt, 0, 'the 11th connection was served while every worker was full');
    const closedAt = Date.now();
    agent.destroy(); // frees the 10 idle keep-alive connections
    const r = await eleventh;
    assert.equal(r.status, 200);
    assert.ok(servedAt - closedAt < 500, `served ${servedAt - closedAt} ms after room was made`);
    assert.ok(servedAt - t0 >= 500);
    assert.ok(d.stats().dispatcher.backpressurePauses > 0);
  });

  it('keeps one keep-alive connection for 500 requests', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const { port } = d.address();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set();
    for (let i = 0; i < 500; i++) {
      const r = await new Promise((resolve, reject) => {
        http.get({ port, host: '127.0.0.1', agent }, (res) => {
          sockets.add(res.socket);
          res.resume();
          res.on('end', () => resolve(res.statusCode));
        }).on('error', reject);
      });
      assert.equal(r, 200);
    }
    agent.destroy();
    assert.equal(sockets.size, 1);
    assert.equal(d.stats().dispatcher.accepted, 1);
  });

  it('echoes a 10 MB request body intact', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const body = crypto.randomBytes(10 * 1024 * 1024);
    const r = await request({ port: d.address().port, method: 'POST', path: '/echo' }, body);
    assert.equal(r.body.length, body.length);
    assert.equal(crypto.createHash('sha256').update(r.body).digest('hex'), crypto.createHash('sha256').update(body).digest('hex'));
  });

  it('gives the app the real remote address and ports', async () => {
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: local });
    const { port } = d.address();
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.write('GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    let text = '';
    socket.on('data', (c) => (text += c));
    await new Promise((r) => socket.once('end', r));
    const peer = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
    assert.equal(peer.remoteAddress, '127.0.0.1');
    assert.equal(peer.remotePort, socket.localPort);
    assert.equal(peer.localPort, port);
    assert.notEqual(peer.pid, process.pid);
  });
});
