'use strict';
// What most scenarios share: one wrk load measured on every contender in alternation, each
// figure summarised over the repetitions and compared with herdless dispatch run by run.
const wrk = require('../lib/wrk');
const stats = require('../lib/stats');
const format = require('../lib/format');
const { alternate, startCost } = require('../lib/runner');

const BASELINE = 'dispatch';
const RUN_OVERHEAD = 0.25; // seconds per run beyond wrk's duration: spawning, reading counters

/** Estimated seconds for `configs` sets of instances each measured with `loads` loads. */
function estimate(ctx, n, { configs = 1, workers = 2, loads = 1 }) {
  const p = ctx.profile;
  const perLoad = (p.warmup ? p.warmup + RUN_OVERHEAD + 1 : 0) + n * p.reps * (p.seconds + RUN_OVERHEAD);
  return configs * (n * startCost(workers) + loads * perLoad);
}

/**
 * Run `load` ({ path, connections, close, threads, allowClose }) on each instance,
 * ctx.profile.reps times in alternation. Hooks add figures to each sample:
 *   before(inst) -> state         after(inst, state, wrkResult) -> { ...more figures }
 */
function loadRuns(ctx, instances, { load, what = '', before, after }) {
  const p = ctx.profile;
  const run = (inst, seconds) =>
    wrk.run({ url: inst.url(load.path), seconds, connections: load.connections, close: load.close, threads: load.threads });
  return alternate(ctx, instances, {
    reps: p.reps,
    what,
    cost: p.seconds + RUN_OVERHEAD,
    warmupCost: p.warmup + RUN_OVERHEAD,
    // Warm-up: V8 optimises the hot paths and the kernel sizes its buffers before we measure.
    warmup: p.warmup ? (inst) => run(inst, p.warmup) : null,
    measure: async (inst) => {
      const state = before ? await before(inst) : undefined;
      const result = await run(inst, p.seconds);
      checkErrors(ctx, inst, result, load, what);
      const more = after ? await after(inst, state, result) : {};
      return { wrk: result, ...more };
    },
  });
}

/** A few errors in a hard run are reported; more than 1% of requests fail the run. */
function checkErrors(ctx, inst, result, load, what) {
  const bad = wrk.badCount(result, { allowClose: load.allowClose });
  if (result.requests === 0 && !load.allowClose) throw new Error('no request completed');
  if (bad === 0) return;
  const msg = `${inst.label}${what}: ${bad} failed requests (${JSON.stringify(result.errors)})`;
  if (bad > 0.01 * Math.max(1, result.requests)) throw new Error(msg);
  ctx.warn(msg);
}

/**
 * metrics: [{ key, label, get(sample), digits, ratio }] -> { name: { key: { summary, values, ratio } } }
 * ratio: this contender's figure over dispatch's, repetition by repetition.
 */
function compare(samples, metrics) {
  const base = samples.get(BASELINE);
  const out = {};
  for (const [name, runs] of samples) {
    out[name] = {};
    for (const m of metrics) {
      const values = runs.map((s) => (s ? m.get(s) : null));
      const entry = { summary: stats.summary(values), values };
      if (m.ratio && base) entry.ratio = stats.pairedRatios(values, base.map((s) => (s ? m.get(s) : null)));
      out[name][m.key] = entry;
    }
  }
  return out;
}

/**
 * A table: one row per contender, a column per metric, plus "× dispatch" where asked, plus
 * `extra` columns: [{ label, cell(name) }].
 */
function metricTable(title, instances, comparison, metrics, extra = []) {
  const columns = ['contender'];
  for (const m of metrics) {
    columns.push(m.label);
    if (m.ratio) columns.push(`${m.short || m.label} × dispatch`);
  }
  columns.push(...extra.map((x) => x.label));
  const rows = instances
    .filter((i) => comparison[i.name])
    .map((i) => {
      const row = [i.label];
      for (const m of metrics) {
        const e = comparison[i.name][m.key];
        row.push(format.spread(e.summary, m.digits));
        if (m.ratio) row.push(format.ratio(e.ratio));
      }
      for (const x of extra) row.push(x.cell(i.name));
      return row;
    });
  return { title, columns, rows };
}

/** Chart rows for chart.bars(): median with a min–max whisker. */
const barRows = (instances, comparison, key, group) =>
  instances
    .filter((i) => comparison[i.name] && comparison[i.name][key].summary.n > 0)
    .map((i) => {
      const s = comparison[i.name][key].summary;
      return { contender: i.label, group, value: s.median, lo: s.min, hi: s.max };
    });

/**
 * A goal: `value` (median) compared with `target`. pass is null when not measured.
 *   cmp: '>=' or '<='
 */
function goal(text, value, target, cmp, detail = '') {
  const measured = value !== null && value !== undefined && Number.isFinite(value);
  return {
    text,
    target: `${cmp} ${target}`,
    value: measured ? value : null,
    pass: measured ? (cmp === '>=' ? value >= target : value <= target) : null,
    detail,
  };
}

/** Median of dispatch's figure over `name`'s, paired run by run; null if either is missing. */
function dispatchOver(comparison, name, key) {
  const a = comparison[BASELINE]?.[key]?.values;
  const b = comparison[name]?.[key]?.values;
  return a && b ? stats.pairedRatios(a, b).median : null;
}

/** Median of dispatch's figure minus `name`'s, paired run by run; null if either is missing. */
function dispatchMinus(comparison, name, key) {
  const a = comparison[BASELINE]?.[key]?.values;
  const b = comparison[name]?.[key]?.values;
  if (!a || !b) return null;
  const d = a.map((x, i) => (x === null || b[i] === null ? null : x - b[i])).filter((x) => x !== null);
  return d.length ? stats.summary(d).median : null;
}

/** A comparison without the per-run values (those are kept in raw), for the JSON summary. */
const strip = (cmp) =>
  Object.fromEntries(
    Object.entries(cmp).map(([n, ms]) => [
      n,
      Object.fromEntries(Object.entries(ms).map(([k, e]) => [k, { summary: e.summary, ratio: e.ratio }])),
    ]),
  );

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = { BASELINE, estimate, loadRuns, compare, metricTable, barRows, goal, dispatchOver, dispatchMinus, strip, sleep };
