'use strict';
// Real HTTP clients: node:http with agent:false (a connection per request), and a raw
// keep-alive client on a plain net.Socket whose life the test controls byte by byte.
const http = require('node:http');
const net = require('node:net');

/**
 * One request with node:http; resolves { status, headers, body (Buffer), text, socket:
 * { localPort, remotePort } } or rejects with the client error (err.code ECONNREFUSED,
 * ECONNRESET, ETIMEDOUT, ...). Defaults: 127.0.0.1, agent false. `options.timeout` (ms)
 * destroys the request with ETIMEDOUT.
 */
function request(options, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ agent: false, host: '127.0.0.1', ...options }, (res) => {
      const chunks = [];
      const socket = { localPort: res.socket.localPort, remotePort: res.socket.remotePort };
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, body: buf, text: buf.toString(), socket });
      });
      res.on('error', reject);
      res.on('aborted', () => reject(Object.assign(new Error('response aborted'), { code: 'ECONNRESET' })));
    });
    req.on('error', reject);
    if (options.timeout) {
      req.setTimeout(options.timeout, () => req.destroy(Object.assign(new Error(`timeout after ${options.timeout} ms`), { code: 'ETIMEDOUT' })));
    }
    req.end(body);
  });
}

/** GET `path` on 127.0.0.1:`port` on a fresh connection with `Connection: close`. */
const get = (port, path = '/', extra = {}) => request({ port, path, headers: { connection: 'close' }, ...extra });

/**
 * Run `fn(i)` `total` times with `concurrency` calls in flight. Resolves an array indexed by
 * i holding each result, or the Error it threw.
 */
async function hammer(total, concurrency, fn) {
  const results = new Array(total);
  let next = 0;
  async function lane() {
    while (next < total) {
      const i = next++;
      try {
        results[i] = await fn(i);
      } catch (err) {
        results[i] = err instanceof Error ? err : new Error(String(err));
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane));
  return results;
}

/**
 * Ask `burst()` (resolving an array of answers) again until the answers come from `want`
 * distinct `keyOf(answer)` values, at most `rounds` times; resolves every answer. Placement
 * keeps light load on the warmest free worker, so one burst of fast requests may be served by
 * one worker; reaching every worker is then a matter of asking while one is busy.
 */
async function untilServedBy(want, burst, keyOf, rounds = 20) {
  const answers = [];
  const keys = new Set();
  for (let i = 0; i < rounds && keys.size < want; i++) {
    for (const a of await burst()) {
      answers.push(a);
      keys.add(keyOf(a));
    }
  }
  return answers;
}

/** Throw with a summary if any of `results` is an Error. */
function assertAllOk(results) {
  const errors = results.filter((r) => r instanceof Error);
  if (errors.length) {
    const byCode = {};
    for (const e of errors) byCode[e.code || e.message] = (byCode[e.code || e.message] || 0) + 1;
    throw new Error(`${errors.length} of ${results.length} requests failed: ${JSON.stringify(byCode)}`);
  }
}

/**
 * A raw HTTP/1.1 keep-alive client on one net.Socket. `send(path)` writes a GET and resolves
 * the parsed response ({ status, headers, body }); responses must carry Content-Length or be
 * chunked. `events` records what happened to the socket ('end', 'close', 'error:<code>'),
 * `received` counts response bytes, so a test can assert that nothing at all arrived and
 * that the connection was neither reset nor closed.
 */
class RawClient {
  constructor(socket) {
    this.socket = socket;
    this.events = [];
    this.received = 0;
    this.buffer = Buffer.alloc(0);
    this.waiting = [];
    socket.on('data', (chunk) => {
      this.received += chunk.length;
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    socket.on('end', () => this.events.push('end'));
    socket.on('error', (err) => this.events.push(`error:${err.code || err.message}`));
    socket.on('close', () => {
      this.events.push('close');
      for (const w of this.waiting.splice(0)) w.reject(Object.assign(new Error(`connection closed (${this.events.join(', ')})`), { code: 'ECONNRESET' }));
    });
  }

  static connect(port, host = '127.0.0.1') {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawClient(socket));
      });
    });
  }

  get localPort() {
    return this.socket.localPort;
  }

  /** True while the connection has seen no end, close or error. */
  get intact() {
    return this.events.length === 0 && !this.socket.destroyed;
  }

  send(path = '/', headers = {}) {
    const lines = [`GET ${path} HTTP/1.1`, 'Host: localhost', 'Connection: keep-alive'];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.socket.write(lines.join('\r\n') + '\r\n\r\n');
    });
  }

  parse() {
    while (this.waiting.length) {
      const head = this.buffer.indexOf('\r\n\r\n');
      if (head < 0) return;
      const [statusLine, ...headerLines] = this.buffer.subarray(0, head).toString('latin1').split('\r\n');
      const headers = {};
      for (const line of headerLines) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      let body;
      let rest;
      if (headers['transfer-encoding'] === 'chunked') {
        const parts = [];
        let at = head + 4;
        for (;;) {
          const eol = this.buffer.indexOf('\r\n', at);
          if (eol < 0) return;
          const size = parseInt(this.buffer.subarray(at, eol).toString('latin1'), 16);
          if (this.buffer.length < eol + 2 + size + 2) return;
          if (size === 0) {
            rest = this.buffer.subarray(eol + 4);
            break;
          }
          parts.push(this.buffer.subarray(eol + 2, eol + 2 + size));
          at = eol + 2 + size + 2;
        }
        body = Buffer.concat(parts);
      } else {
        const length = Number(headers['content-length'] || 0);
        if (this.buffer.length < head + 4 + length) return;
        body = this.buffer.subarray(head + 4, head + 4 + length);
        rest = this.buffer.subarray(head + 4 + length);
      }
      this.buffer = Buffer.from(rest);
      const status = Number(statusLine.split(' ')[1]);
      this.waiting.shift().resolve({ status, headers, body, text: body.toString() });
    }
  }

  /** Close our side cleanly (FIN), and resolve once the socket is fully closed. */
  end() {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once('close', resolve);
      this.socket.end();
    });
  }

  destroy() {
    this.socket.destroy();
  }
}

module.exports = { request, get, hammer, untilServedBy, assertAllOk, RawClient };
