'use strict';
// Server script for the Node cluster contenders.
//   node cluster.js --policy rr|none --workers 2 --app <file>
// The policy must be chosen before the first fork; NODE_CLUSTER_SCHED_POLICY would do the
// same, but an explicit flag keeps the harness's environment out of it.
const cluster = require('node:cluster');
const http = require('node:http');
const path = require('node:path');
const { parseArgs } = require('node:util');

const { values: opt } = parseArgs({
  options: {
    policy: { type: 'string', default: 'rr' },
    workers: { type: 'string', default: '2' },
    app: { type: 'string', default: path.join(__dirname, '../apps/hello.js') },
  },
});

function worker() {
  // The app module exports a request listener, or a server that is not listening yet.
  const app = require(path.resolve(opt.app));
  const server = typeof app === 'function' ? http.createServer(app) : app;
  // Port 0 in every worker: cluster keys the shared handle by address and port, so all
  // workers end up on the same ephemeral port.
  server.listen(0, '127.0.0.1');
}

function primary() {
  const control = require('./control');
  if (!['rr', 'none'].includes(opt.policy)) throw new Error(`--policy rr|none, not ${opt.policy}`);
  cluster.schedulingPolicy = opt.policy === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  const n = Number(opt.workers);
  const workers = [];
  let port;
  let stopping = false;
  for (let i = 0; i < n; i++) workers.push(cluster.fork());
  let listening = 0;
  cluster.on('listening', (w, address) => {
    port = address.port;
    if (++listening === n) control.ready({ port, workers: workers.map((x) => x.process.pid) });
  });
  cluster.on('exit', (w, code, signal) => {
    if (!stopping) {
      console.error(`cluster worker ${w.process.pid} died (${signal || code})`);
      process.exit(1);
    }
  });
  control.serve({ stats: () => ({ workers: workers.map((w) => w.process.pid) }) }, () => {
    stopping = true;
    return Promise.all(workers.map((w) => new Promise((resolve) => {
      if (w.isDead()) return resolve();
      w.once('exit', resolve);
      w.process.kill('SIGTERM');
    })));
  });
}

if (cluster.isPrimary) primary();
else worker();
