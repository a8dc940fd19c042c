'use strict';
/**
 * Runs inside the "lb" namespace of test/hosts/run.js (which cannot enter a namespace
 * itself) and does everything that needs its network, on the harness's orders over IPC:
 * the load through HAProxy, /healthz probes of the hosts, and a 50 ms poll of HAProxy's
 * stats socket that timestamps every server state change.
 *
 * Load: KEEPALIVE clients that each reuse one connection, and CLOSE clients that open a new
 * connection per request; each sends GET / back to back. Counters are cumulative; the
 * harness takes snapshots and subtracts.
 */
const http = require('node:http');
const net = require('node:net');

const [frontUrl, statsSocket, keepAliveClients, closeClients] = process.argv.slice(2);
const REQUEST_TIMEOUT_MS = 10_000;

const counts = { requests: 0, ok: 0, failed: 0, byHost: {}, byKind: {} };
const recentFailures = []; // { t, kind, client }
let running = false;

function snapshot() {
  return { t: Date.now(), ...structuredClone(counts) };
}

function fail(kind, client) {
  counts.failed++;
  counts.byKind[kind] = (counts.byKind[kind] || 0) + 1;
  recentFailures.push({ t: Date.now(), kind, client });
  if (recentFailures.length > 200) recentFailures.shift();
}

function once(agent, close) {
  return new Promise((resolve) => {
    const req = http.get(frontUrl, { agent, headers: close ? { connection: 'close' } : {} }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode === 200) {
          counts.ok++;
          const host = String(res.headers['x-served-by'] || 'unknown/').split('/')[0];
          counts.byHost[host] = (counts.byHost[host] || 0) + 1;
          resolve(null);
        } else resolve(`http ${res.statusCode}`);
      });
      res.on('error', (err) => resolve(`response ${err.code || err.message}`));
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
    req.on('error', (err) => resolve(err.code || err.message));
  });
}

async function client(i, close) {
  const agent = close ? false : new http.Agent({ keepAlive: true, maxSockets: 1 });
  const name = `${close ? 'close' : 'keepalive'}-${i}`;
  while (running) {
    const kind = await once(agent, close);
    counts.requests++;
    if (kind) {
      fail(kind, name);
      await new Promise((r) => setTimeout(r, 20)); // no busy loop against a refusing proxy
    }
  }
  if (agent) agent.destroy();
}

let clients = [];
function startLoad() {
  running = true;
  for (let i = 0; i < Number(keepAliveClients); i++) clients.push(client(i, false));
  for (let i = 0; i < Number(closeClients); i++) clients.push(client(i, true));
}

async function stopLoad() {
  running = false;
  await Promise.all(clients);
  clients = [];
}

function probe(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

async function waitHealthy(url, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if ((await probe(url)) === 200) return { t: Date.now() };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
}

// --- HAProxy's stats socket: `show stat` as CSV, one row per proxy/server.
function showStat() {
  return new Promise((resolve, reject) => {
    const sock = net.connect(statsSocket);
    let text = '';
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write('show stat\n'));
    sock.on('data', (d) => (text += d));
    sock.on('end', () => {
      const [header, ...rows] = text.trim().split('\n');
      const cols = header.replace(/^# /, '').split(',');
      resolve(rows.map((r) => Object.fromEntries(r.split(',').map((v, i) => [cols[i], v]))));
    });
    sock.on('error', reject);
  });
}

const state = {}; // server -> current status
const changes = []; // { t, server, status, snapshot }
async function pollStats() {
  for (;;) {
    try {
      for (const row of await showStat()) {
        if (row.pxname !== 'app' || row.svname === 'BACKEND' || row.svname === 'FRONTEND') continue;
        if (state[row.svname] !== row.status) {
          state[row.svname] = row.status;
          // check_status/check_code say why: L4CON (refused), L7STS 503 (/healthz said no)...
          const check = [row.check_status, row.check_code].filter(Boolean).join(' ');
          changes.push({ t: Date.now(), server: row.svname, status: row.status, check, snapshot: snapshot() });
        }
      }
    } catch {
      // HAProxy not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitStatus(server, status, since, timeoutMs) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const hit = changes.find((c) => c.server === server && c.status === status && c.t >= since);
    if (hit) return hit;
    // Already in that state before `since` and still there: report it as of `since`.
    if (state[server] === status && !changes.some((c) => c.server === server && c.t >= since)) {
      return { t: since, server, status, snapshot: snapshot(), already: true };
    }
    if (Date.now() > end) throw new Error(`HAProxy did not mark ${server} ${status} within ${timeoutMs} ms (now ${state[server]})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function serverStats() {
  const out = {};
  for (const row of await showStat()) {
    if (row.pxname === 'app') out[row.svname] = { status: row.status, retries: Number(row.wretr), redispatches: Number(row.wredis), connErrors: Number(row.econ), respErrors: Number(row.eresp) };
  }
  return out;
}

const commands = {
  startLoad: async () => startLoad(),
  stopLoad,
  snapshot: async () => snapshot(),
  failures: async ({ since }) => recentFailures.filter((f) => f.t >= since),
  waitHealthy: ({ url, timeoutMs }) => waitHealthy(url, timeoutMs),
  probe: ({ url }) => probe(url),
  waitStatus: ({ server, status, since, timeoutMs }) => waitStatus(server, status, since, timeoutMs),
  changes: async ({ since }) => changes.filter((c) => c.t >= since).map(({ snapshot: _s, ...c }) => c),
  serverStats,
};

process.on('message', async ({ id, cmd, args }) => {
  try {
    process.send({ id, result: await commands[cmd](args || {}) });
  } catch (err) {
    process.send({ id, error: err.message });
  }
});
process.on('disconnect', () => process.exit(0));
void pollStats();
process.send({ ready: true });
