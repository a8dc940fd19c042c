'use strict';
// The app every Node contender serves (herdless loads it in its workers, bench/contenders/
// cluster.js in cluster workers). nginx serves the same bodies from its config.
//   /        40-byte body
//   /big     10,000-byte body
//   /block?ms=200   holds the event loop for ms, then answers (scenario "stalled")
//   /chunks  300 bytes in three writes on three ticks, as a streaming or templating app flushes
//            early (scenario "streamed"; with Nagle on, each response waits ~40 ms for an ACK)
const { countRequest } = require('./counters');
const bodies = require('./bodies');

const headers = (body) => ({ 'Content-Type': 'text/plain', 'Content-Length': body.length });
const small = { body: bodies.small, headers: headers(bodies.small) };
const big = { body: bodies.big, headers: headers(bodies.big) };
// Atomics.wait blocks this thread without using the CPU. A busy loop would be the obvious
// "stalled worker", but on a 2-core box two spinning workers take all the CPU from everyone
// and the scenario would measure CPU contention instead of where connections are sent.
const sleeper = new Int32Array(new SharedArrayBuffer(4));

module.exports = function hello(req, res) {
  countRequest(req);
  const url = req.url;
  if (url === '/chunks') {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 300 });
    res.write(bodies.chunk);
    setImmediate(() => {
      res.write(bodies.chunk);
      setImmediate(() => res.end(bodies.chunk));
    });
    return;
  }
  if (url.startsWith('/block')) {
    const ms = Number(new URL(url, 'http://x').searchParams.get('ms')) || 200;
    if (url.includes('spin=1')) {
      const end = Date.now() + ms;
      while (Date.now() < end);
    } else {
      Atomics.wait(sleeper, 0, 0, ms);
    }
  }
  const r = url === '/big' ? big : small;
  res.writeHead(200, r.headers);
  res.end(r.body);
};
