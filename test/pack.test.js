'use strict';
// What users install: pack the project with its prebuilt binary, install the tarball into a
// fresh project where compiling is impossible, and serve from it. Runs in a temporary copy so
// that no prebuilds/ is left in the working tree (node-gyp-build would load it when build/ is
// absent, and it would go stale).
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { runCli, started, killAll } = require('./ship/cli-proc');
const { get } = require('./ship/http');

const ROOT = path.join(__dirname, '..');

/** The working tree as git sees it (tracked and new files, nothing ignored), copied. */
function copyProject(dest) {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
  for (const file of files.split('\0').filter(Boolean)) {
    const from = path.join(ROOT, file);
    if (!fs.existsSync(from)) continue; // deleted but not yet committed
    fs.mkdirSync(path.dirname(path.join(dest, file)), { recursive: true });
    fs.copyFileSync(from, path.join(dest, file));
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dest, 'node_modules'));
}

/** A PATH with node, npm, npx and sh only: no cc, c++, make or python for node-gyp to find. */
function bareBin(dir) {
  fs.mkdirSync(dir);
  fs.symlinkSync(process.execPath, path.join(dir, 'node'));
  for (const tool of ['npm', 'npx']) {
    fs.symlinkSync(fs.realpathSync(execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim()), path.join(dir, tool));
  }
  fs.symlinkSync('/bin/sh', path.join(dir, 'sh')); // npm runs scripts with sh
  return dir;
}

describe('npm pack with prebuilds, installed without a compiler', function () {
  this.timeout(300000);
  let tmp;
  let packed; // npm pack --json: { filename, files: [{ path }] }
  let app;
  let env;

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-pack-'));
    const pkg = path.join(tmp, 'pkg');
    copyProject(pkg);
    execFileSync('npm', ['run', 'prebuild'], { cwd: pkg, stdio: 'pipe' });
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: pkg, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    packed = JSON.parse(out)[0];

    app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'user-app', version: '1.0.0', private: true }));
    fs.writeFileSync(path.join(app, 'app.js'), "module.exports = (req, res) => res.end('hello ' + process.pid);\n");
    env = { ...process.env, PATH: bareBin(path.join(tmp, 'bin')), CC: 'false', CXX: 'false' };
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', path.join(tmp, packed.filename)], {
      cwd: app,
      env,
      stdio: 'pipe',
    });
  });
  after(() => {
    killAll();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('the tarball holds lib/, bin/, prebuilds/, native/, binding.gyp and README, nothing from test/ or bench/', () => {
    const files = packed.files.map((f) => f.path);
    for (const f of ['package.json', 'README.md', 'binding.gyp', 'bin/herdless', 'lib/index.js', 'lib/index.d.ts', 'lib/index.mjs',
      'lib/worker/index.js', 'lib/worker/index.d.ts', 'lib/cli/main.js', 'lib/primary/metrics.js', 'lib/primary/metrics.d.ts', 'prebuilds/linux-x64/herdless.node']) {
      assert.ok(files.includes(f), `${f} missing from the tarball`);
    }
    assert.ok(files.some((f) => /^native\/.+\.cc$/.test(f)), 'native sources, for platforms without a prebuild');
    const stray = files.filter((f) => /^(test|bench|build|src|node_modules|examples)\//.test(f) || f.endsWith('.tgz'));
    assert.deepEqual(stray, []);
  });

  it('installs from the prebuild: nothing was compiled', () => {
    const dir = path.join(app, 'node_modules', 'herdless');
    assert.ok(!fs.existsSync(path.join(dir, 'build')), 'a build/ directory means node-gyp ran');
    const loaded = execFileSync('node', ['-p', "require('node-gyp-build').path(require('path').dirname(require.resolve('herdless/package.json')))"], {
      cwd: app,
      env,
      encoding: 'utf8',
    }).trim();
    assert.equal(loaded, path.join(fs.realpathSync(dir), 'prebuilds', 'linux-x64', 'herdless.node'));
  });

  it('serves from the installed package: Dispatcher API', () => {
    const script = `
      const { Dispatcher } = require('herdless');
      (async () => {
        const d = await Dispatcher.start({ app: './app.js', min: 2, max: 2, listen: { port: 0, host: '127.0.0.1' } });
        const r = await fetch('http://127.0.0.1:' + d.address().port + '/');
        console.log(JSON.stringify({ status: r.status, body: await r.text(), size: d.size }));
        await d.close();
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const out = JSON.parse(execFileSync('node', ['-e', script], { cwd: app, env, encoding: 'utf8', timeout: 30000 }));
    assert.equal(out.status, 200);
    assert.match(out.body, /^hello \d+$/);
    assert.equal(out.size, 2);
  });

  it('serves from the installed package: the herdless bin', async () => {
    assert.match(execFileSync('npx', ['--no-install', 'herdless', '--help'], { cwd: app, env, encoding: 'utf8' }), /^Usage: herdless/);
    // What npx runs, started directly so that signals reach herdless itself.
    const cli = runCli(['--host', '127.0.0.1', '--port', '0', 'app.js'], { command: [path.join(app, 'node_modules', '.bin', 'herdless')], cwd: app, env });
    const { port } = await started(cli);
    assert.match((await get(port)).body, /^hello \d+$/);
    cli.child.kill('SIGTERM');
    assert.deepEqual(await cli.exited, { code: 0, signal: null });
  });
});
