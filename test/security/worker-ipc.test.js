'use strict';
// Issue 17, item 4: a worker's IPC channel must not cost the primary fds or unbounded memory.
// Node's channel passes handles: each process.send(msg, socket) from a worker became an fd in
// the primary that nobody closed (1,000 sends: +1,000 fds, and EMFILE at the limit); a line
// that is not JSON threw out of Node's channel code into the primary (it died); an endless
// line was buffered whole.
const assert = require('node:assert/strict');
const { get, waitFor, sleep } = require('../helpers');
const { fdCount } = require('../helpers/proc');
const { ChildPrimary } = require('../helpers/primary-proc');

const app = require.resolve('../fixtures/faults/ipc-abuse-app.js');

function rssKb(pid) {
  return Number(/^VmRSS:\s+(\d+)/m.exec(require('node:fs').readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

describe('security: what a worker sends over IPC', function () {
  this.timeout(60000);
  let primary;
  afterEach(async () => primary?.kill());

  const start = () => ChildPrimary.start({ min: 1, max: 1, app, listen: { port: 0, host: '127.0.0.1' }, metrics: { port: 0, host: '127.0.0.1' } });

  it('closes every handle a worker sends at once: 1,000 sends leave the primary fds flat, counted in stats and /metrics', async () => {
    primary = await start();
    await get(primary.port, '/'); // the worker's first connection costs the primary nothing lasting
    const before = fdCount(primary.pid);
    const res = await get(primary.port, '/handles?n=1000');
    assert.equal(res.text, 'sent 1000');
    // The last handles may still be on their way through the channel: wait for the count, then
    // look at the fds (a handle that is counted has been closed).
    const { stats } = await waitFor(async () => {
      const r = await primary.stats();
      return r.stats.ipc.handlesClosed >= 1000 && r;
    }, 10_000);
    assert.equal(stats.ipc.handlesClosed, 1000);
    const after = fdCount(primary.pid);
    assert.ok(after - before <= 3, `primary fds ${before} -> ${after} after 1,000 handles sent`);
    const metrics = await get(primary.metricsPort, '/metrics');
    assert.match(metrics.text, /^herdless_ipc_refused_total\{kind="handle"\} 1000$/m);
    // The worker's channel still works (its queue moved on: each handle was acknowledged).
    assert.equal((await get(primary.port, '/handles?n=3')).text, 'sent 3');
    assert.equal((await get(primary.port, '/')).status, 200);
  });

  it('ends the channel of a worker that writes a line that is not JSON; the primary lives and serves', async () => {
    primary = await start();
    const [first] = primary.workers;
    assert.equal((await get(primary.port, '/garbage')).text, 'written');
    const { stats } = await waitFor(async () => {
      const s = await primary.stats();
      return s.stats.ipc.channelsClosed === 1 && s.stats.workers.some((w) => w.pid !== first.pid && w.state === 'ready') && s;
    }, 15000);
    assert.equal(stats.ipc.channelsClosed, 1);
    assert.equal((await get(primary.port, '/')).status, 200);
  });

  it('ends the channel of a worker that writes a message that never ends, before it costs the primary its size', async () => {
    primary = await start();
    const rssBefore = rssKb(primary.pid);
    // Once the primary ends the channel, the worker's writes fail (EPIPE, or EBADF once Node
    // has closed its end); buffered whole, all 64 MiB would have been written.
    const answer = (await get(primary.port, '/long?mb=64')).text;
    assert.ok(['EPIPE', 'EBADF', 'ECONNRESET'].includes(answer), `the worker's writes ended with ${answer}`);
    await waitFor(async () => (await primary.stats()).stats.ipc.channelsClosed === 1, 15000);
    const grown = rssKb(primary.pid) - rssBefore;
    // Buffered whole, 64 MiB of 'x' is 64 MiB of string (more while it is concatenated).
    assert.ok(grown < 32 * 1024, `primary RSS grew ${grown} kB`);
    assert.equal((await get(primary.port, '/')).status, 200);
  });

  it('pauses reading a channel past the message rate rather than keeping up with it', async () => {
    primary = await start();
    assert.equal((await get(primary.port, '/flood?n=20000')).text, 'sent');
    await waitFor(async () => (await primary.stats()).stats.ipc.throttled >= 1, 15000);
    assert.equal((await get(primary.port, '/')).status, 200);
  });
});
