'use strict';
// Apps people run, unchanged, under herdless: Express, Fastify and Koa, a WebSocket upgrade,
// HTTPS and HTTP/2 with TLS terminated in the worker. Each reports the client's address as
// its socket sees it, which must be the client's own end of the connection.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const http2 = require('node:http2');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const WebSocket = require('ws');
const { Dispatcher } = require('..');
const { waitFor, untilServedBy } = require('./helpers');

const FIXTURES = path.join(__dirname, 'fixtures', 'frameworks');

/** One request on a fresh connection; resolves { status, json, localPort } (the client's port). */
function request(mod, options, body) {
  return new Promise((resolve, reject) => {
    const req = mod.request({ host: '127.0.0.1', agent: false, ...options }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(text), localPort }));
    });
    let localPort;
    req.on('socket', (s) => s.once(options.protocol === 'https:' ? 'secureConnect' : 'connect', () => (localPort = s.localPort)));
    req.on('error', reject);
    req.end(body);
  });
}

function assertPeer(reply) {
  assert.equal(reply.json.remoteAddress, '127.0.0.1');
  if (reply.json.remotePort !== undefined) assert.equal(reply.json.remotePort, reply.localPort, 'the worker sees the client end of this very connection');
}

describe('frameworks under herdless', function () {
  this.timeout(30000);
  let d;
  let certDir;
  let cert;
  before(() => {
    certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-cert-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-days', '1', '-keyout', path.join(certDir, 'key.pem'), '-out', path.join(certDir, 'cert.pem')], { stdio: 'pipe' });
    cert = fs.readFileSync(path.join(certDir, 'cert.pem'));
  });
  after(() => fs.rmSync(certDir, { recursive: true, force: true }));
  afterEach(async () => {
    await d?.close();
    d = undefined;
  });
  const start = async (fixture) => {
    d = await Dispatcher.start({ app: path.join(FIXTURES, fixture), min: 2, max: 2, listen: { port: 0, host: '127.0.0.1' }, env: { CERT_DIR: certDir } });
    // A worker still busy finishing its start-up is passed over while the other is free.
    await waitFor(() => d.stats().workers.every((w) => !w.loopAwake), 3000, 5, 'both workers asleep');
    return d.address().port;
  };
  const workerPids = () => d.workers().map((w) => w.pid);

  for (const framework of ['express', 'koa', 'fastify']) {
    it(`${framework}: routes answer from the workers and see the client's address`, async () => {
      const port = await start(`${framework}.js`);
      const seen = new Set();
      // Concurrent bursts until both workers answered: light load stays on the warmest free
      // worker, so even six at once may all be served by one.
      const burst = () => Promise.all(Array.from({ length: 6 }, () => request(http, { port, path: '/' })));
      const answers = await untilServedBy(2, burst, (r) => r.json.pid);
      for (const r of answers) {
        assert.equal(r.status, 200);
        assert.equal(r.json.framework, framework);
        assertPeer(r);
        seen.add(r.json.pid);
      }
      assert.deepEqual([...seen].sort(), workerPids().sort(), 'both workers served');
      if (framework !== 'koa') {
        const body = JSON.stringify({ n: 42, s: 'x'.repeat(100000) });
        const r = await request(http, { port, path: '/echo', method: 'POST', headers: { 'content-type': 'application/json' } }, body);
        assert.deepEqual(r.json, { got: JSON.parse(body) });
      }
    });
  }

  it('ws: a WebSocket upgrade, then messages both ways on the handed-off socket', async () => {
    const port = await start('ws.js');
    const socket = new WebSocket(`ws://127.0.0.1:${port}/`);
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    const replies = [];
    for (const text of ['one', 'two']) {
      socket.send(text);
      replies.push(String(await new Promise((r) => socket.once('message', r))));
    }
    socket.close();
    const [pid] = replies[0].split(' ');
    assert.ok(workerPids().includes(Number(pid)));
    assert.deepEqual(replies, [`${pid} 127.0.0.1 one`, `${pid} 127.0.0.1 two`], 'one worker holds the upgraded connection');
  });

  it('https: TLS is terminated in the worker', async () => {
    const port = await start('https.js');
    const r = await request(https, { protocol: 'https:', port, path: '/', ca: cert });
    assert.equal(r.status, 200);
    assert.equal(r.json.encrypted, true);
    assertPeer(r);
    assert.ok(workerPids().includes(r.json.pid));
  });

  it('http2: an h2 session over TLS, plus the HTTP/1.1 fallback', async () => {
    const port = await start('http2.js');
    const session = http2.connect(`https://127.0.0.1:${port}`, { ca: cert });
    try {
      const replies = await Promise.all([0, 1, 2].map(() => new Promise((resolve, reject) => {
        const stream = session.request({ ':path': '/' });
        let text = '';
        stream.setEncoding('utf8');
        stream.on('data', (c) => (text += c));
        stream.on('end', () => resolve(JSON.parse(text)));
        stream.on('error', reject);
      })));
      assert.equal(session.alpnProtocol, 'h2');
      assert.ok(replies.every((r) => r.httpVersion === '2.0' && r.remoteAddress === '127.0.0.1'));
      assert.equal(new Set(replies.map((r) => r.pid)).size, 1, 'one session, one connection, one worker');
    } finally {
      session.close();
    }
    const old = await request(https, { protocol: 'https:', port, path: '/', ca: cert });
    assert.equal(old.json.httpVersion, '1.1');
  });
});
