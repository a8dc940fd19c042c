'use strict';
// The scenarios, in the order they run and are reported. S6 reads S1's result, so S1 first.
module.exports = [
  require('./conn-per-request'),
  require('./keep-alive'),
  require('./herd-cost'),
  require('./fairness'),
  require('./stalled'),
  require('./ceiling'),
  require('./burst-memory'),
  require('./streamed'),
  require('./storm'),
  require('./hop-cost'),
  require('./stalled').spin, // S5b, listed last so that the numbers of S1..S7 stay put
  require('./routing'), // S11
  require('./proxy-protocol'), // S12
  require('./app-listen'), // S13
  require('./idle'), // S14
  require('./one-client'), // S15
  require('./keep-alive-steady'), // S16
];
