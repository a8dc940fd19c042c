'use strict';
// Issue 17, item 9: a unix listener with `mode` was bound (its file created with the umask's
// permissions) and then chmod()ed by path: for a moment anyone the umask allowed could
// connect, and chmod followed a symlink put in the socket's place. The mode is now set on
// the socket before bind(); only a mode the umask narrows is widened afterwards, without
// following symlinks. Seen through strace(1), which records the syscalls in order.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ADDON = require.resolve('../../lib/shared/binding');

/** Runs listenUnix(path, 16, mode) under `umask` in a child traced by strace; its syscalls on the path and the file's mode. */
function traceListen(dir, mode, umask) {
  const sock = path.join(dir, `s-${mode.toString(8)}`);
  const log = path.join(dir, 'strace.log');
  const script = `process.umask(${umask}); const a = require(${JSON.stringify(ADDON)}).loadAddon(); a.listenUnix(${JSON.stringify(sock)}, 16, ${mode}); console.log((require('fs').statSync(${JSON.stringify(sock)}).mode & 0o7777).toString(8));`;
  const out = execFileSync('strace', ['-f', '-qq', '-o', log, '-e', 'trace=bind,fchmod,chmod,fchmodat,openat', process.execPath, '-e', script], { encoding: 'utf8' });
  const calls = fs.readFileSync(log, 'utf8').split('\n').filter((l) => /\b(bind|fchmod|chmod|fchmodat|openat)\(/.test(l) && !/resumed/.test(l) && (!l.includes('openat(') || l.includes('O_PATH')));
  return { calls: calls.map((l) => l.replace(/^\d+\s+/, '')), mode: out.trim() };
}

describe('security: a unix listener\'s mode', function () {
  this.timeout(30000);
  let dir;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-mode-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is set on the socket before bind(): the file never has the umask\'s permissions', () => {
    const { calls, mode } = traceListen(dir, 0o600, 0o000);
    assert.equal(mode, '600');
    const bindAt = calls.findIndex((c) => c.startsWith('bind('));
    assert.ok(bindAt > 0 && /^fchmod\(\d+, 0600\)/.test(calls[bindAt - 1]), `syscalls: ${calls.join(' | ')}`);
    assert.deepEqual(calls.slice(bindAt + 1), [], `after bind: ${calls.slice(bindAt + 1).join(' | ')}`);
  });

  it('a mode the umask narrows is widened without following symlinks', () => {
    const { calls, mode } = traceListen(dir, 0o666, 0o022);
    assert.equal(mode, '666');
    const after = calls.slice(calls.findIndex((c) => c.startsWith('bind(')) + 1);
    assert.ok(after.length > 0, `nothing widened the mode: ${calls.join(' | ')}`);
    // glibc's fchmodat(AT_SYMLINK_NOFOLLOW): fchmodat2 where the kernel has it, else the path
    // opened O_PATH|O_NOFOLLOW and changed through /proc/self/fd. Never chmod() of the path.
    for (const c of after) assert.ok(!/^chmod\("(?!\/proc\/self\/fd\/)/.test(c) && !/^fchmodat\(AT_FDCWD, "[^"]*s-666", 0666\)/.test(c), `a chmod that follows symlinks: ${c}`);
    if (after.some((c) => c.startsWith('chmod("/proc/self/fd/'))) assert.ok(after.some((c) => /O_PATH/.test(c) && /O_NOFOLLOW/.test(c)), after.join(' | '));
  });
});
