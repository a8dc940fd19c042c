'use strict';
// How figures are written in the Markdown report.

const num = (x, digits = 0) =>
  x === null || x === undefined || !Number.isFinite(x)
    ? (x === Infinity ? '∞' : '–')
    : x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** "median (min–max)" of a stats.summary(); just the median when there was one run. */
function spread(s, digits = 0) {
  if (!s || s.median === null) return '–';
  if (s.n < 2) return num(s.median, digits);
  return `${num(s.median, digits)} (${num(s.min, digits)}–${num(s.max, digits)})`;
}

/** "1.23× (1.10–1.30)"; a contender compared with itself (every ratio exactly 1) is the baseline. */
function ratio(s) {
  if (!s || s.median === null) return '–';
  if (s.min === 1 && s.max === 1) return 'baseline';
  return s.n < 2 ? `${num(s.median, 2)}×` : `${num(s.median, 2)}× (${num(s.min, 2)}–${num(s.max, 2)})`;
}

const mib = (bytes) => num(bytes / 2 ** 20, 0);

/** A Markdown table from a header row and rows of cells. */
function table(columns, rows) {
  const esc = (c) => String(c).replace(/\|/g, '\\|');
  return [
    `| ${columns.map(esc).join(' | ')} |`,
    `|${columns.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

module.exports = { num, spread, ratio, mib, table };
