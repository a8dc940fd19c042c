'use strict';
// The app each host serves in test/hosts/run.js: answers after a little latency (so that a
// request is in flight when a host dies) and says which host and worker served it in
// `x-served-by: <HOST_NAME>/<worker pid>`, which the load generator counts per host.
const host = process.env.HOST_NAME || 'unnamed';
const latency = Number(process.env.APP_LATENCY_MS || 20);
module.exports = (req, res) => {
  setTimeout(() => {
    res.setHeader('x-served-by', `${host}/${process.pid}`);
    res.end(`${host} ${process.pid}\n`);
  }, latency);
};
