'use strict';
// Shared test helpers: real HTTP clients, process inspection through /proc, waiting.
const http = require('node:http');
const fs = require('node:fs');

/** One request; resolves { status, body, headers, socket info } or rejects with the client error. */
function request(options, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ agent: false, host: '127.0.0.1', ...options }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (options.timeout) req.setTimeout(options.timeout, () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.end(body);
  });
}

const get = (port, path = '/', extra = {}) =>
  request({ port, path, headers: { connection: 'close' }, ...extra }).then((r) => ({ ...r, text: r.body.toString() }));

/** Run `total` requests with `concurrency` in flight; resolves the list of results (or errors). */
async function hammer(total, concurrency, fn) {
  const results = [];
  let next = 0;
  async function lane() {
    while (next < total) {
      const i = next++;
      try {
        results[i] = await fn(i);
      } catch (err) {
        results[i] = err;
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane));
  return results;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(predicate, timeoutMs = 5000, stepMs = 20) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms: ${predicate}`);
    await sleep(stepMs);
  }
}

/** Is this pid a live process (not gone, not a zombie)? */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Pids whose parent is `ppid`. */
function childrenOf(ppid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid && fields[0] !== 'Z') out.push(Number(name));
    } catch {
      // raced with an exit
    }
  }
  return out;
}

/** Socket inodes of a process that are listening (TCP state 0A, or unix __SO_ACCEPTCON). */
function listeningInodes(pid) {
  const inodes = new Set();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      // fd closed meanwhile
    }
  }
  const listening = new Set();
  for (const file of ['tcp', 'tcp6']) {
    for (const line of fs.readFileSync(`/proc/${pid}/net/${file}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && inodes.has(f[9])) listening.add(f[9]);
    }
  }
  for (const line of fs.readFileSync(`/proc/${pid}/net/unix`, 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 6 && (parseInt(f[3], 16) & 0x10000) && inodes.has(f[6])) listening.add(f[6]);
  }
  return listening;
}

/** CPU seconds (user + system) a process has used. */
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Fail if any child of this test process outlives a short grace period. */
async function assertNoChildren(timeoutMs = 2000) {
  await waitFor(() => childrenOf(process.pid).length === 0, timeoutMs).catch(() => {
    throw new Error(`processes left behind: ${childrenOf(process.pid).join(', ')}`);
  });
}

module.exports = { request, get, hammer, sleep, waitFor, alive, childrenOf, listeningInodes, cpuSeconds, assertNoChildren };
