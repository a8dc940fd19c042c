'use strict';
// Issue 17, item 9: the primary probes setpriv(1) once (`setpriv --pdeathsig SIGKILL -- true`)
// and starts workers through it: the death signal holds from before Node runs, and with
// `user` the switch happens before any --require or NODE_OPTIONS code. A probe that could
// not run (EAGAIN, EMFILE, a timeout) was not cached but answered "no setpriv" for that
// start: that worker had no death signal and booted Node as root, switching only later.
// Here the probe's `true` (found through PATH) outlasts the probe's 5 s timeout once.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { get, waitFor } = require('../helpers');
const { ChildPrimary } = require('../helpers/primary-proc');

const app = require.resolve('../fixtures/whoami.js');
const isRoot = process.getuid() === 0;

function configOf(pid) {
  const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  return JSON.parse(env.find((kv) => kv.startsWith('HERDLESS_WORKER_CONFIG=')).slice('HERDLESS_WORKER_CONFIG='.length));
}

describe('security: a setpriv probe that could not run', function () {
  this.timeout(60000);
  let primary;
  let tmp;
  afterEach(async () => {
    await primary?.kill();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('fails that start (retried) instead of starting a worker without setpriv', async function () {
    // Switching to nobody needs root; CI runs as root (.ci/run), so this never skips there.
    if (!isRoot && !process.env.CI) this.skip();
    assert.ok(fs.existsSync('/usr/bin/setpriv') || fs.existsSync('/bin/setpriv'), 'setpriv (util-linux) is needed');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-setpriv-'));
    fs.chmodSync(tmp, 0o755);
    const slowOnce = path.join(tmp, 'true');
    fs.writeFileSync(slowOnce, `#!/bin/sh\nif mkdir ${tmp}/once 2>/dev/null; then sleep 6; fi\nexit 0\n`, { mode: 0o755 });
    primary = await ChildPrimary.start(
      { min: 1, max: 1, app, user: 'nobody', listen: { port: 0, host: '127.0.0.1' } },
      { env: { PATH: `${tmp}:${process.env.PATH}` } },
    );
    assert.ok(fs.existsSync(path.join(tmp, 'once')), 'the first probe ran the slow true');
    const [worker] = primary.workers;
    // Started through setpriv, the worker is told no credentials to switch to: it never ran as root.
    assert.equal(configOf(worker.pid).credentials, undefined, 'the worker booted as root and switched itself');
    assert.equal((await get(primary.port, '/')).status, 200);
  });
});
