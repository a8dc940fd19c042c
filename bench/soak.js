#!/usr/bin/env node
'use strict';
// The chaos soak (issue 10): load on a herdless primary while a chaos loop SIGKILLs and
// SIGSTOPs/SIGCONTs workers, reloads, resizes and runs the primary out of fds at random
// moments. At the end it prints the requests made, the failed ones split into "in a killed
// worker" (a request in its handler, or a connection it held, when it was SIGKILLed:
// unavoidable) and "other" (a defect), the primary's fds and RSS before and after, and the
// worker processes still alive after close() (orphans). Exits 1 if a goal is missed:
// 0 other failures, the primary's fds flat, its RSS within 10%, 0 orphans.
//
//   npm run soak -- --minutes 10        (or --seconds 30; --seed N; --no-wrk; --json)
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');

const args = parseArgs(process.argv.slice(2));
const SECONDS = args.seconds ?? (args.minutes ?? 1) * 60;
const SEED = args.seed ?? (Date.now() % 1e6);
const MIN = args.min ?? 2;
const MAX = args.max ?? 4;
const LANES = { keepAlive: 6, close: 6, slow: 3 };
const REQUEST_TIMEOUT_MS = 30_000;
// A run of a few minutes must hold RSS within 10%. A short one (the test suite's 20 s) is
// dominated by warm-up: the chaos exercises code paths (spawn failures, read-backs, error
// reports) that V8 compiles and malloc's arenas grow for only once they run, so it gets 20%.
const RSS_TOLERANCE = SECONDS >= 120 ? 0.1 : 0.2;

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--no-wrk') out.noWrk = true;
    else if (a === '--json') out.json = true;
    else if (['--minutes', '--seconds', '--seed', '--min', '--max'].includes(a)) out[a.slice(2)] = Number(argv[++i]);
    else throw new Error(`unknown argument ${a} (use --minutes N | --seconds N, --seed N, --min N, --max N, --no-wrk, --json)`);
  }
  return out;
}

// A small seeded PRNG (mulberry32), so that a run's chaos can be replayed with --seed.
let seedState = SEED >>> 0;
function random() {
  seedState = (seedState + 0x6d2b79f5) >>> 0;
  let t = seedState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const between = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (line) => process.stderr.write(`soak: ${line}\n`);

/** kill(2) that shrugs at a process already gone. */
function signal(pid, sig) {
  try {
    process.kill(pid, sig);
    return true;
  } catch (err) {
    if (err.code === 'ESRCH') return false;
    throw err;
  }
}
const fdCount = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;
const rssKb = (pid) => Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !'ZX'.includes(stat.slice(stat.lastIndexOf(')') + 2)[0]);
  } catch {
    return false;
  }
}

/** The primary in its own process (bench/soak/primary.js) and its IPC commands. */
async function startPrimary(logDir) {
  const proc = spawn('prlimit', ['--nofile=4096:4096', process.execPath, path.join(__dirname, 'soak', 'primary.js')], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, SOAK_MIN: String(MIN), SOAK_MAX: String(MAX), SOAK_LOG_DIR: logDir },
  });
  const events = [];
  const pending = new Map();
  let nextId = 0;
  const ready = new Promise((resolve, reject) => {
    proc.on('message', (m) => {
      if (m.ready) resolve(m);
      else if (m.event) events.push(m);
      else {
        pending.get(m.id)?.(m);
        pending.delete(m.id);
      }
    });
    proc.once('exit', (code, signal) => reject(new Error(`the primary exited (code ${code}, signal ${signal})`)));
  });
  const hello = await ready;
  const call = (cmd, extra = {}) =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, (m) => (m.error ? reject(new Error(m.error)) : resolve(m)));
      proc.send({ id, cmd, ...extra });
    });
  return { proc, pid: hello.pid, port: hello.port, firstWorkers: hello.workers, events, call };
}

/** One request's outcome: the client port, the pid that answered (from X-Pid), an error code. */
function keepAliveRequest(port, agent) {
  return new Promise((resolve) => {
    const out = { t0: Date.now(), port: 0, pid: 0 };
    const req = http.get({ host: '127.0.0.1', port, path: `/?ms=${between(0, 20)}`, agent }, (res) => {
      out.pid = Number(res.headers['x-pid']);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ ...out, ok: res.statusCode === 200 && body === `${out.pid}\n`, code: res.statusCode === 200 ? 'EBODY' : `HTTP${res.statusCode}` }));
      res.on('aborted', () => resolve({ ...out, ok: false, code: 'ABORTED' }));
      res.on('error', (err) => resolve({ ...out, ok: false, code: err.code || err.message }));
    });
    req.on('socket', (s) => {
      out.reused = req.reusedSocket;
      if (s.localPort) out.port = s.localPort;
      else s.once('connect', () => (out.port = s.localPort));
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (err) => resolve({ ...out, ok: false, code: err.code || err.message }));
  });
}

/** A slow client: the request dribbles in over about a second, then the whole response is read. */
function slowRequest(port) {
  return new Promise((resolve) => {
    const out = { t0: Date.now(), port: 0, pid: 0 };
    const text = `GET /?ms=${between(0, 50)} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n`;
    const socket = net.connect(port, '127.0.0.1');
    let got = '';
    let timer;
    let settled = false;
    const done = (ok, code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(deadline);
      socket.destroy();
      const m = /\r\nx-pid: (\d+)/i.exec(got);
      if (m) out.pid = Number(m[1]);
      resolve({ ...out, ok, code });
    };
    const deadline = setTimeout(() => done(false, 'ETIMEDOUT'), REQUEST_TIMEOUT_MS);
    socket.on('connect', () => {
      out.port = socket.localPort;
      let at = 0;
      const step = () => {
        if (settled) return;
        socket.write(text.slice(at, at + 4));
        at += 4;
        if (at < text.length) timer = setTimeout(step, 20);
      };
      step();
    });
    socket.setEncoding('latin1');
    socket.on('data', (c) => (got += c));
    socket.on('end', () => {
      const ok = got.startsWith('HTTP/1.1 200') && /\r\n\r\n(?:[0-9a-f]+\r\n)?(\d+)\n/.test(got);
      done(ok, ok ? undefined : 'EBODY');
    });
    socket.on('error', (err) => done(false, err.code || err.message));
  });
}

/** Client lanes, each making requests one after another until `signal.stop`. */
async function runLoad(port, signal, results) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: LANES.keepAlive });
  const lane = async (fn) => {
    while (!signal.stop) results.push({ ...(await fn()), t1: Date.now() });
  };
  await Promise.all([
    ...Array.from({ length: LANES.keepAlive }, () => lane(async () => ({ kind: 'keep-alive', ...(await keepAliveRequest(port, agent)) }))),
    ...Array.from({ length: LANES.close }, () => lane(async () => ({ kind: 'close', ...(await keepAliveRequest(port, false)) }))),
    ...Array.from({ length: LANES.slow }, () => lane(async () => ({ kind: 'slow', ...(await slowRequest(port)) }))),
  ]);
  agent.destroy();
}

/** wrk alongside, keep-alive and Connection: close; its figures are reported, not classified. */
function startWrk(port, seconds) {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
  } catch (err) {
    if (err.code === 'ENOENT') return [];
  }
  const run = (extra) => {
    const p = spawn('wrk', ['-t1', '-c4', `-d${seconds}s`, '--timeout', '30s', ...extra, `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    p.stdout.on('data', (c) => (text += c));
    return new Promise((resolve) => p.on('exit', () => resolve(text)));
  };
  return [run([]), run(['-H', 'Connection: close'])];
}

function parseWrk(text) {
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? 0);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  return { requests, socketErrors: errors ? errors.slice(1).reduce((a, b) => a + Number(b), 0) : 0, non2xx };
}

/** port -> [[ms, pid], ...] from the workers' connection logs. */
function readConnectionLogs(dir) {
  const byPort = new Map();
  for (const file of fs.readdirSync(dir)) {
    for (const line of fs.readFileSync(path.join(dir, file), 'utf8').split('\n')) {
      const [t, port, pid] = line.split(' ').map(Number);
      if (!pid) continue;
      if (!byPort.has(port)) byPort.set(port, []);
      byPort.get(port).push([t, pid]);
    }
  }
  for (const list of byPort.values()) list.sort((a, b) => a[0] - b[0]);
  return byPort;
}

/**
 * The worker that held a failed request's connection: the one that answered, or the last to
 * log that client port (since the request began, for a new connection: ports are reused), or 0.
 */
function ownerOf(r, byPort) {
  if (r.pid) return r.pid;
  let owner = 0;
  const from = r.reused ? 0 : r.t0 - 5;
  for (const [t, pid] of byPort.get(r.port) ?? []) if (t >= from && t <= r.t1) owner = pid;
  return owner;
}

async function chaos(primary, run, counts, stopped) {
  let long = Promise.resolve();
  let longBusy = false;
  const workerPids = async () => (await primary.call('workers')).workers.filter((w) => w.state === 'ready').map((w) => w.pid);
  const pick = (list) => list[between(0, list.length - 1)];
  while (!run.stop) {
    await sleep(between(200, 1000));
    if (run.stop) break;
    const roll = random();
    {
      if (roll < 0.3) {
        const pid = pick(await workerPids());
        if (pid && signal(pid, 'SIGKILL')) counts.kills++;
      } else if (roll < 0.5) {
        const pid = pick((await workerPids()).filter((p) => !stopped.has(p)));
        if (pid && signal(pid, 'SIGSTOP')) {
          stopped.add(pid);
          counts.stops++;
          setTimeout(() => stopped.delete(pid) && signal(pid, 'SIGCONT'), between(300, 2000));
        }
      } else if (!longBusy) {
        longBusy = true;
        let action;
        if (roll < 0.65) {
          counts.reloads++;
          action = primary.call('reload');
        } else if (roll < 0.85) {
          counts.resizes++;
          action = primary.call('resize', { n: between(MIN, MAX) });
        } else {
          counts.exhaustions++;
          action = primary.call('exhaust', { ms: between(300, 1500) });
        }
        long = action
          .catch((err) => counts.actionErrors.push(err.message))
          .finally(() => (longBusy = false));
      }
    }
  }
  await long;
}

function countBy(list, key) {
  const out = {};
  for (const x of list) out[key(x)] = (out[key(x)] || 0) + 1;
  return out;
}

/** The primary's fds, and its RSS and JS heap after full garbage collections. */
async function atRest(primary) {
  const { memory } = await primary.call('memory');
  return { fds: fdCount(primary.pid), rssKb: rssKb(primary.pid), heapKb: Math.round(memory.heapUsed / 1024) };
}

async function main() {
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-soak-'));
  const primary = await startPrimary(logDir);
  const { pid, port, call } = primary;
  log(`${SECONDS} s, seed ${SEED}, workers ${MIN}..${MAX}, primary pid ${pid}, port ${port}`);
  const results = [];

  // Warm up without chaos, then measure the primary at rest.
  const warm = { stop: false };
  const warming = runLoad(port, warm, results);
  await sleep(Math.min(5000, Math.max(2000, SECONDS * 100)));
  warm.stop = true;
  await warming;
  await sleep(500);
  const start = await atRest(primary);

  const run = { stop: false };
  const counts = { kills: 0, stops: 0, reloads: 0, resizes: 0, exhaustions: 0, actionErrors: [] };
  const stopped = new Set();
  const wrk = args.noWrk ? [] : startWrk(port, SECONDS);
  const load = runLoad(port, run, results);
  const havoc = chaos(primary, run, counts, stopped);
  const progress = setInterval(() => {
    const failed = results.filter((r) => !r.ok).length;
    log(`${results.length} requests, ${failed} failed; chaos so far ${JSON.stringify({ ...counts, actionErrors: counts.actionErrors.length })}`);
  }, 10_000);
  await sleep(SECONDS * 1000);
  clearInterval(progress);
  log('stopping the load and the chaos');
  run.stop = true;
  for (const p of stopped) signal(p, 'SIGCONT');
  stopped.clear();
  await havoc;
  log('chaos stopped');
  await load;
  log('load stopped');
  const wrkTexts = await Promise.all(wrk);

  // The same size as at the start, at rest again.
  await call('resize', { n: MIN });
  await sleep(1000);
  const end = await atRest(primary);

  log('closing');
  await call('close');
  const pids = new Set([...primary.firstWorkers, ...primary.events.filter((e) => e.event === 'start').map((e) => e.pid)]);
  await sleep(2000);
  const orphans = [...pids].filter(alive);
  for (const p of orphans) signal(p, 'SIGKILL');
  primary.proc.kill('SIGKILL');

  const killed = new Set(primary.events.filter((e) => e.event === 'exit' && e.signal === 'SIGKILL').map((e) => e.pid));
  const byPort = readConnectionLogs(logDir);
  fs.rmSync(logDir, { recursive: true, force: true });
  const failed = results.filter((r) => !r.ok);
  // A connection no worker logged was lost before any app saw it. If a worker was SIGKILLed
  // meanwhile, it most likely died holding it (read from its channel, not yet handed to JS):
  // counted with the killed, and shown apart.
  const killTimes = primary.events.filter((e) => e.event === 'exit' && e.signal === 'SIGKILL').map((e) => e.at);
  const killedDuring = (r) => killTimes.some((t) => t >= r.t0 - 50 && t <= r.t1 + 200);
  const unlogged = failed.filter((r) => ownerOf(r, byPort) === 0 && killedDuring(r));
  const inKilled = failed.filter((r) => killed.has(ownerOf(r, byPort)) || unlogged.includes(r));
  const other = failed.filter((r) => !inKilled.includes(r));
  const otherByCode = {};
  for (const r of other) otherByCode[r.code] = (otherByCode[r.code] || 0) + 1;
  const wrkFigures = wrkTexts.map(parseWrk);
  const errors = primary.events.filter((e) => e.event === 'error').map((e) => e.message.split('\n')[0]);
  const halts = primary.events.filter((e) => e.event === 'error' && e.code === 'ERR_HERDLESS_CRASH_LOOP').length;
  const spawnFailures = primary.events.filter((e) => e.event === 'exit' && e.error).length;
  const rssGrowth = (end.rssKb - start.rssKb) / start.rssKb;
  const report = {
    seconds: SECONDS,
    seed: SEED,
    chaos: counts,
    workerSigkills: killed.size,
    crashLoopHalts: halts,
    spawnFailures,
    requests: results.length,
    failedInKilledWorker: inKilled.length,
    failedUnloggedDuringKill: unlogged.length,
    failedOther: other.length,
    otherByCode,
    otherSample: other.slice(0, 5).map((r) => {
      const owner = ownerOf(r, byPort);
      const exit = primary.events.find((e) => e.event === 'exit' && e.pid === owner);
      return { ...r, owner, ownerExit: exit && `${exit.reason} ${exit.signal} at ${exit.at}` };
    }),
    wrk: wrkFigures,
    primaryFds: { start: start.fds, end: end.fds },
    primaryRssKb: { start: start.rssKb, end: end.rssKb, growth: Number(rssGrowth.toFixed(3)) },
    primaryHeapKb: { start: start.heapKb, end: end.heapKb },
    orphans: orphans.length,
    errors: countBy(errors, (e) => e.split(' ')[0]),
  };
  const pass = other.length === 0 && end.fds === start.fds && rssGrowth <= RSS_TOLERANCE && orphans.length === 0;
  const mb = (kb) => (kb / 1024).toFixed(1);
  const lines = [
    `soak: ${SECONDS} s, seed ${SEED}; chaos: ${counts.kills} SIGKILLs, ${counts.stops} SIGSTOP/SIGCONTs, ${counts.reloads} reloads, ${counts.resizes} resizes, ${counts.exhaustions} fd exhaustions`,
    `  workers SIGKILLed (chaos and stallTimeout): ${killed.size}; worker starts that could not spawn: ${spawnFailures}; crash-loop halts (then reload()): ${halts}`,
    `  requests (own clients: keep-alive, Connection: close, slow): ${results.length}`,
    `  failed: ${inKilled.length} in a killed worker (${unlogged.length} of them reached no app, failing while a worker was SIGKILLed), ${other.length} other${other.length ? ' ' + JSON.stringify(otherByCode) : ''}`,
    ...wrkFigures.map((w, i) => `  wrk (${i ? 'Connection: close' : 'keep-alive'}): ${w.requests} requests, ${w.socketErrors} socket errors, ${w.non2xx} non-2xx (not classified)`),
    `  primary fds: ${start.fds} -> ${end.fds}; RSS: ${mb(start.rssKb)} MB -> ${mb(end.rssKb)} MB (${(rssGrowth * 100).toFixed(1)}%), JS heap ${mb(start.heapKb)} MB -> ${mb(end.heapKb)} MB (after full GCs)`,
    `  orphans after close: ${orphans.length}`,
    ...(errors.length ? [`  dispatcher 'error' events: ${Object.entries(countBy(errors, (e) => e.split(' ')[0])).map(([c, n]) => `${n} ${c}`).join(', ')}`] : []),
    ...(counts.actionErrors.length ? [`  chaos actions that failed: ${counts.actionErrors.join('; ')}`] : []),
    `  ${pass ? 'PASS' : 'FAIL'}: goals are 0 other failures, flat fds, RSS within ${RSS_TOLERANCE * 100}%, 0 orphans`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  if (args.json) process.stdout.write(JSON.stringify(report) + '\n');
  process.exitCode = pass ? 0 : 1;
}

main().catch((err) => {
  process.stderr.write(`soak: ${err.stack}\n`);
  process.exit(2);
});
