'use strict';
// Process and socket inspection through /proc (Linux): liveness, children, CPU time, and
// which sockets a process holds that are listening.
const fs = require('node:fs');
const { waitFor } = require('./wait');

/** Fields of /proc/<pid>/stat after the command name: [0] state, [1] ppid, [11] utime, [12] stime. */
function statFields(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** A live process: it exists and is not a zombie. */
function alive(pid) {
  try {
    const state = statFields(pid)[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Gone for good (reaped): kill(pid, 0) fails with ESRCH. */
function gone(pid) {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return err.code === 'ESRCH';
  }
}

/** Pids of live (non-zombie) processes whose parent is `ppid`. */
function childrenOf(ppid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const f = statFields(name);
      if (Number(f[1]) === ppid && f[0] !== 'Z') out.push(Number(name));
    } catch {
      // raced with an exit
    }
  }
  return out;
}

/** "pid: cmdline" for assertion messages. */
function describe(pid) {
  try {
    return `${pid}: ${fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()}`;
  } catch {
    return `${pid}: (gone)`;
  }
}

/** Fail unless this process has no live child within `timeoutMs`. */
async function assertNoChildren(timeoutMs = 2000) {
  await waitFor(() => childrenOf(process.pid).length === 0, timeoutMs).catch(() => {
    throw new Error(`processes left behind: ${childrenOf(process.pid).map(describe).join('; ')}`);
  });
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid) {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Number of open fds of a process. */
function fdCount(pid = process.pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** fd number -> link target ('socket:[123]', 'anon_inode:[eventpoll]', ...) for `pid`. */
function fdSnapshot(pid = process.pid) {
  const out = new Map();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.set(fd, fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** The fds of `pid` that are not in `before` (a snapshot): ['fd -> target', ...]. */
function newFds(before, pid = process.pid) {
  return [...fdSnapshot(pid)].filter(([fd, target]) => before.get(fd) !== target).map(([fd, target]) => `${fd} -> ${target}`);
}

/**
 * Run full garbage collections (without --expose-gc on the command line) and let native
 * finalizers, which Node defers to the event loop, run: fds that only finalizers of
 * unreachable objects release are closed when this resolves.
 */
async function collectGarbage() {
  require('node:v8').setFlagsFromString('--expose-gc');
  const gc = require('node:vm').runInNewContext('gc');
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 20));
}

/** Inode (string) of the socket behind `fd` of `pid`, or null if it is not a socket. */
function socketInode(pid, fd) {
  try {
    const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
    return m ? m[1] : null;
  } catch {
    return null;
  }
}

/** Inodes (strings) of every socket among the fds of `pid`. */
function socketInodes(pid) {
  const inodes = new Set();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    const inode = socketInode(pid, fd);
    if (inode) inodes.add(inode);
  }
  return inodes;
}

/**
 * Every listening socket in the network namespace of `pid`, keyed by inode:
 * TCP in state 0A (LISTEN) from /proc/net/tcp and tcp6 -> { proto, port, address (hex) };
 * unix sockets with __SO_ACCEPTCON (flag 0x10000) from /proc/net/unix -> { proto: 'unix', path }.
 */
function listeningTable(pid = process.pid) {
  const table = new Map();
  for (const proto of ['tcp', 'tcp6']) {
    let text;
    try {
      text = fs.readFileSync(`/proc/${pid}/net/${proto}`, 'utf8');
    } catch {
      continue; // no IPv6 in this kernel
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue;
      const [address, port] = f[1].split(':');
      table.set(f[9], { proto, address, port: parseInt(port, 16), inode: f[9] });
    }
  }
  for (const line of fs.readFileSync(`/proc/${pid}/net/unix`, 'utf8').split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode [Path]
    const f = line.trim().split(/\s+/);
    if (f.length < 7) continue;
    if (parseInt(f[3], 16) & 0x10000) table.set(f[6], { proto: 'unix', path: f[7] ?? '', inode: f[6] });
  }
  return table;
}

/** The listening sockets `pid` holds an fd for: [{ proto, port | path, inode }]. */
function listeningSockets(pid) {
  const table = listeningTable(pid);
  return [...socketInodes(pid)].filter((inode) => table.has(inode)).map((inode) => table.get(inode));
}

/** Inodes of the listening sockets `pid` holds (a Set of strings). */
function listeningInodes(pid) {
  return new Set(listeningSockets(pid).map((s) => s.inode));
}

module.exports = {
  alive,
  gone,
  childrenOf,
  describe,
  assertNoChildren,
  cpuSeconds,
  fdCount,
  fdSnapshot,
  collectGarbage,
  newFds,
  socketInode,
  socketInodes,
  listeningTable,
  listeningSockets,
  listeningInodes,
};
