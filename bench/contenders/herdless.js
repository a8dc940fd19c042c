'use strict';
// Server script for the herdless contenders (modes dispatch, herd, reuseport).
//   node herdless.js --mode dispatch --min 2 --max 2 --app <file> [--route client-ip] [--proxy-protocol] [--app-listen]
// --app-listen: no `listen` option; the app calls listen() itself (apps/hello-listen.js).
// Commands: stats, grow and shrink (resize by one worker; the reply is the new size).
// Workers inherit BENCH_STATS_DIR from this process's environment.
const { parseArgs } = require('node:util');
const path = require('node:path');
const control = require('./control');

const { values: opt } = parseArgs({
  options: {
    mode: { type: 'string', default: 'dispatch' },
    min: { type: 'string', default: '2' },
    max: { type: 'string' },
    app: { type: 'string', default: path.join(__dirname, '../apps/hello.js') },
    route: { type: 'string' },
    'proxy-protocol': { type: 'boolean' },
    'app-listen': { type: 'boolean' },
  },
});

async function main() {
  // HERDLESS_LIB lets the harness measure another build of herdless.
  const { Dispatcher } = require(process.env.HERDLESS_LIB || path.join(__dirname, '../../lib'));
  const min = Number(opt.min);
  const d = await Dispatcher.start({
    mode: opt.mode,
    min,
    max: Number(opt.max || opt.min),
    app: path.resolve(opt.app),
    ...(opt['app-listen'] ? {} : { listen: { port: 0, host: '127.0.0.1' } }),
    ...(opt.route ? { route: opt.route } : {}),
    ...(opt['proxy-protocol'] ? { proxyProtocol: true } : {}),
  });
  const { port } = d.address();
  control.ready({ port, workers: d.workers().map((w) => w.pid) });
  control.serve(
    {
      stats: () => ({ size: d.size, stats: d.stats() }),
      grow: async () => ({ size: await d.resize(d.size + 1), workers: d.workers().map((w) => w.pid) }),
      shrink: async () => ({ size: await d.resize(d.size - 1), workers: d.workers().map((w) => w.pid) }),
    },
    () => d.close({ timeout: 3000 }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
