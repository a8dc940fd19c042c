'use strict';
// S14: what an idle pool costs the machine. A pool that does periodic work while nothing
// arrives (timers for RSS, request timeouts, heartbeats, sampling) wakes its threads, and
// with them V8's helper threads: every wake-up is a context switch, counted here over every
// thread of the primary and of each worker (/proc/<pid>/task/*/status, voluntary and
// involuntary). The same idle pools give each worker's private dirty memory (smaps_rollup):
// what one more worker costs the machine beyond the shared node binary. A count, not a timing: it holds on a loaded machine. The pools are warmed
// with a few requests, then left alone for SETTLE_S (V8's memory reducer runs a few GCs
// some seconds after the last activity, once), then measured side by side in windows. The
// bench apps' own counters (apps/counters.js, a 100 ms flush timer) are off here.
const http = require('node:http');
const proc = require('../lib/proc');
const { withInstances } = require('../lib/runner');
const c = require('./common');

const WORKERS = 4;
const WARM_REQUESTS = 8;
const SETTLE_S = 15;
const windowSeconds = (ctx) => (ctx.full ? 10 : 5);

const perSecond = (x, s) => x / s.seconds;
const METRICS = [
  { key: 'all', label: 'ctx switches / s, all threads', short: 'wake-ups/s', get: (s) => perSecond(s.primary + s.workers, s), digits: 1 },
  { key: 'primary', label: 'primary ctx switches / s', get: (s) => perSecond(s.primary, s), digits: 1 },
  { key: 'workers', label: 'workers ctx switches / s', get: (s) => perSecond(s.workers, s), digits: 1 },
  { key: 'dirty', label: 'private dirty per worker, MB', get: (s) => s.dirty / 1e6, digits: 2 },
];

const get = (url) =>
  new Promise((resolve, reject) => {
    http.get(url, { agent: false, headers: { connection: 'close' } }, (res) => res.resume().on('end', resolve)).on('error', reject);
  });

/** Every thread of the primary and of each worker: { primary, workers } context switches. */
function switches(pid) {
  const s = proc.snapshot(pid);
  const of = (p) => p.voluntary + p.involuntary;
  return { primary: of(s.primary), workers: s.workers.reduce((t, w) => t + of(w), 0), pids: s.workers.map((w) => w.pid) };
}

/** The median worker's private dirty memory, bytes. */
function workerDirty(pids) {
  const values = pids.map(proc.privateDirty).filter((x) => x !== null).sort((a, b) => a - b);
  return values.length ? values[Math.floor(values.length / 2)] : null;
}

module.exports = {
  id: 'idle',
  title: 'S14 · Idle pool',
  about:
    `${WORKERS} workers, ${WARM_REQUESTS} requests (Connection: close), then ${SETTLE_S} s of nothing; then context ` +
    'switches per second summed over every thread of the primary and of the workers, all pools idle side by side.',
  contenders: ['dispatch', 'herd', 'cluster-rr', 'cluster-none'],

  estimate: (ctx, list) => c.estimate(ctx, list.length, { workers: WORKERS }) + SETTLE_S + ctx.profile.reps * windowSeconds(ctx),

  async run(ctx, list) {
    const seconds = windowSeconds(ctx);
    const samples = await withInstances(ctx, list, { workers: WORKERS, counters: false }, async (instances) => {
      for (const inst of instances) for (let i = 0; i < WARM_REQUESTS; i++) await get(inst.url('/'));
      ctx.progress.note(`idle ${SETTLE_S} s`);
      await c.sleep(SETTLE_S * 1000);
      const out = new Map(instances.map((i) => [i.name, []]));
      for (let r = 0; r < ctx.profile.reps; r++) {
        // Side by side: every pool is idle at once, so each window sees the same machine.
        const before = new Map(instances.map((i) => [i.name, switches(i.pid)]));
        await c.sleep(seconds * 1000);
        for (const inst of instances) {
          const a = switches(inst.pid);
          const b = before.get(inst.name);
          const same = a.pids.length === b.pids.length && a.pids.every((p) => b.pids.includes(p));
          const dirty = workerDirty(a.pids);
          out.get(inst.name).push(same && dirty !== null ? { seconds, primary: a.primary - b.primary, workers: a.workers - b.workers, dirty } : null);
        }
      }
      return out;
    });
    const comparison = c.compare(samples, METRICS);
    const all = (name) => comparison[name]?.all.summary.median ?? null;
    const extraDirty = c.dispatchMinus(comparison, 'cluster-none', 'dirty');
    return {
      tables: [c.metricTable(`${WORKERS} workers, idle`, list, comparison, METRICS)],
      notes: [
        'Counts every thread (libuv, V8 helpers, herdless\'s accept thread), as /proc/<pid>/task/*/status reports them. ' +
          `Measured after ${SETTLE_S} s of idleness: V8 collects garbage a few times some seconds after the last activity, once.`,
        'Private dirty: /proc/<pid>/smaps_rollup of each worker at the end of each window, the median worker; RSS would ' +
          'also count the node binary\'s pages that every worker shares.',
      ],
      charts: [],
      goals: [
        c.goal('S14: dispatch idle pool of 4, context switches per second (all threads)', all('dispatch'), 2, '<='),
        c.goal('S14: idle worker private dirty memory, dispatch − cluster SCHED_NONE (MB)', extraDirty, 1, '<='),
      ],
      raw: Object.fromEntries(samples),
      summary: c.strip(comparison),
    };
  },
};
