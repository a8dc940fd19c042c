'use strict';
// The soak's app. Every connection is logged ("<ms> <client port> <pid>") to a file of this
// worker's own, the moment the worker gets it, so that the soak can tell a connection lost
// in a worker it killed from any other failure. Each response sends its headers at once
// (X-Pid: who is answering), then its body after a few ms (a handler a SIGKILL can cut).
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const log = fs.openSync(path.join(process.env.SOAK_LOG_DIR, `conn-${process.pid}.log`), 'a');

module.exports = () => {
  const server = http.createServer((req, res) => {
    const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms') || 0);
    res.writeHead(200, { 'content-type': 'text/plain', 'x-pid': String(process.pid) });
    res.flushHeaders();
    const end = () => res.end(`${process.pid}\n`);
    if (ms > 0) setTimeout(end, ms);
    else end();
  });
  server.on('connection', (socket) => fs.writeSync(log, `${Date.now()} ${socket.remotePort} ${process.pid}\n`));
  return server;
};
