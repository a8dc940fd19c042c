'use strict';
// A quantile of stats().dispatchWait (cumulative buckets), interpolated within its bucket as
// Prometheus's histogram_quantile() does: a figure to the bucket's resolution, not exact.
// Null for a build without the histogram or with no connections counted.

/** q in [0, 1] of `wait` ({ count, buckets: [{ le, count }] }, le in seconds), in ms. */
function waitQuantileMs(wait, q) {
  if (!wait || !(wait.count > 0)) return null;
  const rank = q * wait.count;
  let lower = 0;
  let below = 0;
  for (const b of wait.buckets) {
    const le = b.le === null || b.le === Infinity ? Infinity : b.le;
    if (b.count >= rank) {
      // Past the last finite bound: say the bound, as Prometheus does.
      if (le === Infinity) return 1000 * lower;
      const within = b.count - below;
      return 1000 * (lower + (le - lower) * (within > 0 ? (rank - below) / within : 1));
    }
    lower = le;
    below = b.count;
  }
  return null;
}

/** Counts since `before` (two stats().dispatchWait readings): the run's own histogram. */
function waitDelta(after, before) {
  if (!after) return null;
  if (!before) return after;
  return {
    count: after.count - before.count,
    sumSeconds: after.sumSeconds - before.sumSeconds,
    buckets: after.buckets.map((b, i) => ({ le: b.le, count: b.count - before.buckets[i].count })),
  };
}

module.exports = { waitQuantileMs, waitDelta };
