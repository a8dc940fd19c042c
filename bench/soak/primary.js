'use strict';
// The soak's primary, in its own process so that its fds and RSS are its own. Reports
// { ready, pid, port } then every 'worker-start' / 'worker-exit' over IPC, and obeys
// { id, cmd: 'reload' | 'resize' (n) | 'exhaust' (ms) | 'workers' | 'memory' | 'close' } with { id, ... }.
const fs = require('node:fs');
const v8 = require('node:v8');
const vm = require('node:vm');
const { Dispatcher } = require('../..');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

(async () => {
  await Promise.all(Array.from({ length: 8 }, () => fs.promises.stat(__filename))); // warm libuv's pool
  const d = await Dispatcher.start({
    min: Number(process.env.SOAK_MIN),
    max: Number(process.env.SOAK_MAX),
    app: require.resolve('./app.js'),
    listen: { port: 0, host: '127.0.0.1' },
    stallTimeout: 3000,
  });
  const send = (m) => process.connected && process.send(m);
  d.on('worker-start', (w) => send({ event: 'start', pid: w.pid, at: Date.now() }));
  d.on('worker-exit', (e) => send({ event: 'exit', pid: e.pid, signal: e.signal, reason: e.reason, error: e.error?.code, at: Date.now() }));
  d.on('error', (err) => {
    send({ event: 'error', code: err.code, message: `${err.code} ${err.message}`, at: Date.now() });
    // SIGKILLs of young workers can add up to a crash-loop halt: do what the README tells
    // an operator to do, and let the soak count it.
    if (err.code === 'ERR_HERDLESS_CRASH_LOOP') d.reload().catch(() => {});
  });
  const filler = [];
  const commands = {
    workers: () => ({ workers: d.workers() }),
    // Full collections first: what stays is what is still referenced (a leak), not garbage.
    memory: async () => {
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((r) => setImmediate(r));
      }
      return { memory: process.memoryUsage() };
    },
    reload: async () => (await d.reload(), {}),
    resize: async ({ n }) => ({ size: await d.resize(n) }),
    // Run the primary out of fds for `ms`: accepts and worker starts fail meanwhile.
    exhaust: async ({ ms }) => {
      try {
        for (;;) filler.push(fs.openSync('/dev/null', 'r'));
      } catch (err) {
        if (err.code !== 'EMFILE' && err.code !== 'ENFILE') throw err;
      }
      const n = filler.length;
      await new Promise((r) => setTimeout(r, ms));
      for (const fd of filler.splice(0)) fs.closeSync(fd);
      return { filled: n };
    },
    close: async () => (await d.close({ timeout: 10_000 }), {}),
  };
  process.on('disconnect', () => process.exit(1)); // the soak itself is gone
  process.on('message', async (m) => {
    try {
      send({ id: m.id, ...(await commands[m.cmd](m)) });
    } catch (err) {
      send({ id: m.id, error: `${err.code} ${err.message}` });
    }
  });
  send({ ready: true, pid: process.pid, port: d.address().port, workers: d.workers().map((w) => w.pid) });
})().catch((err) => {
  process.stderr.write(`soak primary: ${err.code} ${err.stack}\n`);
  process.exit(1);
});
