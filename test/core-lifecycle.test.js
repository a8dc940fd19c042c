'use strict';
// Shutdown, crashes, no lost connections, orphans and fd exhaustion: real processes and signals.
const assert = require('node:assert/strict');
const net = require('node:net');
const http = require('node:http');
const { spawn } = require('node:child_process');
const readline = require('node:readline');
const { Dispatcher } = require('..');
const { get, hammer, sleep, waitFor, alive, cpuSeconds } = require('./helpers');

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

describe('life cycle', function () {
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

  it('close({ timeout }) kills a request that never ends', async () => {
    d = await Dispatcher.start({ min: 1, max: 1, app, listen: local });
    const pid = d.workers()[0].pid;
    const hung = get(d.address().port, '/hang').catch((err) => err);
    await waitFor(() => d.stats().workers[0].requestsInFlight === 1);
    const t0 = Date.now();
    await d.close({ timeout: 500 });
    d = undefined;
    assert.ok(Date.now() - t0 < 2000, `close took ${Date.now() - t0} ms`);
    assert.ok((await hung) instanceof Error);
    assert.equal(alive(pid), false);
  });

  it('loses no connection when a worker is SIGKILLed under connection-per-request load', async function () {
    this.timeout(60000);
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const { port } = d.address();
    const victim = d.workers()[0].pid;
    let done = 0;
    const run = hammer(2000, 8, async () => {
      const r = await get(port);
      done++;
      return r;
    });
    await waitFor(() => done >= 300);
    process.kill(victim, 'SIGKILL');
    const results = await run;
    const failed = results.filter((r) => r instanceof Error);
    // Only requests already inside the killed worker can fail: at most the 8 in flight.
    assert.ok(failed.length <= 8, `${failed.length} requests failed: ${failed.map((e) => e.code).join(',')}`);
    await waitFor(() => d.size === 2, 5000);
    const s = d.stats().dispatcher;
    // Every accepted connection was handed off (some twice: read back from the dead worker).
    assert.equal(s.handedOff + s.waiting, s.accepted + s.redispatched);
    assert.ok(results.filter((r) => !(r instanceof Error)).length >= 1992);
  });

  it('re-dispatches connections queued to a worker that dies before reading them', async function () {
    this.timeout(20000);
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const { port } = d.address();
    const blockers = [get(port, '/block?ms=1500').catch((e) => e), get(port, '/block?ms=1500').catch((e) => e)];
    await waitFor(() => d.stats().workers.every((w) => w.requestsInFlight === 1));
    const queued = Array.from({ length: 10 }, () => get(port, '/'));
    await waitFor(() => d.stats().dispatcher.handedOff >= 12);
    const victim = d.workers()[0].pid;
    process.kill(victim, 'SIGKILL');
    const results = await Promise.all(queued);
    for (const r of results) assert.equal(r.status, 200);
    assert.ok(!results.some((r) => r.text === String(victim)));
    assert.ok(d.stats().dispatcher.redispatched > 0, 'some connections were read back from the dead worker');
    await Promise.all(blockers);
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

  it('stops a crash loop after start with an ERR_HERDLESS_CRASH_LOOP error event and bounded spawns', async function () {
    this.timeout(20000);
    d = await Dispatcher.start({ min: 1, max: 1, app: require.resolve('./fixtures/crash-after-ready.js'), listen: local });
    let starts = 1;
    d.on('worker-start', () => starts++);
    const err = await new Promise((resolve) => d.once('error', resolve));
    assert.equal(err.code, 'ERR_HERDLESS_CRASH_LOOP');
    await sleep(1500);
    assert.ok(starts <= 6, `${starts} workers started`);
    assert.equal(d.workers().length, 0);
  });

  it('workers exit within a second when the primary is SIGKILLed', async () => {
    const p = await startPrimary();
    children.push(p.child);
    assert.equal(p.pids.length, 2);
    for (const pid of p.pids) assert.ok(alive(pid));
    p.child.kill('SIGKILL');
    const t0 = Date.now();
    await waitFor(() => p.pids.every((pid) => !alive(pid)), 1000, 10);
    assert.ok(Date.now() - t0 <= 1000);
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

  it('reload() under steady load: no failed request, every worker replaced', async function () {
    this.timeout(30000);
    d = await Dispatcher.start({ min: 2, max: 2, app, listen: local });
    const { port } = d.address();
    const before = d.workers().map((w) => w.pid);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    let stop = false;
    const failures = [];
    let ok = 0;
    const lane = async (opts) => {
      while (!stop) {
        try {
          const r = await get(port, '/', opts);
          if (r.status === 200) ok++;
          else failures.push(r.status);
        } catch (err) {
          failures.push(err.code);
        }
      }
    };
    const lanes = [lane({}), lane({}), lane({ agent, headers: {} }), lane({ agent, headers: {} })];
    await sleep(300);
    await d.reload();
    await sleep(300);
    stop = true;
    await Promise.all(lanes);
    agent.destroy();
    assert.deepEqual(failures, []);
    assert.ok(ok > 50);
    const after = d.workers().map((w) => w.pid);
    assert.equal(after.length, 2);
    for (const pid of before) assert.ok(!after.includes(pid), `worker ${pid} survived the reload`);
  });
});
