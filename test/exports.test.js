'use strict';
// The package's entry points: CommonJS and ESM, the worker API, and other platforms.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const run = (args) => execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim();

describe('package entry points', () => {
  it('imports herdless and herdless/worker as ESM, sharing one instance with CommonJS', () => {
    const out = run(['--input-type=module', '-e', `
      import { Dispatcher, ErrorCodes } from 'herdless';
      import { serve, workerId, onShutdown } from 'herdless/worker';
      import { createRequire } from 'node:module';
      const cjs = createRequire(process.cwd() + '/')('herdless');
      console.log(typeof Dispatcher.start, cjs.Dispatcher === Dispatcher, typeof serve, workerId(), 'ERR_HERDLESS_APP_LOAD' in ErrorCodes, typeof onShutdown);
    `]);
    assert.equal(out, 'function true function -1 true function');
  });

  it('requires herdless as CommonJS', () => {
    assert.equal(run(['-e', "const h = require('herdless'); console.log(typeof h.Dispatcher.start, typeof require('herdless/worker').ready)"]), 'function function');
  });

  it('loads on other platforms and rejects start() with ERR_HERDLESS_UNSUPPORTED_PLATFORM', () => {
    const out = run(['-e', `
      Object.defineProperty(process, 'platform', { value: 'darwin' });
      const { Dispatcher } = require('herdless');
      Dispatcher.start({ app: ${JSON.stringify(require.resolve('./fixtures/pid.js'))}, listen: { port: 0 } })
        .then(() => console.log('started'), (err) => console.log(err.code));
    `]);
    assert.equal(out, 'ERR_HERDLESS_UNSUPPORTED_PLATFORM');
  });

  it('onShutdown() outside a worker keeps the hook and never calls it; a non-function is a TypeError', () => {
    const out = run(['-e', `
      const { onShutdown } = require('herdless/worker');
      onShutdown(() => console.log('called'));
      try { onShutdown('nope'); } catch (err) { console.log(err.name); }
      process.emit('SIGTERM'); process.emit('disconnect');
    `]);
    assert.equal(out, 'TypeError');
  });

  it('refuses serve() outside a worker', () => {
    const { serve } = require('../lib/worker');
    assert.throws(() => serve(require('node:http').createServer()), /only works inside a herdless worker/);
  });
});
