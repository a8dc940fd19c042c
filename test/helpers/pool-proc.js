'use strict';
// Process inspection through /proc for the pool tests.
const fs = require('node:fs');

/** State letter of a process from /proc/<pid>/stat ('R', 'S', 'Z', ...), or null if it is gone. */
function procState(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0];
  } catch {
    return null;
  }
}

/** A live process: exists and is not a zombie. Cross-checked with kill(pid, 0). */
function alive(pid) {
  const state = procState(pid);
  if (state === null || state === 'Z' || state === 'X') return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code !== 'ESRCH';
  }
}

/**
 * Live herdless worker processes (command line mentions lib/worker/main.js) that are
 * children of `ppid` (default: this process, whose in-process dispatchers spawn them).
 * Other test runs on the same machine have their own workers: never count theirs.
 */
function workerPids(ppid = process.pid) {
  const out = [];
  for (const pid of childrenOf(ppid)) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes('lib/worker/main.js') && alive(pid)) out.push(pid);
    } catch {
      // raced with an exit
    }
  }
  return out;
}

/** Pids of live processes whose parent is `ppid`. */
function childrenOf(ppid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid && fields[0] !== 'Z') out.push(Number(name));
    } catch {
      // raced with an exit
    }
  }
  return out;
}

/** SIGKILL a pid, ignoring ESRCH. */
function killQuietly(pid, signal = 'SIGKILL') {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

module.exports = { procState, alive, workerPids, childrenOf, killQuietly };
