'use strict';
// onShutdown(fn) from herdless/worker: run once whenever a worker stops taking connections,
// whatever the reason, observed through the file test/fixtures/shutdown-hook.js writes.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Dispatcher } = require('..');
const { get, waitFor, alive } = require('./helpers');
const { runCli, started, childPids, killAll } = require('./ship/cli-proc');

const app = require.resolve('./fixtures/shutdown-hook.js');
const local = { port: 0, host: '127.0.0.1' };

/** The hook file's lines as [pid, what, reason]. */
function lines(file) {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split(' '));
}
const linesOf = (file, pid) => lines(file).filter(([p]) => Number(p) === pid);

/** Capture what workers write to stderr (the primary copies it to process.stderr). */
function captureStderr() {
  const original = process.stderr.write;
  let text = '';
  process.stderr.write = function (chunk, ...rest) {
    text += String(chunk);
    return original.call(this, chunk, ...rest);
  };
  return { get text() { return text; }, restore: () => (process.stderr.write = original) };
}

describe('onShutdown hooks', function () {
  let d;
  let dir;
  let file;
  const start = (options, mode = 'once') =>
    Dispatcher.start({ app, listen: local, min: 1, max: 1, env: { HOOK_FILE: file, HOOK_MODE: mode }, ...options });

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-hooks-'));
    file = path.join(dir, 'hooks.log');
  });
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('dispatcher close(): every worker runs its hook once, with "shutdown"', async () => {
    d = await start({ min: 2, max: 2 });
    const pids = d.workers().map((w) => w.pid);
    assert.deepEqual(lines(file), [], 'a hook ran before any shutdown');
    await d.close();
    d = undefined;
    for (const pid of pids) assert.deepEqual(linesOf(file, pid), [[String(pid), 'hook', 'shutdown']]);
  });

  it('reload(): each old worker runs its hook once, with "reload"; the new ones do not', async () => {
    d = await start({ min: 2, max: 2 });
    const old = d.workers().map((w) => w.pid);
    await d.reload();
    const fresh = d.workers().map((w) => w.pid);
    for (const pid of old) assert.deepEqual(linesOf(file, pid), [[String(pid), 'hook', 'reload']]);
    for (const pid of fresh) assert.deepEqual(linesOf(file, pid), []);
  });

  it('resize() down: each retired worker runs its hook with "scale-down"', async () => {
    d = await start({ min: 1, max: 3 });
    await d.resize(3);
    const before = d.workers().map((w) => w.pid);
    await d.resize(1);
    const kept = d.workers().map((w) => w.pid);
    const retired = before.filter((pid) => !kept.includes(pid));
    assert.equal(retired.length, 2);
    for (const pid of retired) assert.deepEqual(linesOf(file, pid), [[String(pid), 'hook', 'scale-down']]);
    for (const pid of kept) assert.deepEqual(linesOf(file, pid), []);
  });

  it('recycling (maxRequestsPerWorker): the recycled worker runs its hook with "recycle"', async () => {
    d = await start({ maxRequestsPerWorker: 5, scale: { interval: 50 } });
    const first = d.workers()[0].pid;
    for (let i = 0; i < 10; i++) await get(d.address().port);
    await waitFor(() => linesOf(file, first).length > 0, 10000);
    assert.deepEqual(linesOf(file, first), [[String(first), 'hook', 'recycle']]);
  });

  it("the app's server.close(): the hook runs with \"closed\"", async () => {
    d = await start();
    const pid = d.workers()[0].pid;
    assert.equal((await get(d.address().port, '/close')).text, `closing ${pid}`);
    await waitFor(() => linesOf(file, pid).length > 0);
    assert.deepEqual(linesOf(file, pid), [[String(pid), 'hook', 'closed']]);
  });

  it('SIGTERM to a worker: the hook runs with "signal", and the pool replaces it', async () => {
    d = await start();
    const pid = d.workers()[0].pid;
    process.kill(pid, 'SIGTERM');
    await waitFor(() => !alive(pid));
    assert.deepEqual(linesOf(file, pid), [[String(pid), 'hook', 'signal']]);
    await waitFor(() => d.size === 1 && d.workers()[0].pid !== pid);
  });

  it('the CLI: SIGTTOU retires a worker ("scale-down"), SIGTERM stops the rest ("shutdown")', async () => {
    const cli = runCli(['--host', '127.0.0.1', '--port', '0', '--min', '1', '--max', '2', app], { env: { HOOK_FILE: file } });
    try {
      await started(cli);
      process.kill(cli.pid, 'SIGTTIN');
      await cli.waitLog(/SIGTTIN: pool target 2/);
      const both = childPids(cli.pid);
      assert.equal(both.length, 2, cli.log());
      process.kill(cli.pid, 'SIGTTOU');
      await cli.waitLog(/SIGTTOU: pool target 1/);
      const kept = childPids(cli.pid);
      const retired = both.filter((pid) => !kept.includes(pid));
      assert.equal(retired.length, 1);
      assert.deepEqual(linesOf(file, retired[0]), [[String(retired[0]), 'hook', 'scale-down']]);
      process.kill(cli.pid, 'SIGTERM');
      assert.equal((await cli.exited).code, 0, cli.log());
      for (const pid of kept) assert.deepEqual(linesOf(file, pid), [[String(pid), 'hook', 'shutdown']]);
    } finally {
      killAll();
    }
  });

  it('the primary gone (SIGKILLed): its workers run their hooks with "primary-gone", then exit', async () => {
    const fixture = require.resolve('./fixtures/options-primary.js');
    const options = { app: 'shutdown-hook.js', listen: local, min: 2, max: 2, env: { HOOK_FILE: file } };
    const primary = spawn(process.execPath, [fixture, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((r) => primary.once('exit', r));
    let out = '';
    primary.stdout.on('data', (c) => (out += c));
    await waitFor(() => out.includes('\n'), 15000);
    const { workers } = JSON.parse(out);
    primary.kill('SIGKILL');
    await exited;
    await waitFor(() => workers.every((pid) => !alive(pid)), 5000);
    for (const pid of workers) assert.deepEqual(linesOf(file, pid), [[String(pid), 'hook', 'primary-gone']]);
  });

  it('an async hook (300 ms) delays the exit until it is done', async () => {
    d = await start({}, 'slow');
    const pid = d.workers()[0].pid;
    let exitedAt;
    d.on('worker-exit', (e) => e.pid === pid && (exitedAt = lines(file).map((l) => l[1])));
    await d.close();
    d = undefined;
    assert.deepEqual(exitedAt, ['slow-start', 'slow-done'], 'the worker exited before its hook finished');
  });

  it('a hook that never settles is cut at the shutdown deadline, and says so on stderr', async () => {
    d = await start({}, 'never');
    const id = d.workers()[0].id;
    const pid = d.workers()[0].pid;
    let exit;
    d.on('worker-exit', (e) => (exit = e));
    const stderr = captureStderr();
    const t0 = Date.now();
    try {
      await d.close({ timeout: 1500 });
    } finally {
      stderr.restore();
    }
    const took = Date.now() - t0;
    d = undefined;
    assert.ok(!alive(pid));
    assert.ok(took >= 1300, `the worker left after ${took} ms, before the deadline, with its hook unsettled`);
    assert.deepEqual(linesOf(file, pid), [[String(pid), 'never-start', 'shutdown']]);
    // The worker exits by itself just before the primary's SIGKILL; under load the kill may win.
    if (exit.signal === null) assert.match(stderr.text, new RegExp(`worker ${id}: shutdown deadline reached with 1 onShutdown hook\\(s\\) unsettled`));
  });

  it('a hook that throws or rejects is logged with the worker id; the others still run', async () => {
    d = await start({}, 'throw');
    const { id, pid } = d.workers()[0];
    const stderr = captureStderr();
    try {
      await d.close();
    } finally {
      stderr.restore();
    }
    d = undefined;
    assert.deepEqual(linesOf(file, pid), [[String(pid), 'hook', 'shutdown']]);
    assert.match(stderr.text, new RegExp(`worker ${id}: an onShutdown hook failed \\(shutdown\\): Error: hook one broke`));
    assert.match(stderr.text, new RegExp(`worker ${id}: an onShutdown hook failed \\(shutdown\\): Error: hook two broke`));
  });

  it('a hook registered once shutdown has begun runs at once, with the same reason', async () => {
    d = await start({}, 'late');
    const pid = d.workers()[0].pid;
    await d.close();
    d = undefined;
    assert.deepEqual(linesOf(file, pid), [[String(pid), 'first', 'shutdown'], [String(pid), 'late', 'shutdown']]);
  });
});
