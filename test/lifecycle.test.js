'use strict';
// Pool life cycle with real processes and signals: a worker SIGKILLed under load, connections
// undelivered to a dead worker, reload() under load, the primary SIGKILLed, crash loops.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const readline = require('node:readline');
const { spawn } = require('node:child_process');
const { Dispatcher } = require('../lib');
const { get, keepAliveAgent, load, sleep, waitFor, failureSummary } = require('./helpers/pool-client');
const { alive, procState, workerPids, killQuietly } = require('./helpers/pool-proc');

const app = require.resolve('./fixtures/pool/cpu.js');
const listen = { port: 0, host: '127.0.0.1' };
/** For assertion messages: pid, state, parent, and the app it runs. */
function describePids(pids) {
  return pids.map((pid) => {
    let info = '';
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
      const app = /"app":"([^"]*)"/.exec(env);
      info = `state ${procState(pid)} ppid ${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]} app ${app ? path.basename(app[1]) : '?'}`;
    } catch (err) {
      info = err.code;
    }
    return `${pid}: ${info}`;
  });
}
const RESET_CODES = ['ECONNRESET', 'EPIPE'];

/** Spawn a primary fixture; resolves { child, info } with the JSON line it prints. */
async function spawnPrimary(fixture, env, children) {
  const child = spawn(process.execPath, [require.resolve(fixture)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const lines = readline.createInterface({ input: child.stdout });
  const exited = new Promise((r) => child.once('exit', r));
  const first = await Promise.race([
    new Promise((resolve) => lines.once('line', resolve)),
    exited.then(() => {
      throw new Error(`${fixture} exited before it printed its workers`);
    }),
    sleep(15000).then(() => {
      throw new Error(`${fixture} printed nothing in 15 s`);
    }),
  ]);
  return { child, info: JSON.parse(first), exited };
}

describe('pool: crashes, reload, orphans', function () {
  let d;
  const children = [];
  const pidsSeen = new Set();
  const tmpFiles = [];

  async function start(options) {
    d = await Dispatcher.start({ app, listen, ...options });
    for (const w of d.workers()) pidsSeen.add(w.pid);
    d.on('worker-start', ({ pid }) => pidsSeen.add(pid));
    return d;
  }

  function spawnLog() {
    const file = path.join(os.tmpdir(), `herdless-pool-spawns-${process.pid}-${tmpFiles.length}-${Date.now()}`);
    tmpFiles.push(file);
    return file;
  }
  const spawnedPids = (file) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number).filter(Number.isInteger) : []);

  afterEach(async function () {
    this.timeout(15000);
    if (d) await d.close({ timeout: 1000 }).catch(() => {});
    d = undefined;
    for (const c of children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
    for (const file of tmpFiles.splice(0)) {
      for (const pid of spawnedPids(file)) pidsSeen.add(pid);
      fs.rmSync(file, { force: true });
    }
    for (const pid of pidsSeen) killQuietly(pid);
    pidsSeen.clear();
  });

  it('SIGKILL a worker under 2,000 connection-per-request calls: only requests on that worker fail; no connection lost', async function () {
    this.timeout(30000);
    await start({ min: 2, max: 2 });
    const { port } = d.address();
    const [victim] = d.workers();
    const exits = [];
    d.on('worker-exit', (e) => exits.push(e));
    let killedAt = 0;
    const results = await load({ total: 2000, concurrency: 8 }, async (i) => {
      if (i === 500) {
        killedAt = Date.now();
        process.kill(victim.pid, 'SIGKILL');
      }
      return get(port, '/');
    });
    assert.equal(results.length, 2000);
    const failed = results.filter((r) => !r.ok);
    const codes = failed.map((r) => r.error.code);
    // Only requests in flight on the victim may fail: at most the concurrency, all resets,
    // and each one was running when the kill happened.
    assert.ok(failed.length <= 8, `${failed.length} requests failed: ${JSON.stringify(failureSummary(results))}`);
    for (const c of codes) assert.ok(RESET_CODES.includes(c), `a request failed with ${c}`);
    for (const r of failed) assert.ok(r.t0 <= killedAt + 50 && r.t1 >= killedAt, `request ${r.i} failed but was not in flight at the kill`);
    // Served requests after the kill never came from the victim.
    for (const r of results) if (r.ok && r.t0 > killedAt + 100) assert.notEqual(r.value.body, String(victim.pid));
    assert.equal(exits.length, 1);
    assert.equal(exits[0].pid, victim.pid);
    assert.equal(exits[0].reason, 'crashed');
    assert.equal(exits[0].signal, 'SIGKILL');
    // Replaced.
    await waitFor(() => d.size === 2, 5000);
    assert.ok(!d.workers().some((w) => w.pid === victim.pid));
    // Accounting: every accepted connection was handed off (re-dispatched ones count twice).
    const s = d.stats().dispatcher;
    assert.equal(s.accepted, 2000, JSON.stringify(s));
    assert.equal(typeof s.redispatched, 'number');
    assert.equal(s.accepted + s.redispatched + s.stolen, s.handedOff + s.waiting + s.dropped, JSON.stringify(s));
    assert.equal(s.waiting, 0);
  });

  it('a crashed worker is replaced once: the sizing clock does not start a second one (min 2, max 4, fast interval)', async function () {
    await start({ min: 2, max: 4, scale: { interval: 20 } });
    const starts = [];
    const scales = [];
    d.on('worker-start', (e) => starts.push(e));
    d.on('scale', (e) => scales.push(e));
    const [victim] = d.workers();
    process.kill(victim.pid, 'SIGKILL');
    await waitFor(() => starts.length >= 1, 5000, 10, 'a replacement');
    await sleep(1500);
    assert.equal(starts.length, 1, `${starts.length} workers started to replace one (scale events: ${JSON.stringify(scales)})`);
    assert.equal(d.size, 2);
    assert.deepEqual(scales, [], 'a crash replacement is not a scale-up');
  });

  it('the undelivered case: both workers blocked, 10 requests queued to them, SIGKILL one: every queued request is served', async function () {
    this.timeout(20000);
    await start({ min: 2, max: 2 });
    const { port } = d.address();
    const pids = d.workers().map((w) => w.pid);
    // One blocking request at a time, so that the second finds the first worker busy (two at
    // once could both land on a worker that has read the first but not yet its request).
    const blocks = [];
    for (let n = 1; n <= 2; n++) {
      blocks.push(
        get(port, '/block?ms=2500').then(
          (r) => ({ ok: true, body: r.body }),
          (error) => ({ ok: false, error }),
        ),
      );
      await waitFor(() => d.stats().workers.filter((w) => w.requestsInFlight === 1).length === n, 5000, 10, `${n} worker(s) blocked`);
    }
    const before = d.stats();
    const queued = Array.from({ length: 10 }, () =>
      get(port, '/').then(
        (r) => ({ ok: true, status: r.status, body: r.body }),
        (error) => ({ ok: false, error }),
      ),
    );
    await waitFor(() => d.stats().dispatcher.handedOff >= 12, 2000, 5, 'the 10 queued connections handed off');
    // Still blocked: none of the queued connections was read yet.
    const mid = d.stats();
    assert.deepEqual(
      mid.workers.map((w) => w.connectionsReceived),
      before.workers.map((w) => w.connectionsReceived),
      'a blocked worker read a connection',
    );
    // Connections go to the blocked worker that has been busy the shortest time, so the
    // queued ones may all sit with one: kill the one that holds some.
    const victim = mid.workers.reduce((a, b) => (b.connectionsWaiting > a.connectionsWaiting ? b : a)).pid;
    assert.ok(mid.workers.find((w) => w.pid === victim).connectionsWaiting > 0, JSON.stringify(mid.workers));
    process.kill(victim, 'SIGKILL');
    const served = await Promise.all(queued);
    for (const r of served) assert.ok(r.ok && r.status === 200, `a queued request failed: ${r.error?.code}`);
    for (const r of served) assert.notEqual(r.body, String(victim));
    const s = d.stats().dispatcher;
    assert.ok(s.redispatched >= 1, `nothing re-dispatched: ${JSON.stringify(s)}`);
    assert.equal(s.accepted, 12);
    assert.equal(s.accepted + s.redispatched + s.stolen, s.handedOff + s.waiting + s.dropped, JSON.stringify(s));
    // The victim's own blocking request fails (it was in its handler); the survivor's completes.
    const outcome = await Promise.all(blocks);
    const ok = outcome.filter((b) => b.ok);
    const failed = outcome.filter((b) => !b.ok);
    assert.equal(ok.length, 1, JSON.stringify(outcome));
    assert.equal(ok[0].body, String(pids.find((p) => p !== victim)));
    assert.ok(RESET_CODES.includes(failed[0].error.code), failed[0].error.code);
  });

  it('reload() under steady load (keep-alive and connection-per-request clients): zero failures, every pid changed', async function () {
    this.timeout(30000);
    await start({ min: 3, max: 3 });
    const { port } = d.address();
    const before = new Set(d.workers().map((w) => String(w.pid)));
    const exits = [];
    d.on('worker-exit', (e) => exits.push(e));
    const agent = keepAliveAgent(4);
    const signal = {};
    const keepAlive = load({ concurrency: 4, signal }, () => get(port, '/slow?ms=1', { agent }));
    const perRequest = load({ concurrency: 4, signal }, () => get(port, '/slow?ms=1'));
    let reloadedAt;
    try {
      await sleep(300);
      await d.reload();
      reloadedAt = Date.now();
      await sleep(300);
    } finally {
      signal.stop = true;
    }
    const [ka, pr] = await Promise.all([keepAlive, perRequest]);
    agent.destroy();
    assert.deepEqual(failureSummary(ka), {}, 'keep-alive client failures');
    assert.deepEqual(failureSummary(pr), {}, 'connection-per-request client failures');
    assert.ok(ka.length > 50 && pr.length > 50, `too little load: ${ka.length} keep-alive, ${pr.length} per-request`);
    const after = d.workers().map((w) => String(w.pid));
    assert.equal(after.length, 3);
    for (const pid of after) assert.ok(!before.has(pid), `worker ${pid} survived reload()`);
    assert.equal(exits.length, 3);
    for (const e of exits) {
      assert.equal(e.reason, 'reloaded');
      assert.ok(before.has(String(e.pid)));
      assert.equal(alive(e.pid), false);
    }
    // Requests that started after reload() resolved were served by new workers only.
    const late = [...ka, ...pr].filter((r) => r.t0 > reloadedAt + 20);
    assert.ok(late.length > 0);
    for (const r of late) assert.ok(!before.has(r.value.body), `served by old worker ${r.value.body} after reload()`);
  });

  it('SIGKILL the primary: its workers are gone within 1 s, and the port is closed', async function () {
    const { child, info, exited } = await spawnPrimary('./fixtures/pool/primary.js', { POOL_MIN: '3' }, children);
    for (const pid of info.workers) pidsSeen.add(pid);
    assert.equal(info.workers.length, 3);
    for (const pid of info.workers) assert.ok(alive(pid), `worker ${pid} not running`);
    assert.equal((await get(info.port, '/')).status, 200);
    child.kill('SIGKILL');
    await exited;
    const t0 = Date.now();
    await waitFor(() => info.workers.every((pid) => !alive(pid)), 1000, 10, 'every worker gone').catch((err) => {
      err.message += `: ${info.workers.map((pid) => `${pid}=${procState(pid)}`).join(' ')}`;
      throw err;
    });
    const took = Date.now() - t0;
    // Gone (kill(pid, 0) fails with ESRCH), or a zombie waiting for its new parent to reap it.
    for (const pid of info.workers) {
      if (procState(pid) !== 'Z') assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `worker ${pid} still exists`);
    }
    await assert.rejects(get(info.port, '/'), { code: 'ECONNREFUSED' });
    this.test.title += ` [${took} ms]`;
  });

  it('SIGKILL the primary while its workers are blocked in a request: they are still gone within 1 s', async function () {
    const { child, info, exited } = await spawnPrimary('./fixtures/pool/blocked-primary.js', { POOL_MIN: '2', POOL_BLOCK_MS: '4000' }, children);
    for (const pid of info.workers) pidsSeen.add(pid);
    for (const pid of info.workers) assert.ok(alive(pid));
    child.kill('SIGKILL');
    await exited;
    await waitFor(() => info.workers.every((pid) => !alive(pid)), 1000, 10, 'every blocked worker gone').catch((err) => {
      err.message += `: ${info.workers.map((pid) => `${pid}=${procState(pid)}`).join(' ')}`;
      throw err;
    });
  });

  it('a worker crash loop after ready: ERR_HERDLESS_CRASH_LOOP "error" event within seconds, bounded spawns, nothing left', async function () {
    this.timeout(20000);
    const log = spawnLog();
    const before = new Set(workerPids());
    const t0 = Date.now();
    // A short sampling interval: the sizing clock must not add spawns to a crash loop.
    await start({ min: 1, max: 3, app: require.resolve('./fixtures/pool/crash-after-ready.js'), env: { POOL_SPAWN_LOG: log }, scale: { interval: 50 } });
    const starts = [];
    const exits = [];
    const errors = [];
    const scales = [];
    d.on('worker-start', (e) => starts.push(e));
    d.on('worker-exit', (e) => exits.push(e));
    d.on('scale', (e) => scales.push(e));
    const err = await new Promise((resolve, reject) => {
      d.on('error', (e) => errors.push(e) === 1 && resolve(e));
      setTimeout(() => reject(new Error(`no error event within 10 s; ${spawnedPids(log).length} spawns`)), 10000);
    });
    const took = Date.now() - t0;
    assert.equal(err.code, 'ERR_HERDLESS_CRASH_LOOP');
    assert.match(err.message, /exiting on purpose/, 'the error carries the worker\'s last stderr lines');
    assert.ok(took < 8000, `crash loop detected after ${took} ms`);
    // No more spawns afterwards.
    const spawns = spawnedPids(log).length;
    await sleep(1500);
    assert.equal(spawnedPids(log).length, spawns, 'respawned after the crash-loop error');
    assert.ok(spawns >= 5 && spawns <= 6, `${spawns} workers spawned`);
    // One error, not one per sampling tick; and the pool did not "scale" a halted pool.
    assert.equal(errors.length, 1, `${errors.length} 'error' events (${[...new Set(errors.map((e) => e.code))]}) for one crash loop`);
    assert.deepEqual(scales, [], 'scale events during a crash loop');
    assert.ok(starts.length + 1 <= 6, `${starts.length} worker-start events after start()`);
    assert.ok(exits.every((e) => e.reason === 'crashed' && e.code === 1), JSON.stringify(exits));
    for (const pid of spawnedPids(log)) assert.equal(alive(pid), false, `worker ${pid} still running`);
    assert.deepEqual(describePids(workerPids().filter((pid) => !before.has(pid))), [], 'worker processes left running');
    assert.equal(d.size, 0);
    assert.equal(d.workers().length, 0);
    const closeStarted = Date.now();
    await d.close({ timeout: 1000 });
    assert.ok(Date.now() - closeStarted < 1000);
    this.test.title += ` [${took} ms, ${spawns} spawns]`;
  });

  it('reload() after a crash-loop halt (app fixed meanwhile) brings the pool back to min, and no further', async function () {
    this.timeout(20000);
    const appFile = path.join(os.tmpdir(), `herdless-pool-flaky-${process.pid}-${Date.now()}.js`);
    tmpFiles.push(appFile);
    fs.copyFileSync(require.resolve('./fixtures/pool/crash-after-ready.js'), appFile);
    await start({ min: 2, max: 4, app: appFile });
    const t0 = Date.now();
    const log = [];
    d.on('worker-start', (e) => log.push(`${Date.now() - t0} start ${e.pid}`));
    d.on('worker-exit', (e) => log.push(`${Date.now() - t0} exit ${e.pid} ${e.reason} ${e.code}`));
    const errors = [];
    d.on('error', (e) => errors.push(e));
    await waitFor(() => errors.length > 0, 10000, 20, 'the crash-loop error');
    assert.equal(errors[0].code, 'ERR_HERDLESS_CRASH_LOOP');
    await waitFor(() => d.workers().length === 0, 3000, 20, 'no worker left after the halt');
    // The app is fixed; reload() clears the halt and must bring min workers back.
    fs.writeFileSync(appFile, "'use strict';\nmodule.exports = (req, res) => res.end(String(process.pid));\n");
    log.push(`${Date.now() - t0} fixed, reload()`);
    await d.reload();
    log.push(`${Date.now() - t0} reload() resolved: ${JSON.stringify(d.workers())}`);
    assert.equal(d.size, 2, `size ${d.size} right after reload() resolved; ${log.join('; ')}`);
    assert.equal((await get(d.address().port, '/')).status, 200);
    await sleep(1000);
    assert.equal(d.size, 2, `size ${d.size} a second later: the pool is idle, it should stay at min`);
  });

  it('a worker that exits at load: start() rejects with ERR_HERDLESS_CRASH_LOOP within seconds, bounded spawns, nothing left', async function () {
    this.timeout(20000);
    const log = spawnLog();
    const before = new Set(workerPids());
    const t0 = Date.now();
    const err = await Dispatcher.start({ min: 2, max: 4, app: require.resolve('./fixtures/pool/exit-at-load.js'), listen, env: { POOL_SPAWN_LOG: log } }).then(
      (dd) => {
        d = dd;
        assert.fail('start() resolved');
      },
      (e) => e,
    );
    const took = Date.now() - t0;
    assert.equal(err.code, 'ERR_HERDLESS_CRASH_LOOP', err.stack);
    assert.match(err.message, /exiting on purpose/, 'the error carries the worker\'s last stderr lines');
    assert.ok(took < 8000, `took ${took} ms`);
    const spawns = spawnedPids(log);
    assert.ok(spawns.length >= 5 && spawns.length <= 6, `${spawns.length} workers spawned`);
    for (const pid of spawns) assert.equal(alive(pid), false, `worker ${pid} still running`);
    await sleep(500);
    assert.equal(spawnedPids(log).length, spawns.length, 'spawned after start() rejected');
    assert.deepEqual(describePids(workerPids().filter((pid) => !before.has(pid))), [], 'worker processes left running');
    this.test.title += ` [${took} ms, ${spawns.length} spawns]`;
  });
});
