// The smallest herdless app: a request listener, run in every worker.
'use strict';
module.exports = (req, res) => {
  res.setHeader('content-type', 'text/plain');
  res.end(`hello from worker ${process.pid}\n`);
};
