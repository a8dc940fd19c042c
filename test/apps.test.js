'use strict';
// Real Node apps, each exactly as its framework's docs write it (the app calls listen()
// itself), started by the real CLI as a user would: `herdless <file>`. Each must answer from
// at least two worker pids.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const http2 = require('node:http2');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { io } = require('socket.io-client');
const { runCli, childPids, killAll } = require('./ship/cli-proc');
const { get } = require('./ship/http');
const { makeCert } = require('./helpers/cert');

const APPS = path.join(__dirname, 'fixtures', 'apps');
const ROOT = path.join(__dirname, '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** `herdless [flags] <file> [-- args]` with PORT set; resolves once `probe()` succeeds. */
async function start(file, { flags = [], env = {}, cwd = ROOT, probe, ms = 40000 }) {
  const cli = runCli(['-w', '2', ...flags, path.join(APPS, file)], { env, cwd });
  const end = Date.now() + ms;
  for (;;) {
    try {
      await probe();
      // Every worker listening: the CLI says so once the pool has started.
      await cli.waitLog(/listening on/, Math.max(1000, end - Date.now()));
      return cli;
    } catch (err) {
      if (Date.now() > end) throw new Error(`${file} did not answer within ${ms} ms (${err.message}); stderr:\n${cli.log()}`);
      await sleep(100);
    }
  }
}

/** client-ip hashes with a per-pool random key: all of n clients land on one of 2 workers with
 *  probability 2^(1-n), so n is large enough for "more than one home" never to fail by chance. */
const CLIENTS = 16;

/**
 * Calls `ask()` (a fresh connection each time), `n` at once, until `n` distinct pids answered;
 * returns the answers. At once: one request at a time stays on the warm worker (placement).
 */
async function fromPids(ask, n = 2, tries = 100) {
  const byPid = new Map();
  for (let i = 0; i < tries && byPid.size < n; i++) {
    for (const { pid, body } of await Promise.all(Array.from({ length: n }, () => ask()))) byPid.set(pid, body);
  }
  assert.ok(byPid.size >= n, `answers from ${byPid.size} pid(s): ${[...byPid.values()].join(' | ')}`);
  return byPid;
}

/** The first number in a body: every app here puts its pid first. */
const pidOf = (text) => Number(/\d+/.exec(text)[0]);

/** A plain GET on a fresh connection: { pid, body }, pid the last number in the body or `pick(body)`. */
function httpAsk(port, pick = pidOf) {
  return async () => {
    const r = await get(port, '/');
    assert.equal(r.status, 200, r.body);
    return { pid: pick(r.body), body: r.body };
  };
}

describe('real apps, unmodified, under `herdless <file>` (2 workers)', function () {
  this.timeout(120000);
  afterEach(() => killAll());
  let tmp;
  let tls;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-apps-'));
    tls = makeCert(tmp);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  for (const [file, expect] of [
    ['express.js', /^Hello World! from express \d+$/],
    ['koa.js', /^Hello World from koa \d+$/],
    ['hapi.js', /^Hello World from hapi \d+$/],
    ['esm-app.mjs', /^esm \d+ true$/],
  ]) {
    it(file, async () => {
      const port = await freePort();
      const cli = await start(file, { env: { PORT: String(port) }, probe: httpAsk(port) });
      const answers = await fromPids(httpAsk(port));
      for (const body of answers.values()) assert.match(body, expect);
      for (const pid of answers.keys()) assert.ok(childPids(cli.pid).includes(pid), `pid ${pid} is not a worker of herdless`);
      assert.match(cli.log(), new RegExp(`listening on http://\\[?[0-9a-f:.]+\\]?:${port} `));
    });
  }

  it('fastify.js (await fastify.listen({ port, host }))', async () => {
    const port = await freePort();
    const ask = httpAsk(port, (b) => JSON.parse(b).pid);
    await start('fastify.js', { env: { PORT: String(port) }, probe: ask });
    const answers = await fromPids(ask);
    for (const body of answers.values()) assert.equal(JSON.parse(body).from, 'fastify');
  });

  it('NestJS (TypeScript, decorators) through --node-args="--import tsx"', async () => {
    const port = await freePort();
    await start(path.join('nest', 'main.ts'), { flags: ['--node-args=--import tsx'], env: { PORT: String(port) }, cwd: path.join(APPS, 'nest'), probe: httpAsk(port), ms: 90000 });
    const answers = await fromPids(httpAsk(port));
    for (const body of answers.values()) assert.match(body, /^Hello World from nest \d+$/);
  });

  it('a TypeScript app through --node-args="--import tsx"', async () => {
    const port = await freePort();
    const ask = httpAsk(port, (b) => JSON.parse(b).pid);
    await start('typescript-app.ts', { flags: ['--node-args=--import tsx'], env: { PORT: String(port) }, probe: ask });
    const answers = await fromPids(ask);
    for (const body of answers.values()) assert.equal(JSON.parse(body).from, 'typescript /');
  });

  it('https.createServer(opts, handler).listen(port)', async () => {
    const port = await freePort();
    const ask = () =>
      new Promise((resolve, reject) => {
        https.get({ host: '127.0.0.1', port, path: '/', ca: tls.cert, servername: 'localhost', agent: false }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ pid: Number(body.split(' ')[4]), body }));
        }).on('error', reject);
      });
    const cli = await start('https.js', { env: { PORT: String(port), TLS_KEY: tls.keyPath, TLS_CERT: tls.certPath }, probe: ask });
    // The banner says what the app's server speaks (its workers tell the primary).
    assert.match(cli.log(), new RegExp(`listening on https://\\[?[0-9a-f:.]+\\]?:${port} `));
    const answers = await fromPids(ask);
    for (const body of answers.values()) assert.match(body, /^hello over https from \d+ true$/);
  });

  it('http2.createSecureServer(opts).listen(port)', async () => {
    const port = await freePort();
    const ask = () =>
      new Promise((resolve, reject) => {
        const session = http2.connect(`https://localhost:${port}`, { ca: tls.cert, host: '127.0.0.1' });
        session.on('error', reject);
        const req = session.request({ ':path': '/h2' });
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (c) => (body += c));
        req.on('end', () => {
          session.close();
          resolve({ pid: Number(body.split(' ')[4]), body });
        });
        req.on('error', reject);
      });
    const cli = await start('http2-secure.js', { env: { PORT: String(port), TLS_KEY: tls.keyPath, TLS_CERT: tls.certPath }, probe: ask });
    assert.match(cli.log(), new RegExp(`listening on https://\\[?[0-9a-f:.]+\\]?:${port} `));
    const answers = await fromPids(ask);
    for (const body of answers.values()) assert.match(body, /^hello over h2 from \d+ \/h2$/);
  });

  it('a net echo server', async () => {
    const port = await freePort();
    const ask = () =>
      new Promise((resolve, reject) => {
        const c = net.connect(port, '127.0.0.1');
        let got = '';
        c.setEncoding('utf8');
        c.on('error', reject);
        c.on('connect', () => c.write('ping\n'));
        c.on('data', (d) => {
          got += d;
          if (got.includes('ping\n')) {
            c.end();
            resolve({ pid: Number(/hello from (\d+)/.exec(got)[1]), body: got });
          }
        });
      });
    const cli = await start('net-echo.js', { env: { PORT: String(port) }, probe: ask });
    assert.match(cli.log(), new RegExp(`listening on tcp://\\[?[0-9a-f:.]+\\]?:${port} `));
    const answers = await fromPids(ask);
    for (const body of answers.values()) assert.match(body, /^hello from \d+\r\nping\n$/);
  });

  it(`socket.io io.listen(port) with --route client-ip: polling clients from ${CLIENTS} addresses keep their worker`, async () => {
    const port = await freePort();
    await start('socketio.js', { flags: ['--route', 'client-ip'], env: { PORT: String(port) }, probe: () => get(port, '/socket.io/?EIO=4&transport=polling').then((r) => assert.equal(r.status, 200)) });
    const session = (localAddress) =>
      new Promise((resolve) => {
        const agent = new http.Agent({ localAddress, keepAlive: false });
        const s = io(`http://127.0.0.1:${port}`, { transports: ['polling'], agent, forceNew: true, reconnection: false, timeout: 5000 });
        const out = { acks: [], errors: [] };
        const done = () => (s.close(), agent.destroy(), resolve(out));
        // engine.io-client's transport errors carry the HTTP status and the response body.
        const why = (err) => [err.message, err.description?.message ?? err.description, err.context?.responseText].filter((x) => x !== undefined).join(' ');
        s.on('connect_error', (err) => (out.errors.push(why(err)), done()));
        s.on('disconnect', (reason, details) => reason !== 'io client disconnect' && out.errors.push(`disconnect (${reason}) ${details ? why(details) : ''}`));
        s.on('connect', async () => {
          for (let k = 0; k < 4; k++) {
            try {
              out.acks.push(await s.timeout(5000).emitWithAck('echo', k));
            } catch (err) {
              out.errors.push(why(err));
              break;
            }
          }
          done();
        });
      });
    // One client at a time: client-ip passes over a worker whose loop has been busy for
    // 100 ms (stalled), which on a loaded 2-core box our own parallel clients can cause.
    const sessions = [];
    for (let i = 0; i < CLIENTS; i++) sessions.push(await session(`127.0.0.${2 + i}`));
    const homes = new Set();
    sessions.forEach((s, i) => {
      assert.deepEqual(s.errors, [], `client ${i}`);
      assert.deepEqual(s.acks.map((a) => a.value), [0, 1, 2, 3]);
      assert.equal(new Set(s.acks.map((a) => a.pid)).size, 1, `client ${i} moved between workers`);
      assert.match(s.acks[0].address, new RegExp(`127\\.0\\.0\\.${2 + i}$`));
      homes.add(s.acks[0].pid);
    });
    assert.ok(homes.size >= 2, `every session on one worker (${[...homes]})`);
  });

  it("the cluster docs' self-forking app: every herdless worker listens, none forks", async () => {
    const port = await freePort();
    const cli = await start('self-fork-listen.js', { env: { PORT: String(port) }, probe: httpAsk(port) });
    const answers = await fromPids(httpAsk(port));
    assert.deepEqual([...answers.values()].map((b) => Number(b.split(' ')[1])).sort(), [1, 2], 'cluster.worker.id');
    const workers = childPids(cli.pid);
    assert.equal(workers.length, 2);
    assert.deepEqual(workers.flatMap((w) => childPids(w)), [], 'a worker forked');
    assert.doesNotMatch(cli.log() + cli.stdout(), /Primary \d+ is running/);
  });

  it('two servers on two ports; closing one in one worker loses no connection on either', async () => {
    const [port, adminPort] = [await freePort(), await freePort()];
    await start('two-servers.js', { env: { PORT: String(port), ADMIN_PORT: String(adminPort) }, probe: httpAsk(adminPort) });
    const api = await fromPids(httpAsk(port));
    const admin = await fromPids(httpAsk(adminPort));
    for (const body of api.values()) assert.equal(body.split(' ')[2], String(port));
    for (const body of admin.values()) assert.equal(body.split(' ')[2], String(adminPort));
    // Traffic on both ports while one worker closes its admin server.
    let stop = false;
    const failures = [];
    const load = (p) =>
      (async () => {
        let n = 0;
        while (!stop) {
          const r = await get(p, '/').catch((e) => ({ status: e.code || e.message }));
          if (r.status !== 200) failures.push(`${p}: ${r.status}`);
          n++;
        }
        return n;
      })();
    const loads = [load(port), load(adminPort), load(adminPort)];
    await sleep(200);
    const closed = await get(adminPort, '/close');
    const closer = pidOf(closed.body);
    await sleep(1000);
    stop = true;
    const counts = await Promise.all(loads);
    assert.deepEqual(failures, []);
    assert.ok(counts.every((n) => n > 5), `too few requests: ${counts}`);
    // The closer still serves the API, and no longer the admin port.
    const apiAfter = await fromPids(httpAsk(port), 2);
    assert.ok(apiAfter.has(closer), 'the worker that closed its admin server left the API port too');
    for (let i = 0; i < 20; i++) {
      const r = await get(adminPort, '/');
      assert.notEqual(pidOf(r.body), closer);
    }
  });
});
