'use strict';
// Small statistics for a handful of repetitions: medians and spreads, not means, because a
// single disturbed run (a GC pause, another process waking) should not move the figure.

const finite = (xs) => xs.filter((x) => typeof x === 'number' && Number.isFinite(x));

/** Quantile q in [0, 1] with linear interpolation between order statistics. */
function quantile(xs, q) {
  const s = finite(xs).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

const median = (xs) => quantile(xs, 0.5);

/** { median, min, max, q1, q3, n } of the finite values; null figures when there are none. */
function summary(xs) {
  const v = finite(xs);
  return {
    median: median(v),
    min: v.length ? Math.min(...v) : null,
    max: v.length ? Math.max(...v) : null,
    q1: quantile(v, 0.25),
    q3: quantile(v, 0.75),
    n: v.length,
  };
}

const mean = (xs) => {
  const v = finite(xs);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
};

/** Coefficient of variation (population standard deviation over mean). */
function cv(xs) {
  const m = mean(xs);
  if (!m) return null;
  const v = finite(xs);
  return Math.sqrt(v.reduce((t, x) => t + (x - m) ** 2, 0) / v.length) / m;
}

/**
 * Ratio a/b computed repetition by repetition (a[i] and b[i] ran back to back, so they saw
 * the same machine state), then summarised: steadier than a ratio of two medians.
 */
function pairedRatios(a, b) {
  const out = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (Number.isFinite(a[i]) && Number.isFinite(b[i]) && b[i] !== 0) out.push(a[i] / b[i]);
  }
  return summary(out);
}

module.exports = { quantile, median, summary, mean, cv, pairedRatios };
