'use strict';
// Fault 7 in herd mode: every worker polls the shared listener itself. Shut down by its
// owner, a TCP listener makes accept() fail with EINVAL forever and a unix listener stays
// readable while accept() says EAGAIN; a worker must back off instead of spinning a core.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Dispatcher } = require('../..');
const { loadAddon } = require('../../lib/shared/binding');
const { get, sleep, cpuSeconds } = require('../helpers');

const app = require.resolve('../fixtures/pid.js');

function shutdownSocket(fd) {
  const r = spawnSync('python3', ['-c', 'import socket; socket.socket(fileno=3).shutdown(socket.SHUT_RD)'], { stdio: ['ignore', 'inherit', 'pipe', fd] });
  assert.equal(r.status, 0, `python3 shutdown failed: ${r.stderr}`);
}

describe('fault 7, herd mode: a shared listener shut down under the workers', function () {
  this.timeout(20000);
  const addon = loadAddon();
  let d;
  let fd = -1;
  let tmp;
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
    if (fd >= 0) addon.closeFd(fd);
    fd = -1;
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    tmp = undefined;
  });

  for (const kind of ['tcp', 'unix']) {
    it(`${kind}: the workers use almost no CPU afterwards and keep running`, async () => {
      let target;
      if (kind === 'tcp') {
        fd = addon.listenTcp('127.0.0.1', 0, 128, false, true);
        target = { port: addon.socketInfo(fd).port };
      } else {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-herd7-'));
        const sock = path.join(tmp, 's');
        fd = addon.listenUnix(sock, 128, -1);
        target = { socketPath: sock };
      }
      d = await Dispatcher.start({ mode: 'herd', min: 2, max: 2, app, listen: { fd } });
      d.on('error', () => {});
      assert.equal((await get(target.port, '/', target.socketPath ? { socketPath: target.socketPath } : {})).status, 200);
      shutdownSocket(fd);
      await sleep(200);
      const pids = d.workers().map((w) => w.pid);
      const before = pids.map((p) => cpuSeconds(p));
      await sleep(1000);
      const used = pids.map((p, i) => cpuSeconds(p) - before[i]);
      for (const u of used) assert.ok(u < 0.2, `a worker used ${u.toFixed(2)} s of CPU in one second: ${used.map((x) => x.toFixed(2))}`);
      assert.deepEqual(d.workers().map((w) => w.pid), pids, 'a worker died');
    });
  }
});
