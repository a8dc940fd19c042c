'use strict';
// Worker stdout/stderr through the real CLI: whole lines, each saying who wrote it (slot and
// pid), never two workers' lines mixed, a last line without newline flushed at exit, and
// JSON fields under --log json.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const { Dispatcher } = require('..');
const { waitFor } = require('./helpers');
const { runCli, started, childPids, killAll } = require('./ship/cli-proc');

const APP = require.resolve('./fixtures/log-writer.js');

/** slot -> pid of the CLI's workers, from their environment (HERDLESS_SLOT). */
function workerPids(cli) {
  const pids = {};
  for (const pid of childPids(cli.pid)) {
    const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const slot = env.find((e) => e.startsWith('HERDLESS_SLOT='));
    if (slot) pids[Number(slot.split('=')[1])] = pid;
  }
  return pids;
}

async function stop(cli) {
  cli.child.kill('SIGTERM');
  assert.equal((await cli.exited).code, 0, cli.log());
}

describe('worker logs', function () {
  afterEach(() => killAll());

  it('text: each line whole, prefixed with [slot pid]; long lines of two workers at once never interleave; a last partial line is flushed at exit', async () => {
    const LINES = 20;
    const LEN = 100_000;
    const cli = runCli(['-w', '2', '--port', '0', '--host', '127.0.0.1', APP], { env: { LOG_LINES: String(LINES), LOG_LEN: String(LEN) } });
    await started(cli);
    const pids = workerPids(cli);
    assert.deepEqual(Object.keys(pids), ['0', '1']);
    const done = () => [0, 1].every((s) => cli.stdout().split('\n').filter((l) => l.startsWith(`[${s} `)).length >= LINES + 1);
    for (const end = Date.now() + 20000; !done() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
    await stop(cli);
    const out = cli.stdout();
    assert.ok(out.endsWith('\n'), 'the output ends mid-line');
    const counts = { 0: 0, 1: 0 };
    for (const line of out.slice(0, -1).split('\n')) {
      const m = /^\[(\d) (\d+)\] (.*)$/.exec(line);
      assert.ok(m, `a line without its prefix: ${line.slice(0, 80)}…`);
      const slot = Number(m[1]);
      assert.equal(Number(m[2]), pids[slot], line.slice(0, 80));
      const text = m[3];
      if (/^[ab]+$/.test(text)) {
        assert.equal(text, String.fromCharCode(97 + slot).repeat(LEN), `slot ${slot}: a line of ${text.length} bytes, mixed or cut (${text.slice(0, 20)}…)`);
        counts[slot]++;
      } else {
        assert.ok([`hello stdout from ${slot}`, `unfinished from ${slot}`].includes(text), `unexpected line: ${text.slice(0, 80)}`);
      }
    }
    assert.deepEqual(counts, { 0: LINES, 1: LINES });
    for (const s of [0, 1]) {
      assert.ok(out.includes(`[${s} ${pids[s]}] hello stdout from ${s}\n`));
      assert.ok(out.includes(`[${s} ${pids[s]}] unfinished from ${s}\n`), 'the last line without a newline was lost');
      assert.ok(cli.log().includes(`[${s} ${pids[s]}] hello stderr from ${s}\n`), cli.log());
    }
  });

  it('--log json: one object per line with slot, workerPid, stream and msg', async () => {
    const cli = runCli(['-w', '2', '--port', '0', '--host', '127.0.0.1', '--log', 'json', APP]);
    await cli.waitLog(/"event":"listening"/);
    const pids = workerPids(cli);
    await cli.waitLog(/hello stderr from 1/);
    await stop(cli);
    const records = cli.stdout().trim().split('\n').map((l) => JSON.parse(l));
    for (const s of [0, 1]) {
      const mine = records.filter((r) => r.slot === s);
      assert.deepEqual(mine.map((r) => r.msg).sort(), [`hello stdout from ${s}`, `unfinished from ${s}`]);
      for (const r of mine) {
        assert.equal(r.workerPid, pids[s]);
        assert.equal(r.stream, 'stdout');
        assert.equal(r.event, 'worker-output');
        assert.equal(r.pid, cli.pid);
      }
      const err = cli.log().split('\n').filter((l) => l.includes(`hello stderr from ${s}`)).map((l) => JSON.parse(l));
      assert.equal(err.length, 1, cli.log());
      assert.deepEqual([err[0].slot, err[0].workerPid, err[0].stream, err[0].msg], [s, pids[s], 'stderr', `hello stderr from ${s}`]);
    }
  });

  it("API: 'prefix' by default; 'inherit' passes stdout through untouched; anything else is ERR_HERDLESS_INVALID_OPTION", async () => {
    const primary = require.resolve('./fixtures/options-primary.js');
    const run = async (extra) => {
      const options = { app: 'log-writer.js', listen: { port: 0, host: '127.0.0.1' }, min: 1, max: 1, ...extra };
      const child = spawn(process.execPath, [primary, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c) => (out += c));
      child.stderr.resume();
      try {
        await waitFor(() => out.includes('"workers"') && out.includes('hello stdout from 0'), 15000);
        // 'inherit': the worker's last, unfinished line runs into the primary's.
        return { out, pid: JSON.parse(/\{"pid".*\}/.exec(out)[0]).workers[0] };
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
    };
    const prefixed = await run({});
    assert.ok(prefixed.out.includes(`[0 ${prefixed.pid}] hello stdout from 0\n`), prefixed.out);
    const inherited = await run({ workerOutput: 'inherit' });
    assert.ok(inherited.out.split('\n').includes('hello stdout from 0'), inherited.out);
    await assert.rejects(
      Dispatcher.start({ app: APP, listen: { port: 0 }, workerOutput: 'text' }),
      (err) => err.code === 'ERR_HERDLESS_INVALID_OPTION' && err.option === 'workerOutput',
    );
  });

  it('a primary whose stdout reader went away keeps serving (EPIPE on worker lines is not fatal)', async () => {
    const cli = runCli(['-w', '1', '--port', '0', '--host', '127.0.0.1', APP]);
    const { port } = await started(cli);
    cli.child.stdout.destroy(); // the reader is gone: the primary's next stdout write fails with EPIPE
    const mark = cli.log().length;
    cli.child.kill('SIGHUP'); // a new worker, which writes to stdout as it loads
    await cli.waitLog(/reload/i, 10000, mark);
    await waitFor(() => cli.log().slice(mark).includes('hello stderr from 0'), 10000);
    await new Promise((r) => setTimeout(r, 300));
    const { get } = require('./helpers');
    assert.equal((await get(port, '/')).status, 200, cli.log());
    assert.equal(cli.child.exitCode, null, cli.log());
    await stop(cli);
  });
});
