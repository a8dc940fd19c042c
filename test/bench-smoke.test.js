'use strict';
// The benchmark harness must not rot: one tiny scenario, real contenders, real wrk.
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');

describe('benchmark harness (smoke)', function () {
  it('runs one tiny scenario end to end: node bench/run.js --smoke', async function () {
    this.timeout(120000);
    const root = path.join(__dirname, '..');
    const { code, out } = await new Promise((resolve) => {
      execFile(process.execPath, ['bench/run.js', '--smoke'], { cwd: root, encoding: 'utf8' }, (err, stdout, stderr) =>
        resolve({ code: err ? err.code : 0, out: stdout + stderr }),
      );
    });
    assert.equal(code, 0, out);
    assert.match(out, /bench smoke: ok/);
  });
});
