'use strict';
// socket.io (the real server and client packages), polling transport only, 4 workers. Each
// poll and each emit is its own HTTP request, and with an agent that does not keep
// connections alive each is a new connection: the dispatcher decides afresh where each goes.
// With route: 'client-ip' every request of a client reaches the worker that holds its
// session; with least-loaded some land on a worker that has never heard of the session id
// and socket.io answers 400 "Session ID unknown".
const assert = require('node:assert/strict');
const http = require('node:http');
const { io } = require('socket.io-client');
const { Dispatcher } = require('..');

const app = require.resolve('./fixtures/socketio-app.js');
const CLIENTS = 6;
const EMITS = 5;

/**
 * One socket.io client from `localAddress`: handshake, then EMITS emits with acks. Resolves
 * { acks: [{ value, pid, address }], errors: [string], statuses: [http status of a failure] }.
 */
function session(port, localAddress) {
  return new Promise((resolve) => {
    const agent = new http.Agent({ localAddress, keepAlive: false });
    const s = io(`http://127.0.0.1:${port}`, { transports: ['polling'], agent, forceNew: true, reconnection: false, timeout: 5000 });
    const out = { acks: [], errors: [], bodies: [] };
    const fail = (what, err) => {
      out.errors.push(`${what}: ${err?.message ?? err}`);
      // engine.io-client's transport errors carry the HTTP status and the response.
      const desc = err?.description;
      if (desc !== undefined) out.errors.push(`status ${typeof desc === 'number' ? desc : desc?.message ?? desc}`);
      const body = err?.context?.responseText ?? err?.description?.context?.responseText;
      if (body) out.bodies.push(String(body));
    };
    const done = () => {
      s.close();
      agent.destroy();
      resolve(out);
    };
    s.on('connect_error', (err) => {
      fail('connect_error', err);
      done();
    });
    s.on('disconnect', (reason, details) => {
      if (reason !== 'io client disconnect') fail(`disconnect (${reason})`, details);
    });
    s.on('connect', async () => {
      for (let k = 0; k < EMITS; k++) {
        try {
          out.acks.push(await s.timeout(3000).emitWithAck('echo', k));
        } catch (err) {
          fail('ack', err);
          break;
        }
      }
      done();
    });
  });
}

async function run(route) {
  const d = await Dispatcher.start({ app, listen: { port: 0, host: '127.0.0.1' }, min: 4, max: 4, route });
  try {
    const port = d.address().port;
    const sessions = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => session(port, `127.0.0.${2 + i}`)));
    return { sessions, handedOff: d.stats().dispatcher.handedOff, pids: d.workers().map((w) => w.pid) };
  } finally {
    await d.close({ timeout: 3000 });
  }
}

describe('socket.io polling (real socket.io and socket.io-client, 4 workers)', function () {
  this.timeout(60_000);

  it("route: 'client-ip': every client's handshake, polls and emits reach its session's worker", async () => {
    const { sessions, handedOff, pids } = await run('client-ip');
    const homes = new Set();
    sessions.forEach((s, i) => {
      assert.deepEqual(s.errors, [], `client ${i}: ${s.errors.join('; ')}`);
      assert.deepEqual(s.acks.map((a) => a.value), [0, 1, 2, 3, 4]);
      assert.equal(new Set(s.acks.map((a) => a.pid)).size, 1);
      assert.ok(pids.includes(s.acks[0].pid));
      assert.match(s.acks[0].address, new RegExp(`127\\.0\\.0\\.${2 + i}$`), 'the client really came from its own address');
      homes.add(s.acks[0].pid);
    });
    // Each session took several HTTP requests, each on a connection of its own.
    assert.ok(handedOff >= CLIENTS * (EMITS + 2), `only ${handedOff} connections`);
    assert.ok(homes.size > 1, 'the sessions are spread over the pool');
  });

  it('least-loaded (the differential): some client fails with "Session ID unknown" (400)', async () => {
    const { sessions } = await run('least-loaded');
    const failed = sessions.filter((s) => s.errors.length > 0);
    assert.ok(failed.length >= 1, 'every session survived without sticky routing');
    const text = failed.map((s) => [...s.errors, ...s.bodies].join(' ')).join(' | ');
    assert.match(text, /Session ID unknown|status 400/, text);
  });
});
