'use strict';
// Background load for the "stalled workers" scenario: `concurrency` loops, each sending a
// request that holds a worker's event loop for `ms`, each on a new connection so that the
// load balancer chooses a worker every time. Runs in the harness, which is otherwise only
// waiting for wrk.
const http = require('node:http');

/** spin: burn the CPU for `ms` (a busy loop) instead of sleeping in Atomics.wait. */
function start(url, { concurrency, ms, spin = false }) {
  const target = `${url.replace(/\/$/, '')}/block?ms=${ms}${spin ? '&spin=1' : ''}`;
  const state = { running: true, completed: 0, errors: 0 };
  const one = () =>
    new Promise((resolve) => {
      const req = http.get(target, { agent: false, headers: { Connection: 'close' } }, (res) => {
        res.resume();
        res.on('end', () => {
          state.completed++;
          resolve();
        });
      });
      req.on('error', () => {
        state.errors++;
        setTimeout(resolve, 10);
      });
    });
  const loops = Array.from({ length: concurrency }, async () => {
    while (state.running) await one();
  });
  return {
    /** Stop starting requests; resolves with counts once the ones in flight have finished. */
    async stop() {
      state.running = false;
      await Promise.all(loops);
      return { completed: state.completed, errors: state.errors };
    },
  };
}

module.exports = { start };
