'use strict';
// Every kind of listener (issue #2), the comparison modes 'herd' and 'reuseport', and the
// shapes an app module may take.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const https = require('node:https');
const { spawn } = require('node:child_process');
const { Dispatcher } = require('..');
const { get, request, hammer, untilServedBy, assertAllOk, RawClient, makeCert, listeningSockets, socketInode } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };

/** Leave a stale unix socket file at `sock`, as a crashed server does: its owner SIGKILLed. */
async function staleSocketFile(sock) {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((resolve, reject) => {
    child.stdout.once('data', resolve);
    child.once('exit', () => reject(new Error('the socket holder exited early')));
  });
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

describe('listeners and modes', function () {
  let d;
  let tmp;
  beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-'))));
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('port 0 gives the real, bound port', async () => {
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: local });
    const addr = d.address();
    assert.equal(addr.family, 'IPv4');
    assert.equal(addr.address, '127.0.0.1');
    assert.ok(Number.isInteger(addr.port) && addr.port > 0, `port ${addr.port}`);
    assert.ok(listeningSockets(process.pid).some((s) => s.proto === 'tcp' && s.port === addr.port), 'nothing listens on the reported port');
    const r = await get(addr.port);
    assert.equal(r.status, 200);
    assert.equal(r.socket.remotePort, addr.port);
  });

  it('serves over IPv6 (::1), with the peer seen as ::1', async () => {
    d = await Dispatcher.start({ min: 1, max: 1, app: require.resolve('./fixtures/peer.js'), listen: { port: 0, host: '::1' } });
    const addr = d.address();
    assert.equal(addr.family, 'IPv6');
    assert.equal(addr.address, '::1');
    const c = await RawClient.connect(addr.port, '::1');
    try {
      const peer = JSON.parse((await c.send('/')).text);
      assert.equal(peer.remoteAddress, '::1');
      assert.equal(peer.remoteFamily, 'IPv6');
      assert.equal(peer.remotePort, c.socket.localPort);
      assert.equal(peer.localPort, addr.port);
    } finally {
      c.destroy();
    }
  });

  it('serves on a Unix socket, replacing a stale socket file and applying mode; removes it on close', async () => {
    const sock = path.join(tmp, 'app.sock');
    await staleSocketFile(sock);
    assert.ok(fs.statSync(sock).isSocket());
    await assert.rejects(request({ socketPath: sock }), { code: 'ECONNREFUSED' }); // really stale
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: { path: sock, mode: 0o600 } });
    assert.equal(d.address(), sock);
    const st = fs.statSync(sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    const r = await request({ socketPath: sock, headers: { connection: 'close' } });
    assert.equal(r.status, 200);
    assert.notEqual(r.text, String(process.pid));
    await d.close();
    d = undefined;
    assert.equal(fs.existsSync(sock), false, 'socket file removed on close');
  });

  it('applies another unix socket mode (0o660)', async () => {
    const sock = path.join(tmp, 'g.sock');
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: { path: sock, mode: 0o660 } });
    assert.equal(fs.statSync(sock).mode & 0o777, 0o660);
    assert.equal((await request({ socketPath: sock, headers: { connection: 'close' } })).status, 200);
  });

  it('refuses a Unix socket path that a live server answers on (EADDRINUSE) and leaves it alone', async () => {
    const sock = path.join(tmp, 'busy.sock');
    const live = net.createServer((s) => s.on('error', () => {}).end('live'));
    await new Promise((r) => live.listen(sock, r));
    try {
      await assert.rejects(Dispatcher.start({ min: 1, max: 1, app, listen: { path: sock } }), { code: 'EADDRINUSE' });
      const answer = await new Promise((resolve, reject) => {
        let text = '';
        net.connect(sock).on('data', (c) => (text += c)).on('end', () => resolve(text)).on('error', reject);
      });
      assert.equal(answer, 'live', 'the live server lost its socket file');
    } finally {
      live.close();
    }
  });

  it('adopts an inherited listening fd, which keeps working after the caller closes its own', async () => {
    // As a supervisor (systemd, a parent process) hands it over: a listening socket, by fd number.
    const holder = net.createServer();
    await new Promise((r) => holder.listen(0, '127.0.0.1', r));
    const fd = holder._handle.fd;
    const inode = socketInode(process.pid, fd);
    assert.ok(inode, 'the holder fd is a socket');
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: { fd } });
    assert.equal(d.address().port, holder.address().port);
    await new Promise((r) => holder.close(r)); // the caller closes its fd; herdless keeps its own duplicate
    assert.ok(
      listeningSockets(process.pid).some((s) => s.inode === inode),
      'the inherited socket is no longer held open by anyone',
    );
    const results = await hammer(20, 4, () => get(d.address().port));
    assertAllOk(results);
    const worker = String(d.workers()[0].pid);
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.text, worker, 'answered by someone other than the worker');
    }
  });

  it('rejects an fd that is not a listening socket', async () => {
    const fd = fs.openSync(__filename, 'r');
    try {
      await assert.rejects(Dispatcher.start({ min: 1, max: 1, app, listen: { fd } }), (err) => {
        assert.equal(err.code, 'ERR_HERDLESS_INVALID_OPTION');
        assert.match(err.message, /listen/);
        return true;
      });
    } finally {
      fs.closeSync(fd);
    }
  });

  for (const mode of ['herd', 'reuseport']) {
    it(`mode '${mode}' serves the same app (status, body) from every worker`, async () => {
      d = await Dispatcher.start({ min: 2, max: 2, app, listen: local, mode });
      const { port } = d.address();
      const results = await hammer(200, 10, () => get(port));
      assertAllOk(results);
      const pids = d.workers().map((w) => String(w.pid));
      for (const r of results) {
        assert.equal(r.status, 200);
        assert.ok(pids.includes(r.text), `answered by ${r.text}, workers are ${pids}`);
      }
      const s = d.stats();
      assert.equal(s.mode, mode);
      assert.equal(s.dispatcher.accepted, 200);

      const byWorker = d.workers().map((w) => listeningSockets(w.pid));
      for (const [i, socks] of byWorker.entries()) {
        assert.equal(socks.length, 1, `worker ${pids[i]} holds ${socks.length} listeners: ${JSON.stringify(socks)}`);
        assert.equal(socks[0].proto, 'tcp');
        assert.equal(socks[0].port, port, 'a worker listens on another port');
      }
      const primary = listeningSockets(process.pid);
      if (mode === 'herd') {
        assert.equal(byWorker[0][0].inode, byWorker[1][0].inode, 'herd workers share one socket');
        assert.ok(primary.some((p) => p.inode === byWorker[0][0].inode), "the workers' socket is not the primary's listener");
      } else {
        assert.notEqual(byWorker[0][0].inode, byWorker[1][0].inode, 'reuseport workers have their own sockets');
        for (const [i, socks] of byWorker.entries()) {
          assert.ok(!primary.some((p) => p.inode === socks[0].inode), `worker ${pids[i]} listens on the primary's socket`);
        }
      }
    });
  }

  it('runs an ESM app (.mjs default export)', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app: require.resolve('./fixtures/esm.mjs'), listen: local });
    const results = await hammer(10, 2, () => get(d.address().port));
    assertAllOk(results);
    const pids = d.workers().map((w) => String(w.pid));
    for (const r of results) {
      assert.equal(r.status, 200);
      const m = /^esm (\d+)$/.exec(r.text);
      assert.ok(m, r.text);
      assert.ok(pids.includes(m[1]));
    }
  });

  it('runs an async factory app (async () => http.createServer(...))', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app: require.resolve('./fixtures/factory.js'), listen: local });
    const r = await get(d.address().port);
    assert.equal(r.status, 200);
    const m = /^factory (\d+)$/.exec(r.text);
    assert.ok(m, r.text);
    assert.ok(d.workers().some((w) => String(w.pid) === m[1]));
  });

  it('runs an app that uses the worker API: serve(server) and workerId()', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app: require.resolve('./fixtures/serve-api.js'), listen: local });
    const burst = async () => {
      const rs = await hammer(20, 4, () => get(d.address().port));
      assertAllOk(rs);
      return rs;
    };
    const results = await untilServedBy(2, burst, (r) => JSON.parse(r.text).pid);
    const workers = d.workers();
    const ids = new Set();
    for (const r of results) {
      assert.equal(r.status, 200);
      const body = JSON.parse(r.text);
      const w = workers.find((x) => x.pid === body.pid);
      assert.ok(w, `answered by ${body.pid}, not a worker`);
      assert.equal(body.id, w.id, 'workerId() differs from the id d.workers() reports');
      ids.add(body.id);
    }
    assert.equal(ids.size, 2);
  });

  it('ready(promise) holds connections back until the promise resolves, also with serve()', async () => {
    // The fixture calls ready() on a 100 ms start-up, then serve(); every answer must come
    // after that start-up finished (README: "no connections until this resolves").
    d = await Dispatcher.start({ min: 2, max: 2, app: require.resolve('./fixtures/serve-api.js'), listen: local });
    const results = await hammer(4, 4, () => get(d.address().port));
    assertAllOk(results);
    for (const r of results) assert.equal(JSON.parse(r.text).started, true, 'a connection was served before ready() resolved');
  });

  it('serves an https app with a certificate made for the test; the app sees the real peer', async () => {
    const { cert } = makeCert(tmp);
    d = await Dispatcher.start({ min: 1, max: 1, app: require.resolve('./fixtures/https-app.js'), listen: local, env: { CERT_DIR: tmp } });
    const port = d.address().port;
    const fetch = (p) =>
      new Promise((resolve, reject) => {
        const req = https.get({ host: '127.0.0.1', port, path: p, ca: cert, servername: 'localhost', agent: false }, (res) => {
          let b = '';
          res.on('data', (c) => (b += c));
          res.on('end', () => resolve({ status: res.statusCode, body: b, localPort: res.socket.localPort, authorized: res.socket.authorized }));
        });
        req.on('error', reject);
      });
    const r = await fetch('/');
    assert.equal(r.status, 200);
    assert.equal(r.authorized, true);
    assert.equal(r.body, `secure ${d.workers()[0].pid}`);
    const p = await fetch('/peer');
    const peer = JSON.parse(p.body);
    assert.equal(peer.encrypted, true);
    assert.equal(peer.remoteAddress, '127.0.0.1');
    assert.equal(peer.remotePort, p.localPort);
    assert.equal(peer.localPort, port);
  });
});
