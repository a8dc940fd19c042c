'use strict';
// A herdless primary in a child process (test/fixtures/faults/primary.js): the fault tests
// produce faults that, unfixed, kill or spin the primary, and measure its fds and CPU time
// from /proc without counting mocha's own.
const { spawn } = require('node:child_process');
const path = require('node:path');

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'faults', 'primary.js');

class ChildPrimary {
  /**
   * Starts the primary with Dispatcher `options`; `fds` are passed as the child's fds 4, 5, ...
   * Resolves once it is ready; rejects if Dispatcher.start rejected, unless `startError` is
   * true: then it resolves with `.startError` ({ code, message }) set.
   */
  static start(options, { fds = [], env = {}, startError = false } = {}) {
    const child = spawn(process.execPath, [FIXTURE], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...fds],
      env: { ...process.env, ...env, HERDLESS_FAULT_OPTIONS: JSON.stringify(options) },
    });
    const p = new ChildPrimary(child);
    return new Promise((resolve, reject) => {
      child.once('message', (m) => {
        Object.assign(p, m);
        if (m.startError && !startError) reject(Object.assign(new Error(`Dispatcher.start failed: ${m.startError.message}`), m.startError));
        else resolve(p);
      });
      child.once('exit', (code, signal) => reject(new Error(`the primary exited before it was ready (code ${code}, signal ${signal})`)));
    });
  }

  constructor(child) {
    this.child = child;
    this.nextId = 0;
    this.exit = null;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve((this.exit = { code, signal }))));
  }

  /** Sends a command; resolves with the reply, rejects if the primary dies first. */
  ask(cmd, args = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const onMessage = (m) => {
        if (m.id !== id) return;
        this.child.off('message', onMessage);
        resolve(m);
      };
      this.child.on('message', onMessage);
      this.exited.then(({ code, signal }) => reject(new Error(`the primary died (code ${code}, signal ${signal})`)));
      this.child.send({ id, cmd, ...args });
    });
  }

  stats() {
    return this.ask('stats');
  }

  /** Graceful close, then the process is asked to exit; resolves with the close reply. */
  async close(timeout = 2000) {
    const reply = await this.ask('close', { timeout });
    this.child.kill('SIGTERM');
    await this.exited;
    return reply;
  }

  /** SIGKILL it (test clean-up); its workers follow by PR_SET_PDEATHSIG. */
  async kill() {
    if (this.exit) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

module.exports = { ChildPrimary };
