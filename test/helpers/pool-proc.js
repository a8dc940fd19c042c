'use strict';
// Process inspection through /proc for the pool tests.
const fs = require('node:fs');
const { alive, childrenOf } = require('./proc');

/** State letter of a process from /proc/<pid>/stat ('R', 'S', 'Z', ...), or null if it is gone. */
function procState(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0];
  } catch {
    return null;
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


/** SIGKILL a pid, ignoring ESRCH. */
function killQuietly(pid, signal = 'SIGKILL') {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

module.exports = { procState, alive, workerPids, childrenOf, killQuietly };
