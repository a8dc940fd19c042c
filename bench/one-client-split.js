'use strict';
// One client making a request per connection, against a pool of 2: which worker served what.
//   node bench/one-client-split.js [lib dir=lib] [runs=6]
// Starts one dispatch pool, then runs `wrk -t1 -c1 -d2s -H "Connection: close"` `runs` times in a
// row and prints, per run, the connections each worker received (stats().workers[]
// .connectionsReceived), wrk's p50 and p99 and req/s. A pool that concentrates light load keeps
// one warm worker; one that alternates wakes each worker cold for every request.
const path = require('node:path');
const { execFileSync } = require('node:child_process');

(async () => {
  const { Dispatcher } = require(path.resolve(process.argv[2] || 'lib'));
  const runs = Number(process.argv[3] || 6);
  const d = await Dispatcher.start({ min: 2, max: 2, app: path.join(__dirname, 'apps/hello.js'), listen: { port: 0, host: '127.0.0.1' } });
  const url = `http://127.0.0.1:${d.address().port}/`;
  try {
    for (let r = 0; r < runs; r++) {
      const before = d.stats().workers.map((w) => w.connectionsReceived);
      const out = execFileSync('wrk', ['-t1', '-c1', '-d2s', '-H', 'Connection: close', '--latency', url]).toString();
      const split = d.stats().workers.map((w, i) => w.connectionsReceived - before[i]);
      const pick = (re) => (re.exec(out) || [])[1];
      console.log(`run ${r + 1}: connections ${split.join(' / ')}, p50 ${pick(/50%\s+(\S+)/)}, p99 ${pick(/99%\s+(\S+)/)}, ${pick(/Requests\/sec:\s+(\S+)/)} req/s`);
    }
  } finally {
    await d.close();
  }
})();
