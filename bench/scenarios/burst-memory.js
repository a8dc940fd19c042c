'use strict';
// S7: memory of each contender's whole process tree, idle and under load; and for herdless,
// how fast a pool of min 1 grows to max under a sudden burst.
const wrk = require('../lib/wrk');
const proc = require('../lib/proc');
const format = require('../lib/format');
const stats = require('../lib/stats');
const { withInstances, alternate } = require('../lib/runner');
const c = require('./common');

const WORKERS = 2;
const BURST_MAX = 4;
const SAMPLE_MS = 100;
const LOAD = { path: '/big', connections: Math.min(1000, wrk.maxConnections()), threads: 2, close: false };
const BURST_LOAD = { path: '/', connections: 64, threads: 2, close: true };

const burstSeconds = (ctx) => (ctx.full ? 15 : 8);

/** Sample `fn` every SAMPLE_MS until stop() is called; resolves with the samples. */
function poll(fn) {
  const samples = [];
  let timer;
  const started = Date.now();
  const tick = async () => {
    try {
      samples.push({ t: (Date.now() - started) / 1000, ...(await fn()) });
    } catch {
      /* a server that just exited: the scenario notices through its result */
    }
    timer = setTimeout(tick, SAMPLE_MS);
  };
  tick();
  return { stop: () => (clearTimeout(timer), samples) };
}

async function memory(ctx, list) {
  return withInstances(ctx, list, { workers: WORKERS }, async (instances) => {
    await c.sleep(1000); // let start-up garbage be collected
    const idle = new Map(instances.map((i) => [i.name, proc.treeRss(i.pid)]));
    const samples = await alternate(ctx, instances, {
      reps: ctx.profile.reps,
      what: ', memory under load',
      cost: ctx.profile.seconds + 0.6,
      measure: async (inst) => {
        const p = poll(() => ({ rss: proc.treeRss(inst.pid) }));
        await wrk.run({ url: inst.url(LOAD.path), seconds: ctx.profile.seconds, connections: LOAD.connections });
        return Math.max(...p.stop().map((s) => s.rss));
      },
    });
    return list.filter((x) => idle.has(x.name)).map((x) => ({
      name: x.name,
      label: x.label,
      idle: idle.get(x.name),
      loaded: stats.summary(samples.get(x.name)),
    }));
  });
}

async function burst(ctx, contender) {
  return withInstances(ctx, [contender], { min: 1, max: BURST_MAX }, async ([inst]) => {
    if (!inst) return { name: contender.name, skipped: 'did not start' };
    await c.sleep(1000);
    ctx.progress.note(`${inst.label}, burst with min 1, max ${BURST_MAX}`);
    const p = poll(async () => ({ size: (await inst.command('stats')).size, rss: proc.treeRss(inst.pid) }));
    await wrk.run({ url: inst.url(BURST_LOAD.path), seconds: burstSeconds(ctx), connections: BURST_LOAD.connections, close: true });
    const samples = p.stop();
    ctx.progress.advance(burstSeconds(ctx) + 1);
    const first = samples.find((s) => s.size > 1);
    const full = samples.find((s) => s.size >= BURST_MAX);
    const out = { name: inst.name, label: inst.label, samples };
    if (!first) return { ...out, skipped: `needs dynamic pool: d.size stayed at 1 for ${burstSeconds(ctx)} s of burst` };
    return {
      ...out,
      firstGrowth: first.t,
      toFull: full ? full.t : null,
      maxSize: Math.max(...samples.map((s) => s.size)),
      rssAtMax: Math.max(...samples.map((s) => s.rss)),
    };
  });
}

module.exports = {
  id: 'burst-memory',
  title: 'S7 · Burst and memory',
  about:
    `Memory: summed VmRSS of every process in each contender's tree (${WORKERS} workers), idle and at its ` +
    `peak under keep-alive load (${LOAD.connections} connections, 10,000-byte body). Burst: herdless with ` +
    `min 1, max ${BURST_MAX}, hit by wrk -c${BURST_LOAD.connections} -H "Connection: close"; time until the pool grows.`,

  estimate: (ctx, list) =>
    c.estimate(ctx, list.length, { workers: WORKERS }) + 1 + burstList(ctx, list).length * (burstSeconds(ctx) + 3),

  async run(ctx, list) {
    const mem = await memory(ctx, list);
    const bursts = [];
    for (const x of burstList(ctx, list)) bursts.push(await burst(ctx, x));
    for (const b of bursts) if (b.skipped) ctx.warn(`S7 burst, ${b.label || b.name}: skipped, ${b.skipped}`);
    return {
      tables: [
        {
          title: `Memory, ${WORKERS} workers (MiB)`,
          columns: ['contender', 'idle', 'peak under load'],
          rows: mem.map((m) => [m.label, format.mib(m.idle), format.spread(scale(m.loaded, 2 ** -20), 0)]),
        },
        {
          title: `Burst: min 1, max ${BURST_MAX}`,
          columns: ['contender', 'first growth (s)', `size ${BURST_MAX} after (s)`, 'largest size', 'peak RSS (MiB)'],
          rows: bursts.map((b) =>
            b.skipped
              ? [b.label || b.name, `skipped: ${b.skipped}`, '', '', '']
              : [b.label, b.firstGrowth.toFixed(1), b.toFull === null ? 'not reached' : b.toFull.toFixed(1), b.maxSize, format.mib(b.rssAtMax)],
          ),
        },
      ],
      charts: [],
      goals: [],
      raw: { memory: mem, bursts },
      summary: { memory: mem, bursts: bursts.map(({ samples, ...rest }) => rest) },
    };
  },
};

/** The burst needs a dynamic pool: herdless only; dispatch alone unless --full. */
const burstList = (ctx, list) => list.filter((x) => x.herdless && (ctx.full || x.name === c.BASELINE));

const scale = (s, k) => ({ ...s, median: s.median * k, min: s.min * k, max: s.max * k });
