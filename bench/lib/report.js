'use strict';
// Writing the results: raw JSON, a Markdown report with the goals first, and SVG charts.
const fs = require('node:fs');
const path = require('node:path');
const chart = require('./chart');
const format = require('./format');
const { fmt } = require('./progress');

const mark = (pass) => (pass === null ? '– not measured' : pass ? '✅ met' : '❌ missed');

function goalsTable(goals) {
  return format.table(
    ['goal', 'target', 'measured', 'result'],
    goals.map((g) => [g.text + (g.detail ? ` (${g.detail})` : ''), g.target, g.value === null ? '–' : format.num(g.value, 2), mark(g.pass)]),
  );
}

function machineTable(m) {
  return format.table(['', ''], [
    ['CPU', `${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB`],
    ['kernel', m.kernel],
    ['Node', m.node],
    ['wrk', m.wrk || 'not installed'],
    ['nginx', m.nginx || 'not installed'],
    ['herdless commit', m.herdlessCommit || '–'],
    ['load average (1, 5, 15 min) before / after the run', `${m.loadavg.join(', ')} / ${(m.loadavgAfter || []).join(', ')}`],
    ['date', m.date],
  ]);
}

function markdown(run, chartFiles) {
  const out = [
    '# herdless benchmarks',
    '',
    `Profile **${run.profile.name}**: ${run.profile.reps} repetitions of ${run.profile.seconds} s per contender and ` +
      `load, contenders alternating; warm-up ${run.profile.warmup} s. Took ${fmt(run.seconds)}. Command: \`${run.command}\``,
    '',
    'Figures are medians over the repetitions, with (min–max). "× dispatch" is the contender\'s figure divided by ' +
      "herdless dispatch's from the same repetition, then the median of those ratios: above 1 means more than " +
      'dispatch. Absolute figures vary between runs and machines; compare contenders within one run.',
    '',
    machineTable(run.machine),
    '',
    '## Goals',
    '',
    goalsTable(run.goals),
    '',
  ];
  // Before the run nothing of ours is running: a load above 0.5 means others were busy.
  const busy = run.machine.loadavg[0] > 0.5 ? run.machine.loadavg[0] : null;
  if (busy) {
    out.push(`> The load average was ${busy} when the run began: other processes shared the CPU, so absolute figures are low and noisier.`, '');
  }
  for (const s of run.scenarios) {
    out.push(`## ${s.title}`, '', s.about, '');
    if (s.error) out.push(`**Failed:** ${s.error}`, '');
    for (const t of s.tables || []) out.push(`**${t.title}**`, '', format.table(t.columns, t.rows), '');
    for (const f of chartFiles.filter((x) => x.scenario === s.id)) out.push(`![${f.file}](${f.file})`, '');
    for (const n of s.notes || []) out.push(`- ${n}`);
    if (s.notes?.length) out.push('');
  }
  if (run.errors.length) {
    out.push('## Errors and warnings', '', ...run.errors.map((e) => `- ${e}`), '');
  }
  return out.join('\n');
}

/** Write latest.json, latest.md and the charts into `dir`; also the JSON to jsonFile if given. */
async function write(run, dir, jsonFile) {
  fs.mkdirSync(dir, { recursive: true });
  const chartFiles = [];
  let missing = false;
  for (const s of run.scenarios) {
    for (const c of s.charts || []) {
      if (await chart.render(c.spec, path.join(dir, c.file))) chartFiles.push({ scenario: s.id, file: c.file });
      else missing = true;
    }
  }
  if (missing) process.stderr.write('warning: vega/vega-lite not installed (npm install), charts skipped\n');
  const json = JSON.stringify(run, (k, v) => (k === 'spec' ? undefined : v === Infinity ? 'Infinity' : v), 2);
  fs.writeFileSync(path.join(dir, 'latest.json'), json);
  if (jsonFile) fs.writeFileSync(jsonFile, json);
  fs.writeFileSync(path.join(dir, 'latest.md'), markdown(run, chartFiles));
  return chartFiles;
}

module.exports = { write, markdown };
