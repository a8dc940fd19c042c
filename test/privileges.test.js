'use strict';
// `user` and `group`: the primary binds as root, workers run as another user (here nobody),
// switched before the app loads, seen from outside through /proc/<pid>/status.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync, spawn } = require('node:child_process');
const { Dispatcher } = require('..');
const { get, waitFor } = require('./helpers');
const { runCli, started, childPids, killAll } = require('./ship/cli-proc');

const app = require.resolve('./fixtures/whoami.js');
const local = { port: 0, host: '127.0.0.1' };
const isRoot = process.getuid() === 0;

/** uid, gid and the user's groups from the user database (as initgroups(3) sees them), or null. */
function account(name) {
  try {
    const [, , uid, gid, , home] = execFileSync('getent', ['passwd', name], { encoding: 'utf8' }).trim().split(':');
    const groups = execFileSync('id', ['-G', name], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
    return { uid: Number(uid), gid: Number(gid), home, groups };
  } catch {
    return null;
  }
}
const nobody = account('nobody');

/** Real, effective, saved and fs ids, and supplementary groups, of `pid`. */
function credentialsOf(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)[1].trim();
  const ids = (name) => field(name).split(/\s+/).filter(Boolean).map(Number);
  return { uid: ids('Uid'), gid: ids('Gid'), groups: ids('Groups').sort((a, b) => a - b) };
}

const environOf = (pid) => Object.fromEntries(fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));

describe('user and group: workers run as another user', function () {
  let d;
  let dir;
  before(function () {
    const why = !isRoot ? 'switching users needs root (CI runs as root)' : !nobody ? 'there is no "nobody" account here' : undefined;
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    // The app and lib/ must be readable by nobody: the checkout's path is checked here.
    for (let p = path.dirname(app); p !== '/'; p = path.dirname(p)) {
      assert.ok(fs.statSync(p).mode & 0o001, `${p} is not searchable by others: nobody cannot load the app from this checkout`);
    }
  });
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-priv-'));
  });
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("user: 'nobody': the primary stays root, each worker has nobody's uid, gid and groups, HOME and USER", async () => {
    d = await Dispatcher.start({ app, listen: local, min: 2, max: 2, user: 'nobody' });
    assert.equal(process.getuid(), 0);
    for (const { pid } of d.workers()) {
      const c = credentialsOf(pid);
      assert.deepEqual(c.uid, [nobody.uid, nobody.uid, nobody.uid, nobody.uid], `worker ${pid} Uid`);
      assert.deepEqual(c.gid, [nobody.gid, nobody.gid, nobody.gid, nobody.gid], `worker ${pid} Gid`);
      assert.deepEqual(c.groups, [...nobody.groups].sort((a, b) => a - b), `worker ${pid} Groups`);
      const env = environOf(pid);
      assert.equal(env.USER, 'nobody');
      assert.equal(env.HOME, nobody.home);
    }
    const who = JSON.parse((await get(d.address().port)).text);
    assert.equal(who.uid, nobody.uid);
    assert.equal(who.gid, nobody.gid);
    assert.equal(who.loadedAs, nobody.uid, 'the app module loaded before the switch');
  });

  it('the app cannot read a root-only file (EACCES), which the primary can', async () => {
    const secret = path.join(dir, 'secret');
    fs.writeFileSync(secret, 'root only', { mode: 0o600 });
    fs.chmodSync(dir, 0o755);
    d = await Dispatcher.start({ app, listen: local, user: 'nobody' });
    assert.equal(fs.readFileSync(secret, 'utf8'), 'root only');
    const who = JSON.parse((await get(d.address().port, `/?file=${encodeURIComponent(secret)}`)).text);
    assert.equal(who.read, 'EACCES');
    // The same file made readable: the refusal was about the user, not the path.
    fs.chmodSync(secret, 0o644);
    assert.equal(JSON.parse((await get(d.address().port, `/?file=${encodeURIComponent(secret)}`)).text).read, 'ok');
  });

  it('an app the user cannot read fails the start with ERR_HERDLESS_APP_LOAD saying so (EACCES)', async () => {
    fs.chmodSync(dir, 0o700);
    const hidden = path.join(dir, 'app.js');
    fs.copyFileSync(app, hidden);
    await assert.rejects(Dispatcher.start({ app: hidden, listen: local, user: 'nobody' }), (err) => {
      assert.equal(err.code, 'ERR_HERDLESS_APP_LOAD');
      assert.match(err.message, new RegExp(`cannot read the app module ${hidden} as uid ${nobody.uid} \\(EACCES\\)`));
      return true;
    });
  });

  it('numeric ids work as names do; group alone sets the gid and the only group, the uid stays', async () => {
    d = await Dispatcher.start({ app, listen: local, user: nobody.uid, group: nobody.gid });
    let c = credentialsOf(d.workers()[0].pid);
    assert.equal(c.uid[0], nobody.uid);
    assert.equal(c.gid[0], nobody.gid);
    await d.close();
    d = await Dispatcher.start({ app, listen: local, group: nobody.gid });
    c = credentialsOf(d.workers()[0].pid);
    assert.deepEqual(c.uid, [0, 0, 0, 0]);
    assert.deepEqual(c.gid, [nobody.gid, nobody.gid, nobody.gid, nobody.gid]);
    assert.deepEqual(c.groups, [nobody.gid]);
  });

  it('without setpriv(1) the worker switches itself, before the app loads, to the same ids', async function () {
    // A mount namespace in which setpriv is not executable: the fallback path for real.
    const fixture = require.resolve('./fixtures/options-primary.js');
    const options = { app: 'whoami.js', listen: local, user: 'nobody' };
    const hide = 'mount --bind /dev/null /usr/bin/setpriv && if [ -e /bin/setpriv ] && [ ! /bin/setpriv -ef /usr/bin/setpriv ]; then mount --bind /dev/null /bin/setpriv; fi';
    try {
      execFileSync('unshare', ['--mount', '--', 'sh', '-c', hide], { stdio: 'ignore' });
    } catch {
      console.log('      skipped: unshare --mount is not permitted here (no CAP_SYS_ADMIN)');
      this.skip();
    }
    const primary = spawn('unshare', ['--mount', '--', 'sh', '-c', `${hide} && exec "$0" "$@"`, process.execPath, fixture, JSON.stringify(options)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    primary.stdout.on('data', (c) => (out += c));
    const exited = new Promise((r) => primary.once('exit', r));
    try {
      await waitFor(() => out.includes('\n'), 15000);
      const { workers, port } = JSON.parse(out);
      const c = credentialsOf(workers[0]);
      assert.deepEqual(c.uid, [nobody.uid, nobody.uid, nobody.uid, nobody.uid]);
      assert.deepEqual(c.gid, [nobody.gid, nobody.gid, nobody.gid, nobody.gid]);
      assert.deepEqual(c.groups, [...nobody.groups].sort((a, b) => a - b));
      // The primary (exec'd by sh, so primary.pid) saw no setpriv: the worker switched itself.
      assert.ok(fs.statSync(`/proc/${primary.pid}/root/usr/bin/setpriv`).isCharacterDevice(), 'setpriv was not hidden from the primary');
      const who = JSON.parse((await get(port)).text);
      assert.equal(who.uid, nobody.uid);
      assert.equal(who.loadedAs, nobody.uid, 'the app module loaded before the switch');
    } finally {
      primary.kill('SIGTERM');
      await exited;
    }
  });

  it('the CLI: --user nobody --group <its gid>', async () => {
    const cli = runCli(['--host', '127.0.0.1', '--port', '0', '-w', '2', '--user', 'nobody', '--group', String(nobody.gid), app]);
    try {
      const { port } = await started(cli);
      const workers = childPids(cli.pid);
      assert.equal(workers.length, 2, cli.log());
      for (const pid of workers) assert.equal(credentialsOf(pid).uid[0], nobody.uid);
      assert.equal(JSON.parse((await get(port)).text).gid, nobody.gid);
      const unknown = runCli(['--port', '0', '--user', 'no-such-user-herdless', app]);
      assert.equal((await unknown.exited).code, 2);
      assert.match(unknown.log(), /ERR_HERDLESS_INVALID_OPTION.*no user "no-such-user-herdless"/);
    } finally {
      cli.child.kill('SIGTERM');
      await cli.exited;
      killAll();
    }
  });

  it('an unknown user or group fails the start with ERR_HERDLESS_INVALID_OPTION, naming it', async () => {
    await assert.rejects(Dispatcher.start({ app, listen: local, user: 'no-such-user-herdless' }), (err) => {
      assert.equal(err.code, 'ERR_HERDLESS_INVALID_OPTION');
      assert.equal(err.option, 'user');
      assert.match(err.message, /no user "no-such-user-herdless"/);
      return true;
    });
    await assert.rejects(Dispatcher.start({ app, listen: local, user: 'nobody', group: 'no-such-group-herdless' }), (err) => {
      assert.equal(err.code, 'ERR_HERDLESS_INVALID_OPTION');
      assert.equal(err.option, 'group');
      return true;
    });
    await assert.rejects(Dispatcher.start({ app, listen: local, user: 4_000_000 }), /uid 4000000 has no entry in the user database: give "group" too/);
  });

  it('a primary that is not root cannot switch workers to another user: ERR_HERDLESS_INVALID_OPTION', () => {
    const script = `require(${JSON.stringify(path.join(__dirname, '..'))}).Dispatcher.start({ app: ${JSON.stringify(app)}, listen: { port: 0, host: '127.0.0.1' }, user: 'root' })
      .then((d) => { console.log('started'); return d.close(); }, (err) => console.log(err.code, err.option, err.message))`;
    const out = execFileSync('setpriv', ['--reuid', String(nobody.uid), '--regid', String(nobody.gid), '--clear-groups', '--', process.execPath, '-e', script], {
      encoding: 'utf8',
      cwd: '/',
    }).trim();
    assert.match(out, /^ERR_HERDLESS_INVALID_OPTION user /);
    assert.match(out, /when the primary runs as root/);
  });
});
