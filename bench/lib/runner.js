'use strict';
// Starting a set of contenders and measuring them in alternation.
const contenders = require('../contenders');

/** Rough seconds to start one contender with this many workers (for the time estimate). */
const startCost = (workers) => 0.3 + 0.17 * workers;
const SETTLE_MS = 1000;

/**
 * Start every contender with the same options (one after another, so a slow start does not
 * steal CPU from another's), run fn(instances), then stop them all whatever happened.
 * A contender that fails to start is reported in ctx.errors and left out.
 */
async function withInstances(ctx, list, options, fn) {
  const instances = [];
  try {
    for (const c of list) {
      ctx.progress.note(`starting ${c.label} (${describe(options)})`);
      try {
        instances.push(await contenders.start(c, options));
      } catch (err) {
        ctx.fail(`${c.label} did not start (${describe(options)}): ${err.message}`);
      }
      ctx.progress.advance(startCost(options.workers || options.max || 1));
    }
    return await fn(instances);
  } finally {
    await Promise.all(instances.map((i) => i.stop().catch((err) => ctx.fail(`stopping ${i.label}: ${err.message}`))));
  }
}

const describe = (o) => Object.entries(o).map(([k, v]) => `${k} ${v}`).join(', ');

/**
 * Measure each instance `reps` times, in alternation: A B C, then B C A, ... Alternating
 * puts every contender through the same drift in machine state (other load, temperature,
 * TIME_WAIT sockets); rotating the order keeps one from always running first or after the
 * same neighbour. Returns Map name -> array of samples (null where a run failed).
 *   measure(instance, rep) -> sample        warmup(instance) runs once before the first rep
 *   cost, warmupCost: estimated seconds of one measurement and one warm-up, for the progress line
 */
async function alternate(ctx, instances, { reps, measure, warmup, warmupCost = 0, cost, what = '' }) {
  const samples = new Map(instances.map((i) => [i.name, new Array(reps).fill(null)]));
  if (warmup) {
    // All at once: a warm-up only has to get V8 to optimise the hot paths, and one at a time
    // it would take as long as the measurements themselves.
    ctx.progress.note(`warming up ${instances.length} contenders${what}`);
    await Promise.all(instances.map((inst) => warmup(inst).catch((err) => ctx.fail(`${inst.label} warm-up${what}: ${err.message}`))));
    // Let the servers close the warm-up's connections before the first measurement.
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    ctx.progress.advance(warmupCost + SETTLE_MS / 1000);
  }
  for (let rep = 0; rep < reps; rep++) {
    for (let k = 0; k < instances.length; k++) {
      const inst = instances[(k + rep) % instances.length];
      ctx.progress.note(`${inst.label}${what}, repetition ${rep + 1}/${reps}`);
      try {
        if (!inst.alive()) throw new Error('its process has exited');
        samples.get(inst.name)[rep] = await measure(inst, rep);
      } catch (err) {
        ctx.fail(`${inst.label}${what}, repetition ${rep + 1}: ${err.message}`);
      }
      ctx.progress.advance(cost);
    }
  }
  return samples;
}

module.exports = { withInstances, alternate, startCost };
