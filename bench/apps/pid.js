'use strict';
// Answers with the worker's pid (body and an x-worker-pid header): which worker served each
// connection (scenarios "routing" and "proxy-protocol").
const body = String(process.pid);
const headers = { 'Content-Type': 'text/plain', 'Content-Length': body.length, 'x-worker-pid': body };
module.exports = (req, res) => {
  res.writeHead(200, headers);
  res.end(body);
};
