'use strict';
// Clients that keep requesting for as long as a test needs: some open a new connection per
// request, some reuse keep-alive connections (one agent each). A request that fails on a
// reused idle connection the server closed at the same moment (err.reusedSocket with
// ECONNRESET/EPIPE, before any response) is retried once, as Node's docs advise and as
// HTTP clients do: that is the keep-alive race, not a lost request. Anything else counts.
const http = require('node:http');

function request(target, agent) {
  return new Promise((resolve, reject) => {
    const req = http.get({ ...target, path: '/', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body, connection: res.headers.connection }));
      res.on('error', reject);
    });
    req.setTimeout(10000, () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (err) => {
      err.reusedSocket = req.reusedSocket;
      reject(err);
    });
  });
}

const RETRIABLE = new Set(['ECONNRESET', 'EPIPE']);

/** Start the loops on `where` (a port on 127.0.0.1, { port, host } or { socketPath }); stop() resolves the tally. */
function loadLoop(where, { fresh = 3, keepAlive = 3 } = {}) {
  const target = typeof where === 'number' ? { host: '127.0.0.1', port: where } : where;
  let stopping = false;
  const tally = { ok: 0, retried: 0, failures: [], byPrimary: new Map(), byWorker: new Map() };
  const agents = Array.from({ length: keepAlive }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const record = (r) => {
    if (r.status !== 200) throw new Error(`status ${r.status}: ${r.body}`);
    const [worker, primary] = r.body.trim().split(' ').map(Number);
    tally.ok++;
    tally.byPrimary.set(primary, (tally.byPrimary.get(primary) ?? 0) + 1);
    tally.byWorker.set(worker, primary);
  };
  const once = async (agent) => {
    try {
      record(await request(target, agent));
    } catch (err) {
      if (!(err.reusedSocket && RETRIABLE.has(err.code))) throw err;
      tally.retried++;
      record(await request(target, agent));
    }
  };
  const loop = async (agent) => {
    while (!stopping) {
      try {
        await once(agent);
      } catch (err) {
        tally.failures.push(`${err.code ?? ''} ${err.message}`);
      }
    }
  };
  const loops = [...Array.from({ length: fresh }, () => loop(false)), ...agents.map((a) => loop(a))];
  return {
    tally,
    async stop() {
      stopping = true;
      await Promise.all(loops);
      for (const a of agents) a.destroy();
      return tally;
    },
  };
}

module.exports = { loadLoop };
