'use strict';
// Upgrading the primary itself (SIGUSR2, d.upgrade()): a new primary from the same command
// line takes over the listening sockets while clients keep requesting, and no request fails.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { runCli, started, processGroup, childPids, killAll } = require('./ship/cli-proc');
const { get } = require('./ship/http');
const { loadLoop } = require('./helpers/load-loop');

const APP = path.join(__dirname, 'fixtures', 'cli', 'upgrade-app.js');
const API = path.join(__dirname, 'fixtures', 'upgrade-api.js');
const LOCAL = ['--host', '127.0.0.1', '--port', '0'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(predicate, ms = 10000) {
  const end = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`not true within ${ms} ms: ${predicate}`);
    await sleep(25);
  }
}

/** Answers "<worker pid> <primary pid>". */
async function whoServes(target) {
  const r = await get(target);
  assert.equal(r.status, 200, r.body);
  const [worker, primary] = r.body.trim().split(' ').map(Number);
  return { worker, primary };
}

/** Stop a new primary (not our child: signal it and wait until it and its workers are gone). */
async function stopPrimary(pid, pgid) {
  process.kill(pid, 'SIGTERM');
  await waitUntil(() => processGroup(pgid).length === 0);
}

describe('upgrading the primary (SIGUSR2)', function () {
  this.timeout(60000);
  let tmp;
  let flag;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-upgrade-'));
    flag = path.join(tmp, 'flag');
  });
  afterEach(() => {
    killAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  for (const mode of ['dispatch', 'herd']) {
    it(`mode ${mode}: under load (new connections and keep-alive), hands over with 0 failed requests; the old primary exits 0`, async () => {
      const cli = runCli([...LOCAL, '-w', '2', '--mode', mode, APP], { env: { UPGRADE_FLAG: flag } });
      const b = await started(cli);
      const load = loadLoop(b.port, { fresh: 4, keepAlive: 4 });
      await waitUntil(() => load.tally.ok >= 200);
      cli.child.kill('SIGUSR2');
      const newPid = Number((await cli.waitLog(/stopped; pid (\d+) serves now/, 30000))[1]);
      assert.deepEqual(await cli.exited, { code: 0, signal: null }, cli.log());
      // Keep going until the new primary's workers have served plenty.
      await waitUntil(() => (load.tally.byPrimary.get(newPid) ?? 0) >= 200);
      const tally = await load.stop();

      assert.deepEqual(tally.failures, [], `failed requests (${tally.ok} ok, ${tally.retried} retried on a closed idle keep-alive connection)`);
      assert.ok(tally.byPrimary.get(cli.pid) >= 200, 'the old primary served before');
      const workersOf = (p) => [...tally.byWorker].filter(([, primary]) => primary === p).length;
      assert.equal(workersOf(cli.pid), 2, "both old workers answered");
      assert.equal(workersOf(newPid), 2, 'both new workers answered');
      assert.ok(!alive(cli.pid), 'the old primary is gone');
      assert.equal((await whoServes(b.port)).primary, newPid);
      assert.match(cli.log(), new RegExp(`herdless\\[${newPid}\\]: listening on http://127\\.0\\.0\\.1:${b.port} `), 'the same port, adopted');
      assert.match(cli.log(), new RegExp(`herdless\\[${newPid}\\]: took over from pid ${cli.pid}`));
      await stopPrimary(newPid, cli.pid);
    });
  }

  it('a TERM that reaches the draining old primary lets its requests in flight finish (a second one forces)', async () => {
    const cli = runCli([...LOCAL, '-w', '1', APP], { env: { UPGRADE_FLAG: flag } });
    const b = await started(cli);
    const slow = get(b.port, '/?delay=1500');
    await sleep(200);
    cli.child.kill('SIGUSR2');
    const newPid = Number((await cli.waitLog(/new primary pid (\d+) is serving; draining/, 30000))[1]);
    cli.child.kill('SIGTERM'); // as Ctrl-C reaches the whole process group
    await cli.waitLog(/SIGTERM: already draining after an upgrade/);
    const r = await slow;
    assert.equal(r.status, 200);
    assert.equal(Number(r.body.split(' ')[1]), cli.pid, 'answered by the old generation');
    assert.equal((await cli.exited).code, 0);
    await stopPrimary(newPid, cli.pid);
  });

  it("mode 'reuseport' refuses to upgrade and keeps serving", async () => {
    const cli = runCli([...LOCAL, '-w', '1', '--mode', 'reuseport', APP], { env: { UPGRADE_FLAG: flag } });
    const b = await started(cli);
    cli.child.kill('SIGUSR2');
    await cli.waitLog(/upgrade failed, still serving: ERR_HERDLESS_UPGRADE: mode 'reuseport' cannot hand over its listeners/);
    assert.equal((await whoServes(b.port)).primary, cli.pid);
    cli.child.kill('SIGTERM');
    assert.equal((await cli.exited).code, 0);
  });

  it('a new primary that cannot load the app fails the upgrade: logged, the old keeps serving, 0 failed requests; a later USR2 works', async () => {
    const cli = runCli([...LOCAL, '-w', '2', APP], { env: { UPGRADE_FLAG: flag } });
    const b = await started(cli);
    const load = loadLoop(b.port, { fresh: 3, keepAlive: 3 });
    await waitUntil(() => load.tally.ok >= 100);
    fs.writeFileSync(flag, 'fail');
    cli.child.kill('SIGUSR2');
    const m = await cli.waitLog(/upgrade failed, still serving: ERR_HERDLESS_UPGRADE: the new primary \(pid (\d+)\) exited with code 1 before it was ready: ERR_HERDLESS_APP_LOAD/, 30000);
    const failedPid = Number(m[1]);
    const okBefore = load.tally.ok;
    await waitUntil(() => load.tally.ok >= okBefore + 100);
    const tally = await load.stop();
    assert.deepEqual(tally.failures, []);
    assert.deepEqual([...tally.byPrimary.keys()], [cli.pid], 'only the old primary ever served');
    assert.ok(!alive(failedPid));
    assert.deepEqual(processGroup(cli.pid).sort(), [cli.pid, ...childPids(cli.pid)].sort(), 'nothing of the failed primary is left');
    assert.equal((await whoServes(b.port)).primary, cli.pid);

    fs.writeFileSync(flag, '');
    cli.child.kill('SIGUSR2');
    const newPid = Number((await cli.waitLog(/stopped; pid (\d+) serves now/, 30000))[1]);
    assert.equal((await cli.exited).code, 0);
    assert.equal((await whoServes(b.port)).primary, newPid);
    await stopPrimary(newPid, cli.pid);
  });

  it('a second USR2 while one is under way is refused; one new primary takes over', async () => {
    const cli = runCli([...LOCAL, '-w', '1', APP], { env: { UPGRADE_FLAG: flag } });
    const b = await started(cli);
    cli.child.kill('SIGUSR2');
    await cli.waitLog(/SIGUSR2: starting a new primary/);
    cli.child.kill('SIGUSR2');
    await cli.waitLog(/SIGUSR2: an upgrade is already under way; ignored/);
    const newPid = Number((await cli.waitLog(/stopped; pid (\d+) serves now/, 30000))[1]);
    await cli.exited;
    assert.equal(cli.log().match(/took over from pid/g).length, 1, cli.log());
    assert.equal((await whoServes(b.port)).primary, newPid);
    await stopPrimary(newPid, cli.pid);
  });

  it('a new primary not ready within --upgrade-timeout is killed with its workers; the old keeps serving', async () => {
    const cli = runCli([...LOCAL, '-w', '1', '--upgrade-timeout', '1500', APP], { env: { UPGRADE_FLAG: flag } });
    const b = await started(cli);
    fs.writeFileSync(flag, 'hang');
    cli.child.kill('SIGUSR2');
    const m = await cli.waitLog(/ERR_HERDLESS_UPGRADE: the new primary \(pid (\d+)\) was not ready within 1500 ms \(upgradeTimeout\) and was killed/);
    const hungPid = Number(m[1]);
    await waitUntil(() => !alive(hungPid));
    // Its worker (still loading the app) follows it by its parent-death signal.
    await waitUntil(() => processGroup(cli.pid).length === 1 + childPids(cli.pid).length);
    assert.equal((await whoServes(b.port)).primary, cli.pid);
    cli.child.kill('SIGTERM');
    assert.equal((await cli.exited).code, 0);
  });

  it('keeps a unix socket file, an inherited fd:// socket and the metrics port across the upgrade', async () => {
    const sock = path.join(tmp, 'app.sock');
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const inheritedPort = srv.address().port;
    const cli = runCli(['--unix', sock, '--bind', 'fd://3', '--metrics', '127.0.0.1:0', '-w', '1', APP], {
      env: { UPGRADE_FLAG: flag },
      stdio: [srv._handle.fd],
    });
    await cli.waitLog(/listening on unix:/);
    srv.close(); // the CLI holds its own copy
    const metricsPort = Number(/metrics on :(\d+)/.exec(cli.log())[1]);
    assert.equal((await whoServes({ socketPath: sock })).primary, cli.pid);
    assert.equal((await whoServes(inheritedPort)).primary, cli.pid);

    cli.child.kill('SIGUSR2');
    const newPid = Number((await cli.waitLog(/stopped; pid (\d+) serves now/, 30000))[1]);
    await cli.exited;
    assert.ok(fs.existsSync(sock), 'the old primary must not remove the socket file the new one serves');
    assert.equal((await whoServes({ socketPath: sock })).primary, newPid);
    assert.equal((await whoServes(inheritedPort)).primary, newPid);
    const health = await get(metricsPort, '/healthz');
    assert.equal(health.status, 200);
    assert.match(cli.log(), new RegExp(`herdless\\[${newPid}\\]: listening on unix:${sock} and 1 more .*metrics on :${metricsPort}\\)`));
    await stopPrimary(newPid, cli.pid);
    assert.ok(!fs.existsSync(sock), 'the new primary removes it when it stops');
  });
});

describe('Dispatcher#upgrade() from the API', function () {
  this.timeout(60000);
  let tmp;
  let flag;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-upgrade-api-'));
    flag = path.join(tmp, 'flag');
  });
  afterEach(() => {
    killAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("the same script started again adopts the port; 'upgraded' is emitted, a second call rejects with ERR_HERDLESS_UPGRADE_IN_PROGRESS", async () => {
    const proc = runCli([], { command: [process.execPath, API], env: { UPGRADE_FLAG: flag } });
    const [, pid, port] = (await proc.waitLog(/ready (\d+) (\d+)/)).map(Number);
    assert.equal(pid, proc.pid);
    proc.child.kill('SIGUSR2');
    await proc.waitLog(/second ERR_HERDLESS_UPGRADE_IN_PROGRESS/);
    const newPid = Number((await proc.waitLog(/upgraded-event (\d+)/, 30000))[1]);
    assert.match(proc.log(), new RegExp(`ready ${newPid} ${port}\\b`), 'the new process listens on the same port');
    await proc.waitLog(new RegExp(`upgraded ${newPid}`));
    assert.equal((await proc.exited).code, 0);
    assert.equal((await whoServes(port)).primary, newPid);
    await stopPrimary(newPid, proc.pid);
  });

  it("route: 'client-ip': the new primary gets the pool's secret, so every client keeps its slot; no worker sees the secret", async () => {
    const proc = runCli([], { command: [process.execPath, API], env: { UPGRADE_FLAG: flag, ROUTE: 'client-ip' } });
    const [, , port] = (await proc.waitLog(/ready (\d+) (\d+)/)).map(Number);
    const slotOf = async (i) => {
      const r = JSON.parse((await get({ host: '127.0.0.1', port, localAddress: `127.0.1.${i + 1}` })).body);
      assert.equal(r.secretSeen, false, 'a worker can read the routing secret');
      return r.slot;
    };
    const slots = async (expected) => {
      const out = [];
      for (let i = 0; i < 24; i++) {
        let slot = await slotOf(i);
        // A worker that looks stalled (a loaded machine, a fresh worker compiling) is skipped
        // for that connection only, by design: ask again before calling it a move.
        for (let retry = 0; expected && slot !== expected[i] && retry < 3; retry++) {
          await sleep(300);
          slot = await slotOf(i);
        }
        out.push(slot);
      }
      return out;
    };
    const before = await slots();
    assert.ok(new Set(before).size > 1, 'every client on one slot: the test proves nothing');
    proc.child.kill('SIGUSR2');
    const newPid = Number((await proc.waitLog(/upgraded-event (\d+)/, 30000))[1]);
    await proc.waitLog(new RegExp(`upgraded ${newPid}`));
    const after = await slots(before);
    assert.deepEqual(after, before, `clients moved to other slots across the upgrade: ${after.join(',')} (before ${before.join(',')})`);
    await stopPrimary(newPid, proc.pid);
  });

  it('a listen: { fd: N } socket reaches the new process at the same N, so the same option works', async () => {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const port = srv.address().port;
    // At fd 5, with 3 and 4 closed: the new process gets it at 5 too, not at the next free fd.
    const proc = runCli([], { command: [process.execPath, API], env: { UPGRADE_FLAG: flag, LISTEN_AT_FD: '5' }, stdio: ['ignore', 'ignore', srv._handle.fd] });
    await proc.waitLog(/ready (\d+) (\d+)/);
    srv.close();
    assert.equal((await whoServes(port)).primary, proc.pid);
    proc.child.kill('SIGUSR2');
    const newPid = Number((await proc.waitLog(/upgraded (\d+)/, 30000))[1]);
    assert.equal((await proc.exited).code, 0);
    assert.equal((await whoServes(port)).primary, newPid);
    await stopPrimary(newPid, proc.pid);
  });

  it("a failed start rejects with ERR_HERDLESS_UPGRADE (exit code, reason) and emits 'upgrade-failed'; the old one serves on", async () => {
    const proc = runCli([], { command: [process.execPath, API], env: { UPGRADE_FLAG: flag } });
    const [, , port] = (await proc.waitLog(/ready (\d+) (\d+)/)).map(Number);
    fs.writeFileSync(flag, 'fail');
    proc.child.kill('SIGUSR2');
    await proc.waitLog(/upgrade-failed-event ERR_HERDLESS_UPGRADE/, 30000);
    await proc.waitLog(/failed ERR_HERDLESS_UPGRADE 1 ERR_HERDLESS_APP_LOAD: /);
    assert.equal((await whoServes(port)).primary, proc.pid);
    proc.child.kill('SIGTERM');
    assert.equal((await proc.exited).code, 0);
  });
});
