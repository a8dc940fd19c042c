'use strict';
// Issue #16, item 1: an unmodified app that calls listen() itself. Each listen() goes to the
// primary, which opens the address once and dispatches its connections to the workers whose
// app listens on it; the app's server behaves as in plain Node.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const https = require('node:https');
const { spawnSync } = require('node:child_process');
const { Dispatcher } = require('..');
const { get, request, hammer, assertAllOk, makeCert, waitFor } = require('./helpers');

const fixture = (name) => require.resolve(`./fixtures/app-listen/${name}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Ports the primary listens on now (its app-opened listeners), from stats(). */
const ports = (d) => d.stats().listeners.map((l) => Number(/:(\d+)$/.exec(l.address)?.[1]));

/** Concurrent slow requests on fresh connections: spread over the pool; returns the answers. */
async function spread(port, n = 12, urlPath = '/slow?ms=150') {
  const results = await hammer(n, n, () => get(port, urlPath));
  assertAllOk(results);
  return results.map((r) => JSON.parse(r.text));
}

/**
 * spread() again until `want` workers have answered (at most 5 rounds); every answer. A burst
 * arrives within a millisecond, and a worker whose loop is busy then (one just started, on a
 * loaded machine) is passed over for that burst.
 */
async function spreadOver(port, want, n = 12, urlPath = '/slow?ms=150') {
  const answers = [];
  for (let round = 0; round < 5 && new Set(answers.map((a) => a.pid)).size < want; round++) answers.push(...(await spread(port, n, urlPath)));
  return answers;
}

function portInUse() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => resolve(srv));
  });
}

describe('listen() in a worker goes to the primary', function () {
  this.timeout(30000);
  let d;
  let tmp;
  beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-al-'))));
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('listen(port, host, cb): served from every worker through the accept thread, as in plain Node', async () => {
    d = await Dispatcher.start({ app: fixture('plain.js'), min: 2, max: 2, env: { PORT: '0', HOST: '127.0.0.1' } });
    const [port] = ports(d);
    assert.ok(port > 0);
    assert.deepEqual(d.address(), { address: '127.0.0.1', family: 'IPv4', port });
    const answers = await spreadOver(port, 2);
    const pids = new Set(answers.map((a) => a.pid));
    const workers = d.workers().map((w) => w.pid);
    assert.equal(pids.size, 2, `served by ${[...pids]}`);
    for (const pid of pids) assert.ok(workers.includes(pid));
    for (const a of answers) {
      // listen(0) in each worker: the same port for all, the one the primary opened.
      assert.deepEqual(a.address, { address: '127.0.0.1', family: 'IPv4', port });
      assert.equal(a.listening, true);
      assert.equal(a.localPort, port);
      assert.equal(a.remoteAddress, '127.0.0.1');
      assert.equal(a.calls, 1, 'the callback ran once');
      assert.equal(a.events, 1, "'listening' fired once");
    }
    // The primary holds the only listening socket: no worker listens on anything itself.
    assert.ok(d.stats().dispatcher.accepted >= answers.length);
  });

  it('listen(port) with no host listens on every interface, as Node ("::")', async () => {
    d = await Dispatcher.start({ app: fixture('plain.js'), min: 1, max: 1, env: { PORT: '0' } });
    const [port] = ports(d);
    const [a] = await spread(port, 1, '/');
    assert.equal(a.address.address, '::');
    assert.equal(a.address.family, 'IPv6');
    assert.equal(a.address.port, port);
  });

  it('listen(options, cb): the options-object form', async () => {
    d = await Dispatcher.start({ app: fixture('options.js'), min: 2, max: 2 });
    const [port] = ports(d);
    assert.equal(d.stats().listeners[0].backlog, 100);
    const a = JSON.parse((await get(port)).text);
    assert.deepEqual(a.address, { address: '127.0.0.1', family: 'IPv4', port });
    assert.equal(a.calls, 1);
  });

  it('listen(path): a unix socket opened by the primary, removed when the last worker closes', async () => {
    const sock = path.join(tmp, 'app.sock');
    d = await Dispatcher.start({ app: fixture('unix.js'), min: 2, max: 2, env: { SOCK: sock } });
    assert.ok(fs.statSync(sock).isSocket());
    const results = await hammer(8, 8, () => request({ socketPath: sock, path: '/', headers: { connection: 'close' } }));
    assertAllOk(results);
    for (const r of results) assert.equal(JSON.parse(r.text).address, sock);
    await d.close({ timeout: 2000 });
    d = undefined;
    assert.equal(fs.existsSync(sock), false, 'the socket file is removed');
  });

  it('two servers on two ports: each dispatched only to the workers that listen on it', async () => {
    // Slot 0 opens the admin server too; slots 1 and 2 only the API.
    d = await Dispatcher.start({ app: fixture('two.js'), min: 3, max: 3, env: { ADMIN_SLOTS: '0' } });
    const [apiPort, adminPort] = ports(d);
    assert.notEqual(apiPort, adminPort);
    const admin = await spread(adminPort, 12);
    const slot0 = d.workers().find((w) => w.slot === 0).pid;
    for (const a of admin) {
      assert.equal(a.name, 'admin');
      assert.equal(a.pid, slot0, 'an admin connection reached a worker that does not listen on it');
      assert.equal(a.port, adminPort);
    }
    const api = await spreadOver(apiPort, 2, 15);
    for (const a of api) assert.equal(a.name, 'api');
    assert.ok(new Set(api.map((a) => a.pid)).size >= 2, 'the API is served by several workers');
  });

  it('stealing never moves a connection to a worker that does not listen on its listener', async () => {
    d = await Dispatcher.start({ app: fixture('two.js'), min: 2, max: 2, env: { ADMIN_SLOTS: '0' } });
    const [, adminPort] = ports(d);
    const slot0 = d.workers().find((w) => w.slot === 0).pid;
    // Slot 0's loop is held for 400 ms while admin connections queue for it: a free worker
    // (slot 1) is there, but it does not listen on the admin port.
    const blocked = get(adminPort, '/block?ms=400');
    await sleep(50);
    const queued = await Promise.all(Array.from({ length: 6 }, () => get(adminPort, '/')));
    for (const r of [await blocked, ...queued]) assert.equal(JSON.parse(r.text).pid, slot0);
  });

  it('two listen(0) in one worker are two ports; every worker shares them', async () => {
    d = await Dispatcher.start({ app: fixture('two.js'), min: 2, max: 2 });
    const [apiPort, adminPort] = ports(d);
    assert.equal(ports(d).length, 2);
    for (const [port, name] of [[apiPort, 'api'], [adminPort, 'admin']]) {
      const answers = await spreadOver(port, 2);
      assert.ok(answers.every((a) => a.name === name && a.port === port));
      assert.equal(new Set(answers.map((a) => a.pid)).size, 2);
    }
  });

  it('exclusive: true gives each worker a socket of its own, as under cluster (listen(0): a port each; a fixed port: EADDRINUSE for the second)', async () => {
    d = await Dispatcher.start({ app: fixture('exclusive.js'), min: 2, max: 2 });
    await waitFor(() => ports(d).length === 2, 5000, 20, 'two listeners');
    const owners = [];
    for (const port of ports(d)) {
      const answers = await Promise.all(Array.from({ length: 6 }, () => get(port, '/').then((r) => JSON.parse(r.text))));
      assert.ok(answers.every((a) => a.port === port && a.pid === answers[0].pid), `port ${port} is one worker's own`);
      owners.push(answers[0].pid);
    }
    assert.notEqual(owners[0], owners[1]);
    await d.close({ timeout: 2000 });
    const fixed = await portInUse();
    const port = fixed.address().port;
    fixed.close();
    d = await Dispatcher.start({ app: fixture('exclusive.js'), min: 2, max: 2, env: { PORT_X: String(port) } });
    await waitFor(() => ports(d).length === 2, 5000, 20, 'the owner and the report');
    const seen = await Promise.all(ports(d).map(async (p) => JSON.parse((await get(p, '/')).text)));
    const owner = seen.find((a) => a.port === port);
    const report = seen.find((a) => a.error);
    assert.ok(owner && report, JSON.stringify(seen));
    assert.equal(report.error, 'EADDRINUSE');
    assert.notEqual(owner.pid, report.pid);
  });

  it("server.close() of one of two servers loses no connection of the other; its listener closes once nobody listens", async () => {
    d = await Dispatcher.start({ app: fixture('two.js'), min: 2, max: 2, env: { CLOSE_ADMIN_MS: '1500' } });
    const [apiPort, adminPort] = ports(d);
    // API traffic all through the moment the admin server closes in every worker.
    const until = Date.now() + 2500;
    const results = await hammer(400, 4, async () => (Date.now() < until ? get(apiPort, '/') : null));
    assertAllOk(results);
    assert.ok(results.filter(Boolean).length > 10);
    await waitFor(() => ports(d).length === 1, 3000, 20, 'the admin listener closed');
    assert.deepEqual(ports(d), [apiPort]);
    await assert.rejects(get(adminPort, '/', { timeout: 2000 }), (err) => err.code === 'ECONNREFUSED');
  });

  it('a net echo server', async () => {
    d = await Dispatcher.start({ app: fixture('echo.js'), min: 2, max: 2 });
    const [port] = ports(d);
    const echo = () =>
      new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => s.end('hello'));
        let data = '';
        s.on('data', (c) => (data += c));
        s.on('end', () => resolve(data));
        s.on('error', reject);
      });
    const replies = await Promise.all(Array.from({ length: 8 }, echo));
    for (const r of replies) assert.match(r, /^\d+ hello$/);
    const pids = new Set(replies.map((r) => r.split(' ')[0]));
    assert.ok(pids.size >= 1);
  });

  it('an https server', async () => {
    makeCert(tmp);
    d = await Dispatcher.start({ app: fixture('https.js'), min: 2, max: 2, env: { CERT_DIR: tmp } });
    const [port] = ports(d);
    const text = await new Promise((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/', rejectUnauthorized: false, agent: false }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve(body));
        })
        .on('error', reject);
    });
    assert.match(text, /^secure \d+$/);
  });

  it('EADDRINUSE reaches the app as the same error Node emits', async () => {
    const taken = await portInUse();
    const port = taken.address().port;
    try {
      const plainOut = path.join(tmp, 'plain');
      const herdOut = path.join(tmp, 'herd');
      fs.mkdirSync(plainOut);
      fs.mkdirSync(herdOut);
      for (const host of ['127.0.0.1', undefined]) {
        const env = { TAKEN: String(port), ...(host ? { HOST: host } : {}) };
        spawnSync(process.execPath, [fixture('taken.js')], { env: { ...process.env, ...env, OUT: plainOut }, timeout: 10000 });
        const [plainFile] = fs.readdirSync(plainOut);
        const plain = JSON.parse(fs.readFileSync(path.join(plainOut, plainFile), 'utf8'));
        d = await Dispatcher.start({ app: fixture('taken.js'), min: 1, max: 1, env: { ...env, OUT: herdOut } });
        const seen = JSON.parse((await get(ports(d)[ports(d).length - 1])).text);
        assert.equal(plain.code, 'EADDRINUSE');
        assert.deepEqual(seen, plain);
        await d.close({ timeout: 2000 });
        d = undefined;
        for (const dir of [plainOut, herdOut]) for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f));
      }
    } finally {
      taken.close();
    }
  });

  it('an app whose only listen() fails (and handles the error): ERR_HERDLESS_APP_LOAD saying so within startTimeout', async () => {
    const taken = await portInUse();
    try {
      const env = { TAKEN: String(taken.address().port), HOST: '127.0.0.1', OUT: tmp, NO_FALLBACK: '1' };
      await assert.rejects(Dispatcher.start({ app: fixture('taken.js'), min: 1, max: 1, startTimeout: 1500, env }), (err) => {
        assert.equal(err.code, 'ERR_HERDLESS_APP_LOAD', err.message);
        assert.match(err.message, /called listen\(\) 1 time\(s\) but none succeeded within startTimeout \(1500 ms\)/);
        return true;
      });
    } finally {
      taken.close();
    }
  });

  it('an async bootstrap that listens after loading is waited for', async () => {
    d = await Dispatcher.start({ app: fixture('late.js'), min: 2, max: 2 });
    const [port] = ports(d);
    assert.match((await get(port)).text, /^\d+$/);
  });

  it('an app that neither exports a handler nor listens within startTimeout: ERR_HERDLESS_APP_LOAD saying so', async () => {
    await assert.rejects(Dispatcher.start({ app: fixture('nothing-late.js'), min: 1, max: 1, startTimeout: 1500 }), (err) => {
      assert.equal(err.code, 'ERR_HERDLESS_APP_LOAD', err.message);
      assert.match(err.message, /neither called listen\(\) within startTimeout \(1500 ms\)/);
      return true;
    });
  });

  it('a handler app without a listen address is served on $PORT, as the CLI always did', async () => {
    const srv = await portInUse();
    const port = srv.address().port;
    srv.close();
    await sleep(50);
    d = await Dispatcher.start({ app: require.resolve('./fixtures/pid.js'), min: 1, max: 1, env: { PORT: String(port) } });
    assert.equal(ports(d)[0], port);
    assert.match((await get(port)).text, /^\d+$/);
  });

  it('a worker that exits leaves its listeners; the last one out closes them', async () => {
    d = await Dispatcher.start({ app: fixture('plain.js'), min: 1, max: 1, env: { PORT: '0', HOST: '127.0.0.1' } });
    const [port] = ports(d);
    await get(port);
    const before = d.workers()[0].pid;
    process.kill(before, 'SIGKILL');
    // Its replacement listens anew (port 0: a new port), the old listener is gone.
    await waitFor(() => d.workers().some((w) => w.pid !== before && w.state === 'ready'), 10000, 20, 'a replacement');
    await waitFor(() => ports(d).length === 1 && ports(d)[0] !== port, 5000, 20, 'the old listener closed');
    await get(ports(d)[0]);
  });
});

describe('zero-config CLI: herdless server.js', function () {
  this.timeout(30000);
  const { runCli, started, childPids, killAll } = require('./ship/cli-proc');
  afterEach(() => killAll());

  it('serves whatever the app listens on, from every worker, with no --port', async () => {
    const cli = runCli(['-w', '2', fixture('plain.js')], { env: { PORT: '0', HOST: '127.0.0.1' } });
    const { port, size } = await started(cli);
    assert.equal(size, 2);
    const answers = await spreadOver(port, 2);
    const pids = new Set(answers.map((a) => a.pid));
    assert.equal(pids.size, 2, `served by ${[...pids]}`);
    const workers = childPids(cli.pid);
    for (const pid of pids) assert.ok(workers.includes(pid), `${pid} is not a worker of the CLI`);
    assert.ok(answers.every((a) => a.address.port === port && a.calls === 1));
    cli.child.kill('SIGTERM');
    assert.deepEqual(await cli.exited, { code: 0, signal: null });
  });

  it('with --port given, an app that listens itself serves that port too, from its first server', async () => {
    const cli = runCli(['-w', '2', '--host', '127.0.0.1', '--port', '0', fixture('plain.js')], { env: { HOST: '127.0.0.1' } });
    // The configured port first, then the app's own.
    const port = Number((await cli.waitLog(/listening on http:\/\/127\.0\.0\.1:(\d+) and 1 more \(2 workers/))[1]);
    const a = JSON.parse((await get(port)).text);
    assert.equal(a.localPort, port);
    assert.notEqual(a.address.port, port, "address() is the app's own listener");
  });

  it('two ports, both served; the banner names the first and counts the rest', async () => {
    const cli = runCli(['-w', '2', fixture('two.js')]);
    const m = await cli.waitLog(/listening on http:\/\/127\.0\.0\.1:(\d+) and 1 more \(2 workers/);
    const api = JSON.parse((await get(Number(m[1]))).text);
    assert.equal(api.name, 'api');
  });

  it('SIGUSR2 hands the app-opened listeners to the new primary: listen(0) keeps its port', async () => {
    const cli = runCli(['-w', '2', fixture('plain.js')], { env: { PORT: '0', HOST: '127.0.0.1' } });
    const { port } = await started(cli);
    const before = JSON.parse((await get(port)).text).pid;
    cli.child.kill('SIGUSR2');
    const newPid = Number((await cli.waitLog(/stopped; pid (\d+) serves now/, 30000))[1]);
    assert.deepEqual(await cli.exited, { code: 0, signal: null }, cli.log());
    const after = JSON.parse((await get(port)).text);
    assert.notEqual(after.pid, before);
    const stat = fs.readFileSync(`/proc/${after.pid}/stat`, 'utf8');
    assert.equal(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]), newPid, 'served by a worker of the new primary');
    assert.equal(after.address.port, port);
  });

  it('an app that neither exports a handler nor listens: ERR_HERDLESS_APP_LOAD within --start-timeout, exit 1', async () => {
    const cli = runCli(['-w', '1', '--start-timeout', '1500', require.resolve('./fixtures/nothing.js')]);
    const { code } = await cli.exited;
    assert.equal(code, 1, cli.log());
    assert.match(cli.log(), /ERR_HERDLESS_APP_LOAD/);
    assert.match(cli.log(), /neither called listen\(\) within startTimeout/);
  });
});

describe('app-opened listeners get what configured ones get', function () {
  this.timeout(30000);
  let d;
  let tmp;
  beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-al-'))));
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('reload() under load keeps the listener (same port), with no failed request; resize() grows onto it', async () => {
    d = await Dispatcher.start({ app: fixture('plain.js'), min: 2, max: 3, env: { PORT: '0', HOST: '127.0.0.1' } });
    const [port] = ports(d);
    const old = d.workers().map((w) => w.pid);
    let stop = false;
    const load = hammer(100000, 4, async () => (stop ? null : get(port, '/')));
    await d.reload();
    await sleep(200);
    stop = true;
    const results = await load;
    assertAllOk(results);
    assert.deepEqual(ports(d), [port]);
    const answers = await spread(port);
    for (const a of answers) assert.ok(!old.includes(a.pid), 'served by the new workers');
    await d.resize(3);
    const pids = new Set((await spreadOver(port, 3, 18, '/slow?ms=300')).map((a) => a.pid));
    assert.equal(pids.size, 3, `served by ${[...pids]}`);
  });

  it('proxyProtocol and route: client-ip apply to them', async () => {
    d = await Dispatcher.start({ app: fixture('plain.js'), min: 2, max: 2, proxyProtocol: true, route: 'client-ip', env: { PORT: '0', HOST: '127.0.0.1' } });
    const [port] = ports(d);
    const viaProxy = (client) =>
      new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => s.write(`PROXY TCP4 ${client} 127.0.0.1 5555 ${port}\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
        let data = '';
        s.on('data', (c) => (data += c));
        s.on('end', () => resolve(JSON.parse(data.slice(data.indexOf('\r\n\r\n') + 4))));
        s.on('error', reject);
      });
    const a = await viaProxy('203.0.113.7');
    assert.equal(a.remoteAddress, '203.0.113.7');
    const same = new Set();
    for (let i = 0; i < 6; i++) same.add((await viaProxy('198.51.100.9')).pid);
    assert.equal(same.size, 1, 'one client address, one worker');
  });

  it('http2, plain (h2c) and secure', async () => {
    const http2 = require('node:http2');
    for (const secure of [false, true]) {
      if (secure) makeCert(tmp);
      d = await Dispatcher.start({ app: fixture('h2.js'), min: 2, max: 2, env: secure ? { CERT_DIR: tmp } : {} });
      const [port] = ports(d);
      const text = await new Promise((resolve, reject) => {
        const client = http2.connect(`${secure ? 'https' : 'http'}://127.0.0.1:${port}`, { rejectUnauthorized: false });
        client.on('error', reject);
        const req = client.request({ ':path': '/' });
        let body = '';
        req.on('data', (c) => (body += c));
        req.on('end', () => {
          client.close();
          resolve(body);
        });
        req.end();
      });
      assert.match(text, /^h2 \d+ 2\.0$/);
      await d.close({ timeout: 2000 });
      d = undefined;
    }
  });
});
