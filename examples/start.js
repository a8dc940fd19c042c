// `npm start`: a demo server on http://127.0.0.1:8080 (PORT and HOST override).
'use strict';
const os = require('node:os');
const { Dispatcher } = require('..');

async function main() {
  const port = Number(process.env.PORT ?? 8080);
  const host = process.env.HOST ?? '127.0.0.1';
  const d = await Dispatcher.start({
    min: 2,
    max: Math.max(2, os.availableParallelism()),
    app: require.resolve('./hello.js'),
    listen: { port, host },
  });
  const { address, port: bound } = d.address();
  console.log(`herdless demo: http://${address}:${bound}/  (${d.size} workers, mode dispatch, pid ${process.pid}); Ctrl-C stops`);
  const stop = async () => {
    await d.close({ timeout: 5000 });
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  console.error(`herdless demo failed to start: ${err.code ?? ''} ${err.message}`);
  process.exit(1);
});
