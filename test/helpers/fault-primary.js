'use strict';
// Drives test/fixtures/pool-fault-primary.js: a primary in its own process, so that a test
// can exhaust its fds or processes, SIGKILL it, and count its fds from outside.
const fs = require('node:fs');
const { spawn } = require('node:child_process');

const FIXTURE = require.resolve('../fixtures/pool-fault-primary.js');

/**
 * Start the fixture primary. `wrap` is a command prefix (['prlimit', '--nofile=256:256']),
 * `env` its environment on top of ours. Resolves { proc, pid, port, call(cmd, args), exited, stop() }.
 */
async function startFaultPrimary({ wrap = [], env = {} } = {}) {
  const argv = [...wrap, process.execPath, FIXTURE];
  const proc = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const pending = new Map();
  let nextId = 0;
  let onReady;
  const ready = new Promise((resolve) => (onReady = resolve));
  proc.on('message', (m) => {
    if (m.ready) return onReady(m);
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.error) p?.reject(new Error(m.error));
    else p?.resolve(m);
  });
  const started = await Promise.race([
    ready,
    exited.then((e) => Promise.reject(new Error(`fault primary exited before it was ready: ${JSON.stringify(e)}`))),
  ]);
  /** Send a command; resolves its reply (rejects if the primary answered an error or died). */
  const call = (cmd, args = {}) =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, { resolve, reject });
      proc.send({ id, cmd, ...args });
      exited.then((e) => reject(new Error(`the primary died (${JSON.stringify(e)}) before answering ${cmd}`)));
    });
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGKILL');
    await exited;
  };
  return { proc, pid: started.pid, port: started.port, metricsPort: started.metricsPort, call, exited, stop };
}

/** The process exists and is not a zombie. */
function running(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !'ZX'.includes(stat.slice(stat.lastIndexOf(')') + 2)[0]);
  } catch {
    return false;
  }
}

/** "Max processes" soft and hard limits of `pid` (numbers, or 'unlimited'). */
function nprocLimits(pid) {
  const m = /^Max processes\s+(\S+)\s+(\S+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return { soft: m[1], hard: m[2] };
}

module.exports = { startFaultPrimary, running, nprocLimits };
