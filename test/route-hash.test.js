'use strict';
// route: 'client-ip' as a pure function (native/primary/route-hash.h PickByClient, through
// addon.pickByClientForTest): rendezvous hashing over each worker's stable key (its slot),
// of a client hash keyed with the pool's secret (SipHash-2-4). One client address always
// lands on the same healthy worker, whatever the order the workers are listed in; adding one
// worker moves only the clients it now wins (about 1/(n+1)); an unhealthy worker is passed
// over for that connection only, to the same next choice for every connection of the client.
// These hold for any secret: each run draws its own. Without the secret, where an address
// lands cannot be computed: another secret puts it elsewhere.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { loadAddon } = require('../lib/shared/binding');

const { pickByClientForTest: rawPick, clientHashForTest: rawHash } = loadAddon();
const SECRET = crypto.randomBytes(16).toString('hex');
const pickByClient = (views, keys, address, now, opts = {}) => rawPick(views, keys, address, now, { secret: SECRET, ...opts });
const hash = (address, secret = SECRET) => rawHash(address, secret);
const NOW = { us: 50_000_000, ms: 50_000 };
const asleep = (o = {}) => ({ awake: false, sinceUs: NOW.us - 1000, sinceMs: NOW.ms - 1, ...o });
const awakeFor = (us, o = {}) => ({ awake: true, sinceUs: NOW.us - us, sinceMs: Math.floor((NOW.us - us) / 1000), ...o });

/** `count` distinct IPv4 client addresses spread over 10.0.0.0/8. */
const clients = (count) => Array.from({ length: count }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
/** The key (worker slot) each client lands on in a pool of healthy workers with these keys. */
function assign(ids, addrs, secret = SECRET) {
  const views = ids.map(() => asleep());
  return addrs.map((a) => ids[pickByClient(views, ids, a, NOW, { secret })]);
}

describe('client-ip routing: pickByClientForTest()', function () {
  it('the same address always picks the same worker, whatever the order of the list', () => {
    const ids = [3, 7, 8, 12];
    const addrs = clients(200);
    const first = assign(ids, addrs);
    assert.deepEqual(assign(ids, addrs), first);
    assert.deepEqual(assign([...ids].reverse(), addrs), first, 'the worker, not its index, is what the hash follows');
    // Spread: each of 4 workers wins a fair share of 200 clients (expected 50 each).
    for (const id of ids) {
      const n = first.filter((k) => k === id).length;
      assert.ok(n > 25 && n < 75, `worker ${id} got ${n} of 200 clients`);
    }
  });

  it('the secret decides: under another secret the same addresses land elsewhere, so nobody can aim them offline', () => {
    const ids = [0, 1, 2, 3];
    const addrs = clients(1000);
    const other = crypto.randomBytes(16).toString('hex');
    const mine = assign(ids, addrs);
    const theirs = assign(ids, addrs, other);
    const same = mine.filter((k, i) => k === theirs[i]).length;
    // Independent choices agree 1 time in 4: about 250 of 1000.
    assert.ok(same > 180 && same < 320, `${same} of 1000 addresses land on the same worker under two secrets`);
    // Nor under the unkeyed (all-zero) hash of the old code.
    const zero = assign(ids, addrs, '0'.repeat(32));
    assert.ok(mine.filter((k, i) => k === zero[i]).length < 320, 'the secret changed nothing');
    assert.notEqual(hash('192.0.2.7'), hash('192.0.2.7', other));
    // Sequential addresses (what someone who owns a /24 can choose) still spread evenly.
    const seq = assign(ids, Array.from({ length: 256 }, (_, i) => `198.51.100.${i}`));
    for (const id of ids) {
      const n = seq.filter((k) => k === id).length;
      assert.ok(n > 35 && n < 95, `worker ${id} got ${n} of 256 sequential addresses`);
    }
  });

  it('IPv4, IPv4-mapped IPv6 and the port: the address alone decides', () => {
    assert.equal(hash('192.0.2.7'), hash('::ffff:192.0.2.7'));
    assert.notEqual(hash('192.0.2.7'), hash('192.0.2.8'));
    assert.notEqual(hash('::1'), hash('0.0.0.1'), 'a v6 address is not a v4 one');
    assert.notEqual(hash('2001:db8::1'), '0');
    assert.equal(hash('not an address'), '0');
    const views = [asleep(), asleep(), asleep()];
    for (const a of clients(50)) assert.equal(pickByClient(views, [1, 2, 3], `::ffff:${a}`, NOW), pickByClient(views, [1, 2, 3], a, NOW));
    assert.equal(pickByClient(views, [1, 2, 3], 'not an address', NOW), -1, 'no address: the caller falls back to least-loaded');
  });

  it('growing from n to n+1 workers moves only the clients the new worker wins (about 1/(n+1))', () => {
    const addrs = clients(5000);
    for (const n of [2, 4, 8]) {
      const ids = Array.from({ length: n }, (_, i) => 100 + i * 3);
      const before = assign(ids, addrs);
      const after = assign([...ids, 999], addrs);
      let moved = 0;
      for (let i = 0; i < addrs.length; i++) {
        if (before[i] === after[i]) continue;
        moved++;
        assert.equal(after[i], 999, 'a client that moved went to the new worker, nowhere else');
      }
      const share = moved / addrs.length;
      assert.ok(Math.abs(share - 1 / (n + 1)) < 0.03, `n=${n}: ${(share * 100).toFixed(1)}% moved, expected ${(100 / (n + 1)).toFixed(1)}%`);
      // Shrinking back (the new worker retires) puts every client where it was.
      assert.deepEqual(assign(ids, addrs), before);
    }
  });

  it('removing one worker moves only its own clients', () => {
    const ids = [1, 2, 3, 4, 5];
    const addrs = clients(2000);
    const before = assign(ids, addrs);
    const after = assign([1, 2, 4, 5], addrs);
    for (let i = 0; i < addrs.length; i++) if (before[i] !== 3) assert.equal(after[i], before[i]);
  });

  it('an unhealthy worker is skipped for that connection only, to the same next choice', () => {
    const ids = [10, 20, 30, 40];
    const healthy = ids.map(() => asleep());
    const addrs = clients(300);
    const home = addrs.map((a) => pickByClient(healthy, ids, a, NOW));
    // Second choice: what the client gets with its home worker draining (not usable).
    for (const [k, a] of addrs.entries()) {
      const draining = healthy.map((v, i) => (i === home[k] ? { ...v, usable: false } : v));
      const second = pickByClient(draining, ids, a, NOW);
      assert.notEqual(second, home[k]);
      assert.ok(second >= 0);
      // Stalled (loop held past stallUs) or at its connection cap: the same second choice.
      const stalled = healthy.map((v, i) => (i === home[k] ? awakeFor(300_000) : v));
      assert.equal(pickByClient(stalled, ids, a, NOW, { stallUs: 100_000 }), second);
      const full = healthy.map((v, i) => (i === home[k] ? { ...v, open: 5 } : v));
      assert.equal(pickByClient(full, ids, a, NOW, { maxConnections: 5 }), second);
      // Busy for less than stallUs: still home (a sticky client does not move for a GC pause).
      const busy = healthy.map((v, i) => (i === home[k] ? awakeFor(20_000, { open: 3, inFlight: 1 }) : v));
      assert.equal(pickByClient(busy, ids, a, NOW, { stallUs: 100_000 }), home[k]);
    }
    // Healthy again: back home.
    for (const [k, a] of addrs.entries()) assert.equal(pickByClient(healthy, ids, a, NOW), home[k]);
    // Nobody healthy: -1, and the caller falls back to least-loaded.
    assert.equal(pickByClient(ids.map(() => ({ ...asleep(), usable: false })), ids, addrs[0], NOW), -1);
  });
});
