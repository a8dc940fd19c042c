'use strict';
// Every kind of listener, the comparison modes, and app module shapes.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const https = require('node:https');
const { execFileSync } = require('node:child_process');
const { Dispatcher } = require('..');
const { get, request, hammer, listeningInodes } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };

describe('listeners and modes', function () {
  let d;
  let tmp;
  beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-'))));
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('port 0 gives the real port', async () => {
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: local });
    const addr = d.address();
    assert.equal(addr.family, 'IPv4');
    assert.equal(addr.address, '127.0.0.1');
    assert.ok(addr.port > 0);
    assert.equal((await get(addr.port)).status, 200);
  });

  it('serves over IPv6', async () => {
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: { port: 0, host: '::1' } });
    assert.equal(d.address().family, 'IPv6');
    const r = await request({ host: '::1', port: d.address().port, headers: { connection: 'close' } });
    assert.equal(r.status, 200);
  });

  it('serves on a Unix socket, replacing a stale socket file and applying mode', async () => {
    const sock = path.join(tmp, 'app.sock');
    // A stale socket file, as a crashed server leaves it: bound, nobody listening.
    execFileSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(sock)})`]);
    assert.ok(fs.statSync(sock).isSocket());
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: { path: sock, mode: 0o600 } });
    assert.equal(d.address(), sock);
    assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
    const r = await request({ socketPath: sock, headers: { connection: 'close' } });
    assert.equal(r.status, 200);
    await d.close();
    d = undefined;
    assert.equal(fs.existsSync(sock), false, 'socket file removed on close');
  });

  it('refuses a Unix socket path that a live server answers on', async () => {
    const sock = path.join(tmp, 'busy.sock');
    const live = net.createServer().listen(sock);
    await new Promise((r) => live.once('listening', r));
    try {
      await assert.rejects(Dispatcher.start({ min: 1, max: 1, app, listen: { path: sock } }), { code: 'EADDRINUSE' });
    } finally {
      live.close();
    }
  });

  it('adopts an inherited listening fd', async () => {
    // As a supervisor would hand it over: a listening socket, by fd number.
    const holder = net.createServer();
    await new Promise((r) => holder.listen(0, '127.0.0.1', r));
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: { fd: holder._handle.fd } });
    assert.equal(d.address().port, holder.address().port);
    holder.close(); // the caller closes its fd; herdless keeps its own duplicate
    const r = await get(d.address().port);
    assert.equal(r.status, 200);
    assert.notEqual(r.text, String(process.pid));
  });

  it('rejects an fd that is not a listening socket', async () => {
    const fd = fs.openSync(__filename, 'r');
    try {
      await assert.rejects(Dispatcher.start({ min: 1, max: 1, app, listen: { fd } }), { code: 'ERR_HERDLESS_INVALID_OPTION' });
    } finally {
      fs.closeSync(fd);
    }
  });

  for (const mode of ['herd', 'reuseport']) {
    it(`mode '${mode}' serves the same app`, async () => {
      d = await Dispatcher.start({ min: 2, max: 2, app, listen: local, mode });
      const results = await hammer(200, 10, () => get(d.address().port));
      const pids = new Set(d.workers().map((w) => String(w.pid)));
      for (const r of results) {
        assert.equal(r.status, 200);
        assert.ok(pids.has(r.text));
      }
      const inodes = d.workers().map((w) => [...listeningInodes(w.pid)]);
      for (const set of inodes) assert.equal(set.length, 1, 'each worker holds one listener');
      if (mode === 'herd') assert.equal(inodes[0][0], inodes[1][0], 'herd workers share one socket');
      else assert.notEqual(inodes[0][0], inodes[1][0], 'reuseport workers have their own sockets');
      const s = d.stats();
      assert.equal(s.mode, mode);
      assert.equal(s.dispatcher.accepted, 200);
    });
  }

  it('runs an ESM app and an async factory app', async () => {
    d = await Dispatcher.start({ min: 1, max: 1, app: require.resolve('./fixtures/esm.mjs'), listen: local });
    assert.match((await get(d.address().port)).text, /^esm \d+$/);
    await d.close();
    d = await Dispatcher.start({ min: 1, max: 1, app: require.resolve('./fixtures/factory.js'), listen: local });
    assert.match((await get(d.address().port)).text, /^factory \d+$/);
  });

  it('serves an https app with a certificate made for the test', async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1',
      '-keyout', path.join(tmp, 'key.pem'), '-out', path.join(tmp, 'cert.pem')], { stdio: 'ignore' });
    d = await Dispatcher.start({ min: 1, max: 1, app: require.resolve('./fixtures/https-app.js'), listen: local, env: { CERT_DIR: tmp } });
    const body = await new Promise((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: d.address().port, ca: fs.readFileSync(path.join(tmp, 'cert.pem')), servername: 'localhost', agent: false }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve(b));
      }).on('error', reject);
    });
    assert.match(body, /^secure \d+$/);
  });
});
