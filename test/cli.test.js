'use strict';
// The herdless CLI as users run it: real processes, real sockets, real signals.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { runCli, started, processGroup, childPids, killAll } = require('./ship/cli-proc');
const { get } = require('./ship/http');

const APP = path.join(__dirname, 'fixtures', 'cli', 'app.js');
const LOCAL = ['--host', '127.0.0.1', '--port', '0'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(predicate, ms = 5000) {
  const end = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`not true within ${ms} ms: ${predicate}`);
    await sleep(25);
  }
}

/** A listening TCP socket owned by this process; its fd can be handed to a child. */
function listeningSocket() {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const fd = srv._handle.fd;
      resolve({ srv, fd, port: srv.address().port, inode: fs.readlinkSync(`/proc/self/fd/${fd}`) });
    });
  });
}

/** Workers of `pid` that hold the socket behind `inode` ("socket:[N]"). */
function holders(pid, inode) {
  return childPids(pid).filter((w) => fs.readdirSync(`/proc/${w}/fd`).some((fd) => {
    try {
      return fs.readlinkSync(`/proc/${w}/fd/${fd}`) === inode;
    } catch {
      return false;
    }
  }));
}

async function assertStopsCleanly(cli, expectedCode = 0) {
  const { code, signal } = await cli.exited;
  assert.equal(signal, null, cli.log());
  assert.equal(code, expectedCode, cli.log());
  await waitUntil(() => processGroup(cli.pid).length === 0, 3000);
}

describe('CLI', function () {
  this.timeout(30000);
  let tmp;
  beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-cli-'))));
  afterEach(() => {
    killAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('starts, prints a one-line banner and serves', async () => {
    const cli = runCli([...LOCAL, '-w', '2', APP]);
    const b = await started(cli);
    assert.equal(b.size, 2);
    assert.equal(b.mode, 'dispatch');
    assert.equal(b.pid, cli.pid);
    assert.match(b.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(cli.log().trim().split('\n').length, 1, 'the banner is the only line at startup');
    const r = await get(b.port);
    assert.equal(r.status, 200);
    assert.ok(childPids(cli.pid).includes(Number(r.body.split(' ')[0])), 'answered by one of its workers');
    cli.child.kill('SIGTERM');
    await assertStopsCleanly(cli);
  });

  it('--help prints usage and exits 0', () => {
    const out = execFileSync(process.execPath, [require.resolve('../bin/herdless'), '--help'], { encoding: 'utf8' });
    assert.match(out, /^Usage: herdless \[options\] <app>/);
    assert.match(out, /--bind/);
    assert.match(out, /USR2 upgrade/);
    assert.match(out, /--upgrade-timeout/);
  });

  it('--unix serves on a Unix socket and removes it on stop', async () => {
    const sock = path.join(tmp, 'app.sock');
    const cli = runCli(['--unix', sock, APP]);
    const b = await started(cli);
    assert.equal(b.url, `unix:${sock}`);
    assert.equal((await get({ socketPath: sock })).status, 200);
    cli.child.kill('SIGTERM');
    await assertStopsCleanly(cli);
    assert.ok(!fs.existsSync(sock));
  });

  it('--bind fd://N serves on an inherited socket that no worker inherits', async () => {
    const { srv, fd, port, inode } = await listeningSocket();
    // fd 20 after a gap: past what Node marks close-on-exec by itself at start-up.
    const stdio = [...Array(17).fill('ignore'), fd];
    const cli = runCli(['--bind', 'fd://20', '-w', '2', APP], { stdio });
    srv.close(); // the CLI now holds the only copy
    await started(cli);
    const r = await get(port);
    assert.equal(r.status, 200);
    assert.deepEqual(holders(cli.pid, inode), [], 'workers must not hold the listening socket');
    cli.child.kill('SIGTERM');
    await assertStopsCleanly(cli);
  });

  it('systemd socket activation with systemd-socket-activate', async function () {
    try {
      execFileSync('systemd-socket-activate', ['--version'], { stdio: 'ignore' });
    } catch {
      // Debian package "systemd", which .ci/run installs: CI never skips this silently.
      if (process.env.CI) throw new Error('systemd-socket-activate is not installed: apt-get install systemd');
      this.skip(); // the emulated test below still runs
    }
    const { srv, port } = await listeningSocket();
    srv.close(); // a free port for systemd-socket-activate to bind
    await new Promise((r) => srv.once('close', r));
    const cli = runCli([`--listen=127.0.0.1:${port}`, process.execPath, require.resolve('../bin/herdless'), '-w', '2', APP], {
      command: ['systemd-socket-activate'],
    });
    await cli.waitLog(/Listening on/);
    const inode = socketInodeOf(cli.pid, 3); // systemd-socket-activate's socket, before the exec
    // systemd-socket-activate execs herdless (same pid) on the first connection, which herdless serves.
    const first = await get(port, '/env');
    assert.deepEqual(JSON.parse(first.body), {}, 'workers must not see LISTEN_PID/LISTEN_FDS');
    const b = await started(cli);
    assert.equal(b.pid, cli.pid);
    assert.equal(b.url, `http://127.0.0.1:${port}`);
    assert.deepEqual(holders(cli.pid, inode), [], 'workers must not hold the listening socket');
    cli.child.kill('SIGTERM');
    await assertStopsCleanly(cli);
  });

  it('LISTEN_FDS is used only when LISTEN_PID is our own pid', async () => {
    const { srv, fd, port } = await listeningSocket();
    const bin = require.resolve('../bin/herdless');
    const ours = runCli(['-c', `LISTEN_PID=$$ LISTEN_FDS=1 exec "${process.execPath}" "${bin}" "${APP}"`], {
      command: ['bash'],
      stdio: [fd],
    });
    const theirs = runCli(['-c', `LISTEN_PID=1 LISTEN_FDS=1 exec "${process.execPath}" "${bin}" ${LOCAL.join(' ')} "${APP}"`], {
      command: ['bash'],
      stdio: [fd],
    });
    srv.close();
    const b1 = await started(ours);
    const b2 = await started(theirs);
    assert.equal(b1.port, port, 'LISTEN_PID matches: fd 3 is the listener');
    assert.notEqual(b2.port, port, 'LISTEN_PID of another process: fd 3 is ignored');
    assert.deepEqual(JSON.parse((await get(port, '/env')).body), {});
    ours.child.kill('SIGTERM');
    theirs.child.kill('SIGTERM');
    await assertStopsCleanly(ours);
    await assertStopsCleanly(theirs);
  });

  it('SIGTERM lets an in-flight request finish, refuses new connections, exits 0', async () => {
    const cli = runCli([...LOCAL, '-w', '1', APP]);
    const { port } = await started(cli);
    let headers;
    const inHeaders = new Promise((r) => (headers = r));
    const slow = get(port, '/?delay=1500', { onResponse: headers });
    await inHeaders;
    cli.child.kill('SIGTERM');
    await cli.waitLog(/SIGTERM: stopping gracefully/);
    await assert.rejects(get(port), { code: 'ECONNREFUSED' }, 'the listener is closed once the line is logged');
    const r = await slow;
    assert.equal(r.status, 200);
    assert.match(r.body, /^\d+ /, 'the body arrived complete');
    await assertStopsCleanly(cli);
  });

  it('a second SIGTERM forces: exits at once, non-zero, workers gone', async () => {
    const cli = runCli([...LOCAL, '-w', '1', APP]);
    const { port } = await started(cli);
    let headers;
    const inHeaders = new Promise((r) => (headers = r));
    const slow = get(port, '/?delay=20000', { onResponse: headers }).catch((e) => e);
    await inHeaders;
    cli.child.kill('SIGTERM');
    await cli.waitLog(/stopping gracefully/);
    const t0 = Date.now();
    cli.child.kill('SIGTERM');
    await assertStopsCleanly(cli, 1);
    assert.ok(Date.now() - t0 < 2000, 'forced exit is immediate');
    assert.ok((await slow) instanceof Error, 'the slow request was cut off');
  });

  describe('start errors: non-zero exit, "CODE: message"', () => {
    const run = (args) => {
      try {
        execFileSync(process.execPath, [require.resolve('../bin/herdless'), ...args], { stdio: 'pipe', timeout: 15000 });
        return { status: 0, stderr: '' };
      } catch (err) {
        return { status: err.status, stderr: String(err.stderr) };
      }
    };

    it('a bad value names the flag (exit 2)', () => {
      const r = run(['--min', 'two', APP]);
      assert.equal(r.status, 2);
      assert.match(r.stderr, /ERR_HERDLESS_INVALID_OPTION: Invalid option "--min": expected a non-negative integer, got "two"/);
    });

    it('an unknown flag (exit 2)', () => {
      const r = run(['--wrokers', '2', APP]);
      assert.equal(r.status, 2);
      assert.match(r.stderr, /ERR_PARSE_ARGS_UNKNOWN_OPTION: Unknown option '--wrokers'/);
    });

    it('options the Dispatcher rejects (exit 2)', () => {
      const r = run([...LOCAL, '--min', '3', '--max', '2', APP]);
      assert.equal(r.status, 2);
      assert.match(r.stderr, /ERR_HERDLESS_INVALID_OPTION: Invalid option "max"/);
    });

    it('a port in use (exit 1)', async () => {
      const { srv, port } = await listeningSocket();
      try {
        const r = run(['--host', '127.0.0.1', '--port', String(port), APP]);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /cannot start: EADDRINUSE: .*127\.0\.0\.1:\d+/);
      } finally {
        srv.close();
      }
    });

    it('an app that throws while loading (exit 1)', () => {
      const bad = path.join(tmp, 'bad.js');
      fs.writeFileSync(bad, 'throw new Error("no database url")');
      const r = run([...LOCAL, bad]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /ERR_HERDLESS_APP_LOAD: .*no database url/);
    });
  });

  it('USR1 writes a status summary to stderr', async () => {
    const cli = runCli([...LOCAL, '-w', '2', APP]);
    const { port } = await started(cli);
    for (let i = 0; i < 3; i++) await get(port);
    // A worker counts a request once its response has closed, a moment after the client has it.
    let served;
    await waitUntil(async () => {
      const mark = cli.log().length;
      cli.child.kill('SIGUSR1');
      const status = (await cli.waitLog(/status: [^\n]*\n(.*worker \d+ pid \d+ ready: .*\n){2}/, 5000, mark))[0];
      const m = /status: mode dispatch, 2 workers; accepted (\d+), handed off (\d+)/.exec(status);
      // Handed off counts every send: a connection stolen back from a worker whose loop stayed
      // busy (a cold first request) and handed on counts twice.
      assert.equal(Number(m[1]), 3);
      assert.ok(Number(m[2]) >= 3, `handed off ${m[2]} of 3 accepted`);
      served = [...status.matchAll(/ready: \d+ open, \d+ in flight, (\d+) served/g)].map((x) => Number(x[1]));
      return served[0] + served[1] === 3;
    }, 3000);
    assert.equal(served.length, 2, 'one line per worker');
    const status = cli.log();
    assert.match(status, /listener 127\.0\.0\.1:\d+ \(http\): 0 queued of \d+/, 'the accept queue of each listener, and what it speaks');
    const wait = /dispatch wait: (\d+) connections, mean [\d.]+ ms, [\d.]+% within 1 ms/.exec(status);
    assert.ok(wait, 'the dispatch wait');
    assert.ok(Number(wait[1]) >= 3, `dispatch wait counted ${wait[1]} connections`);
    cli.child.kill('SIGTERM');
    await assertStopsCleanly(cli);
  });

  it('TTIN adds a worker, TTOU removes one, within --min/--max', async () => {
    const cli = runCli([...LOCAL, '--min', '1', '--max', '3', '--idle-timeout', '60000', APP]);
    const { pid } = await started(cli);
    assert.equal(childPids(pid).length, 1);
    cli.child.kill('SIGTTIN');
    await cli.waitLog(/SIGTTIN: pool target 2/);
    assert.equal(childPids(pid).length, 2);
    cli.child.kill('SIGTTIN');
    await cli.waitLog(/SIGTTIN: pool target 3\n/);
    await waitUntil(() => childPids(pid).length === 3);
    cli.child.kill('SIGTTIN'); // one past --max
    await cli.waitLog(/pool target 3 \(asked 4, clamped/);
    cli.child.kill('SIGTTOU');
    await cli.waitLog(/SIGTTOU: pool target 2/);
    await waitUntil(() => childPids(pid).length === 2);
    cli.child.kill('SIGTERM');
    await assertStopsCleanly(cli);
  });

  it('HUP replaces every worker while serving; --log json logs it', async () => {
    const cli = runCli([...LOCAL, '-w', '2', '--log', 'json', APP]);
    const listening = JSON.parse((await cli.waitLog(/^\{.*"event":"listening".*\}$/m))[0]);
    assert.equal(listening.size, 2);
    assert.equal(listening.pid, cli.pid);
    const port = listening.address.port;
    const before = childPids(cli.pid);
    cli.child.kill('SIGHUP');
    const during = [];
    while (!/"event":"reloaded"/.test(cli.log())) during.push((await get(port)).status);
    assert.ok(during.every((s) => s === 200));
    const after = childPids(cli.pid);
    assert.equal(after.length, 2);
    assert.deepEqual(after.filter((p) => before.includes(p)), [], 'all workers are new');
    const events = cli.log().trim().split('\n').map((l) => JSON.parse(l));
    const exits = events.filter((e) => e.event === 'worker-exit');
    assert.deepEqual(exits.map((e) => e.workerPid).sort(), [...before].sort());
    assert.ok(exits.every((e) => e.reason === 'reloaded' && e.code === 0));
    assert.equal(events.filter((e) => e.event === 'worker-start').length, 2);
    cli.child.kill('SIGTERM');
    await assertStopsCleanly(cli);
  });

  it('a HUP sent to the whole process group reloads once: workers ignore it, the pool stays at its size', async () => {
    const cli = runCli([...LOCAL, '-w', '2', '--log', 'json', APP]);
    const listening = JSON.parse((await cli.waitLog(/^\{.*"event":"listening".*\}$/m))[0]);
    const before = childPids(cli.pid);
    process.kill(-cli.pid, 'SIGHUP'); // as a terminal hang-up or `systemctl kill -s HUP` would
    while (!/"event":"reloaded"/.test(cli.log())) assert.equal((await get(listening.address.port)).status, 200);
    await new Promise((r) => setTimeout(r, 500));
    const after = childPids(cli.pid);
    assert.equal(after.length, 2, `${after.length} workers after the reload`);
    assert.deepEqual(after.filter((p) => before.includes(p)), []);
    const exits = cli.log().trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.event === 'worker-exit');
    assert.ok(exits.every((e) => e.reason === 'reloaded'), JSON.stringify(exits));
    cli.child.kill('SIGTERM');
    await assertStopsCleanly(cli);
  });

  it('--config: JSON with a relative app, and a JS module; flags win', async () => {
    const json = path.join(tmp, 'herdless.json');
    fs.writeFileSync(json, JSON.stringify({ app: path.relative(tmp, APP), min: 2, max: 2, listen: { port: 0, host: '127.0.0.1' } }));
    const a = runCli(['-c', json], { cwd: os.tmpdir() });
    const ba = await started(a);
    assert.equal(ba.size, 2);
    assert.equal((await get(ba.port)).status, 200);

    const mod = path.join(tmp, 'herdless.config.js');
    fs.writeFileSync(mod, `module.exports = async () => ({ min: 2, max: 2, listen: { port: 0, host: '127.0.0.1' } });`);
    const b = runCli(['--config', mod, '-w', '1', APP]);
    const bb = await started(b);
    assert.equal(bb.size, 1, '-w 1 overrides the config');
    a.child.kill('SIGTERM');
    b.child.kill('SIGTERM');
    await assertStopsCleanly(a);
    await assertStopsCleanly(b);
  });

  it('--metrics serves /metrics whose counters follow the traffic, and /healthz', async () => {
    const cli = runCli([...LOCAL, '-w', '2', '--metrics', '127.0.0.1:0', APP]);
    const { port } = await started(cli);
    const mport = Number((await cli.waitLog(/metrics on :(\d+)/))[1]);
    const scrape = async () => (await get(mport, '/metrics')).body;
    const value = (text, name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    const before = await scrape();
    for (let i = 0; i < 5; i++) await get(port);
    const after = await scrape();
    assert.equal(value(after, 'herdless_connections_accepted_total') - value(before, 'herdless_connections_accepted_total'), 5);
    assert.equal(value(after, 'herdless_workers'), 2);
    assert.equal((await get(mport, '/healthz')).status, 200);
    cli.child.kill('SIGTERM');
    await assertStopsCleanly(cli);
  });
});

/** "socket:[N]" behind fd `fd` of `pid`. */
function socketInodeOf(pid, fd) {
  return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
}
