'use strict';
// The control socket and its commands (herdless status|top|scale|reload|upgrade|stop) against
// real CLI instances: real processes, a real TTY (tmux) for top, a second Unix user for SO_PEERCRED.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { execFile, execFileSync } = require('node:child_process');
const { runCli, started, processGroup, childPids, killAll, BIN } = require('./ship/cli-proc');
const { get } = require('./ship/http');
const { Dispatcher } = require('..');

const APP = path.join(__dirname, 'fixtures', 'cli', 'app.js');
const LOCAL = ['--host', '127.0.0.1', '--port', '0'];
const VERSION = require('../package.json').version;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(predicate, ms = 10000) {
  const end = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`not true within ${ms} ms: ${predicate}`);
    await sleep(50);
  }
}

/** Run `herdless <args>` as a client; resolves { code, stdout, stderr }. */
function client(args, env, { command = [process.execPath, BIN], timeout = 30000 } = {}) {
  return new Promise((resolve) => {
    execFile(command[0], [...command.slice(1), ...args], { env: { ...process.env, ...env }, timeout }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

async function status(env, extra = []) {
  const r = await client(['status', '--json', ...extra], env);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** A CLI instance whose default control socket goes in `xdg`/herdless; resolves its banner and socket path. */
async function startCli(args, env) {
  const cli = runCli(args, { env });
  const b = await started(cli);
  const m = /control (\S+?)[,)]/.exec(cli.log());
  assert.ok(m, `no control socket in the banner: ${cli.log()}`);
  return { cli, ...b, control: m[1] };
}

describe('control socket and commands', function () {
  this.timeout(60000);
  let tmp;
  let env;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-control-'));
    env = { XDG_RUNTIME_DIR: tmp };
  });
  afterEach(() => {
    killAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('status --json describes every worker and listener; the socket is 0600 in a 0700 directory', async () => {
    const { cli, port, control } = await startCli([...LOCAL, '-w', '2', APP], env);
    assert.equal(control, path.join(tmp, 'herdless', 'app.sock'));
    assert.equal(fs.statSync(control).mode & 0o777, 0o600);
    assert.ok(fs.statSync(control).isSocket());
    assert.equal(fs.statSync(path.dirname(control)).mode & 0o777, 0o700);
    await get(port);
    const s = await status(env);
    assert.equal(s.pid, cli.pid);
    assert.equal(s.version, VERSION);
    assert.equal(s.mode, 'dispatch');
    assert.equal(s.size, 2);
    assert.deepEqual(s.workers.map((w) => w.slot), [0, 1]);
    assert.deepEqual(s.workers.map((w) => w.pid).sort(), childPids(cli.pid).sort());
    for (const w of s.workers) {
      assert.equal(w.state, 'ready');
      assert.equal(w.restarts, 0);
      assert.ok(w.uptimeMs >= 0 && w.uptimeMs < 60000, String(w.uptimeMs));
      assert.ok(w.rss > 1e6, `rss ${w.rss}`);
    }
    assert.equal(s.workers.reduce((n, w) => n + w.requests, 0), 1);
    assert.deepEqual(s.listeners.map((l) => l.address), [`127.0.0.1:${port}`]);
    assert.equal(typeof s.listeners[0].backlog, 'number');
    assert.equal(s.listeners[0].protocol, 'http');
    assert.equal(s.dispatchWaitCount, 1);
    assert.ok(s.dispatchWaitP99Seconds > 0);

    const text = await client(['status'], env);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^herdless ${VERSION.replace(/\./g, '\\.')}  pid ${cli.pid} `));
    assert.match(text.stdout, /SLOT +PID +STATE +UPTIME +RESTARTS +CONNS +REQUESTS +REQ\/S +ELD p99 +ELU +HEAP +RSS/);
    for (const w of s.workers) assert.match(text.stdout, new RegExp(`^ +${w.slot} +${w.pid} +ready `, 'm'));
    assert.match(text.stdout, new RegExp(`^127\\.0\\.0\\.1:${port} +http +0/\\d+ +<= `, 'm'));
    // Requests per second: the change since the previous status request.
    await get(port);
    await get(port);
    await sleep(300);
    const again = await status(env);
    assert.ok(again.workers.every((w) => typeof w.requestsPerSecond === 'number'), JSON.stringify(again.workers));
    assert.ok(again.workers.reduce((n, w) => n + w.requestsPerSecond, 0) > 0);
  });

  it('scale +1, -1 and N resize the pool and print the size reached', async () => {
    const { cli } = await startCli([...LOCAL, '--min', '1', '--max', '4', APP], env);
    let r = await client(['scale', '+1'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'scale: 1 -> 2 workers\n');
    assert.equal((await status(env)).size, 2);
    r = await client(['scale', '4'], env);
    assert.equal(r.stdout, 'scale: 2 -> 4 workers\n');
    assert.deepEqual((await status(env)).workers.map((w) => w.slot), [0, 1, 2, 3]);
    r = await client(['scale', '-1'], env);
    assert.equal(r.stdout, 'scale: 4 -> 3 workers\n');
    r = await client(['scale', '9'], env);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, 'scale: 3 -> 4 workers (asked 9, clamped to --min/--max)\n');
    await waitUntil(() => childPids(cli.pid).length === 4);
    r = await client(['scale', 'lots'], env);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /scale: expected N, \+k or -k/);
  });

  it('reload prints how many workers were replaced; each slot counts a restart', async () => {
    const { cli } = await startCli([...LOCAL, '-w', '3', APP], env);
    const before = await status(env);
    const r = await client(['reload'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^reload: 3 workers replaced in \d+\.\d s, 0 failed\n$/);
    const after = await status(env);
    assert.deepEqual(after.workers.map((w) => w.slot), [0, 1, 2]);
    assert.deepEqual(after.workers.map((w) => w.restarts), [1, 1, 1]);
    for (const w of after.workers) assert.ok(!before.workers.some((b) => b.pid === w.pid), 'every worker is new');
    assert.match(cli.log(), /herdless reload: reloading workers one at a time/);
  });

  it('a worker killed outright comes back in its slot, which counts one restart', async () => {
    const { cli } = await startCli([...LOCAL, '-w', '2', APP], env);
    const before = await status(env);
    const victim = before.workers.find((w) => w.slot === 1);
    process.kill(victim.pid, 'SIGKILL');
    let after;
    await waitUntil(async () => {
      after = await status(env);
      return after.workers.length === 2 && after.workers.every((w) => w.state === 'ready') && !after.workers.some((w) => w.pid === victim.pid);
    });
    assert.deepEqual(after.workers.map((w) => [w.slot, w.restarts]), [[0, 0], [1, 1]]);
    assert.equal(after.workers[0].pid, before.workers[0].pid);
    assert.ok(childPids(cli.pid).includes(after.workers[1].pid));
  });

  it('answers a malformed request or another protocol version with an error, and keeps the connection', async () => {
    const { control } = await startCli([...LOCAL, '-w', '1', APP], env);
    const sock = net.createConnection(control);
    const lines = [];
    sock.setEncoding('utf8');
    let buf = '';
    sock.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
    });
    sock.write('not json\n{"v":2,"id":7,"cmd":"status"}\n{"v":1,"id":8,"cmd":"nope"}\n{"v":1,"id":9,"cmd":"hello"}\n');
    await waitUntil(() => lines.length === 4, 5000);
    sock.destroy();
    const byId = Object.fromEntries(lines.map((l) => [String(l.id), l]));
    assert.equal(byId.null.error.code, 'ERR_HERDLESS_CONTROL');
    assert.match(byId[7].error.message, /protocol version 2 is not spoken here/);
    assert.match(byId[8].error.message, /unknown command "nope"/);
    assert.equal(byId[9].ok, true);
    assert.equal(byId[9].result.v, 1);
    assert.equal(byId[9].result.app, APP);
  });

  it('stop stops gracefully, answers once stopped and removes the socket', async () => {
    const { cli, control } = await startCli([...LOCAL, '-w', '2', APP], env);
    const r = await client(['stop', '--timeout', '5000'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^stop: pid ${cli.pid} (stopped in|exited after) \\d+\\.\\d s\\n$`));
    const { code, signal } = await cli.exited;
    assert.equal(signal, null);
    assert.equal(code, 0, cli.log());
    assert.match(cli.log(), /herdless stop: stopping gracefully \(up to 5000 ms\)/);
    assert.equal(fs.existsSync(control), false);
    await waitUntil(() => processGroup(cli.pid).length === 0);
    const none = await client(['status'], env);
    assert.equal(none.code, 3);
    assert.match(none.stderr, /ERR_HERDLESS_NO_INSTANCE: no running herdless found in/);
  });

  it('with several instances, a command names them and fails; --pid and --control pick one', async () => {
    const a = await startCli([...LOCAL, '-w', '1', APP], env);
    const b = await startCli([...LOCAL, '-w', '1', APP], env);
    assert.equal(a.control, path.join(tmp, 'herdless', 'app.sock'));
    assert.equal(b.control, path.join(tmp, 'herdless', 'app-2.sock'), 'the second one gets a name of its own');
    const r = await client(['status'], env);
    assert.equal(r.code, 4);
    assert.match(r.stderr, /ERR_HERDLESS_SEVERAL_INSTANCES: 2 herdless instances are running/);
    assert.match(r.stderr, new RegExp(`pid ${a.cli.pid} `));
    assert.match(r.stderr, new RegExp(`pid ${b.cli.pid} `));
    assert.equal((await status(env, ['--pid', String(b.cli.pid)])).pid, b.cli.pid);
    assert.equal((await status(env, ['--pid', String(a.cli.pid)])).pid, a.cli.pid);
    assert.equal((await status({}, ['--control', b.control])).pid, b.cli.pid);
    const missing = await client(['status', '--pid', '1'], env);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /no herdless with pid 1 has a control socket/);
    // A primary killed outright leaves its socket file: it is not counted as running.
    a.cli.child.kill('SIGKILL');
    await a.cli.exited;
    assert.ok(fs.existsSync(a.control));
    assert.equal((await status(env)).pid, b.cli.pid);
  });

  it('--control PATH in use by another herdless is a start error; a default directory that is not ours is skipped with a warning', async () => {
    const sock = path.join(tmp, 'one.sock');
    const a = await startCli([...LOCAL, '-w', '1', '--control', sock, APP], env);
    assert.equal(a.control, sock);
    const b = runCli([...LOCAL, '-w', '1', '--control', sock, APP], { env });
    const { code } = await b.exited;
    assert.equal(code, 1, b.log());
    assert.match(b.log(), new RegExp(`ERR_HERDLESS_CONTROL: the control socket ${sock} is in use by herdless pid ${a.cli.pid}`));
    assert.equal((await status({}, ['--control', sock])).pid, a.cli.pid, 'the first one still has it');

    // Someone else's directory where the default one goes: serve anyway, without a socket.
    if (process.getuid() !== 0) return; // chown needs root (CI runs as root)
    const other = path.join(tmp, 'other');
    fs.mkdirSync(path.join(other, 'herdless'), { recursive: true });
    fs.chownSync(path.join(other, 'herdless'), 12345, 12345);
    const c = runCli([...LOCAL, '-w', '1', APP], { env: { XDG_RUNTIME_DIR: other } });
    const started_ = await started(c);
    assert.match(c.log(), /no control socket: ERR_HERDLESS_CONTROL: .*herdless belongs to uid 12345, not to this user/);
    assert.doesNotMatch(c.log(), /, control /);
    assert.equal((await get(started_.port)).status, 200);
    assert.deepEqual(fs.readdirSync(path.join(other, 'herdless')), []);
  });

  it('refuses another Unix user: EACCES by the file modes, and SO_PEERCRED when the modes are opened', async function () {
    if (process.getuid() !== 0) this.skip(); // needs root to create a user and drop to it (CI runs as root)
    const user = 'herdlessctl';
    try {
      execFileSync('id', [user], { stdio: 'ignore' });
    } catch {
      execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', user]);
    }
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }));
    const { cli, control } = await startCli([...LOCAL, '-w', '1', APP], env);
    const as = (args) => client(args, {}, { command: ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', process.execPath, BIN] });

    let r = await as(['status', '--control', control]);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /ERR_HERDLESS_CONTROL_REFUSED: .*permission denied \(EACCES\)/);

    // With the modes opened the kernel lets it connect; the primary still refuses by SO_PEERCRED.
    fs.chmodSync(tmp, 0o711);
    fs.chmodSync(path.dirname(control), 0o711);
    fs.chmodSync(control, 0o666);
    const mark = cli.log().length;
    r = await as(['status', '--control', control]);
    assert.equal(r.code, 5, r.stderr);
    assert.equal(r.stdout, '', 'nothing else is told');
    assert.match(r.stderr, new RegExp(`ERR_HERDLESS_CONTROL_REFUSED: uid ${uid} may not control this herdless \\(pid ${cli.pid}\\), which runs as uid 0`));
    r = await as(['stop', '--control', control]);
    assert.equal(r.code, 5);
    assert.equal(cli.log().slice(mark), '', 'a refused request does nothing');
    assert.equal((await status(env)).size, 1, 'still serving, and root is answered');
  });

  it('top draws the workers in a real terminal (tmux) and quits on q with status 0', async function () {
    const { cli, control } = await startCli([...LOCAL, '-w', '2', APP], env);
    const sock = `herdless-test-${process.pid}`;
    const done = path.join(tmp, 'top-exit');
    const tmux = (...args) => execFileSync('tmux', ['-L', sock, ...args], { encoding: 'utf8' });
    const cmd = `${process.execPath} ${BIN} top --control ${control}; echo $? > ${done}; sleep 30`;
    tmux('new-session', '-d', '-s', 'top', '-x', '160', '-y', '30', cmd);
    try {
      const pids = childPids(cli.pid);
      let screen = '';
      await waitUntil(() => {
        screen = tmux('capture-pane', '-p', '-t', 'top');
        return pids.every((p) => new RegExp(`^ +\\d +${p} +ready `, 'm').test(screen));
      }, 10000).catch((err) => {
        throw new Error(`${err.message}\nscreen:\n${screen}`);
      });
      assert.match(screen, /SLOT +PID +STATE/);
      assert.match(screen, /q quits; refreshed/);
      // It refreshes: a request shows up in the REQUESTS column.
      await get(Number(/127\.0\.0\.1:(\d+)/.exec(screen)[1]));
      await waitUntil(() => /ready +\S+ +0 +\d+ +1 /.test(tmux('capture-pane', '-p', '-t', 'top')), 5000);
      tmux('send-keys', '-t', 'top', 'q');
      await waitUntil(() => fs.existsSync(done) && fs.readFileSync(done, 'utf8').trim() !== '', 5000);
      assert.equal(fs.readFileSync(done, 'utf8').trim(), '0');
    } finally {
      try {
        tmux('kill-server');
      } catch {
        // already gone
      }
    }
  });

  it('top without a terminal prints a block of lines per refresh', async () => {
    const { cli } = await startCli([...LOCAL, '-w', '1', APP], env);
    const r = await client(['top', '-n', '2'], env);
    assert.equal(r.code, 0, r.stderr);
    const blocks = r.stdout.split(/^--- \d{4}-\d\d-\d\dT/m).filter(Boolean);
    assert.equal(blocks.length, 2, r.stdout);
    for (const b of blocks) assert.match(b, new RegExp(`^ +0 +${childPids(cli.pid)[0]} +ready `, 'm'));
    assert.doesNotMatch(r.stdout, /\x1b\[/, 'no escape codes in a pipe');
  });

  it('upgrade prints the new primary, which takes over the same socket path', async () => {
    const { cli, control } = await startCli([...LOCAL, '-w', '1', APP], env);
    const r = await client(['upgrade'], env);
    assert.equal(r.code, 0, r.stderr);
    const m = new RegExp(`^upgrade: pid ${cli.pid} -> pid (\\d+) in \\d+\\.\\d s; the old primary drains and exits\\n$`).exec(r.stdout);
    assert.ok(m, r.stdout);
    const newPid = Number(m[1]);
    const s = await status({}, ['--control', control]);
    assert.equal(s.pid, newPid);
    await cli.exited;
    assert.ok(fs.existsSync(control), 'the old primary left the new one its socket');
    assert.deepEqual(fs.readdirSync(path.dirname(control)), ['app.sock']);
    assert.equal((await status(env)).pid, newPid);
    process.kill(newPid, 'SIGTERM');
    await waitUntil(() => processGroup(cli.pid).length === 0);
    assert.equal(fs.existsSync(control), false);
  });

  it('Dispatcher.start({ control }) serves the same commands to API users', async () => {
    const sock = path.join(tmp, 'api.sock');
    const d = await Dispatcher.start({ app: APP, listen: { port: 0, host: '127.0.0.1' }, min: 1, max: 2, control: sock });
    try {
      assert.equal(d.controlPath(), sock);
      assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
      const s = await status({}, ['--control', sock]);
      assert.equal(s.pid, process.pid);
      assert.deepEqual(s.workers.map((w) => w.pid), d.workers().map((w) => w.pid));
      const r = await client(['scale', '+1', '--control', sock], {});
      assert.equal(r.stdout, 'scale: 1 -> 2 workers\n');
      assert.equal(d.size, 2);
      const stop = await client(['stop', '--control', sock], {});
      assert.equal(stop.code, 0, stop.stderr);
      assert.match(stop.stdout, new RegExp(`^stop: pid ${process.pid} stopped in`));
      assert.equal(d.size, 0);
      assert.equal(fs.existsSync(sock), false);
    } finally {
      await d.close({ timeout: 1000 });
    }
  });
});
