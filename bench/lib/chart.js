'use strict';
// Charts: Vega-Lite specs compiled and rendered to SVG by Vega inside Node (renderer
// 'none' needs no browser and no canvas). vega and vega-lite are ES modules, so they are
// imported lazily; without them (a production install) charts are skipped with a warning.
const fs = require('node:fs');

let libs;
async function load() {
  if (libs === undefined) {
    try {
      libs = { vega: await import('vega'), vl: await import('vega-lite') };
    } catch {
      libs = null;
    }
  }
  return libs;
}

/**
 * Grouped bars with a min–max whisker: rows of { contender, group, value, lo, hi }.
 * `group` (e.g. "2 workers") is the column facet when there is more than one.
 */
function bars({ title, rows, yTitle, order }) {
  const groups = [...new Set(rows.map((r) => r.group))];
  const x = { field: 'contender', type: 'nominal', sort: order, title: null, axis: { labelAngle: -30, labelLimit: 220 } };
  const layer = {
    layer: [
      {
        mark: 'bar',
        encoding: {
          x,
          y: { field: 'value', type: 'quantitative', title: yTitle },
          color: { field: 'contender', type: 'nominal', sort: order, legend: null },
        },
      },
      {
        mark: { type: 'rule', color: 'black' },
        encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } },
      },
    ],
  };
  const base = { $schema: 'https://vega.github.io/schema/vega-lite/v5.json', title, data: { values: rows } };
  if (groups.length < 2) return { ...base, width: 360, height: 220, ...layer };
  return {
    ...base,
    facet: { column: { field: 'group', type: 'nominal', title: null, sort: groups } },
    spec: { width: 240, height: 220, ...layer },
  };
}

/**
 * One tick per worker: its connections relative to an even share (1 = exactly 1/N of them),
 * with a rule at 1. rows: { contender, worker (rank, 1 = busiest), relative }
 */
function shares({ title, rows, order }) {
  const x = { field: 'contender', type: 'nominal', sort: order, title: null, axis: { labelAngle: -30, labelLimit: 220 } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 360,
    height: 220,
    layer: [
      {
        data: { values: rows },
        mark: { type: 'tick', thickness: 2 },
        encoding: {
          x,
          y: { field: 'relative', type: 'quantitative', title: 'connections / even share', scale: { zero: false } },
          color: { field: 'contender', type: 'nominal', sort: order, legend: null },
        },
      },
      {
        data: { values: [{ even: 1 }] },
        mark: { type: 'rule', strokeDash: [4, 4], color: 'gray' },
        encoding: { y: { field: 'even', type: 'quantitative' } },
      },
    ],
  };
}

/** Render a Vega-Lite spec to an SVG file; false when vega is not installed. */
async function render(spec, file) {
  const l = await load();
  if (!l) return false;
  const vegaSpec = l.vl.compile(spec).spec;
  const view = new l.vega.View(l.vega.parse(vegaSpec), { renderer: 'none' });
  fs.writeFileSync(file, await view.toSVG());
  view.finalize();
  return true;
}

module.exports = { bars, shares, render };
