#!/usr/bin/env node
'use strict';
// npm run fuzz -- --seconds N [--target proxy_header|record]: builds the libFuzzer targets
// (fuzz/build.sh: clang, ASan, UBSan) and runs each for N seconds (default 30) from its seed
// corpus in fuzz/corpus/<target>/. What a run learns goes to build/fuzz/corpus/<target>/ (kept
// between runs, never committed); a finding is written to build/fuzz/<target>-crash-* and
// makes this exit 1. Prints each target's executions and coverage (libFuzzer's cov:).
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const seconds = Number(opt('seconds', '30'));
if (!Number.isInteger(seconds) || seconds < 1) {
  console.error(`fuzz: --seconds must be a whole number of seconds, got ${opt('seconds')}`);
  process.exit(2);
}
const all = ['proxy_header', 'record'];
const targets = opt('target') ? [opt('target')] : all;
for (const t of targets) {
  if (!all.includes(t)) {
    console.error(`fuzz: unknown target ${t} (one of ${all.join(', ')})`);
    process.exit(2);
  }
}

const build = spawnSync(path.join(__dirname, 'build.sh'), { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 2);

let failed = false;
for (const t of targets) {
  const work = path.join(root, 'build', 'fuzz', 'corpus', t);
  fs.mkdirSync(work, { recursive: true });
  const r = spawnSync(
    path.join(root, 'build', 'fuzz', t),
    [`-max_total_time=${seconds}`, '-print_final_stats=1', `-artifact_prefix=${path.join(root, 'build', 'fuzz', `${t}-`)}`, work, path.join(__dirname, 'corpus', t)],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  const out = `${r.stdout}${r.stderr}`;
  const cov = [...out.matchAll(/cov: (\d+) ft: (\d+) corp: (\d+)/g)].pop();
  const execs = /stat::number_of_executed_units:\s*(\d+)/.exec(out);
  console.log(`fuzz ${t}: ${execs ? execs[1] : '?'} executions in ${seconds} s, cov ${cov ? cov[1] : '?'}, ft ${cov ? cov[2] : '?'}, corpus ${cov ? cov[3] : '?'}`);
  if (r.status !== 0) {
    failed = true;
    console.error(out.split('\n').filter((l) => !/^#\d+/.test(l)).slice(-60).join('\n'));
    console.error(`fuzz ${t}: FINDING (exit ${r.status}); the input is in build/fuzz/${t}-*`);
  }
}
process.exit(failed ? 1 : 0);
