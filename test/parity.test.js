'use strict';
// Differential test (issue #8): a connection handed to a worker must be indistinguishable
// from one the app's own server accepted. Every assertion below is written once and run
// against the same app module served three ways: by plain Node (server.listen), and by
// herdless with each of its two adoption paths (Node's TCP handle opened on the fd, and
// the public net.Socket({ fd }) fallback). Socket options are read back from the kernel by
// python3, an observer independent of both.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { Dispatcher } = require('..');
const { waitFor } = require('./helpers');

const fixtures = path.join(__dirname, 'fixtures', 'parity');
const httpApp = path.join(fixtures, 'http-app.js');
const netApp = path.join(fixtures, 'net-app.js');

/** Serves `app` one of three ways; returns { port, close() }. */
async function serve(how, app, env = {}) {
  if (how === 'plain node') {
    const child = spawn(process.execPath, [path.join(fixtures, 'plain.js'), app], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    const port = await new Promise((resolve, reject) => {
      child.stdout.once('data', (d) => resolve(Number(String(d).trim())));
      child.once('exit', (code) => reject(new Error(`plain server exited with ${code}`)));
    });
    return { port, close: () => new Promise((r) => { child.once('exit', r); child.kill('SIGKILL'); }) };
  }
  const adopt = how === 'herdless (public path)' ? { HERDLESS_ADOPT: 'public' } : {};
  const d = await Dispatcher.start({ min: 1, max: 1, app, listen: { port: 0, host: '127.0.0.1' }, env: { ...env, ...adopt } });
  return { port: d.address().port, close: () => d.close({ timeout: 2000 }) };
}

function getJson(agent, port, urlPath) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

function connect(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

function firstLine(socket, timeoutMs) {
  return new Promise((resolve) => {
    let buf = '';
    const timer = setTimeout(() => resolve(null), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', function onData(chunk) {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      socket.off('data', onData);
      resolve(buf.slice(0, nl));
    });
  });
}

for (const how of ['plain node', 'herdless (handle path)', 'herdless (public path)']) {
  describe(`accept parity: ${how}`, function () {
    let target;
    const sockets = [];
    afterEach(async () => {
      for (const s of sockets.splice(0)) s.destroy();
      await target?.close();
      target = undefined;
    });

    it('http: a response written in three ticks over keep-alive is not held back by Nagle (TCP_NODELAY set)', async () => {
      target = await serve(how, httpApp);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      await getJson(agent, target.port, '/chunks'); // warm up
      const n = 20;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) assert.equal((await getJson(agent, target.port, '/chunks')).length, 300);
      const meanMs = Number(process.hrtime.bigint() - t0) / 1e6 / n;
      agent.destroy();
      // A Nagle stall waits for the client's delayed ACK: about 40 ms per response on Linux.
      assert.ok(meanMs < 20, `mean ${meanMs.toFixed(2)} ms per 3-chunk response: Nagle is on`);
    });

    it("http: the server's socket options, connection count, socket.server, listening and address() are Node's", async () => {
      target = await serve(how, httpApp);
      for (let i = 0; i < 2; i++) sockets.push(await connect(target.port)); // two idle connections
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      let info;
      await waitFor(async () => {
        info = JSON.parse(await getJson(agent, target.port, '/info'));
        return info.count === 3;
      }, 3000, 50, "getConnections() === 3");
      agent.destroy();
      assert.deepEqual(info.sockopts, { nodelay: 1, keepalive: 1, keepidle: 3 });
      assert.equal(info.err, null);
      assert.equal(info.socketServer, true);
      assert.equal(info.listening, true);
      assert.equal(info.port, target.port);
      assert.equal(info.listeningEvents, 1);
      assert.equal(info.connections, 3);
      assert.equal(info.published, 3, 'net.server.socket published once per connection');
    });

    it('net: pauseOnConnect, highWaterMark, allowHalfOpen, noDelay and keepAlive reach the socket', async () => {
      target = await serve(how, netApp);
      const s = await connect(target.port);
      sockets.push(s);
      const line = await firstLine(s, 5000);
      assert.ok(line, 'no greeting');
      assert.deepEqual(JSON.parse(line), {
        paused: true,
        flowing: false,
        readableHighWaterMark: 4321,
        writableHighWaterMark: 4321,
        allowHalfOpen: true,
        socketServer: true,
        count: 1,
        sockopts: { nodelay: 1, keepalive: 1, keepidle: 2 },
        published: 1,
      });
      s.write('ping');
      const echoed = await new Promise((r) => s.once('data', r));
      assert.equal(String(echoed), 'ping');
    });

    it('net: maxConnections 2 serves two connections and not a third while they are open', async () => {
      target = await serve(how, netApp, { PARITY_MAX_CONNECTIONS: '2' });
      const a = await connect(target.port);
      const b = await connect(target.port);
      sockets.push(a, b);
      assert.ok(await firstLine(a, 5000), 'first connection not served');
      assert.ok(await firstLine(b, 5000), 'second connection not served');
      const c = await connect(target.port).catch(() => null);
      if (c) {
        sockets.push(c);
        c.on('error', () => {});
        assert.equal(await firstLine(c, 700), null, 'a third connection was served past maxConnections');
      }
    });
  });
}
