'use strict';
// Docs that cannot rot: every JavaScript and shell example marked runnable in README.md,
// CONTRIBUTING.md and docs/*.md runs here, against the built package, as real processes.
// How examples are marked: test/helpers/markdown.js (and CONTRIBUTING.md).
//
// Each page gets a folder of its own where `herdless` resolves to this package
// (node_modules/herdless) and is on PATH (node_modules/.bin/herdless); its `file=NAME` blocks
// are written there first (a name once per page), for the examples to use, which run there
// (cwd=repo: in the repository). Port 8080 in an example or a file is replaced by a free port
// (a new one for each example), so examples read as a reader types them.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const md = require('./helpers/markdown');

const RUN_TIMEOUT = 60000;
const SERVER_START = 30000;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function exampleDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-docs-'));
  fs.mkdirSync(path.join(dir, 'node_modules', '.bin'), { recursive: true });
  fs.symlinkSync(md.ROOT, path.join(dir, 'node_modules', 'herdless'));
  fs.symlinkSync(path.join(md.ROOT, 'bin', 'herdless'), path.join(dir, 'node_modules', '.bin', 'herdless'));
  return dir;
}

/** Writes `block` into `dir` as something to run: returns [command, args]. */
function program(dir, block, index, port) {
  const code = block.code.replaceAll('8080', String(port));
  if (['sh', 'bash', 'shell', 'console'].includes(block.lang)) {
    const file = path.join(dir, `example-${index}.sh`);
    fs.writeFileSync(file, `set -euo pipefail\n${code}`);
    return ['bash', [file]];
  }
  const named = /^\/\/\s*([\w.-]+\.(?:mjs|cjs|js))\s*(?::|$)/.exec(code);
  const esm = /^\s*(import|export)\s/m.test(code) || /^\s*await\s|=\s*await\s/m.test(code);
  const name = named ? named[1] : `example-${index}.${esm ? 'mjs' : 'js'}`;
  fs.writeFileSync(path.join(dir, name), code);
  return [process.execPath, [path.join(dir, name)]];
}

/** Runs `cmd` in `dir` in a process group of its own; resolves { code, signal, out }. */
function start(dir, [cmd, args], cwd) {
  const env = { ...process.env, PATH: `${path.join(dir, 'node_modules', '.bin')}:${process.env.PATH}` };
  delete env.PORT;
  const child = spawn(cmd, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal, out })));
  return { child, exited, output: () => out };
}

function get(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d)).on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('no answer in 5 s')));
    req.once('error', reject);
  });
}

function groupAlive(pid) {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function within(ms, promise, what) {
  let timer;
  const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs one runnable block; throws, with its output, unless it did what its marker says. */
async function run(dir, block, index, port) {
  const proc = start(dir, program(dir, block, index, port), block.attrs.cwd === 'repo' ? md.ROOT : dir);
  try {
    if (block.attrs.runnable !== 'server') {
      const r = await within(RUN_TIMEOUT, proc.exited, 'exit');
      assert.equal(r.code, 0, `exited ${r.code ?? r.signal}:\n${r.out}`);
      return r;
    }
    // A server: ask it once, then Ctrl-C (SIGINT to its process group), as a reader would.
    const deadline = Date.now() + SERVER_START;
    let answer;
    let exitedEarly = false;
    proc.exited.then(() => (exitedEarly = true));
    while (!answer) {
      if (exitedEarly) throw new Error(`exited before answering on port ${port}:\n${proc.output()}`);
      if (Date.now() > deadline) throw new Error(`no answer on port ${port} within ${SERVER_START} ms:\n${proc.output()}`);
      answer = await get(port).catch(() => null);
      if (!answer) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(answer.status, 200, `GET / answered ${answer.status}:\n${proc.output()}`);
    process.kill(-proc.child.pid, 'SIGINT');
    const r = await within(35000, proc.exited, 'stop after SIGINT');
    // npx (npm exec) waits for its command, then ends itself with the SIGINT it got, as a
    // wrapper should for a shell; everything else must exit 0 on Ctrl-C.
    if (/^\s*npx\s/m.test(block.code)) assert.equal(r.signal, 'SIGINT', `npx exited ${r.code ?? r.signal} after SIGINT:\n${r.out}`);
    else assert.equal(r.code, 0, `exited ${r.code ?? r.signal} after SIGINT:\n${r.out}`);
    const t = Date.now();
    while (groupAlive(proc.child.pid) && Date.now() - t < 5000) await new Promise((res) => setTimeout(res, 50));
    assert.ok(!groupAlive(proc.child.pid), `processes of the example still alive 5 s after it exited:\n${r.out}`);
    return r;
  } finally {
    if (groupAlive(proc.child.pid)) process.kill(-proc.child.pid, 'SIGKILL');
  }
}

describe('docs: every runnable example runs', function () {
  this.timeout(RUN_TIMEOUT + SERVER_START + 45000);
  const dirs = [];
  after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  for (const page of md.pages()) {
    const examples = md.examples(page).filter((b) => b.attrs.runnable || b.attrs.file);
    if (!examples.some((b) => b.attrs.runnable)) continue;
    describe(page, () => {
      let dir;
      let port;
      before(() => dirs.push((dir = exampleDir())));
      // A free port for each example, written into the page's files too, so that a file and
      // the example that serves it agree on it.
      beforeEach(async () => {
        port = await freePort();
        for (const b of examples.filter((x) => x.attrs.file)) fs.writeFileSync(path.join(dir, b.attrs.file), b.code.replaceAll('8080', String(port)));
      });
      examples.forEach((block, index) => {
        const what = `${page}:${block.line}`;
        if (block.attrs.file) return;
        const title = `${what}: ${block.code.trim().split('\n')[0].slice(0, 70)}${block.attrs.runnable === 'server' ? ' (server: asked once, then Ctrl-C)' : ''}`;
        if (block.marker?.kind === 'pending') {
          it(`${title} is still pending (${block.marker.reason.slice(0, 60)}...)`, async () => {
            const passed = await run(dir, block, index, port).then(
              () => true,
              () => false,
            );
            assert.ok(!passed, `${what} runs now: remove its <!-- pending --> marker`);
          });
          return;
        }
        it(title, () => run(dir, block, index, port));
      });
    });
  }
});
