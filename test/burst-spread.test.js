'use strict';
// A burst of keep-alive connections must not land on one worker (issue #19, item 1). A
// keep-alive connection stays where it was placed, so a burst placed on one worker halves
// the pool for the connections' whole life. 1,000 connections are opened at once, each
// sending a keep-alive request; the split is read from each worker's connectionsReceived
// before and after, 20 times, and every run must be spread. A count, not a timing: it holds
// on a loaded machine.
const assert = require('node:assert/strict');
const { execFile, execFileSync } = require('node:child_process');
const net = require('node:net');
const { Dispatcher } = require('..');
const { waitFor, sleep } = require('./helpers');

const app = require.resolve('./fixtures/pid.js');
const local = { port: 0, host: '127.0.0.1' };
const BURST = 1000;
const RUNS = 20;
const SMALL = 100;
const SMALL_RUNS = 10;
const REQUEST = 'GET / HTTP/1.1\r\nHost: burst\r\n\r\n';

/** Opens `n` connections at once; each sends a keep-alive request and waits for its answer. */
async function burst(port, n) {
  const sockets = [];
  const answered = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect({ port, host: '127.0.0.1' });
    sockets.push(s);
    answered.push(
      new Promise((resolve, reject) => {
        s.setNoDelay(true);
        s.once('connect', () => s.write(REQUEST));
        s.once('data', resolve);  // the whole answer fits one segment; its arrival is enough
        s.once('error', reject);
        s.once('close', () => reject(new Error('closed before an answer')));
      }),
    );
  }
  try {
    await Promise.all(answered);
  } finally {
    for (const s of sockets) s.destroy();
  }
}

const show = (runs) => runs.map((got) => `${got.join('/')} (${got.stolen} stolen back)`).join(', ');

const hasWrk = (() => {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    return err.status === 1; // wrk --version exits 1 after printing its version
  }
})();

/** The issue's own reproduction: wrk opens `n` keep-alive connections at once, from two threads,
 *  and keeps them busy for a second (the shares then come from a loaded machine). */
function wrkBurst(port, n) {
  return new Promise((resolve, reject) => {
    execFile('wrk', ['-t2', `-c${n}`, '-d1s', `http://127.0.0.1:${port}/`], (err) => (err ? reject(err) : resolve()));
  });
}

describe('a burst of keep-alive connections is spread over the pool', function () {
  this.timeout(240000);
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 3000 });
    d = undefined;
  });

  async function shares(workers, open = burst, size = BURST, runsWanted = RUNS, warmUp = false) {
    d = await Dispatcher.start({ app, listen: local, min: workers, max: workers });
    const port = d.address().port;
    await waitFor(() => d.stats().workers.length === workers && d.stats().workers.every((w) => !w.loopAwake), 5000, 5, 'pool up and asleep');
    if (warmUp) await open(port, size);
    const runs = [];
    for (let r = 0; r < runsWanted; r++) {
      // Each burst meets a pool at rest (the last one's closes handled, its GCs done).
      await waitFor(() => d.stats().workers.every((w) => !w.loopAwake), 5000, 5, 'pool at rest');
      await sleep(50);
      const before = new Map(d.stats().workers.map((w) => [w.id, w.connectionsReceived]));
      const stolen = d.stats().dispatcher.stolen;
      await open(port, size);
      // Every connection closed and read: what wrk opened last may still wait in a channel.
      await waitFor(() => d.stats().workers.every((w) => w.connectionsOpen === 0 && w.connectionsWaiting === 0), 30000, 10, 'connections closed and read');
      const after = d.stats();
      const got = after.workers.map((w) => w.connectionsReceived - (before.get(w.id) ?? 0));
      got.stolen = after.dispatcher.stolen - stolen;  // shown with a failing run
      runs.push(got);
    }
    return runs;
  }

  it(`2 workers: the smaller share of ${BURST} connections is >= 0.4 in each of ${RUNS} runs`, async () => {
    const runs = await shares(2);
    const bad = runs.filter((got) => Math.min(...got) / got.reduce((a, b) => a + b, 0) < 0.4);
    assert.equal(bad.length, 0, `runs with a share under 0.4: ${show(bad)} (all: ${show(runs)})`);
    for (const got of runs) assert.equal(got.reduce((a, b) => a + b, 0), BURST);
  });

  it(`4 workers, wrk -t2 -c${BURST} -d1s (raw sockets without wrk): each worker's share is >= 0.15 in each of ${RUNS} runs`, async () => {
    // An even share is 0.25; 0.15 leaves room for a worker the scheduler kept off the CPU for
    // part of the burst on a 2-core machine, and still fails a burst left on one or two
    // workers (before the fix: a worker with none in most runs, under wrk).
    const runs = await shares(4, hasWrk ? wrkBurst : burst);
    const bad = runs.filter((got) => Math.min(...got) / got.reduce((a, b) => a + b, 0) < 0.15);
    assert.equal(bad.length, 0, `runs with a share under 0.15: ${show(bad)} (all: ${show(runs)})`);
    // wrk opens at least its connections (more if some failed and it reconnected).
    for (const got of runs) assert.ok(got.reduce((a, b) => a + b, 0) >= BURST, show([got]));
  });

  it(`4 workers, a smaller burst (${SMALL} connections): each worker's share is >= 0.1 in at least ${SMALL_RUNS - 2} of ${SMALL_RUNS} runs`, async () => {
    // Below 64 held a worker is passed over for spreading only when what it holds is lasting
    // (more than it closed lately): short connections passing through stay concentrated, a
    // burst of keep-alive ones does not (before: 64 / 27 / 5 / 5, 33 / 33 / 33 / 2 under wrk,
    // bursts meeting a pool still busy with the last one).
    // One burst first, not counted: workers that have never run the app's code hold their
    // loops for ms compiling it, and what is stolen back from them then decides the split.
    const runs = await shares(4, hasWrk ? wrkBurst : burst, SMALL, SMALL_RUNS, true);
    console.log(`      ${SMALL} at once on 4 workers: ${show(runs)}`);
    // A burst this small is over within tens of ms: a worker whose loop the machine holds past
    // 100 ms then (a GC, the scheduler on 2 shared cores) is passed over by design, as a stalled
    // one is. So two runs of ten may miss, and the typical run must be near even.
    const smallest = runs.map((got) => Math.min(...got) / got.reduce((a, b) => a + b, 0));
    const bad = runs.filter((_, i) => smallest[i] < 0.1);
    assert.ok(bad.length <= 2, `runs with a share under 0.1: ${show(bad)} (all: ${show(runs)})`);
    const median = [...smallest].sort((a, b) => a - b)[smallest.length >> 1];
    assert.ok(median >= 0.15, `the median run's smallest share is ${median.toFixed(2)} (all: ${show(runs)})`);
    for (const got of runs) assert.ok(got.reduce((a, b) => a + b, 0) >= SMALL, show([got]));
  });
});
