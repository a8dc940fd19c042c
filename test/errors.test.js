'use strict';
// Failing starts (issue #2): each error code from a real failure, and nothing left behind
// afterwards: no child process, no open fd, no bound port.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { Dispatcher } = require('..');
const { assertNoChildren, childrenOf, listeningSockets } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };

/** A free TCP port on 127.0.0.1 (bound, read, released). */
function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * start(options) must reject; `check(err)` asserts on the error. Afterwards no child of this
 * process may remain and no listener may survive. (fds are checked by their own test below.)
 */
async function failsCleanly(options, check) {
  const listeners = listeningSockets(process.pid).length;
  let caught;
  await assert.rejects(Dispatcher.start(options), (err) => {
    caught = err;
    check(err);
    return true;
  });
  await assertNoChildren(2000);
  assert.equal(listeningSockets(process.pid).length, listeners, 'a listener survived the failed start');
  return caught;
}

describe('start errors', function () {
  let tmp;
  before(async () => {
    // Warm up once: the first start in a process opens things that live as long as it does
    // (libuv's SIGCHLD pipe, the addon), which are not leaks of a failed start.
    const d = await Dispatcher.start({ min: 1, max: 1, app, listen: local });
    await d.close();
    await assertNoChildren();
  });
  beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-'))));
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const invalid = [
    ['min 0', { min: 0, app, listen: local }, 'min'],
    ['min not a number', { min: 'two', app, listen: local }, 'min'],
    ['max < min', { min: 3, max: 2, app, listen: local }, 'max'],
    ['missing app', { min: 1, listen: local }, 'app'],
    ['app that does not exist', { min: 1, app: './no/such/module.js', listen: local }, 'app'],
    // Without `listen` the app's own listen() calls say where, in mode 'dispatch' only.
    ['missing listen in mode herd', { min: 1, app, mode: 'herd' }, 'listen'],
    ['listen null', { min: 1, app, listen: null }, 'listen'],
    ['listen a string', { min: 1, app, listen: 'localhost:80' }, 'listen'],
    ['listen an empty array', { min: 1, app, listen: [] }, 'listen'],
    ['listen with no port, path or fd', { min: 1, app, listen: { host: 'x' } }, 'listen'],
    ['listen port out of range', { min: 1, app, listen: { port: 70000 } }, 'listen.port'],
    ['listen port and path both', { min: 1, app, listen: { port: 0, path: '/tmp/x.sock' } }, 'listen'],
    ['unknown mode', { min: 1, app, listen: local, mode: 'fastest' }, 'mode'],
    ['negative scale.idleTimeout', { min: 1, app, listen: local, scale: { idleTimeout: -1 } }, 'scale.idleTimeout'],
    ['unknown scale key', { min: 1, app, listen: local, scale: { idle: 5 } }, 'scale.idle'],
    ['maxConnectionsPerWorker 0', { min: 1, app, listen: local, maxConnectionsPerWorker: 0 }, 'maxConnectionsPerWorker'],
    ['negative stealAfter', { min: 1, app, listen: local, stealAfter: -1 }, 'stealAfter'],
    ['fractional stealAfter', { min: 1, app, listen: local, stealAfter: 2.5 }, 'stealAfter'],
    ['reuseport on a unix socket', { min: 1, app, listen: { path: '/tmp/herdless-x.sock' }, mode: 'reuseport' }, 'mode'],
  ];
  for (const [what, options, option] of invalid) {
    it(`rejects ${what} with ERR_HERDLESS_INVALID_OPTION naming "${option}"`, async () => {
      await failsCleanly(options, (err) => {
        assert.ok(err instanceof Error);
        assert.equal(err.code, 'ERR_HERDLESS_INVALID_OPTION', `${err.code}: ${err.message}`);
        assert.ok(err.message.includes(option), `message does not name ${option}: ${err.message}`);
      });
    });
  }

  it('reports a port in use as EADDRINUSE (2 workers requested), and starts none', async () => {
    const taken = net.createServer();
    await new Promise((r) => taken.listen(0, '127.0.0.1', r));
    const port = taken.address().port;
    try {
      await failsCleanly({ min: 2, max: 2, app, listen: { port, host: '127.0.0.1' } }, (err) => {
        assert.equal(err.code, 'EADDRINUSE', `${err.code}: ${err.message}`);
        assert.equal(err.syscall, 'bind');
        assert.match(err.message, new RegExp(String(port)));
      });
    } finally {
      taken.close();
    }
  });

  it('reports EADDRINUSE when the second of two listeners fails, and releases the first', async () => {
    const taken = net.createServer();
    await new Promise((r) => taken.listen(0, '127.0.0.1', r));
    const first = await freePort();
    try {
      await failsCleanly({ min: 1, max: 1, app, listen: [{ port: first, host: '127.0.0.1' }, { port: taken.address().port, host: '127.0.0.1' }] }, (err) =>
        assert.equal(err.code, 'EADDRINUSE'),
      );
    } finally {
      taken.close();
    }
    const again = net.createServer();
    await new Promise((resolve, reject) => again.once('error', reject).listen(first, '127.0.0.1', resolve));
    again.close();
  });

  it('reports EACCES for a privileged port (run as an unprivileged user)', function () {
    const start = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8'));
    assert.ok(start > 1, 'this kernel lets anyone bind port 1: EACCES cannot happen here');
    // As root, drop to "nobody" in a child so that the bind really is refused.
    const asNobody = process.getuid() === 0 ? { uid: 65534, gid: 65534 } : {};
    const script = `require(${JSON.stringify(path.join(__dirname, '..'))}).Dispatcher.start({ min: 1, app: ${JSON.stringify(app)}, listen: { port: 1, host: '127.0.0.1' } })
      .then(() => console.log('started'), (err) => console.log(err.code, err.syscall))`;
    const out = execFileSync(process.execPath, ['-e', script], { ...asNobody, encoding: 'utf8', cwd: os.tmpdir() }).trim();
    assert.equal(out, 'EACCES bind');
  });

  it('reports an app that throws at load as ERR_HERDLESS_APP_LOAD, with its message and stack', async () => {
    const t0 = Date.now();
    await failsCleanly({ min: 2, max: 2, app: require.resolve('./fixtures/throws.js'), listen: local }, (err) => {
      assert.equal(err.code, 'ERR_HERDLESS_APP_LOAD', `${err.code}: ${err.message}`);
      assert.match(err.message, /boom at load: the database URL is missing/);
      assert.match(err.message, /throws\.js:\d+/, 'the stack is missing');
    });
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms: a load error is not worth retrying`);
  });

  it('reports a CommonJS app that exports nothing usable as ERR_HERDLESS_APP_LOAD', async () => {
    await failsCleanly({ min: 1, max: 1, app: require.resolve('./fixtures/nothing.js'), listen: local }, (err) => {
      assert.equal(err.code, 'ERR_HERDLESS_APP_LOAD', `${err.code}: ${err.message}`);
      assert.match(err.message, /export/);
    });
  });

  it('reports an ES module with no default export as ERR_HERDLESS_APP_LOAD', async () => {
    await failsCleanly({ min: 1, max: 1, app: require.resolve('./fixtures/nothing.mjs'), listen: local }, (err) => {
      assert.equal(err.code, 'ERR_HERDLESS_APP_LOAD', `${err.code}: ${err.message}`);
    });
  });

  it('reports a unix socket in a missing directory with the system code', async () => {
    await failsCleanly({ min: 1, max: 1, app, listen: { path: path.join(tmp, 'no', 'such', 'dir.sock') } }, (err) => {
      assert.equal(err.code, 'ENOENT', `${err.code}: ${err.message}`);
    });
  });

  it('reports workers that die before ready as ERR_HERDLESS_CRASH_LOOP', async () => {
    await failsCleanly({ min: 1, max: 1, app: require.resolve('./fixtures/exit-at-load.js'), listen: local }, (err) =>
      assert.equal(err.code, 'ERR_HERDLESS_CRASH_LOOP', `${err.code}: ${err.message}`),
    );
  });

  it('frees the port after a failed start', async () => {
    const port = await freePort();
    await failsCleanly({ min: 1, max: 1, app: require.resolve('./fixtures/throws.js'), listen: { port, host: '127.0.0.1' } }, (err) =>
      assert.equal(err.code, 'ERR_HERDLESS_APP_LOAD'),
    );
    const again = net.createServer();
    await new Promise((resolve, reject) => again.once('error', reject).listen(port, '127.0.0.1', resolve));
    again.close();
  });

  it('leaves no children behind across all the failures above', () => {
    assert.deepEqual(childrenOf(process.pid), []);
  });
  // Every code is in docs/configuration.md's catalogue: test/docs-tables.test.js.
});
