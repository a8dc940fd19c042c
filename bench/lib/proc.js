'use strict';
// What /proc says about a contender's process tree: pids, CPU time, context switches, RSS.
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

const read = (file) => {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null; // the process or thread is gone
  }
};

const tids = (pid) => {
  try {
    return fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
};

/** Direct children, from every thread's children list (a child belongs to the thread that forked it). */
function children(pid) {
  const out = [];
  for (const tid of tids(pid)) {
    const text = read(`/proc/${pid}/task/${tid}/children`);
    if (text) out.push(...text.trim().split(/\s+/).filter(Boolean).map(Number));
  }
  return out;
}

/** The root and all its descendants, root first. */
function tree(root) {
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...children(out[i]));
  return out.filter((pid) => read(`/proc/${pid}/stat`) !== null);
}

const statusField = (text, name) => {
  const m = text && text.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm'));
  return m ? Number(m[1]) : 0;
};

/**
 * One process's counters. Context switches are summed over all its threads: /proc/<pid>/status
 * alone covers only the main thread, and herdless's accept thread is not the main thread.
 * utime+stime in /proc/<pid>/stat already cover every thread.
 */
function sample(pid) {
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return null;
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let voluntary = 0;
  let involuntary = 0;
  for (const tid of tids(pid)) {
    const s = read(`/proc/${pid}/task/${tid}/status`);
    voluntary += statusField(s, 'voluntary_ctxt_switches');
    involuntary += statusField(s, 'nonvoluntary_ctxt_switches');
  }
  const rssKb = statusField(read(`/proc/${pid}/status`), 'VmRSS');
  return { pid, cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK, voluntary, involuntary, rss: rssKb * 1024 };
}

/** Context switches of the threads of `pid` named `name` (e.g. herdless's accept thread). */
function threadSwitches(pid, name) {
  let voluntary = 0;
  let involuntary = 0;
  for (const tid of tids(pid)) {
    if ((read(`/proc/${pid}/task/${tid}/comm`) || '').trim() !== name) continue;
    const s = read(`/proc/${pid}/task/${tid}/status`);
    voluntary += statusField(s, 'voluntary_ctxt_switches');
    involuntary += statusField(s, 'nonvoluntary_ctxt_switches');
  }
  return { voluntary, involuntary };
}

/**
 * CPU seconds of the threads of `pid` named `name`, from /proc/<pid>/task/<tid>/schedstat (time
 * on CPU in ns: the clock-tick counts of stat are 10 ms coarse, too coarse for µs per
 * connection); falls back to stat's utime+stime.
 */
function threadCpu(pid, name) {
  let seconds = 0;
  for (const tid of tids(pid)) {
    if ((read(`/proc/${pid}/task/${tid}/comm`) || '').trim() !== name) continue;
    const sched = read(`/proc/${pid}/task/${tid}/schedstat`);
    if (sched) {
      seconds += Number(sched.split(' ')[0]) / 1e9;
      continue;
    }
    const stat = read(`/proc/${pid}/task/${tid}/stat`) || '';
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    seconds += (Number(f[11]) + Number(f[12])) / CLK_TCK || 0;
  }
  return seconds;
}

/** Counters for the root (the primary) and each descendant (the workers). */
function snapshot(root) {
  const [primary, ...rest] = tree(root).map(sample).filter(Boolean);
  return { primary, workers: rest };
}

/** What changed between two snapshots of one tree; processes must be in both. */
function delta(before, after) {
  const sub = (a, b) => ({
    pid: b.pid,
    cpu: b.cpu - a.cpu,
    voluntary: b.voluntary - a.voluntary,
    involuntary: b.involuntary - a.involuntary,
  });
  const old = new Map(before.workers.map((w) => [w.pid, w]));
  const workers = after.workers.filter((w) => old.has(w.pid)).map((w) => sub(old.get(w.pid), w));
  const sum = (key) => workers.reduce((t, w) => t + w[key], 0);
  return {
    primary: sub(before.primary, after.primary),
    workers: { cpu: sum('cpu'), voluntary: sum('voluntary'), involuntary: sum('involuntary'), count: workers.length },
  };
}

/** Resident memory of the whole tree, bytes. */
function treeRss(root) {
  return tree(root).reduce((t, pid) => t + (sample(pid)?.rss || 0), 0);
}

/**
 * Memory only this process has dirtied (its heap, stacks, written data), bytes, from
 * /proc/<pid>/smaps_rollup: RSS also counts the node binary's pages, shared by every process
 * that runs it, so it says little about what one more worker costs. null if unreadable.
 */
function privateDirty(pid) {
  const m = (read(`/proc/${pid}/smaps_rollup`) || '').match(/^Private_Dirty:\s+(\d+) kB/m);
  return m ? Number(m[1]) * 1024 : null;
}

module.exports = { tree, children, sample, snapshot, delta, treeRss, privateDirty, threadSwitches, threadCpu, CLK_TCK };
