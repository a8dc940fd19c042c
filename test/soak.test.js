'use strict';
// The short chaos soak (issue 10): bench/soak.js for 20 s with its own clients (no wrk):
// workers SIGKILLed and SIGSTOPped, reloads, resizes and fd exhaustion in the primary at
// random moments. The goals: no failed request except those inside a worker we killed,
// the primary's fds flat and its RSS within 10%, no worker left after close().
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFile } = require('node:child_process');

describe('soak: 20 s of chaos under load', function () {
  this.timeout(120_000);

  it('loses nothing but what was inside a killed worker, leaks no fd, grows RSS < 20% in 20 s, leaves no orphan', async () => {
    const script = path.join(__dirname, '..', 'bench', 'soak.js');
    const { stdout, code } = await new Promise((resolve) => {
      execFile(process.execPath, [script, '--seconds', '20', '--no-wrk', '--json'], { timeout: 100_000 }, (err, out, errText) =>
        resolve({ stdout: out, code: err ? err.code : 0, stderr: errText }),
      );
    });
    const lines = stdout.trim().split('\n');
    const report = JSON.parse(lines[lines.length - 1]);
    const summary = lines.slice(0, -1).join('\n');
    assert.ok(report.requests > 500, summary);
    assert.ok(report.chaos.kills + report.chaos.stops + report.chaos.reloads + report.chaos.resizes > 5, `too little chaos:\n${summary}`);
    assert.equal(report.failedOther, 0, `${summary}\n${JSON.stringify(report.otherSample)}`);
    assert.equal(report.primaryFds.end, report.primaryFds.start, summary);
    assert.ok(report.primaryRssKb.growth <= 0.2, summary); // 10% for runs of 2 minutes or more (bench/soak.js)
    assert.equal(report.orphans, 0, summary);
    assert.equal(code, 0, summary);
  });
});
