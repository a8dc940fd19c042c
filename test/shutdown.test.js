'use strict';
// Shutdown, crashes, no lost connections, orphans and fd exhaustion: real processes and signals.
const assert = require('node:assert/strict');
const net = require('node:net');
const { spawn } = require('node:child_process');
const readline = require('node:readline');
const { Dispatcher } = require('..');
const { get, sleep, waitFor, alive, cpuSeconds } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };

/** Start test/fixtures/primary.js in a child; resolves { child, port, pids, lines }. */
async function startPrimary(env = {}, shell) {
  const fixture = require.resolve('./fixtures/primary.js');
  const child = shell
    ? spawn('bash', ['-c', `${shell}; exec "${process.execPath}" "${fixture}"`], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(process.execPath, [fixture], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const first = JSON.parse((await lines.next()).value);
  return { child, lines, ...first };
}

describe('shutdown, restart and fd exhaustion', function () {
  let d;
  const children = [];
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
    for (const c of children.splice(0)) c.kill('SIGKILL');
  });

  it('close() lets an in-flight request finish, then refuses connections and leaves no worker', async () => {
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const { port } = d.address();
    const pids = d.workers().map((w) => w.pid);
    const slow = get(port, '/slow?ms=1000');
    await waitFor(() => d.stats().workers.some((w) => w.requestsInFlight === 1));
    const closing = d.close();
    const r = await slow;
    assert.equal(r.status, 200);
    await closing;
    await assert.rejects(get(port), { code: 'ECONNREFUSED' });
    for (const pid of pids) assert.equal(alive(pid), false, `worker ${pid} still running`);
    d = undefined;
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
  });

  it('survives fd exhaustion without spinning, counts it, and recovers', async function () {
    this.timeout(30000);
    const p = await startPrimary({ MIN: '1', FILL_FDS: '1' }, 'ulimit -n 128');
    children.push(p.child);
    const flood = [];
    for (let i = 0; i < 150; i++) {
      const s = net.connect(p.port, '127.0.0.1');
      s.on('error', () => {});
      flood.push(s);
    }
    await sleep(500);
    const cpu0 = cpuSeconds(p.child.pid);
    await sleep(1000);
    const used = cpuSeconds(p.child.pid) - cpu0;
    assert.ok(used < 0.3, `primary used ${used.toFixed(2)} s of CPU in 1 s while out of fds`);
    p.child.kill('SIGUSR2');
    const stats = JSON.parse((await p.lines.next()).value);
    assert.ok((stats.dispatcher.acceptErrors.EMFILE ?? 0) > 0, JSON.stringify(stats.dispatcher.acceptErrors));
    assert.ok(stats.dispatcher.fdPauses > 0);
    p.child.kill('SIGUSR1');
    assert.equal((await p.lines.next()).value, 'released');
    for (const s of flood) s.destroy();
    const r = await waitFor(() => get(p.port, '/', { timeout: 1000 }).catch(() => null), 10000, 200);
    assert.equal(r.status, 200);
    assert.equal(p.child.exitCode, null, 'the primary is still running');
  });
});
