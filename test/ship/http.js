'use strict';
// A plain HTTP GET for the shipping tests: no agent, so no connection outlives a request.
const http = require('node:http');

/** Resolves { status, body, headers }; `onResponse(res)` runs when the headers arrive. */
function get(target, path = '/', { onResponse, timeout = 10000 } = {}) {
  const where = typeof target === 'number' ? { host: '127.0.0.1', port: target } : target;
  return new Promise((resolve, reject) => {
    const req = http.get({ ...where, path, agent: false }, (res) => {
      onResponse?.(res);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`GET ${path}: no answer within ${timeout} ms`)));
    req.on('error', reject);
  });
}

module.exports = { get };
