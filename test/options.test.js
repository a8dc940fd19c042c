'use strict';
// Strict option names: a typo in Dispatcher.start() or in a --config file fails the start
// with ERR_HERDLESS_INVALID_OPTION naming the option and the closest known one, instead of
// silently leaving that option at its default.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Dispatcher } = require('..');
const { runCli, started, killAll } = require('./ship/cli-proc');
const { get } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };
// The options table in docs/configuration.md is checked against OPTION_NAMES by test/docs-tables.test.js.

/** Asserts `promise` rejects with ERR_HERDLESS_INVALID_OPTION for `option`, suggesting `suggestion`. */
async function rejectsUnknown(promise, option, suggestion) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, 'ERR_HERDLESS_INVALID_OPTION', err.message);
    assert.equal(err.option, option);
    assert.equal(err.suggestion, suggestion);
    assert.ok(err.message.includes(`"${option}"`), err.message);
    if (suggestion) assert.ok(err.message.includes(`did you mean ${suggestion}?`), err.message);
    return true;
  });
}

describe('strict option names', function () {
  afterEach(() => killAll());

  it('a typo in Dispatcher.start() options names it and the closest known option', async () => {
    await rejectsUnknown(Dispatcher.start({ app, listen: local, maxConnectionPerWorker: 10 }), 'maxConnectionPerWorker', 'maxConnectionsPerWorker');
    await rejectsUnknown(Dispatcher.start({ app, listen: local, maxrequestsperworker: 10 }), 'maxrequestsperworker', 'maxRequestsPerWorker');
    await rejectsUnknown(Dispatcher.start({ app, listen: local, stealAftre: 1 }), 'stealAftre', 'stealAfter');
  });

  it('nested objects too: a listen entry, scale and metrics', async () => {
    await rejectsUnknown(Dispatcher.start({ app, listen: { port: 0, hots: '127.0.0.1' } }), 'listen.hots', 'listen.host');
    await rejectsUnknown(Dispatcher.start({ app, listen: [local, { path: '/tmp/x.sock', mdoe: 0o600 }] }), 'listen[1].mdoe', 'listen[1].mode');
    await rejectsUnknown(Dispatcher.start({ app, listen: local, scale: { idleTimout: 100 } }), 'scale.idleTimout', 'scale.idleTimeout');
    await rejectsUnknown(Dispatcher.start({ app, listen: local, metrics: { prot: 0 } }), 'metrics.prot', 'metrics.port');
  });

  it('a name like no known one gets the list of known options instead of a guess', async () => {
    await assert.rejects(Dispatcher.start({ app, listen: local, tls: { key: 'k' } }), (err) => {
      assert.equal(err.code, 'ERR_HERDLESS_INVALID_OPTION');
      assert.equal(err.option, 'tls');
      assert.equal(err.suggestion, undefined);
      assert.match(err.message, /known options: app, listen, min, max/);
      return true;
    });
  });

  it('every option at once is accepted, and the pool serves', async () => {
    const me = os.userInfo();
    const d = await Dispatcher.start({
      app,
      listen: [local, { ...local, backlog: 64 }],
      min: 1,
      max: 2,
      mode: 'dispatch',
      backlog: 128,
      maxConnectionsPerWorker: 1000,
      startTimeout: 20000,
      env: { HERDLESS_TEST: '1' },
      execArgv: ['--no-warnings'],
      scale: { interval: 500, idleTimeout: 5000 },
      maxRequestsPerWorker: 100000,
      maxMemory: 2 ** 31,
      stallTimeout: 20000,
      stealAfter: 5,
      metrics: { port: 0, host: '127.0.0.1' },
      headersTimeout: 20000,
      requestTimeout: 30000,
      keepAliveTimeout: 5000,
      user: me.username, // themselves: no switch, as root or not
      group: me.gid,
    });
    try {
      assert.equal((await get(d.address().port)).status, 200);
    } finally {
      await d.close();
    }
  });

  describe('--config', function () {
    let tmp;
    beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-opts-'))));
    afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it('a typo in a config file: exit 2, the code, the name, the file and the suggestion', async () => {
      const file = path.join(tmp, 'herdless.json');
      fs.writeFileSync(file, JSON.stringify({ app, listen: local, maxConnectionPerWorker: 4 }));
      const cli = runCli(['--config', file]);
      const { code } = await cli.exited;
      assert.equal(code, 2, cli.log());
      assert.match(cli.log(), /ERR_HERDLESS_INVALID_OPTION/);
      assert.ok(cli.log().includes(`Unknown option "maxConnectionPerWorker" in --config ${file}: did you mean maxConnectionsPerWorker?`), cli.log());
    });

    it("the CLI's own names (log, shutdownTimeout, metrics) are known in a config file too", async () => {
      const file = path.join(tmp, 'herdless.json');
      fs.writeFileSync(file, JSON.stringify({ app, listen: local, min: 1, max: 1, log: 'text', shutdownTimeout: 5000, metrics: '127.0.0.1:0' }));
      const cli = runCli(['--config', file]);
      const { port } = await started(cli);
      assert.equal((await get(port)).status, 200);
      cli.child.kill('SIGTERM');
      assert.equal((await cli.exited).code, 0, cli.log());
      fs.writeFileSync(file, JSON.stringify({ app, listen: local, shutdownTimout: 5000 }));
      const typo = runCli(['--config', file]);
      assert.equal((await typo.exited).code, 2);
      assert.match(typo.log(), /did you mean shutdownTimeout\?/);
    });
  });
});
