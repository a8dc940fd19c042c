'use strict';
// Response bodies, shared by the Node app and the nginx config so both send the same bytes.
// Only letters, spaces and dots: safe inside an nginx quoted string.
const pad = (n) => Buffer.from('hello world'.padEnd(n - 1, '.') + '\n');
module.exports = { small: pad(40), big: pad(10_000), chunk: pad(100) };
