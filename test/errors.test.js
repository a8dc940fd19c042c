'use strict';
// Failing starts: each error code from a real failure, and nothing left running after it.
const assert = require('node:assert/strict');
const net = require('node:net');
const { Dispatcher, ErrorCodes } = require('..');
const { assertNoChildren } = require('./helpers');
const fs = require('node:fs');
const path = require('node:path');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };

describe('start errors', function () {
  afterEach(() => assertNoChildren());

  const invalid = [
    [{ min: 0, app, listen: local }, 'min'],
    [{ min: 3, max: 2, app, listen: local }, 'max'],
    [{ min: 1, listen: local }, 'app'],
    [{ min: 1, app: './no/such/module.js', listen: local }, 'app'],
    [{ min: 1, app }, 'listen'],
    [{ min: 1, app, listen: { port: 70000 } }, 'listen.port'],
    [{ min: 1, app, listen: { host: 'x' } }, 'listen'],
    [{ min: 1, app, listen: local, mode: 'fastest' }, 'mode'],
    [{ min: 1, app, listen: { path: '/tmp/x.sock' }, mode: 'reuseport' }, 'mode'],
    [{ min: 1, app, listen: local, scale: { idleTimeout: -1 } }, 'scale.idleTimeout'],
    [{ min: 1, app, listen: local, scale: { idle: 5 } }, 'scale.idle'],
  ];
  for (const [options, option] of invalid) {
    it(`rejects a bad "${option}" with ERR_HERDLESS_INVALID_OPTION naming it`, async () => {
      await assert.rejects(Dispatcher.start(options), (err) => {
        assert.equal(err.code, 'ERR_HERDLESS_INVALID_OPTION');
        assert.ok(err.message.includes(`"${option}"`), err.message);
        return true;
      });
    });
  }

  it('reports a port in use as EADDRINUSE', async () => {
    const taken = net.createServer();
    await new Promise((r) => taken.listen(0, '127.0.0.1', r));
    try {
      await assert.rejects(Dispatcher.start({ min: 2, app, listen: { port: taken.address().port, host: '127.0.0.1' } }), (err) => {
        assert.equal(err.code, 'EADDRINUSE');
        assert.equal(err.syscall, 'bind');
        assert.match(err.message, /127\.0\.0\.1/);
        return true;
      });
    } finally {
      taken.close();
    }
  });

  it('reports an app that throws at load as ERR_HERDLESS_APP_LOAD with its message and stack', async () => {
    const t0 = Date.now();
    await assert.rejects(Dispatcher.start({ min: 2, app: require.resolve('./fixtures/throws.js'), listen: local }), (err) => {
      assert.equal(err.code, 'ERR_HERDLESS_APP_LOAD');
      assert.match(err.message, /the database URL is missing/);
      assert.match(err.message, /throws\.js:\d+/);
      return true;
    });
    assert.ok(Date.now() - t0 < 5000, 'a load error is not retried');
  });

  it('reports an app that exports nothing usable as ERR_HERDLESS_APP_LOAD', async () => {
    await assert.rejects(Dispatcher.start({ min: 1, app: require.resolve('./fixtures/nothing.js'), listen: local }), (err) => {
      assert.equal(err.code, 'ERR_HERDLESS_APP_LOAD');
      assert.match(err.message, /request listener/);
      return true;
    });
  });

  it('reports workers that die before ready as ERR_HERDLESS_CRASH_LOOP, after a bounded number of tries', async () => {
    await assert.rejects(Dispatcher.start({ min: 1, app: require.resolve('./fixtures/exit-at-load.js'), listen: local }), {
      code: 'ERR_HERDLESS_CRASH_LOOP',
    });
  });

  it('frees the port after a failed start', async () => {
    const port = await new Promise((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    await assert.rejects(Dispatcher.start({ min: 1, app: require.resolve('./fixtures/throws.js'), listen: { port, host: '127.0.0.1' } }));
    const again = net.createServer();
    await new Promise((resolve, reject) => again.once('error', reject).listen(port, '127.0.0.1', resolve));
    again.close();
  });

  it('documents every error code in the README', () => {
    const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
    for (const code of Object.keys(ErrorCodes)) assert.ok(readme.includes(`\`${code}\``), `${code} missing from README`);
    for (const [, code] of readme.matchAll(/`(ERR_HERDLESS_[A-Z_]+)`/g)) assert.ok(code in ErrorCodes, `README lists unknown ${code}`);
  });
});
