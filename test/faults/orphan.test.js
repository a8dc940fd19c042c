'use strict';
// Fault 10 of issue 10: a worker asks the kernel to be signalled when its primary dies
// (PR_SET_PDEATHSIG), but from JS, once Node has booted. A worker still booting (here: a
// --require preload that blocks) outlived a primary SIGKILLed meanwhile. Workers now start
// through `setpriv --pdeathsig SIGKILL`, tied to the primary before Node even runs.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { waitFor, alive } = require('../helpers');

const FIXTURE = require.resolve('../fixtures/pool-fault-primary.js');

describe('faults: a worker still booting when its primary dies (fault 10)', function () {
  this.timeout(30_000);
  let dir;
  let marked = [];
  afterEach(() => {
    for (const pid of marked) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
    }
    marked = [];
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('leaves no orphan: workers blocked in a --require preload die with a SIGKILLed primary', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-orphan-'));
    const primary = spawn(process.execPath, [FIXTURE], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: {
        ...process.env,
        MIN: '2',
        EXEC_ARGV: JSON.stringify(['--require', require.resolve('../fixtures/pool-bootstrap-sleep.js')]),
        BOOTSTRAP_MARK_DIR: dir,
        BOOTSTRAP_SLEEP_MS: '20000',
        START_TIMEOUT: '60000',
      },
    });
    const exited = new Promise((r) => primary.once('exit', r));
    // Both workers are inside the preload, long before herdless's own worker code runs.
    await waitFor(() => fs.readdirSync(dir).length === 2, 15_000);
    marked = fs.readdirSync(dir).map(Number);
    assert.ok(marked.every(alive));
    primary.kill('SIGKILL');
    await exited;
    await waitFor(() => !marked.some(alive), 2000).catch(() => {
      assert.fail(`workers ${marked.filter(alive).join(', ')} outlived their primary`);
    });
  });
});
