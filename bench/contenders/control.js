'use strict';
// The child side of the harness's control protocol, shared by the Node server scripts:
//   stdout  "READY {json}" once serving, "REPLY {json}" for each command
//   stdin   one command per line (e.g. "stats"); end of stdin means the harness is gone
// Ending on stdin EOF means a crashed or killed harness never leaves servers behind.
const readline = require('node:readline');

function ready(info) {
  process.stdout.write(`READY ${JSON.stringify({ pid: process.pid, ...info })}\n`);
}

/** Answer commands with handlers[cmd](); call stop() on SIGTERM, SIGINT or stdin EOF. */
function serve(handlers, stop) {
  let stopping = false;
  const once = () => {
    if (stopping) return;
    stopping = true;
    Promise.resolve(stop()).then(() => process.exit(0), (err) => {
      console.error(err);
      process.exit(1);
    });
  };
  process.on('SIGTERM', once);
  process.on('SIGINT', once);
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    const handler = handlers[line.trim()];
    let reply;
    try {
      reply = handler ? await handler() : { error: `unknown command ${line}` };
    } catch (err) {
      reply = { error: String(err && err.message) };
    }
    process.stdout.write(`REPLY ${JSON.stringify(reply)}\n`);
  });
  rl.on('close', once);
}

module.exports = { ready, serve };
