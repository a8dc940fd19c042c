'use strict';
// Fault 7: an inherited listener shut down by whoever else holds it (shutdown(2) acts on the
// socket, not on one fd) made accept() fail with EINVAL, or, for a unix socket, stay readable
// while accept() said EAGAIN: level-triggered epoll reported it again at once and the accept
// thread spun a core (about 300,000 wake-ups a second). It now stops watching that listener,
// says so once (ERR_HERDLESS_ACCEPT, as 'error' or, with no listener, a process warning),
// and the other listeners keep serving.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { loadAddon } = require('../../lib/shared/binding');
const { get, sleep, waitFor, cpuSeconds } = require('../helpers');
const { ChildPrimary } = require('../helpers/primary-proc');

const app = require.resolve('../fixtures/pid.js');

/** shutdown(2) on the socket behind our `fd`, from another process (Node has no call for it). */
function shutdownSocket(fd, how) {
  const r = spawnSync('python3', ['-c', `import socket; socket.socket(fileno=3).shutdown(socket.${how})`], {
    stdio: ['ignore', 'inherit', 'pipe', fd],
  });
  assert.equal(r.status, 0, `python3 shutdown failed: ${r.error ?? r.stderr}`);
}

/** The primary's CPU time over one second, in seconds. */
async function cpuOverOneSecond(pid) {
  const start = cpuSeconds(pid);
  await sleep(1000);
  return cpuSeconds(pid) - start;
}

describe('fault 7: an inherited listener shut down under the acceptor', function () {
  const addon = loadAddon();
  let primary;
  let fd = -1;
  let tmp;
  afterEach(async () => {
    await primary?.kill();
    if (fd >= 0) addon.closeFd(fd);
    fd = -1;
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    tmp = undefined;
  });

  it('TCP (accept says EINVAL): no busy loop, one ERR_HERDLESS_ACCEPT, the other listener serves', async () => {
    fd = addon.listenTcp('127.0.0.1', 0, 128, false, true);
    const inheritedPort = addon.socketInfo(fd).port;
    primary = await ChildPrimary.start(
      { min: 1, max: 1, app, listen: [{ port: 0, host: '127.0.0.1' }, { fd: 4 }] },
      { fds: [fd] },
    );
    assert.equal((await get(inheritedPort)).status, 200);
    const fdsBefore = (await primary.stats()).fds;

    shutdownSocket(fd, 'SHUT_RD');
    const cpu = await cpuOverOneSecond(primary.pid);
    assert.ok(cpu < 0.2, `the primary used ${cpu.toFixed(2)} s of CPU in the second after the shutdown`);
    const { errors } = await waitFor(async () => {
      const s = await primary.stats();
      return s.errors.length > 0 && s;
    }, 5000);

    const { stats, errors: later, fds } = await primary.stats();
    assert.equal(later.length, 1, `reported once: ${JSON.stringify(later)}`);
    assert.equal(errors[0].code, 'ERR_HERDLESS_ACCEPT');
    assert.equal(errors[0].listener, 1);
    assert.match(errors[0].message, new RegExp(`listener 1 \\(127\\.0\\.0\\.1:${inheritedPort}\\).*EINVAL`));
    assert.ok(stats.dispatcher.acceptErrors.EINVAL <= 2, JSON.stringify(stats.dispatcher.acceptErrors));
    assert.equal(fds, fdsBefore, 'no fd opened or lost');
    assert.equal((await get(primary.port)).status, 200, 'the other listener still serves');
    await assert.rejects(get(inheritedPort), { code: 'ECONNREFUSED' });
  });

  it('unix (readable, accept says EAGAIN): no busy loop; with no error listener, a warning and no crash', async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-fault7-'));
    const sock = path.join(tmp, 's');
    fd = addon.listenUnix(sock, 128, -1);
    primary = await ChildPrimary.start(
      { min: 1, max: 1, app, listen: [{ port: 0, host: '127.0.0.1' }, { fd: 4 }] },
      { fds: [fd], env: { NO_ERROR_LISTENER: '1' } },
    );
    assert.equal((await get(undefined, '/', { socketPath: sock })).status, 200);
    const fdsBefore = (await primary.stats()).fds;

    shutdownSocket(fd, 'SHUT_RD');
    const cpu = await cpuOverOneSecond(primary.pid);
    assert.ok(cpu < 0.2, `the primary used ${cpu.toFixed(2)} s of CPU in the second after the shutdown`);
    await waitFor(async () => (await primary.stats()).warnings.length > 0, 5000);

    const { warnings, fds } = await primary.stats();
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.equal(warnings[0].code, 'ERR_HERDLESS_ACCEPT');
    assert.match(warnings[0].message, new RegExp(`listener 1 \\(${sock.replace(/[.]/g, '\\.')}\\)`));
    assert.equal(fds, fdsBefore, 'no fd opened or lost');
    assert.equal((await get(primary.port)).status, 200, 'the other listener still serves');
    await assert.rejects(new Promise((resolve, reject) => net.connect(sock).on('connect', resolve).on('error', reject)), { code: 'ECONNREFUSED' });
  });
});
