'use strict';
// Scenario "ceiling": workers close every connection they receive, before any HTTP parsing,
// so what is measured is how fast connections are accepted and handed to workers.
// Exported as a server (herdless and bench/contenders/cluster.js both accept one).
const http = require('node:http');
const { countConnection } = require('./counters');

const server = http.createServer();
server.on('connection', (socket) => {
  countConnection(socket);
  socket.destroy();
});
module.exports = server;
