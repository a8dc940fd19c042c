'use strict';
// An app under `herdless app.js` sees what it would see under `node app.js` in a cluster
// worker: it is the main module with its own argv and Node flags, `cluster` says "worker",
// and server.close() / its own SIGTERM handler behave as in plain Node.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { runCli, started, processGroup, childPids, killAll } = require('./ship/cli-proc');
const { get } = require('./ship/http');

const APPS = path.join(__dirname, 'fixtures', 'apps');
const LOCAL = ['--host', '127.0.0.1', '--port', '0'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(predicate, ms = 5000) {
  const end = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`not true within ${ms} ms: ${predicate}`);
    await sleep(25);
  }
}

/** JSON answers from new connections, `n` at once, until `n` distinct worker pids have answered. */
async function fromWorkers(port, n, urlPath = '/') {
  const byPid = new Map();
  for (let i = 0; i < 100 && byPid.size < n; i++) {
    for (const r of await Promise.all(Array.from({ length: n }, () => get(port, urlPath)))) {
      assert.equal(r.status, 200, r.body);
      const body = JSON.parse(r.body);
      byPid.set(body.pid, body);
    }
  }
  assert.equal(byPid.size, n, `answers from ${byPid.size} worker(s), wanted ${n}`);
  return [...byPid.values()];
}


/** The app's own lines, without the `[slot pid] ` that the CLI puts before each worker line. */
const unprefixed = (log) => log.replace(/^\[\d+ \d+\] /gm, '');

describe('the app is the main module, in a cluster worker', function () {
  this.timeout(60000);
  afterEach(() => killAll());

  it('CommonJS: require.main === module, argv[1] is the app, -- args and --node-args reach it', async () => {
    const file = path.join(APPS, 'introspect.js');
    const cli = runCli([...LOCAL, '-w', '2', '--node-args=--max-old-space-size=96 --enable-source-maps', file, '--', '--flag', 'x y']);
    const { port } = await started(cli);
    for (const b of await fromWorkers(port, 2)) {
      assert.equal(b.isMain, true);
      assert.equal(b.mainFilename, file);
      assert.equal(b.argv1, file);
      assert.deepEqual(b.args, ['--flag', 'x y']);
      assert.deepEqual(b.execArgv, ['--max-old-space-size=96', '--enable-source-maps']);
      assert.ok(b.heap < 200 * 2 ** 20, `heap limit ${b.heap}: --max-old-space-size did not reach the worker`);
    }
  });

  it('ESM: import.meta.url === pathToFileURL(process.argv[1]).href', async () => {
    const file = path.join(APPS, 'introspect.mjs');
    const cli = runCli([...LOCAL, '-w', '1', file, '--', 'a']);
    const { port } = await started(cli);
    const [b] = await fromWorkers(port, 1);
    assert.equal(b.isMain, true);
    assert.equal(b.url, pathToFileURL(file).href);
    assert.deepEqual(b.args, ['a']);
    assert.equal(b.isWorker, true);
  });

  it('TypeScript through --node-args="--import tsx", with --env-file', async () => {
    const file = path.join(APPS, 'introspect.ts');
    const env = path.join(APPS, 'greeting.env');
    const cli = runCli([...LOCAL, '-w', '1', `--node-args=--import tsx --env-file=${env}`, file], { cwd: path.join(__dirname, '..') });
    const { port } = await started(cli);
    const [b] = await fromWorkers(port, 1);
    assert.deepEqual({ isMain: b.isMain, argv1: b.argv1, greeting: b.greeting }, { isMain: true, argv1: file, greeting: 'from-env-file' });
  });

  it('--node-args must start with a flag', async () => {
    const cli = runCli([...LOCAL, '--node-args=tsx', path.join(APPS, 'introspect.js')]);
    const { code } = await cli.exited;
    assert.notEqual(code, 0);
    assert.match(cli.log(), /ERR_HERDLESS_INVALID_OPTION.*--node-args/);
  });

  it('cluster: isPrimary false, isWorker true, worker.id = slot + 1 (NODE_APP_INSTANCE + 1), no fork()', async () => {
    const cli = runCli([...LOCAL, '-w', '2', path.join(APPS, 'introspect.js')]);
    const { port } = await started(cli);
    const seen = await fromWorkers(port, 2);
    for (const b of seen) {
      assert.deepEqual([b.isPrimary, b.isMaster, b.isWorker, b.fork], [false, false, true, 'undefined']);
      assert.equal(b.workerId, Number(b.instance) + 1);
    }
    assert.deepEqual(seen.map((b) => b.workerId).sort(), [1, 2]);
  });

  it('a replacement keeps the cluster.worker.id of the worker it replaces', async () => {
    const cli = runCli([...LOCAL, '-w', '2', path.join(APPS, 'introspect.js')]);
    const { port, pid } = await started(cli);
    const before = await fromWorkers(port, 2);
    const victim = before.find((b) => b.workerId === 1);
    const from = cli.log().length;
    process.kill(victim.pid, 'SIGKILL');
    // The replacement is ready (the pool says 'worker-start' once it serves).
    const [, replacement] = await cli.waitLog(/worker \d+ started in slot 0 \(pid (\d+)\)/, 15000, from);
    assert.notEqual(Number(replacement), victim.pid);
    const after = await fromWorkers(port, 2);
    const ids = new Map(after.map((b) => [b.workerId, b.pid]));
    assert.deepEqual([...ids.keys()].sort(), [1, 2]);
    assert.notEqual(ids.get(1), victim.pid);
  });

  it('cluster.worker.disconnect(): the worker stops taking connections and leaves; a fresh one takes its slot', async () => {
    const cli = runCli([...LOCAL, '-w', '1', path.join(APPS, 'introspect.js')]);
    const { port } = await started(cli);
    const from = cli.log().length;
    const worker = Number((await get(port, '/disconnect')).body);
    await cli.waitLog(new RegExp(`exited \\(pid ${worker}, code 0, closed\\)`), 10000, from);
    const [after] = await fromWorkers(port, 1);
    assert.notEqual(after.pid, worker);
    assert.equal(after.workerId, 1);
  });

  it('a self-forking app (if (cluster.isPrimary) fork()) does not fork under herdless', async () => {
    const cli = runCli([...LOCAL, '-w', '2', path.join(APPS, 'self-fork.js')]);
    const { port, pid } = await started(cli);
    const answers = new Set();
    for (let i = 0; i < 100 && answers.size < 2; i++) for (const r of await Promise.all([get(port, '/'), get(port, '/')])) answers.add(r.body);
    assert.equal(answers.size, 2);
    const workers = childPids(pid);
    assert.equal(workers.length, 2);
    assert.deepEqual(workers.flatMap((w) => childPids(w)), [], 'a worker forked processes of its own');
    assert.equal(processGroup(pid).length, 3);
  });

  it('process.send() from the app crashes neither the worker nor the primary', async () => {
    const cli = runCli([...LOCAL, '-w', '1', path.join(APPS, 'introspect.js')]);
    const { port, pid } = await started(cli);
    const [first] = await fromWorkers(port, 1);
    for (let i = 0; i < 20; i++) assert.equal((await get(port, '/send')).status, 200);
    const [after] = await fromWorkers(port, 1);
    assert.equal(after.pid, first.pid);
    assert.deepEqual(childPids(pid), [first.pid]);
    assert.doesNotMatch(cli.log(), /error|exited/i);
  });
});

describe("the app's process.send() reaches the Dispatcher", function () {
  this.timeout(30000);
  let d;
  afterEach(() => d?.close({ timeout: 2000 }));

  it("as a 'message' event with the worker (id, slot, pid), as cluster's", async () => {
    const { Dispatcher } = require('..');
    d = await Dispatcher.start({ min: 1, max: 1, app: path.join(APPS, 'introspect.js'), listen: { port: 0, host: '127.0.0.1' } });
    const got = [];
    d.on('message', (worker, message) => got.push([worker, message]));
    const [w] = d.workers();
    assert.equal((await get(d.address().port, '/send')).status, 200);
    await waitUntil(() => got.length === 2);
    assert.deepEqual(got, [
      [{ id: w.id, slot: w.slot, pid: w.pid }, { from: 'app', n: 1 }],
      [{ id: w.id, slot: w.slot, pid: w.pid }, 'a plain string'],
    ]);
  });
});

describe('shutdown as in plain Node', function () {
  this.timeout(60000);
  afterEach(() => killAll());

  it('server.close(cb): the next statement runs, cb runs, the worker leaves once its last timer fired', async () => {
    const cli = runCli([...LOCAL, '-w', '1', path.join(APPS, 'close-plain.js')]);
    const { port, pid } = await started(cli);
    const closing = await get(port, '/close');
    const worker = Number(closing.body.split(' ')[1]);
    const exit = await cli.waitLog(new RegExp(`close-plain ${worker} exit (\\d+)`), 10000);
    assert.equal(exit[1], '0');
    const lines = unprefixed(cli.log()).split('\n').filter((l) => l.startsWith(`close-plain ${worker}`)).map((l) => l.split(' ')[2]);
    assert.deepEqual(lines, ['after-close', 'callback', 'timer', 'exit']);
    await cli.waitLog(new RegExp(`exited \\(pid ${worker}, code 0, closed\\)`), 5000);
    // A fresh worker took its place.
    await waitUntil(async () => (await get(port, '/')).status === 200 && childPids(pid).length === 1 && !childPids(pid).includes(worker), 10000);
  });

  it("an app's own SIGTERM handler runs, and decides: here it closes its server", async () => {
    const cli = runCli([...LOCAL, '-w', '1', path.join(APPS, 'sigterm-app.js')], { env: { SIGTERM_MODE: 'close' } });
    const { port } = await started(cli);
    const worker = Number((await get(port, '/')).body);
    process.kill(worker, 'SIGTERM');
    await cli.waitLog(new RegExp(`sigterm-app ${worker} exit 0`), 10000);
    const lines = unprefixed(cli.log()).split('\n').filter((l) => l.startsWith(`sigterm-app ${worker}`)).map((l) => l.split(' ')[2]);
    assert.deepEqual(lines, ['SIGTERM', 'closed', 'exit']);
    await waitUntil(async () => Number((await get(port, '/')).body) !== worker, 10000);
  });

  it("an app's SIGTERM handler that only logs keeps the worker serving, as in plain Node", async () => {
    const cli = runCli([...LOCAL, '-w', '1', path.join(APPS, 'sigterm-app.js')], { env: { SIGTERM_MODE: 'log' } });
    const { port } = await started(cli);
    const worker = Number((await get(port, '/')).body);
    process.kill(worker, 'SIGTERM');
    await cli.waitLog(new RegExp(`sigterm-app ${worker} SIGTERM`), 10000);
    await sleep(500);
    for (let i = 0; i < 5; i++) assert.equal(Number((await get(port, '/')).body), worker);
    assert.doesNotMatch(cli.log(), /exit/);
  });

  it("herdless's own stop gives the app's SIGTERM handler the SIGTERM, as cluster's worker.kill() and pm2 do", async () => {
    const cli = runCli([...LOCAL, '-w', '2', path.join(APPS, 'sigterm-app.js')], { env: { SIGTERM_MODE: 'close' } });
    const { port, pid } = await started(cli);
    await waitUntil(() => childPids(pid).length === 2);
    const workers = childPids(pid);
    assert.equal((await get(port, '/')).status, 200);
    const t0 = Date.now();
    cli.child.kill('SIGTERM');
    const { code } = await cli.exited;
    assert.equal(code, 0, cli.log());
    assert.ok(Date.now() - t0 < 10000, 'the stop waited for the deadline');
    for (const w of workers) {
      const lines = unprefixed(cli.log()).split('\n').filter((l) => l.startsWith(`sigterm-app ${w}`)).map((l) => l.split(' ').slice(2).join(' '));
      assert.deepEqual(lines, ['SIGTERM', 'closed', 'exit 0'], `worker ${w}:\n${cli.log()}`);
    }
  });

  it("herdless's stop, an app whose SIGTERM handler only logs: the worker ends once nothing is left to do", async () => {
    const cli = runCli([...LOCAL, '-w', '1', '--shutdown-timeout', '20000', path.join(APPS, 'sigterm-app.js')], { env: { SIGTERM_MODE: 'log' } });
    const { port } = await started(cli);
    const worker = Number((await get(port, '/')).body);
    const t0 = Date.now();
    cli.child.kill('SIGTERM');
    const { code } = await cli.exited;
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 < 10000, 'the stop waited for the deadline');
    assert.match(unprefixed(cli.log()), new RegExp(`sigterm-app ${worker} SIGTERM\\nsigterm-app ${worker} exit 0`));
  });

  it("herdless's stop, an app whose SIGTERM handler keeps it alive: ended at the shutdown deadline", async () => {
    const cli = runCli([...LOCAL, '-w', '1', '--shutdown-timeout', '1500', path.join(APPS, 'sigterm-app.js')], { env: { SIGTERM_MODE: 'linger' } });
    const { port } = await started(cli);
    const worker = Number((await get(port, '/')).body);
    const t0 = Date.now();
    cli.child.kill('SIGTERM');
    await cli.exited;
    const took = Date.now() - t0;
    assert.match(cli.log(), new RegExp(`sigterm-app ${worker} SIGTERM`));
    assert.ok(took >= 1000 && took < 8000, `stopped after ${took} ms`);
    assert.equal(processGroup(cli.pid).length, 0);
  });

  it('without a handler of its own, SIGTERM to a worker is still herdless\'s graceful drain', async () => {
    const cli = runCli([...LOCAL, '-w', '1', path.join(APPS, 'close-plain.js')]);
    const { port } = await started(cli);
    const worker = Number((await get(port, '/')).body);
    process.kill(worker, 'SIGTERM');
    await cli.waitLog(new RegExp(`exited \\(pid ${worker}, code 0`), 10000);
  });
});
