'use strict';
// What a SIGUSR2 upgrade costs clients: the CLI with 2 workers, 4 clients opening a connection
// per request and 4 on keep-alive agents, for 2 s before and until 2 s after the old primary
// exits. Prints requests served by each generation, failures, keep-alive retries (a reused
// idle connection closed by the drain, retried as HTTP clients do), and the times from
// USR2 to the new primary's takeover and to the old one's exit.
//   node bench/upgrade-window.js [upgrades]
const path = require('node:path');
const { runCli, started, killAll } = require('../test/ship/cli-proc');
const { loadLoop } = require('../test/helpers/load-loop');

const APP = path.join(__dirname, '..', 'test', 'fixtures', 'cli', 'upgrade-app.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main(upgrades) {
  const cli = runCli(['--host', '127.0.0.1', '--port', '0', '-w', '2', APP], { env: { UPGRADE_FLAG: '/nonexistent' } });
  const { port } = await started(cli);
  const load = loadLoop(port, { fresh: 4, keepAlive: 4 });
  let primary = cli.pid;
  for (let i = 0; i < upgrades; i++) {
    await sleep(2000);
    const from = cli.log().length;
    const t0 = Date.now();
    process.kill(primary, 'SIGUSR2');
    const m = await cli.waitLog(/herdless\[(\d+)\]: took over from pid/, 60000, from);
    const tookOver = Date.now() - t0;
    await cli.waitLog(new RegExp(`herdless\\[${primary}\\]: stopped; pid`), 60000, from);
    console.log(`upgrade ${i + 1}: pid ${primary} -> ${m[1]}: new primary ready after ${tookOver} ms, old exited after ${Date.now() - t0} ms`);
    primary = Number(m[1]);
  }
  await sleep(2000);
  const t = await load.stop();
  console.log(`requests ok ${t.ok}, failed ${t.failures.length}, keep-alive retries ${t.retried}`);
  console.log(`by primary: ${[...t.byPrimary].map(([p, n]) => `${p}: ${n}`).join(', ')}`);
  for (const f of t.failures.slice(0, 5)) console.log(`  failure: ${f}`);
  process.kill(primary, 'SIGTERM');
  await sleep(1000);
  killAll();
}

main(Number(process.argv[2] ?? 3)).catch((err) => {
  console.error(err);
  killAll();
  process.exit(1);
});
