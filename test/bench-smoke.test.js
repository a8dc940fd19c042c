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

describe('benchmark contenders', function () {
  this.timeout(60000);
  const contenders = require('../bench/contenders');
  const { get } = require('./helpers');

  for (const name of ['dispatch', 'cluster-none']) {
    it(`${name}: counts() reports each worker's connections (S4 reads it)`, async () => {
      const inst = await contenders.start(contenders.byName(name), { workers: 2 });
      try {
        const before = await inst.counts();
        for (let i = 0; i < 4; i++) assert.equal((await get(inst.port, '/')).status, 200);
        const after = await inst.counts();
        const pids = inst.workerPids();
        const gained = pids.reduce((n, pid) => n + (after.get(pid)?.connections ?? 0) - (before.get(pid)?.connections ?? 0), 0);
        assert.equal(gained, 4, `connections counted per worker: ${JSON.stringify([...after])}`);
      } finally {
        await inst.stop();
      }
    });
  }
});
