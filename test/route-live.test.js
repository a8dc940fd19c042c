'use strict';
// route: 'client-ip' with real processes and real sockets: clients bound to distinct loopback
// source addresses (127.0.0.2, 127.0.0.3, ...; all of 127/8 is local on Linux) each open many
// connections, and every connection of one client reaches the same worker; a resize from n to
// n+1 moves only clients to the new worker; a stalled worker's client is served elsewhere
// meanwhile and comes back; unix-socket clients (no address) are served least-loaded.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Dispatcher } = require('..');
const { parseCli } = require('../lib/cli/args');
const { get, request, waitFor } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };
const source = (i) => `127.0.0.${2 + i}`;

describe("route: 'client-ip' (real processes)", function () {
  this.timeout(60_000);
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 3000 });
    d = undefined;
  });

  /** The pid that serves each of `count` new connections from `from`. */
  async function pids(port, from, count, path = '/') {
    const out = [];
    for (let i = 0; i < count; i++) out.push(Number((await get(port, path, { localAddress: from })).text));
    return out;
  }
  const start = async (options) => {
    d = await Dispatcher.start({ app, listen: local, min: 4, max: 4, route: 'client-ip', ...options });
    return d.address().port;
  };

  it('every connection from one client address lands on one worker; clients spread over the pool', async () => {
    const port = await start();
    const homes = new Set();
    for (let c = 0; c < 12; c++) {
      const seen = new Set(await pids(port, source(c), 6));
      assert.equal(seen.size, 1, `client ${source(c)} reached workers ${[...seen]}`);
      homes.add([...seen][0]);
    }
    // 12 clients over 4 workers by a hash: more than one worker serves them (all on one: 4^-11).
    assert.ok(homes.size > 1, `all 12 clients on one worker`);
    // Concurrent connections too: the accept batch routes each by its own address.
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => get(port, '/', { localAddress: source(i % 4) })));
    for (let c = 0; c < 4; c++) {
      const seen = new Set(results.filter((_, i) => i % 4 === c).map((r) => r.text));
      assert.equal(seen.size, 1, `client ${source(c)} reached ${[...seen]} under concurrency`);
    }
  });

  it('a resize from 3 to 4 workers moves clients only to the new worker, and back when it goes', async () => {
    const port = await start({ min: 3, max: 4 });
    const clients = Array.from({ length: 30 }, (_, i) => source(i));
    const before = [];
    for (const c of clients) before.push((await pids(port, c, 1))[0]);
    const old = new Set(d.workers().map((w) => w.pid));
    await d.resize(4);
    const added = d.workers().find((w) => !old.has(w.pid)).pid;
    const after = [];
    for (const c of clients) after.push((await pids(port, c, 1))[0]);
    let moved = 0;
    for (let i = 0; i < clients.length; i++) {
      if (before[i] === after[i]) continue;
      moved++;
      assert.equal(after[i], added, `${clients[i]} moved from ${before[i]} to ${after[i]}, not to the new worker ${added}`);
    }
    assert.ok(moved < clients.length, 'not every client moved');
    await d.resize(3);
    await waitFor(() => d.workers().length === 3, 10_000);
    for (let i = 0; i < clients.length; i++) assert.equal((await pids(port, clients[i], 1))[0], before[i], 'back home after the shrink');
  });

  it("a SIGKILLed worker's replacement takes its slot and its clients back; nobody else's client moves", async () => {
    const port = await start();
    const clients = Array.from({ length: 16 }, (_, i) => source(i));
    const before = [];
    for (const c of clients) before.push((await pids(port, c, 1))[0]);
    const victim = before[0];
    const slot = d.workers().find((w) => w.pid === victim).slot;
    process.kill(victim, 'SIGKILL');
    await waitFor(() => d.workers().length === 4 && d.workers().every((w) => w.state === 'ready' && w.pid !== victim), 15_000);
    const replacement = d.workers().find((w) => w.slot === slot).pid;
    for (let i = 0; i < clients.length; i++) {
      const now = (await pids(port, clients[i], 1))[0];
      assert.equal(now, before[i] === victim ? replacement : before[i], `${clients[i]}: served by ${now}`);
    }
  });

  it('a stalled worker is skipped for new connections meanwhile; its clients come back after', async () => {
    const port = await start({ min: 2, max: 2 });
    const from = source(0);
    const [home] = await pids(port, from, 1);
    // Block the home worker's loop for 1.5 s (Atomics.wait), from the same client: it lands home.
    const blocked = get(port, '/wait?ms=1500', { localAddress: from });
    await waitFor(() => d.stats().workers.find((w) => w.pid === home)?.loopBusyMs > 150, 3000, 5, 'home worker stalled');
    const during = await pids(port, from, 3);
    for (const p of during) assert.notEqual(p, home, 'served by the other worker while home is stalled');
    assert.equal(Number((await blocked).text), home);
    await waitFor(() => !d.stats().workers.find((w) => w.pid === home).loopAwake, 3000);
    assert.deepEqual(await pids(port, from, 3), [home, home, home], 'back home once healthy');
  });

  it('unix-socket clients have no address: they are served least-loaded', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-route-'));
    const sock = path.join(dir, 's.sock');
    d = await Dispatcher.start({ app, listen: [{ path: sock }, local], min: 2, max: 2, route: 'client-ip' });
    const r = await request({ socketPath: sock, path: '/', headers: { connection: 'close' } });
    assert.equal(r.status, 200);
    assert.ok(d.workers().some((w) => w.pid === Number(r.text)));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an invalid route is ERR_HERDLESS_INVALID_OPTION, from the API and the CLI', async () => {
    await assert.rejects(Dispatcher.start({ app, listen: local, route: 'sticky' }), { code: 'ERR_HERDLESS_INVALID_OPTION', option: 'route' });
    await assert.rejects(Dispatcher.start({ app, listen: local, route: 'client-ip', mode: 'herd' }), { code: 'ERR_HERDLESS_INVALID_OPTION', option: 'route' });
    assert.throws(() => parseCli(['--route', 'sticky', 'app.js']), { code: 'ERR_HERDLESS_INVALID_OPTION', option: '--route' });
    assert.equal(parseCli(['--route', 'client-ip', 'app.js']).options.route, 'client-ip');
  });
});
