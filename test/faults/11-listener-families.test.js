'use strict';
// Fault 11: an inherited fd of another family (AF_VSOCK, AF_PACKET, ...) or kind was taken
// as a listener at start; the acceptor then passed workers fds they cannot serve, or spun
// on it, and workers crash-looped. Start now refuses anything but a listening SOCK_STREAM
// socket of AF_INET/AF_INET6 (TCP or MPTCP) or AF_UNIX, saying what the fd is.
// The fds are real, made by python3 (which node-gyp needs anyway): Node cannot make most of them.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const fixtures = path.join(__dirname, '..', 'fixtures', 'faults');

describe('fault 11: an inherited listen: { fd } that is not a listening TCP or unix stream socket', function () {
  it('is refused at start with ERR_HERDLESS_INVALID_OPTION naming what it is; nothing is left behind', () => {
    const out = execFileSync('python3', [path.join(fixtures, 'make-fds.py'), process.execPath, path.join(fixtures, 'try-listen-fds.js')], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    const { results, missing, fdsBefore, fdsAfter, children } = JSON.parse(out.trim().split('\n').pop());
    const expected = {
      udp: /is an AF_INET SOCK_DGRAM socket/,
      'tcp-connected': /is an AF_INET SOCK_STREAM socket that is not listening/,
      'tcp-unbound': /is an AF_INET SOCK_STREAM socket that is not listening/,
      'unix-dgram': /is an AF_UNIX SOCK_DGRAM socket/,
      'unix-seqpacket': /is an AF_UNIX SOCK_SEQPACKET socket/,
      file: /is a regular file/,
      pipe: /is a pipe/,
      packet: /is an AF_PACKET SOCK_RAW socket/,
      vsock: /is an AF_VSOCK SOCK_STREAM socket/,
      'sctp-listening': /is an AF_INET SOCK_STREAM socket of protocol 132, not TCP/,
    };
    const tried = Object.keys(expected).filter((name) => name in results);
    // Only kinds the kernel or our privileges cannot make may be missing (never the basic ones).
    for (const name of ['udp', 'tcp-connected', 'tcp-unbound', 'unix-dgram', 'unix-seqpacket', 'file', 'pipe']) {
      assert.ok(tried.includes(name), `${name} was not tried: ${missing.join(', ')}`);
    }
    for (const name of tried) {
      const r = results[name];
      assert.equal(r.code, 'ERR_HERDLESS_INVALID_OPTION', `${name}: ${JSON.stringify(r)}`);
      assert.match(r.message, expected[name], name);
      assert.match(r.message, /expected a listening SOCK_STREAM socket of AF_INET, AF_INET6 \(TCP\) or AF_UNIX/);
    }
    assert.equal(results['tcp-listening'], 'served');
    if ('mptcp-listening' in results) assert.equal(results['mptcp-listening'], 'served');
    assert.equal(fdsAfter, fdsBefore, 'the refused starts left fds open');
    assert.equal(children, 0, 'a refused start left a worker');
    // Printed so that a run shows which optional kinds it covered.
    console.log(`      tried: ${tried.join(', ')}${missing.length ? `; not available here: ${missing.join(', ')}` : ''}`);
  });
});
