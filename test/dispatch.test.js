'use strict';
// The connection path in mode 'dispatch' (issue #2): one native acceptor in the primary, each
// connection handed to the least-loaded worker over SCM_RIGHTS. Real processes and sockets.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { Dispatcher } = require('..');
const { get, request, hammer, assertAllOk, RawClient, sleep, waitFor, listeningSockets, socketInodes } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };

describe('dispatch mode', function () {
  let d;
  let tmp;
  const clients = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await d?.close({ timeout: 2000 });
    d = undefined;
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    tmp = undefined;
  });

  it('spreads 1,000 connection-per-request calls over both workers (>= 30% each); the primary serves none', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const { port } = d.address();
    const results = await hammer(1000, 20, () => get(port));
    assertAllOk(results);
    const byPid = {};
    for (const r of results) {
      assert.equal(r.status, 200);
      byPid[r.text] = (byPid[r.text] || 0) + 1;
    }
    const pids = d.workers().map((w) => String(w.pid));
    assert.equal(pids.length, 2);
    assert.ok(!pids.includes(String(process.pid)), 'a worker is the primary itself');
    assert.equal(byPid[String(process.pid)], undefined, 'the primary answered requests');
    assert.deepEqual(Object.keys(byPid).sort(), [...pids].sort(), `answers came from ${JSON.stringify(byPid)}`);
    for (const pid of pids) assert.ok(byPid[pid] >= 300, `worker ${pid} served ${byPid[pid]} of 1000: ${JSON.stringify(byPid)}`);
    const s = d.stats();
    assert.equal(s.mode, 'dispatch');
    assert.equal(s.dispatcher.accepted, 1000);
    // A connection taken back from a worker that sat on it is handed off twice; each
    // worker still counts exactly what it read.
    assert.equal(s.dispatcher.handedOff, 1000 + s.dispatcher.stolen);
    assert.equal(s.workers.reduce((n, w) => n + w.connectionsReceived, 0), 1000);
    // Workers count a request once its response has finished: the last may lag the client.
    const served = () => d.stats().workers.reduce((n, w) => n + w.requestsServed, 0);
    await waitFor(() => served() === 1000, 1000).catch(() => assert.equal(served(), 1000));
  });

  it('no worker holds a listening socket (TCP v4, v6 and unix); the primary holds all of them', async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-'));
    const sock = path.join(tmp, 'd.sock');
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: [local, { port: 0, host: '::1' }, { path: sock }] });
    // Serve some traffic on each listener first: workers have received connection fds by now.
    const port = d.address().port;
    assertAllOk(await hammer(20, 4, () => get(port)));
    assert.equal((await request({ socketPath: sock, headers: { connection: 'close' } })).status, 200);

    const primary = listeningSockets(process.pid);
    assert.ok(primary.some((s) => s.proto === 'tcp' && s.port === port), `primary listeners: ${JSON.stringify(primary)}`);
    assert.ok(primary.some((s) => s.proto === 'tcp6'), `primary listeners: ${JSON.stringify(primary)}`);
    assert.ok(primary.some((s) => s.proto === 'unix' && s.path === sock), `primary listeners: ${JSON.stringify(primary)}`);
    const primaryInodes = new Set(primary.map((s) => s.inode));
    for (const w of d.workers()) {
      assert.deepEqual(listeningSockets(w.pid), [], `worker ${w.pid} holds a listening socket`);
      const shared = [...socketInodes(w.pid)].filter((i) => primaryInodes.has(i));
      assert.deepEqual(shared, [], `worker ${w.pid} holds one of the primary's listeners`);
    }
  });

  it('passes a blocked worker over: 20 new sequential connections all go to the other one, each within 300 ms', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const { port } = d.address();
    const pids = d.workers().map((w) => String(w.pid));
    const blocked = get(port, '/block?ms=2000');
    await sleep(200); // the block request has reached a worker, whose event loop is now stuck
    const busy = d.stats().workers.find((w) => w.requestsInFlight === 1 || w.connectionsOpen === 1);
    assert.ok(busy, `no worker took the /block request: ${JSON.stringify(d.stats().workers)}`);
    const other = pids.find((p) => p !== String(busy.pid));
    for (let i = 0; i < 20; i++) {
      const t0 = Date.now();
      const r = await get(port, '/', { timeout: 1500 });
      const ms = Date.now() - t0;
      assert.equal(r.status, 200);
      assert.equal(r.text, other, `request ${i} was served by ${r.text}, the blocked worker is ${busy.pid}`);
      assert.ok(ms < 300, `request ${i} took ${ms} ms`);
    }
    const b = await blocked;
    assert.equal(b.status, 200);
    assert.equal(b.text, String(busy.pid));
  });

  it('back-pressure: with maxConnectionsPerWorker 5, the 11th connection waits unaccepted, then is served once one closes; nothing is reset', async function () {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local, maxConnectionsPerWorker: 5 });
    const { port } = d.address();
    const held = [];
    const heldBy = new Map();
    for (let i = 0; i < 10; i++) {
      const c = await RawClient.connect(port);
      clients.push(c);
      const r = await c.send('/');
      assert.equal(r.status, 200, `held connection ${i}`);
      held.push(c);
      heldBy.set(c, r.text);
    }
    const counts = {};
    for (const pid of heldBy.values()) counts[pid] = (counts[pid] || 0) + 1;
    assert.deepEqual(Object.values(counts), [5, 5], `10 connections over the workers: ${JSON.stringify(counts)}`);
    await waitFor(() => d.stats().workers.every((w) => w.connectionsOpen === 5), 2000);

    const eleventh = await RawClient.connect(port); // the kernel completes the handshake: backlog
    clients.push(eleventh);
    let servedAt = 0;
    const answer = eleventh.send('/').then((r) => ((servedAt = Date.now()), r));
    answer.catch(() => {});
    await sleep(500);
    assert.equal(servedAt, 0, 'the 11th connection was served while every worker was full');
    assert.equal(eleventh.received, 0, 'the 11th connection got bytes while every worker was full');
    assert.ok(eleventh.intact, `the 11th connection: ${eleventh.events.join(', ')}`);
    const s = d.stats();
    assert.equal(s.dispatcher.accepted, 10, 'the 11th connection should wait in the kernel backlog, not accepted');
    assert.ok(s.dispatcher.backpressurePausedMs > 0 || s.dispatcher.backpressurePauses > 0, JSON.stringify(s.dispatcher));
    for (const c of held) assert.ok(c.intact, `a held connection: ${c.events.join(', ')}`);

    const freed = held.shift();
    const closedAt = Date.now();
    await freed.end();
    const r = await Promise.race([answer, sleep(3000).then(() => null)]);
    assert.ok(r, 'the 11th connection was not served within 3 s after one closed');
    assert.equal(r.status, 200);
    assert.ok(servedAt - closedAt < 500, `served ${servedAt - closedAt} ms after room was made`);
    assert.equal(r.text, heldBy.get(freed), 'the 11th went to the worker with room');
    assert.ok(eleventh.intact, `the 11th connection: ${eleventh.events.join(', ')}`);
    // The other nine were never dropped: each still answers on its connection.
    for (const c of held) {
      assert.ok(c.intact, `a held connection: ${c.events.join(', ')}`);
      assert.equal((await c.send('/')).text, heldBy.get(c));
    }
    assert.equal(d.stats().dispatcher.accepted, 11);
  });

  it('keeps one keep-alive connection for 500 requests', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const { port } = d.address();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const sockets = new Set();
      const pids = new Set();
      for (let i = 0; i < 500; i++) {
        const r = await new Promise((resolve, reject) => {
          http.get({ port, host: '127.0.0.1', agent }, (res) => {
            sockets.add(res.socket);
            let body = '';
            res.on('data', (c) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode, body }));
          }).on('error', reject);
        });
        assert.equal(r.status, 200, `request ${i}`);
        pids.add(r.body);
      }
      assert.equal(sockets.size, 1, `${sockets.size} client sockets were used`);
      assert.equal(pids.size, 1, 'one connection, one worker');
      assert.equal(d.stats().dispatcher.accepted, 1);
      const served = () => d.stats().workers.reduce((n, w) => n + w.requestsServed, 0);
      await waitFor(() => served() === 500, 1000).catch(() => assert.equal(served(), 500));
    } finally {
      agent.destroy();
    }
  });

  it('echoes a 10 MB request body intact', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const body = crypto.randomBytes(10 * 1024 * 1024);
    const r = await request({ port: d.address().port, method: 'POST', path: '/echo', headers: { connection: 'close' } }, body);
    assert.equal(r.status, 200);
    assert.equal(r.body.length, body.length);
    const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
    assert.equal(sha(r.body), sha(body));
  });

  it("gives the app the client's real address and ports", async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app: require.resolve('./fixtures/peer.js'), listen: local });
    const { port } = d.address();
    for (let i = 0; i < 4; i++) {
      const c = await RawClient.connect(port);
      clients.push(c);
      const peer = JSON.parse((await c.send('/')).text);
      assert.equal(peer.remoteAddress, '127.0.0.1');
      assert.equal(peer.remotePort, c.socket.localPort);
      assert.equal(peer.localAddress, '127.0.0.1');
      assert.equal(peer.localPort, c.socket.remotePort);
      assert.equal(peer.localPort, port);
      assert.notEqual(peer.pid, process.pid);
      c.destroy();
    }
  });
});
