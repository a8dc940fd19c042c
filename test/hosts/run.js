#!/usr/bin/env node
'use strict';
/**
 * `npm run test:hosts`: two herdless hosts behind HAProxy, each in a network namespace of its
 * own, under load, through four phases a deployment goes through:
 *   1. rolling upgrade of both hosts with SIGUSR2        goal: 0 failed requests
 *   2. rolling reload of both hosts with SIGHUP          goal: 0 failed requests
 *   3. SIGKILL of web1's whole process group             goal: failures <= concurrent clients (the
 *      requests in flight there), web1 marked DOWN within fall x inter + slack, web2 serves all
 *   4. web1 started again                                goal: 0 failed, UP within rise x inter +
 *      slack after its /healthz answers, both hosts get a share again
 * HAProxy runs docs/haproxy.cfg as written (plus a `global` section for its stats socket and
 * log). Needs root, `ip` and `haproxy`; without them it prints a SKIP line and exits 0.
 * Exits 1 when a phase misses its goal. Namespaces, veths and processes are removed on every
 * way out, and namespaces left by a harness that was SIGKILLed are swept at the next start.
 */
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('./net');
const { Host } = require('./host');
const { upgrade, reload, restore, killAll } = require('./steps');

const CFG = path.resolve(__dirname, '../../docs/haproxy.cfg');
const KEEPALIVE_CLIENTS = 6;
const CLOSE_CLIENTS = 2;
const CLIENTS = KEEPALIVE_CLIENTS + CLOSE_CLIENTS;
const SLACK_MS = 1000; // a loaded 2-core CI machine: checks and polls run late
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function skip(reason) {
  console.log(`SKIP test:hosts: ${reason}`);
  process.exit(0);
}

function has(cmd, args) {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function preflight() {
  if (process.platform !== 'linux') skip(`needs Linux network namespaces (this is ${process.platform})`);
  if (process.getuid() !== 0) skip('needs root to create network namespaces (CI runs it as root; try sudo npm run test:hosts)');
  if (!has('ip', ['-V'])) skip('`ip` (iproute2) not found: apt-get install iproute2');
  if (!has('haproxy', ['-v'])) skip('`haproxy` not found: apt-get install haproxy');
  if (!fs.existsSync(path.resolve(__dirname, '../../lib/cli/main.js'))) {
    console.error('test:hosts: lib/cli/main.js is missing: run npm run build:ts first');
    process.exit(1);
  }
}

/** inter/fall/rise as docs/haproxy.cfg sets them, so that the goals follow the config. */
function checkTiming(cfg) {
  const line = /^\s*default-server .*$/m.exec(cfg)?.[0] ?? '';
  const inter = /\binter (\d+)ms\b/.exec(line);
  const fall = /\bfall (\d+)\b/.exec(line);
  const rise = /\brise (\d+)\b/.exec(line);
  if (!inter || !fall || !rise) throw new Error(`${CFG}: expected "default-server ... inter <n>ms fall <n> rise <n>"`);
  return { inter: Number(inter[1]), fall: Number(fall[1]), rise: Number(rise[1]) };
}

// --- the agent in the lb namespace, called like a function
function startAgent(lb, statsSocket) {
  const child = spawn('ip', ['netns', 'exec', lb, process.execPath, path.join(__dirname, 'agent.js'), 'http://127.0.0.1:80/', statsSocket, String(KEEPALIVE_CLIENTS), String(CLOSE_CLIENTS)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let next = 0;
  const pending = new Map();
  const ready = new Promise((resolve, reject) => {
    child.on('message', (m) => {
      if (m.ready) return resolve();
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.error) p.reject(new Error(m.error));
      else p.resolve(m.result);
    });
    child.on('exit', (code, signal) => {
      const err = new Error(`load agent exited (${signal ?? code})`);
      reject(err);
      for (const p of pending.values()) p.reject(err);
    });
  });
  const call = (cmd, args) =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      child.send({ id, cmd, args });
    });
  return { child, ready, call };
}

// --- figures
function delta(a, b) {
  const sub = (x = {}, y = {}) => Object.fromEntries([...new Set([...Object.keys(x), ...Object.keys(y)])].map((k) => [k, (y[k] || 0) - (x[k] || 0)]).filter(([, v]) => v !== 0));
  return { ms: b.t - a.t, requests: b.requests - a.requests, ok: b.ok - a.ok, failed: b.failed - a.failed, byHost: sub(a.byHost, b.byHost), byKind: sub(a.byKind, b.byKind) };
}

function share(d, host) {
  return d.ok === 0 ? 0 : (d.byHost[host] || 0) / d.ok;
}

function describe(d) {
  const hosts = ['web1', 'web2'].map((h) => `${h} ${(share(d, h) * 100).toFixed(1)}%`).join(', ');
  const kinds = Object.entries(d.byKind).map(([k, v]) => `${k}: ${v}`).join(', ');
  return `${d.requests} requests in ${(d.ms / 1000).toFixed(1)} s, ${d.failed} failed${kinds ? ` (${kinds})` : ''}; ${hosts}`;
}

async function main() {
  preflight();
  const cfgText = fs.readFileSync(CFG, 'utf8');
  const timing = checkTiming(cfgText);
  const swept = net.sweepStale();
  if (swept.length) console.log(`swept stale namespaces: ${swept.join(' ')}`);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-hosts-'));
  state.tmp = tmp;
  const topo = net.create();
  const hosts = topo.hosts.map((h) => new Host(h, tmp));
  const [web1, web2] = hosts;
  console.log(`namespaces ${topo.lb} (HAProxy, load) <-> ${web1.ns} (${web1.name} ${web1.addr}), ${web2.ns} (${web2.name} ${web2.addr})`);
  console.log(`each host: ${web1.command}`);

  const statsSocket = path.join(tmp, 'haproxy.sock');
  const globalCfg = path.join(tmp, 'global.cfg');
  fs.writeFileSync(globalCfg, `global\n    stats socket ${statsSocket} mode 600\n    log stdout format raw local0\n`);
  execFileSync('haproxy', ['-c', '-q', '-f', globalCfg, '-f', CFG], { stdio: 'inherit' });
  const hapLog = fs.openSync(path.join(tmp, 'haproxy.log'), 'a');
  const haproxy = spawn('ip', ['netns', 'exec', topo.lb, 'haproxy', '-db', '-f', globalCfg, '-f', CFG], { stdio: ['ignore', hapLog, hapLog] });
  fs.closeSync(hapLog);
  let haproxyExit;
  haproxy.on('exit', (code, signal) => (haproxyExit = signal ?? `status ${code}`));
  for (let i = 0; i < 100 && !fs.existsSync(statsSocket); i++) {
    if (haproxyExit) break;
    await sleep(50);
  }
  if (!fs.existsSync(statsSocket)) throw new Error(`haproxy did not start (${haproxyExit ?? 'no stats socket after 5 s'}); see ${path.join(tmp, 'haproxy.log')}`);
  console.log(`haproxy: haproxy -db -f <global: stats socket, log> -f docs/haproxy.cfg (inter ${timing.inter}ms fall ${timing.fall} rise ${timing.rise}); logs in ${tmp}`);

  for (const h of hosts) h.start();
  const agent = startAgent(topo.lb, statsSocket);
  await agent.ready;
  const t0 = Date.now();
  for (const h of hosts) {
    await agent.call('waitHealthy', { url: h.healthUrl, timeoutMs: 30_000 });
    await agent.call('waitStatus', { server: h.name, status: 'UP', since: t0, timeoutMs: 10_000 });
  }
  console.log(`both hosts UP in HAProxy after ${((Date.now() - t0) / 1000).toFixed(1)} s; load: ${KEEPALIVE_CLIENTS} keep-alive + ${CLOSE_CLIENTS} new-connection-per-request clients, GET / (20 ms in the app)\n`);

  await agent.call('startLoad');
  let mark = await agent.call('snapshot');
  await sleep(2000);
  const results = [];
  const phase = async (title, run) => {
    const from = await agent.call('snapshot');
    const r = (await run(from)) || {};
    const to = await agent.call('snapshot');
    const d = delta(from, to);
    const changes = await agent.call('changes', { since: from.t });
    const problems = r.problems || [];
    if (r.zeroFailures && d.failed > 0) problems.push(`${d.failed} failed requests (goal: 0)`);
    const pass = problems.length === 0;
    console.log(`${title}: ${pass ? 'PASS' : 'FAIL'}\n  ${describe(d)}`);
    for (const line of r.notes || []) console.log(`  ${line}`);
    if (changes.length) console.log(`  HAProxy: ${changes.map((c) => `${c.server} ${c.status} at +${((c.t - from.t) / 1000).toFixed(2)} s${c.check ? ` (${c.check})` : ''}`).join(', ')}`);
    for (const p of problems) console.log(`  FAIL: ${p}`);
    if (d.failed > 0) {
      const f = await agent.call('failures', { since: from.t });
      console.log(`  failures: ${f.slice(0, 10).map((x) => `${x.kind} (${x.client}, +${((x.t - from.t) / 1000).toFixed(2)} s)`).join('; ')}${f.length > 10 ? ' ...' : ''}`);
    }
    console.log('');
    results.push({ title, pass, d });
  };

  const warm = delta(mark, await agent.call('snapshot'));
  console.log(`warm-up: ${describe(warm)}\n`);

  const stayUp = async (h, since, timeoutMs) => {
    await agent.call('waitHealthy', { url: h.healthUrl, timeoutMs });
    return agent.call('waitStatus', { server: h.name, status: 'UP', since: Math.max(since, Date.now() - 1), timeoutMs });
  };

  // 1. Rolling upgrade: each host's primary replaces itself; the next host only once the
  //    previous one serves again and HAProxy has it UP, as an operator would.
  await phase('phase 1: rolling upgrade, kill -USR2 <primary> on web1 then web2 (goal: 0 failed)', async () => {
    const notes = [];
    const problems = [];
    for (const h of hosts) {
      const r = await upgrade(h, stayUp);
      notes.push(`${h.name}: ${r.note}`);
      if (!r.ok) {
        problems.push(`${h.name}: ${r.note}`);
        await restore(h, stayUp);
        notes.push(`${h.name}: started afresh to go on with the other phases; web2 not upgraded`);
        break;
      }
      await sleep(1000);
    }
    return { notes, problems, zeroFailures: true };
  });

  // 2. Rolling reload: workers replaced one at a time, the primary and its listener stay.
  await phase('phase 2: rolling reload, kill -HUP <primary> on web1 then web2 (goal: 0 failed)', async () => {
    const notes = [];
    const problems = [];
    for (const h of hosts) {
      const r = await reload(h, stayUp);
      notes.push(`${h.name}: ${r.note}`);
      if (!r.ok) problems.push(`${h.name}: ${r.note}`);
      await sleep(1000);
    }
    return { notes, problems, zeroFailures: true };
  });

  // 3. web1 dies at once, primary and workers.
  const downBound = timing.fall * timing.inter + SLACK_MS;
  await phase(`phase 3: kill -KILL -<pgid> of web1 (goal: failed <= ${CLIENTS} clients, DOWN within ${downBound} ms, web2 serves the rest)`, async (from) => {
    const notes = [];
    const problems = [];
    const stats0 = await agent.call('serverStats');
    const pid = web1.primary();
    const pgid = web1.pgid(pid);
    const tKill = Date.now();
    process.kill(-pgid, 'SIGKILL');
    const down = await agent.call('waitStatus', { server: 'web1', status: 'DOWN', since: tKill, timeoutMs: 10_000 });
    const markDown = down.t - tKill;
    await sleep(3000);
    const end = await agent.call('snapshot');
    const stats1 = await agent.call('serverStats');
    const before = delta(from, down.snapshot);
    const after = delta(down.snapshot, end);
    const left = web1.everything();
    const retried = stats1.web1.retries - stats0.web1.retries;
    const redispatched = stats1.web1.redispatches - stats0.web1.redispatches;
    notes.push(`killed process group ${pgid} (primary ${pid}); HAProxy marked web1 DOWN ${markDown} ms later (fall ${timing.fall} x inter ${timing.inter} ms)`);
    notes.push(`until DOWN: ${describe(before)}`);
    notes.push(`after DOWN: ${describe(after)}`);
    notes.push(`HAProxy retried ${retried} connections to web1 and redispatched ${redispatched} to web2 after their connection was refused (retries, option redispatch)`);
    const failed = before.failed + after.failed;
    if (failed > CLIENTS) problems.push(`${failed} failed requests, more than the ${CLIENTS} that can be in flight`);
    if (markDown > downBound) problems.push(`DOWN after ${markDown} ms (bound ${downBound} ms)`);
    if (after.failed > 0) problems.push(`${after.failed} requests failed after web1 was DOWN`);
    if (after.ok === 0 || (after.byHost.web1 || 0) > 0) problems.push(`web2 did not carry the load after DOWN (${describe(after)})`);
    if (left.length > 0) problems.push(`processes left in web1's namespace after killing its group: ${left.join(', ')}`);
    return { notes, problems };
  });

  // 4. web1 comes back.
  const upBound = timing.rise * timing.inter + SLACK_MS;
  await phase(`phase 4: start web1 again (goal: 0 failed, UP within ${upBound} ms of its /healthz answering 200, both hosts get a share)`, async () => {
    const notes = [];
    const problems = [];
    killAll(web1);
    const tStart = Date.now();
    web1.start();
    const ready = await agent.call('waitHealthy', { url: web1.healthUrl, timeoutMs: 30_000 });
    const up = await agent.call('waitStatus', { server: 'web1', status: 'UP', since: tStart, timeoutMs: 10_000 });
    const markUp = up.t - ready.t;
    await sleep(3000);
    const after = delta(up.snapshot, await agent.call('snapshot'));
    notes.push(`/healthz 200 ${ready.t - tStart} ms after the start; HAProxy marked web1 UP ${markUp} ms after that (rise ${timing.rise} x inter ${timing.inter} ms)`);
    notes.push(`after UP: ${describe(after)}`);
    if (markUp > upBound) problems.push(`UP ${markUp} ms after /healthz answered (bound ${upBound} ms)`);
    for (const h of ['web1', 'web2']) if (share(after, h) < 0.2) problems.push(`${h} got ${(share(after, h) * 100).toFixed(1)}% after UP (goal: at least 20%)`);
    return { notes, problems, zeroFailures: true };
  });

  await agent.call('stopLoad');
  const failedPhases = results.filter((r) => !r.pass);
  console.log(failedPhases.length === 0 ? 'test:hosts: PASS, every phase met its goal' : `test:hosts: FAIL: ${failedPhases.map((r) => r.title.split(':')[0]).join(', ')} missed the goal`);
  return failedPhases.length === 0;
}

// --- clean up on every way out
const state = { tmp: undefined, failed: true };
function cleanup() {
  net.destroyAll();
  if (state.tmp && !state.failed) fs.rmSync(state.tmp, { recursive: true, force: true });
  else if (state.tmp) console.log(`logs kept in ${state.tmp}`);
  state.tmp = undefined;
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.log(`\n${sig}: removing namespaces and processes`);
    cleanup();
    process.exit(128 + os.constants.signals[sig]);
  });
}

main().then(
  (ok) => {
    state.failed = !ok;
    cleanup();
    process.exit(ok ? 0 : 1);
  },
  (err) => {
    console.error(`test:hosts: FAIL: ${err.stack || err.message}`);
    cleanup();
    process.exit(1);
  },
);
