'use strict';
// systemd's notify protocol, checked against a real AF_UNIX datagram socket (python3 binds
// it: Node cannot) while the CLI runs as users run it.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { runCli, started, childPids, killAll, BIN } = require('./ship/cli-proc');
const { get } = require('./ship/http');
const { notifyReceiver } = require('./helpers/notify-socket');

const APP = path.join(__dirname, 'fixtures', 'cli', 'slow-load.js');
const LOCAL = ['--host', '127.0.0.1', '--port', '0'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('systemd notify (NOTIFY_SOCKET)', function () {
  this.timeout(30000);
  let tmp;
  let marks;
  let receiver;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-notify-'));
    marks = path.join(tmp, 'marks');
    fs.mkdirSync(marks);
  });
  afterEach(() => {
    receiver?.close();
    receiver = undefined;
    killAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const loaded = () => fs.readdirSync(marks).filter((f) => f.startsWith('loaded-')).length;

  it('READY=1 comes only once min workers are ready, with a STATUS line; workers never see NOTIFY_SOCKET', async () => {
    const sock = path.join(tmp, 'notify.sock');
    receiver = await notifyReceiver(sock);
    const cli = runCli([...LOCAL, '--min', '2', '--max', '3', APP], {
      env: { NOTIFY_SOCKET: sock, WATCHDOG_USEC: '10000000', MARKS: marks, LOAD_MS: '400' },
    });
    const ready = await receiver.waitFor((m) => m.fields.READY === '1');
    // Counted the moment READY=1 arrived: both workers had finished loading the app.
    assert.equal(loaded(), 2, 'READY=1 before the workers were ready');
    assert.equal(ready.pid, cli.pid);
    assert.equal(ready.fields.STATUS, 'serving, 2 workers (min 2, max 3), mode dispatch');
    assert.equal(receiver.messages.indexOf(ready), 0, 'nothing is sent before READY=1');
    const b = await started(cli);
    const env = JSON.parse((await get(b.port, '/env')).body);
    assert.deepEqual(env, {}, 'workers must not inherit NOTIFY_SOCKET or WATCHDOG_*');
    cli.child.kill('SIGTERM');
    assert.equal((await cli.exited).code, 0, cli.log());
  });

  it('workers started through the API (no CLI) never see NOTIFY_SOCKET or WATCHDOG_* either', async () => {
    const { execFile } = require('node:child_process');
    const script = `
      const { Dispatcher } = require(${JSON.stringify(path.join(__dirname, '..'))});
      const http = require('node:http');
      Dispatcher.start({ app: ${JSON.stringify(APP)}, listen: { port: 0, host: '127.0.0.1' }, min: 1, max: 1 }).then((d) => {
        http.get({ port: d.address().port, host: '127.0.0.1', path: '/env' }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => { process.stdout.write(body); d.close().then(() => process.exit(0)); });
        });
      });`;
    const out = await new Promise((resolve, reject) => {
      execFile(process.execPath, ['-e', script], {
        env: { ...process.env, NOTIFY_SOCKET: path.join(tmp, 'nobody.sock'), WATCHDOG_USEC: '1000000', WATCHDOG_PID: '1', MARKS: marks, LOAD_MS: '10' },
        timeout: 20000,
      }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
    });
    assert.deepEqual(JSON.parse(out), {}, 'a worker inherited the primary\'s systemd variables');
  });

  it('RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a HUP reload, STATUS on a resize, STOPPING=1 on TERM', async () => {
    const sock = path.join(tmp, 'notify.sock');
    receiver = await notifyReceiver(sock);
    const cli = runCli([...LOCAL, '--min', '1', '--max', '2', APP], { env: { NOTIFY_SOCKET: sock, MARKS: marks, LOAD_MS: '50' } });
    await started(cli);
    await receiver.waitFor((m) => m.fields.READY === '1');

    let from = receiver.messages.length;
    const before = process.hrtime.bigint() / 1000n;
    cli.child.kill('SIGHUP');
    const reloading = await receiver.waitFor((m) => m.fields.RELOADING === '1', 10000, from);
    const after = process.hrtime.bigint() / 1000n;
    // CLOCK_MONOTONIC is one clock for the whole machine: the CLI's stamp falls between ours.
    const stamp = BigInt(reloading.fields.MONOTONIC_USEC);
    assert.ok(stamp >= before && stamp <= after, `MONOTONIC_USEC ${stamp} not within [${before}, ${after}]`);
    assert.equal(reloading.fields.STATUS, 'reloading');
    await cli.waitLog(/reload done/);
    const readyAgain = await receiver.waitFor((m) => m.fields.READY === '1', 10000, from);
    assert.ok(receiver.messages.indexOf(readyAgain) > receiver.messages.indexOf(reloading));
    assert.equal(readyAgain.fields.STATUS, 'serving, 1 worker (min 1, max 2), mode dispatch');

    from = receiver.messages.length;
    cli.child.kill('SIGTTIN');
    await receiver.waitFor((m) => m.fields.STATUS === 'serving, 2 workers (min 1, max 2), mode dispatch', 10000, from);

    from = receiver.messages.length;
    cli.child.kill('SIGTERM');
    const stopping = await receiver.waitFor((m) => m.fields.STOPPING === '1', 10000, from);
    assert.equal(stopping.fields.STATUS, 'stopping');
    assert.equal((await cli.exited).code, 0, cli.log());
  });

  it('an abstract socket name (@name) works', async () => {
    const name = `@herdless-test-${process.pid}-${Date.now()}`;
    receiver = await notifyReceiver(name);
    const cli = runCli([...LOCAL, '-w', '1', APP], { env: { NOTIFY_SOCKET: name, MARKS: marks, LOAD_MS: '10' } });
    const ready = await receiver.waitFor((m) => m.fields.READY === '1');
    assert.equal(ready.pid, cli.pid);
    cli.child.kill('SIGTERM');
    await receiver.waitFor((m) => m.fields.STOPPING === '1');
    assert.equal((await cli.exited).code, 0, cli.log());
  });

  it('a NOTIFY_SOCKET nobody listens on is reported once and serving goes on', async () => {
    const cli = runCli([...LOCAL, '-w', '1', APP], { env: { NOTIFY_SOCKET: path.join(tmp, 'nobody.sock'), MARKS: marks, LOAD_MS: '10' } });
    const b = await started(cli);
    await cli.waitLog(/cannot notify systemd at NOTIFY_SOCKET=.*nobody\.sock: ENOENT/);
    assert.equal((await get(b.port)).status, 200);
    cli.child.kill('SIGHUP');
    await cli.waitLog(/reload done/);
    assert.equal(cli.log().match(/cannot notify/g).length, 1);
    cli.child.kill('SIGTERM');
    assert.equal((await cli.exited).code, 0, cli.log());
  });

  it('WATCHDOG=1 every WATCHDOG_USEC/2 when WATCHDOG_PID is ours or unset, never for another pid', async () => {
    const sock = path.join(tmp, 'notify.sock');
    receiver = await notifyReceiver(sock);
    // WATCHDOG_PID=$$ then exec: the pid systemd would name is the CLI's own.
    const own = runCli([...LOCAL, '-w', '1', APP], {
      command: ['sh', '-c', 'WATCHDOG_PID=$$ exec "$0" "$@"', process.execPath, BIN],
      env: { NOTIFY_SOCKET: sock, WATCHDOG_USEC: '200000', MARKS: marks, LOAD_MS: '10' },
    });
    const other = runCli([...LOCAL, '-w', '1', APP], {
      env: { NOTIFY_SOCKET: sock, WATCHDOG_USEC: '200000', WATCHDOG_PID: '1', MARKS: marks, LOAD_MS: '10' },
    });
    const unset = runCli([...LOCAL, '-w', '1', APP], { env: { NOTIFY_SOCKET: sock, WATCHDOG_USEC: '200000', MARKS: marks, LOAD_MS: '10' } });
    await Promise.all([started(own), started(other), started(unset)]);
    await sleep(1200);
    const pings = (cli) => receiver.messages.filter((m) => m.pid === cli.pid && m.fields.WATCHDOG === '1');
    // 100 ms apart over 1.2 s: about 12; a loaded machine may delay some timers.
    assert.ok(pings(own).length >= 4, `own: ${pings(own).length} WATCHDOG=1`);
    assert.ok(pings(unset).length >= 4, `unset: ${pings(unset).length} WATCHDOG=1`);
    assert.equal(pings(other).length, 0, 'WATCHDOG_PID names another process');
    assert.ok(receiver.messages.some((m) => m.pid === other.pid && m.fields.READY === '1'), 'it still notifies READY=1');
    for (const cli of [own, other, unset]) cli.child.kill('SIGTERM');
    await Promise.all([own.exited, other.exited, unset.exited]);
  });

  it('no WATCHDOG=1 while no worker serves; they resume once one is ready again', async () => {
    const sock = path.join(tmp, 'notify.sock');
    receiver = await notifyReceiver(sock);
    const cli = runCli([...LOCAL, '-w', '1', APP], { env: { NOTIFY_SOCKET: sock, WATCHDOG_USEC: '100000', MARKS: marks, LOAD_MS: '10' } });
    await started(cli);
    await receiver.waitFor((m) => m.fields.WATCHDOG === '1');
    // The replacement takes 1.5 s to load the app: until then no worker serves.
    const [worker] = childPids(cli.pid);
    fs.writeFileSync(path.join(tmp, 'slow'), '');
    const killedAt = Date.now();
    process.kill(worker, 'SIGKILL');
    await cli.waitLog(/worker 0 exited/);
    const readyAgain = await receiver.waitFor((m) => m.fields.WATCHDOG === '1' && m.at > killedAt + 300, 10000);
    const gap = receiver.messages.filter((m) => m.fields.WATCHDOG === '1' && m.at > killedAt + 150 && m.at < killedAt + 1200);
    assert.equal(gap.length, 0, 'WATCHDOG=1 while no worker was serving');
    assert.ok(readyAgain.at >= killedAt + 1200, 'keep-alives resume only once the new worker is ready');
    cli.child.kill('SIGTERM');
    assert.equal((await cli.exited).code, 0, cli.log());
  });

  it('after USR2 the new primary announces MAINPID=<its pid> with READY=1 and keeps the watchdog; the old one sends nothing after handing over', async () => {
    const sock = path.join(tmp, 'notify.sock');
    receiver = await notifyReceiver(sock);
    const cli = runCli([...LOCAL, '-w', '1', APP], {
      command: ['sh', '-c', 'WATCHDOG_PID=$$ exec "$0" "$@"', process.execPath, BIN],
      env: { NOTIFY_SOCKET: sock, WATCHDOG_USEC: '200000', MARKS: marks, LOAD_MS: '10' },
    });
    await started(cli);
    await receiver.waitFor((m) => m.pid === cli.pid && m.fields.WATCHDOG === '1');
    const from = receiver.messages.length;
    cli.child.kill('SIGUSR2');
    const upgrading = await receiver.waitFor((m) => m.fields.STATUS === 'upgrading', 10000, from);
    assert.equal(upgrading.pid, cli.pid);
    const takeover = await receiver.waitFor((m) => m.fields.MAINPID !== undefined, 15000, from);
    const newPid = Number(takeover.fields.MAINPID);
    assert.equal(takeover.pid, newPid, 'sent by the new primary itself');
    assert.notEqual(newPid, cli.pid);
    assert.equal(takeover.fields.READY, '1');
    assert.equal(takeover.fields.STATUS, 'serving, 1 worker (min 1, max 1), mode dispatch');
    await cli.waitLog(/stopped; pid \d+ serves now/, 15000);
    assert.equal((await cli.exited).code, 0);
    // WATCHDOG_PID named the old primary: the new one took the watchdog over with the service.
    await receiver.waitFor((m) => m.pid === newPid && m.fields.WATCHDOG === '1', 5000);
    const afterHandOver = receiver.messages.slice(receiver.messages.indexOf(takeover)).filter((m) => m.pid === cli.pid);
    assert.deepEqual(afterHandOver.map((m) => m.text), [], 'the old primary spoke after the new one took over');
    process.kill(newPid, 'SIGTERM');
    await receiver.waitFor((m) => m.pid === newPid && m.fields.STOPPING === '1', 10000);
  });
});
