'use strict';
// The herdless CLI as a real child process: follow its stderr log, signal it, and make sure
// nothing it started outlives the test (it runs in its own process group).
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const BIN = path.join(__dirname, '..', '..', 'bin', 'herdless');
const running = new Set();

/**
 * Spawn `command` (default: node bin/herdless) with `args`. Returns
 * { child, pid, log() (stderr so far), waitLog(regex, ms, from), exited (promise of { code, signal }) }.
 */
function runCli(args, { command = [process.execPath, BIN], env = {}, stdio = [], cwd } = {}) {
  const child = spawn(command[0], [...command.slice(1), ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe', ...stdio],
    detached: true, // own process group: cleanup can reach workers even if the primary is gone
  });
  let err = '';
  let out = '';
  const waiters = [];
  const check = () => {
    for (const w of [...waiters]) {
      const m = w.re.exec(err.slice(w.from));
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  child.stderr.on('data', (b) => ((err += b), check()));
  child.stdout.on('data', (b) => (out += b));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  running.add(child);
  exited.then(() => {
    for (const w of waiters) w.reject(new Error(`CLI exited before logging ${w.re}; stderr:\n${err}`));
  });
  return {
    child,
    pid: child.pid,
    exited,
    log: () => err,
    stdout: () => out,
    /** Resolves the match of `re` in stderr (from offset `from`, default all of it). */
    waitLog(re, ms = 10000, from = 0) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms; stderr:\n${err}`)), ms);
        waiters.push({ re, from, resolve: (m) => (clearTimeout(timer), resolve(m)), reject: (e) => (clearTimeout(timer), reject(e)) });
        check();
      });
    },
  };
}

/** Resolves the port from the startup banner. */
async function started(cli) {
  const m = await cli.waitLog(/listening on (\S+) \((\d+) workers?, mode (\w+), pid (\d+)/);
  return { url: m[1], port: Number(/:(\d+)$/.exec(m[1])?.[1]), size: Number(m[2]), mode: m[3], pid: Number(m[4]) };
}

/** Pids of processes in a process group (the CLI and its workers). */
function processGroup(pgid) {
  const pids = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[2]) === pgid && f[0] !== 'Z') pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** Live children of `pid` (its workers, for the CLI's primary). */
function childPids(pid) {
  return processGroup(pid).filter((p) => {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
    } catch {
      return false;
    }
  });
}

/** Kill whatever is left of every CLI started by this file; returns the pids that were still there. */
function killAll() {
  const left = [];
  for (const child of running) {
    for (const pid of processGroup(child.pid)) left.push(pid);
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // group already gone
    }
    running.delete(child);
  }
  return left;
}

module.exports = { runCli, started, processGroup, childPids, killAll, BIN };
