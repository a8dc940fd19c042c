'use strict';
// Issue 17, item 9: the CLI exited (status 1) on any ERR_HERDLESS_ACCEPT, also when it only
// said that one of several listeners was shut down by someone else and the others still
// served. It now exits only when no listener is left, or the accept thread itself stopped.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { loadAddon } = require('../../lib/shared/binding');
const { runCli, killAll } = require('../ship/cli-proc');
const { get } = require('../ship/http');

const APP = path.join(__dirname, '..', 'fixtures', 'cli', 'app.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function shutdownSocket(fd) {
  const r = spawnSync('python3', ['-c', 'import socket; socket.socket(fileno=3).shutdown(socket.SHUT_RD)'], { stdio: ['ignore', 'inherit', 'pipe', fd] });
  assert.equal(r.status, 0, `python3 shutdown failed: ${r.stderr}`);
}

describe('CLI: one listener of several shut down by someone else', function () {
  this.timeout(30000);
  const addon = loadAddon();
  const fds = [];
  afterEach(() => {
    killAll();
    for (const fd of fds.splice(0)) addon.closeFd(fd);
  });

  it('keeps serving on the others; exits once none is left', async () => {
    for (let i = 0; i < 2; i++) fds.push(addon.listenTcp('127.0.0.1', 0, 128, false, true));
    const ports = fds.map((fd) => addon.socketInfo(fd).port);
    // fds 20 and 21 after a gap: past what Node marks close-on-exec by itself at start-up.
    const cli = runCli(['--bind', 'fd://20', '--bind', 'fd://21', '-w', '1', APP], { stdio: [...Array(17).fill('ignore'), fds[0], fds[1]] });
    await cli.waitLog(/listening on .* and 1 more/, 15000);
    assert.equal((await get(ports[1])).status, 200);

    shutdownSocket(fds[0]);
    await cli.waitLog(/ERR_HERDLESS_ACCEPT/, 5000);
    await sleep(500);
    assert.equal(cli.child.exitCode, null, `the CLI exited while listener 1 still served:\n${cli.log()}`);
    for (let i = 0; i < 5; i++) assert.equal((await get(ports[1])).status, 200);

    shutdownSocket(fds[1]);
    const { code } = await Promise.race([cli.exited, sleep(5000).then(() => ({ code: 'still running' }))]);
    assert.equal(code, 1, `with no listener left the CLI must exit 1:\n${cli.log()}`);
  });
});
