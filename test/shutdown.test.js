'use strict';
// Graceful close, crash restart, and fd exhaustion in the primary (issue #2): real processes,
// real signals, a real fd limit.
const assert = require('node:assert/strict');
const net = require('node:net');
const { spawn } = require('node:child_process');
const { Dispatcher } = require('..');
const { get, sleep, waitFor, once, gone, alive, cpuSeconds, collectGarbage, fdCount, fdSnapshot, newFds, childrenOf } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };

/**
 * Start test/fixtures/primary-lowfd.js under `ulimit -n <limit>` with an IPC channel;
 * resolves { child, ask(cmd), port, pids, filled, limit }.
 */
async function startLowFdPrimary(limit, env = {}) {
  const fixture = require.resolve('./fixtures/primary-lowfd.js');
  const child = spawn('bash', ['-c', `ulimit -n ${limit} && exec "${process.execPath}" "${fixture}"`], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const first = await Promise.race([
    once(child, 'message', 15000),
    exited.then((e) => Promise.reject(new Error(`primary-lowfd exited before it was ready: ${JSON.stringify(e)}`))),
  ]);
  const ask = (cmd) => {
    const reply = once(child, 'message', 5000);
    child.send({ cmd });
    return reply;
  };
  return { child, exited, ask, ...first };
}

describe('shutdown, restart and fd exhaustion', function () {
  let d;
  const children = [];
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
    for (const c of children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await exited;
      }
    }
  });

  it('close() lets an in-flight slow request finish, refuses new connections, and leaves no worker process', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const { port } = d.address();
    const pids = d.workers().map((w) => w.pid);
    const t0 = Date.now();
    const slow = get(port, '/slow?ms=1000');
    await waitFor(() => d.stats().workers.some((w) => w.requestsInFlight === 1));
    const servedBy = String(d.stats().workers.find((w) => w.requestsInFlight === 1).pid);
    let closed = false;
    const closing = d.close().then(() => (closed = true));
    // From the moment close() is called, nobody accepts.
    await sleep(50);
    await assert.rejects(get(port, '/', { timeout: 2000 }), { code: 'ECONNREFUSED' });
    assert.equal(closed, false, 'close() resolved before the in-flight request finished');
    const r = await slow;
    assert.equal(r.status, 200);
    assert.equal(r.text, servedBy, 'the slow request was not answered by its worker');
    assert.ok(Date.now() - t0 >= 1000, 'the slow request was cut short');
    await Promise.race([closing, sleep(5000).then(() => assert.fail('close() did not resolve within 5 s of the last request'))]);
    d = undefined;
    await assert.rejects(get(port, '/', { timeout: 2000 }), { code: 'ECONNREFUSED' });
    for (const pid of pids) {
      assert.ok(gone(pid), `worker ${pid} still exists after close() (alive: ${alive(pid)})`);
      assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
    }
    assert.deepEqual(childrenOf(process.pid), []);
  });

  it('start() then close() gives back every fd the primary opened (the closed dispatcher still referenced)', async () => {
    // Warm-up: the first start in a process opens things that live as long as it does.
    await (await Dispatcher.start({ min: 1, max: 1, app, listen: local })).close();
    await collectGarbage(); // so that no earlier dispatcher's finalizer closes fds during the check
    const before = fdCount();
    const snapshot = fdSnapshot();
    const kept = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    d = kept;
    assert.equal((await get(d.address().port)).status, 200);
    await d.close();
    d = undefined;
    await waitFor(() => fdCount() <= before, 2000).catch(() => {
      throw new Error(`the primary holds ${fdCount() - before} more fds after close() than before start(): ${newFds(snapshot).join(', ')}`);
    });
    assert.ok(kept); // an application keeps its (closed) dispatcher object around
  });

  it('restarts a crashed worker', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const exits = [];
    d.on('worker-exit', (e) => exits.push(e));
    const victim = d.workers()[0].pid;
    process.kill(victim, 'SIGKILL');
    await waitFor(() => d.size === 2 && !d.workers().some((w) => w.pid === victim), 5000);
    assert.equal(exits[0].pid, victim);
    assert.equal(exits[0].reason, 'crashed');
    assert.equal(exits[0].signal, 'SIGKILL');
    assert.equal((await get(d.address().port)).status, 200);
  });

  it('fd exhaustion (ulimit -n 64, 200 connections): no busy loop, EMFILE counted, serves again afterwards, no crash', async function () {
    const p = await startLowFdPrimary(64);
    children.push(p.child);
    assert.equal(p.limit, 64, 'the fd limit did not apply');
    assert.ok(p.filled > 0);
    // 200 connections: the kernel completes each handshake into the backlog; the primary
    // cannot accept a single one.
    const flood = [];
    let errors = 0;
    for (let i = 0; i < 200; i++) {
      const s = net.connect(p.port, '127.0.0.1');
      s.on('error', () => errors++);
      flood.push(s);
    }
    try {
      await waitFor(() => flood.every((s) => !s.connecting), 5000);
      await sleep(300);
      const cpu0 = cpuSeconds(p.child.pid);
      const t0 = Date.now();
      await sleep(1000);
      const used = cpuSeconds(p.child.pid) - cpu0;
      const share = used / ((Date.now() - t0) / 1000);
      assert.ok(share < 0.3, `the primary used ${(share * 100).toFixed(0)}% of a core while out of fds`);
      const { stats, errors: dispatcherErrors } = await p.ask('stats');
      const emfile = stats.dispatcher.acceptErrors.EMFILE ?? 0;
      assert.ok(emfile > 0, `no EMFILE counted: ${JSON.stringify(stats.dispatcher)}`);
      assert.ok(emfile < 1000, `${emfile} EMFILE errors in ~1.5 s: accept() is retried in a loop`);
      assert.ok(stats.dispatcher.fdPauses > 0, JSON.stringify(stats.dispatcher));
      assert.ok(stats.dispatcher.fdPausedMs > 500, JSON.stringify(stats.dispatcher));
      assert.equal(stats.dispatcher.accepted, 0, 'accepted a connection with no fd to spare?');
      assert.deepEqual(dispatcherErrors, [], 'the dispatcher emitted errors');
      for (const pid of p.pids) assert.ok(alive(pid), `worker ${pid} died`);
    } finally {
      for (const s of flood) s.destroy();
    }
    assert.equal(errors, 0, `${errors} of the 200 flood connections failed while waiting in the backlog`);
    assert.ok((await p.ask('release')).released > 0);
    const r = await waitFor(() => get(p.port, '/', { timeout: 1000 }).catch(() => null), 5000, 100);
    assert.equal(r.status, 200);
    assert.ok(p.pids.includes(Number(r.text)), `answered by ${r.text}`);
    const after = (await p.ask('stats')).stats;
    assert.ok(after.dispatcher.accepted > 0);
    assert.equal(p.child.exitCode, null, 'the primary exited');
    assert.equal(p.child.signalCode, null, 'the primary was killed');
  });
});
