'use strict';
// Harness side of the control protocol in contenders/control.js: start a server script,
// wait for its READY line, send it commands, stop it and everything it started.
const { spawn } = require('node:child_process');
const readline = require('node:readline');
const proc = require('./proc');

const READY_TIMEOUT_MS = 60_000; // 8 workers on 2 busy cores can take a while
const STOP_TIMEOUT_MS = 5_000;

/** Spawn `node script args` and resolve with a handle once it prints READY. */
function startScript(script, args, env) {
  const child = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const replies = [];
  const lines = readline.createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error('no READY line in time')), READY_TIMEOUT_MS);
    const fail = (err) => {
      clearTimeout(timer);
      killTree(child.pid);
      reject(new Error(`${err.message}\n${stderr}`));
    };
    child.once('exit', (code, signal) => fail(new Error(`exited early (${signal || code})`)));
    child.once('error', fail);
    lines.on('line', (line) => {
      if (line.startsWith('READY ')) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve(handle(child, JSON.parse(line.slice(6)), replies, () => stderr));
      } else if (line.startsWith('REPLY ')) {
        replies.shift()?.(JSON.parse(line.slice(6)));
      }
    });
  });
}

function handle(child, info, replies, stderr) {
  let exited = false;
  child.once('exit', () => {
    exited = true;
    // Nobody will answer these any more.
    for (const reply of replies.splice(0)) reply({ error: 'the server has exited' });
  });
  child.stdin.on('error', () => {}); // EPIPE once it has exited; handled through 'exit'
  return {
    pid: child.pid,
    info,
    alive: () => !exited,
    stderr,
    /** Send a command line; resolves with the JSON reply (replies come in order). */
    command(cmd) {
      if (exited) return Promise.reject(new Error('the server has exited'));
      return new Promise((resolve, reject) => {
        replies.push((reply) => (reply.error ? reject(new Error(reply.error)) : resolve(reply)));
        child.stdin.write(`${cmd}\n`);
      });
    },
    async stop() {
      if (exited) return;
      const pids = proc.tree(child.pid);
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => killPids(pids), STOP_TIMEOUT_MS);
      await gone;
      clearTimeout(timer);
      // A worker that outlived its primary would skew the next measurement.
      killPids(pids.slice(1));
    },
  };
}

function killPids(pids) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

const killTree = (pid) => killPids(proc.tree(pid));

module.exports = { startScript, killTree, killPids };
