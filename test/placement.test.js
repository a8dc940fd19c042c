'use strict';
// The placement policy as a pure function (native/primary/placement.h through addon.pickForTest):
// which worker the accept thread hands the next connection to, given each worker's loop
// state and counts, and whether it takes back what a stalled worker has not read.
const assert = require('node:assert/strict');
const { loadAddon } = require('../lib/shared/binding');

const { pickForTest } = loadAddon();
const NOW = { us: 50_000_000, ms: 50_000 };
/** A worker asleep in poll since `ago` µs. */
const asleep = (ago, o = {}) => ({ awake: false, sinceUs: NOW.us - ago, sinceMs: Math.floor((NOW.us - ago) / 1000), ...o });
/** A worker whose loop has been awake (running callbacks) for `ago` µs. */
const awake = (ago, o = {}) => ({ awake: true, sinceUs: NOW.us - ago, sinceMs: Math.floor((NOW.us - ago) / 1000), ...o });
const pick = (workers, opts = {}) => pickForTest(workers, NOW, opts).pick;

describe('placement policy: pickForTest()', function () {
  it('a worker asleep in poll wins over one awake for only 100 µs, even with more connections open', () => {
    const r = pickForTest([awake(100, { open: 1, inFlight: 1 }), asleep(1_000_000, { open: 5 })], NOW);
    assert.deepEqual(r.tiers, ['prompt', 'free']);
    assert.equal(r.pick, 1);
  });

  it('among busy workers: the fewest connections waiting, then the one busy the shortest time', () => {
    assert.equal(pick([awake(1500), awake(300), awake(900)]), 1);
    // A connection already waiting may be a request that blocks: it outweighs time awake.
    assert.equal(pick([awake(300, { pending: 1, unreadSinceUs: NOW.us - 100 }), awake(1900)]), 1);
    assert.equal(pick([asleep(10, { pending: 1, unreadSinceUs: NOW.us - 10 }), awake(1900)]), 1);
    assert.equal(pick([awake(300, { pending: 2, unreadSinceUs: NOW.us - 100 }), awake(1200, { pending: 1, unreadSinceUs: NOW.us - 100 })]), 1);
  });

  it('among workers awake briefly: one with no request in flight first (the other may be at the start of a long handler)', () => {
    // Both 300 µs awake; worker 0 is in a handler, worker 1 finishing a response it already sent.
    assert.equal(pick([awake(300, { open: 1, inFlight: 1 }), awake(300, { open: 3 })]), 1);
    // ... even if the one in a handler has been awake for less time.
    assert.equal(pick([awake(100, { open: 1, inFlight: 1 }), awake(1200, { open: 1 })]), 1);
    // A connection already waiting still counts first.
    assert.equal(pick([awake(100, { open: 1, inFlight: 1 }), awake(300, { open: 1, pending: 1, unreadSinceUs: NOW.us - 300 })]), 0);
  });

  it('a worker awake past the threshold gets nothing while another can take it, whatever its load', () => {
    const r = pickForTest([awake(3000), awake(1500, { open: 50, inFlight: 50 })], NOW, { avoidUs: 2000 });
    assert.deepEqual(r.tiers, ['slow', 'prompt']);
    assert.equal(r.pick, 1);
    // ... and when every worker is past it, the least delayed still takes it.
    assert.equal(pick([awake(500_000), awake(200_000)], { avoidUs: 2000 }), 1);
  });

  it('connections sent to a sleeping worker that it has not read for long make it slow', () => {
    const r = pickForTest([asleep(10_000, { pending: 1, unreadSinceUs: NOW.us - 8000 }), awake(1000)], NOW, { avoidUs: 2000 });
    assert.deepEqual(r.tiers, ['slow', 'prompt']);
    assert.equal(r.pick, 1);
  });

  it('concentrates light load: among free workers with equal load, the one that fell asleep last', () => {
    assert.equal(pick([asleep(5_000_000), asleep(2_000), asleep(800_000)]), 1);
    // Open keep-alive connections come first, so they stay spread for when load rises.
    assert.equal(pick([asleep(5_000_000), asleep(2_000, { open: 3 })]), 0);
    // One we sent a connection under 1 ms ago is asleep only until that request arrives (which
    // may block): another free worker goes first, whatever its load or how long it slept.
    assert.equal(pick([asleep(50, { sentAtUs: NOW.us - 300, open: 1 }), asleep(5_000_000, { open: 4 })]), 1);
    // ... unless that connection has closed already: nothing of it can block (one client making
    // a request per connection keeps one warm worker instead of waking each in turn).
    assert.equal(pick([asleep(50, { sentAtUs: NOW.us - 300 }), asleep(200, { sentAtUs: NOW.us - 600 })]), 0, 'closed: not fresh');
    assert.equal(pick([asleep(50, { sentAtUs: NOW.us - 30_000 }), asleep(5_000_000)]), 0, 'sent long ago: not fresh');
    // Never at the expense of a free worker: one with a connection already waiting is not free.
    assert.equal(pick([asleep(10_000), asleep(100, { pending: 1, unreadSinceUs: NOW.us - 50 })]), 0);
  });

  it('at light load, a loop awake briefly with nothing in flight is on its way to poll: free and the warmest, so one client keeps one warm worker', () => {
    // One client, a request per connection: its next connection comes while the worker that
    // answered the last is still closing it. Sending it to the sleeping worker made the two
    // take turns, each woken cold (issue #19, one client). Light load: the accept thread's
    // last round found at most one connection, and this is the first of its round.
    const light = { light: true };
    const answered = { open: 1, sentAtUs: NOW.us - 400, servedSinceSent: true };
    const r = pickForTest([asleep(3000), awake(150, answered)], NOW, light);
    assert.deepEqual(r.tiers, ['free', 'free']);
    assert.equal(r.pick, 1);
    // The connection it just answered does not count as load.
    assert.equal(pickForTest([asleep(3000, { open: 1 }), awake(150, answered)], NOW, light).pick, 1);
    // In a burst (not light) the tiers decide as before: an awake loop is prompt.
    assert.deepEqual(pickForTest([asleep(3000), awake(150, answered)], NOW).tiers, ['free', 'prompt']);
    // Prompt, after every free worker, also: a loop holding other connections (their requests
    // may be on its next poll); one whose just-sent connection's request has not come (it may
    // block); one with a request in flight (300 µs into a 200 ms handler looks the same); one
    // with a connection unread; one awake past 500 µs.
    for (const w of [
      awake(150, { ...answered, open: 2 }),
      awake(150, { open: 1, sentAtUs: NOW.us - 400 }),
      awake(150, { ...answered, inFlight: 1 }),
      awake(150, { pending: 1, unreadSinceUs: NOW.us - 50 }),
      awake(800, answered),
    ]) {
      const t = pickForTest([asleep(3000), w], NOW, light);
      assert.deepEqual(t.tiers, ['free', 'prompt']);
      assert.equal(t.pick, 0);
    }
  });

  it('with the hedge on, a loop answering its one request counts as free and the warmest, while a sleeping worker could take back what it leaves unread', () => {
    // One client again: its next connection often comes before the response's 'finish' (the
    // worker still has the request in flight), and a sleeping worker then got it, cold.
    const hedged = { light: true, hedge: true };
    const answering = awake(120, { open: 1, inFlight: 1, sentAtUs: NOW.us - 300 });
    const r = pickForTest([asleep(3000), answering], NOW, hedged);
    assert.deepEqual(r.tiers, ['free', 'free']);
    assert.equal(r.pick, 1);
    // Not without the hedge, not in a burst, not past 500 µs awake, not with more connections
    // or a connection unread, and not with a request read but not yet started (a connection
    // sent now would be read in the same turn and wait behind it, beyond any taking back).
    assert.equal(pickForTest([asleep(3000), answering], NOW, { light: true }).pick, 0);
    assert.equal(pickForTest([asleep(3000), answering], NOW, { hedge: true }).pick, 0);
    for (const w of [
      awake(800, { open: 1, inFlight: 1 }),
      awake(120, { open: 2, inFlight: 1 }),
      awake(120, { open: 1, inFlight: 1, pending: 1, unreadSinceUs: NOW.us - 50 }),
      awake(120, { open: 1, sentAtUs: NOW.us - 300 }),
    ]) {
      assert.equal(pickForTest([asleep(3000), w], NOW, hedged).pick, 0);
    }
    // No worker asleep to take a connection back (the other awake, or asleep but just sent one
    // whose request may block): the tiers decide as without the hedge.
    assert.equal(pickForTest([awake(1500), answering], NOW, hedged).pick, 0);
    assert.equal(pickForTest([asleep(3000, { open: 1, sentAtUs: NOW.us - 200 }), answering], NOW, hedged).pick, 0);
    // Nor while connections wait unread anywhere in the pool (not light load, whatever the round).
    assert.equal(pickForTest([asleep(3000), answering, awake(100, { pending: 1, unreadSinceUs: NOW.us - 50 })], NOW, hedged).pick, 0);
  });

  it('the hedge: a connection left unread 1 ms is taken back while another worker is asleep with nothing sent to it lately', () => {
    const waiting = (unreadUs, o = {}) => awake(2000, { open: 1, inFlight: 1, pending: 1, unreadSinceUs: NOW.us - unreadUs, ...o });
    assert.deepEqual(pickForTest([waiting(1200), asleep(3000)], NOW).hedgeIn, [0, null]);
    assert.deepEqual(pickForTest([waiting(300), asleep(3000)], NOW).hedgeIn, [700, null]);
    // Asleep too, but slow to read: the same (a loaded host, a worker slow to be scheduled).
    assert.equal(pickForTest([asleep(10, { pending: 1, unreadSinceUs: NOW.us - 1500 }), asleep(3000)], NOW).hedgeIn[0], 0);
    // Nobody to take it: no hedge (stealAfter alone decides).
    assert.equal(pickForTest([waiting(1200), awake(100)], NOW).hedgeIn[0], null);
    assert.equal(pickForTest([waiting(1200), asleep(3000, { open: 1, sentAtUs: NOW.us - 200 })], NOW).hedgeIn[0], null);
    assert.equal(pickForTest([waiting(1200)], NOW).hedgeIn[0], null);
    // Only at light load: that one connection is all that waits unread in the pool (8 workers
    // on 2 cores at -c64 make rounds of one connection too, with many channels holding some).
    assert.equal(pickForTest([waiting(1200), asleep(3000), awake(100, { pending: 1, unreadSinceUs: NOW.us - 50 })], NOW).hedgeIn[0], null);
    assert.equal(pickForTest([waiting(1200, { pending: 2 }), asleep(3000)], NOW).hedgeIn[0], null);
  });

  it('spreads a burst (issue #19): past 64 connections held, none holds more than 8 + 1/8 over the least-holding worker that is not stalled', () => {
    // What was just sent and not read counts at once (pending), as open connections do.
    assert.equal(pick([asleep(10, { pending: 64, unreadSinceUs: NOW.us - 50 }), awake(1500)]), 1, 'pending counts');
    assert.equal(pick([asleep(10, { open: 64 }), awake(1500)]), 1, 'open counts');
    // Within the slack (8 + 64/8) the tiers decide: the free worker, however many it holds.
    assert.equal(pick([asleep(10, { open: 80 }), awake(1500, { open: 64 })]), 0);
    assert.equal(pick([asleep(10, { open: 81 }), awake(1500, { open: 64 })]), 1);
    // Below 64 the tiers alone decide: a free worker wins over a busy one, whatever it holds.
    assert.equal(pick([asleep(10, { open: 63 }), awake(1500)]), 0);
    // Every loop busy on a loaded machine: the least-holding one within twice the chosen one's time.
    assert.equal(pick([awake(20_000, { open: 300 }), awake(35_000, { open: 200 })]), 1);
    // A real stall (held past 100 ms and past twice the chosen one's time) gets nothing.
    assert.equal(pick([asleep(10, { open: 300 }), awake(150_000, { open: 10 })]), 0);
    assert.equal(pick([awake(20_000, { open: 300 }), awake(150_000, { open: 10 })]), 0);
    // Caps still hold.
    assert.equal(pick([asleep(10, { open: 300 }), awake(1500, { open: 10, maxConnections: 10 })]), 0);
  });

  it('a worker holding lasting connections (more than it closed lately) is spread from 16 held, not 64', () => {
    // recentCloses: what the accept thread counted it close in the last 1-2 s (received - open).
    const lasting = (open) => asleep(10, { open, recentCloses: 0 });
    assert.equal(pick([lasting(20), awake(1500, { open: 2 })]), 1, 'a burst of keep-alive connections: spread');
    assert.equal(pick([lasting(20), awake(1500, { open: 12 })]), 0, 'within the slack (8 + 12/8) the tiers decide');
    assert.equal(pick([lasting(15), awake(1500)]), 0, 'below 16 the tiers decide');
    // Short connections passing through (it closed more than it holds): concentrated up to 64, as before.
    assert.equal(pick([asleep(10, { open: 40, recentCloses: 900 }), awake(1500)]), 0);
    // Not known (no count yet, or a board that makes no sense): as before.
    assert.equal(pick([asleep(10, { open: 40 }), awake(1500)]), 0);
    // Never onto a real stall, nor (below 64) onto a loop held past avoid_us without progress
    // (one handler holding it); one that reads and answers while awake (a burst) is fine.
    assert.equal(pick([lasting(40), awake(150_000)]), 0);
    assert.equal(pick([lasting(40), awake(5000, { inFlight: 1 })]), 0);
    assert.equal(pick([lasting(40), awake(5000, { inFlight: 1, open: 3, progressing: true })]), 1);
    assert.equal(pick([asleep(10, { open: 70, recentCloses: 0 }), awake(5000, { inFlight: 1 })]), 1, 'past 64, as before');
  });

  it('a steal takes everything below 64 held, past that only what keeps the taker within the spread (issue #19)', () => {
    const stalled = (open, pending) => awake(50_000, { open, pending, unreadSinceUs: NOW.us - 50_000 });
    const r = pickForTest([stalled(1, 5), asleep(10, { open: 3 })], NOW);
    assert.deepEqual([r.steal[0], r.stealCount[0]], [true, 5]);
    // 300 held against a taker's 400: none moves (the taker would hold even more).
    assert.equal(pickForTest([stalled(200, 100), asleep(10, { open: 400 })], NOW).stealCount[0], 0);
    // 300 against 100: about half the difference, plus the slack; never more than is unread.
    assert.equal(pickForTest([stalled(100, 200), asleep(10, { open: 100 })], NOW).stealCount[0], Math.floor((300 - 100 + 8 + 12) / 2));
    assert.equal(pickForTest([stalled(200, 100), asleep(10, { open: 100 })], NOW).stealCount[0], 100);
    // Nobody free or prompt to take them: nothing.
    assert.equal(pickForTest([stalled(1, 5), awake(40_000)], NOW).stealCount[0], 0);
  });

  it('ties go round-robin from `start`', () => {
    const same = [awake(1000), awake(1000), awake(1000)];
    assert.equal(pick(same, { start: 0 }), 0);
    assert.equal(pick(same, { start: 1 }), 1);
    assert.equal(pick(same, { start: 2 }), 2);
  });

  it('caps: maxConnectionsPerWorker and the server\'s own maxConnections (field 10), the tighter wins', () => {
    const full = asleep(10, { open: 5 });
    assert.equal(pick([full, awake(50_000)], { maxConnections: 5 }), 1);
    assert.equal(pick([asleep(10, { open: 2, maxConnections: 2 }), awake(50_000)]), 1);
    assert.equal(pick([asleep(10, { open: 2, maxConnections: 9 }), awake(50_000)], { maxConnections: 2 }), 1);
    // A connection waiting in the channel counts against the cap too.
    assert.equal(pick([asleep(10, { open: 1, pending: 1, unreadSinceUs: NOW.us }), awake(50_000)], { maxConnections: 2 }), 1);
    assert.equal(pick([full, asleep(10, { open: 5 })], { maxConnections: 5 }), -1, 'everyone full: nobody');
    assert.equal(pick([asleep(10, { usable: false })]), -1);
  });

  it('untrusted scoreboards: received past sent, negative counts, a future time never attract connections', () => {
    const honestBusy = awake(400_000, { open: 30 });
    for (const liar of [
      asleep(10, { pending: -5 }), // received past sent
      asleep(10, { open: -1000 }), // negative open count
      asleep(10, { inFlight: -1 }),
      asleep(-60_000_000), // asleep since a minute in the future
      awake(-5_000_000), // busy since the future
    ]) {
      const r = pickForTest([liar, honestBusy], NOW, { avoidUs: 2000 });
      assert.equal(r.tiers[0], 'suspect', JSON.stringify(liar));
      assert.equal(r.pick, 1, `chose the liar ${JSON.stringify(liar)} over a busy honest worker`);
    }
    // Alone, a liar still gets connections (better than none), but never past a cap: its
    // counts cannot prove it has room.
    assert.equal(pick([asleep(10, { pending: -5 })]), 0);
    assert.equal(pick([asleep(10, { pending: -5 })], { maxConnections: 100 }), -1);
    assert.equal(pick([asleep(10, { open: -1000 })], { maxConnections: 100 }), -1);
    // A clock read a few µs before the worker's own store is not nonsense.
    assert.equal(pickForTest([asleep(-50)], NOW).tiers[0], 'free');
  });

  it('long spans come from the ms field: asleep 2 hours (the µs clock wrapped) is still free', () => {
    const twoHoursMs = 2 * 3600 * 1000;
    const w = { awake: false, sinceUs: (NOW.us + 2 ** 31) >>> 0, sinceMs: NOW.ms - twoHoursMs };
    assert.deepEqual(pickForTest([w], NOW).tiers, ['free']);
    const stuck = { awake: true, sinceUs: (NOW.us + 2 ** 31) >>> 0, sinceMs: NOW.ms - twoHoursMs };
    assert.deepEqual(pickForTest([stuck, awake(100, { inFlight: 1 })], NOW).tiers, ['slow', 'prompt']);
  });

  it('steal: only connections held unread past stealAfter, by a loop awake that long or not reading', () => {
    const opts = { stealAfterUs: 5000 };
    const r = pickForTest(
      [
        awake(6000, { pending: 3, unreadSinceUs: NOW.us - 1000 }), // busy 6 ms with 3 unread: steal
        awake(3000, { pending: 3, unreadSinceUs: NOW.us - 1000 }), // busy 3 ms: not yet
        asleep(100, { pending: 2, unreadSinceUs: NOW.us - 25_000 }), // asleep, 25 ms unread: stopped? steal
        asleep(100, { pending: 2, unreadSinceUs: NOW.us - 7000 }), // asleep, 7 ms: waiting for a CPU, leave it
        awake(60_000), // busy but nothing waiting: nothing to take
      ],
      NOW,
      opts,
    );
    assert.deepEqual(r.steal, [true, false, true, false, false]);
    // Stealing only ever happens towards a worker that is free or prompt: see the accept thread.
    assert.deepEqual(pickForTest([awake(60_000, { pending: 3, unreadSinceUs: NOW.us })], NOW, { stealAfterUs: 0 }).steal, [false], 'stealAfter 0 disables');
  });
});
