'use strict';
// Issue 17, item 9: a v2 PROXY header that arrives in small segments was peeked again in full
// on each one (MSG_PEEK up to the whole header, 64 KiB at most): bytes copied grew with the
// square of the header's size, in the accept thread that serves everybody. It now asks the
// kernel how much has arrived (SIOCINQ) and peeks the whole header once, when it is all there.
// Counted, not timed: every recvfrom(MSG_PEEK) of the primary, under strace (a CI package).
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

describe('fault: a trickled PROXY v2 header costs linear work in the accept thread', function () {
  this.timeout(60_000);

  it('8 KiB of header in 100-byte segments: bytes peeked stay within a few times the header', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-trickle-'));
    const trace = path.join(dir, 'strace.txt');
    try {
      const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=recvfrom', '-o', trace, process.execPath, require.resolve('../fixtures/proxy-trickle.js')], { encoding: 'utf8', timeout: 50_000 });
      assert.equal(r.error, undefined, `strace could not run (apt-get install strace): ${r.error}`);
      const m = /answered (\S+) (\d+)/.exec(r.stdout);
      assert.ok(m, `no answer: ${r.stdout} ${r.stderr}`);
      assert.equal(m[1], '203.0.113.7', 'the trickled header named the client');
      const size = Number(m[2]);
      let peeks = 0;
      let bytes = 0;
      for (const line of fs.readFileSync(trace, 'utf8').split('\n')) {
        if (!line.includes('MSG_PEEK')) continue;
        const n = Number(/= (-?\d+)/.exec(line)?.[1]);
        peeks++;
        if (n > 0) bytes += n;
      }
      assert.ok(peeks > 10, `only ${peeks} peeks: the header was not trickled, the test proves nothing`);
      // One small first peek per segment (232 bytes at most) and the whole header once.
      assert.ok(bytes < size + peeks * 232 + 1, `${bytes} bytes peeked in ${peeks} peeks for a ${size}-byte header`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
