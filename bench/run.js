#!/usr/bin/env node
'use strict';
// herdless benchmark harness: herdless (dispatch, herd, reuseport), Node cluster (SCHED_RR,
// SCHED_NONE) and nginx side by side, in one run. See bench/README.md.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const contenders = require('./contenders');
const scenarios = require('./scenarios');
const tools = require('./lib/tools');
const report = require('./lib/report');
const { Progress, fmt } = require('./lib/progress');
const { machineInfo } = require('./lib/machine');

const PROFILES = {
  smoke: { name: 'smoke', seconds: 1, reps: 1, warmup: 0 },
  quick: { name: 'quick', seconds: 1, reps: 3, warmup: 1 },
  full: { name: 'full', seconds: 3, reps: 5, warmup: 2 },
};
const SMOKE = { scenario: 'conn-per-request', contenders: ['dispatch', 'cluster-rr'] };

const USAGE = `usage: node bench/run.js [options]
  (no option)          the quick suite, under 5 minutes on 2 cores
  --full               the whole suite: longer runs, more repetitions and configurations
  --only <s>[,<s>]     only these scenarios (name or number): ${scenarios.map((s, i) => `${i + 1} ${s.id}`).join(', ')}
  --contenders <a,b>   only these contenders: ${contenders.ALL.map((c) => c.name).join(', ')}
  --reps <n>           repetitions per contender and load (quick 3, full 5)
  --seconds <n>        seconds per wrk run (quick 1, full 3)
  --warmup <n>         seconds of load before the first repetition (quick 1, full 2): a pool's first
                       seconds run code V8 has not optimized yet, in every worker it reaches
  --json <file>        also write the raw results there
  --out <dir>          where latest.json, latest.md and the charts go (default bench/results)
  --smoke              one tiny scenario in a few seconds; exits non-zero if anything fails
  --help`;

function parse() {
  const { values } = parseArgs({
    options: {
      full: { type: 'boolean' },
      smoke: { type: 'boolean' },
      only: { type: 'string' },
      contenders: { type: 'string' },
      json: { type: 'string' },
      reps: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  return values;
}

const list = (s) => (s ? s.split(',').map((x) => x.trim()).filter(Boolean) : null);

function pickScenarios(only) {
  if (!only) return scenarios;
  return only.map((want) => {
    const s = scenarios[Number(want.replace(/^s/i, '')) - 1] || scenarios.find((x) => x.id === want);
    if (!s) throw new Error(`unknown scenario ${want}\n${USAGE}`);
    return s;
  });
}

/** The contenders this machine can run, in report order, narrowed by --contenders. */
function pickContenders(names, found, log) {
  for (const n of names || []) if (!contenders.byName(n)) throw new Error(`unknown contender ${n}\n${USAGE}`);
  return contenders.ALL.filter((c) => {
    if (names && !names.includes(c.name)) return false;
    if (c.nginx && !found.nginx) return log(`nginx not found, leaving it out (${tools.INSTALL})`), false;
    if (c.herdless && found.herdlessProblem) return log(`herdless left out: ${found.herdlessProblem}`), false;
    return true;
  });
}

async function main() {
  const args = parse();
  if (args.help) return console.log(USAGE), 0;
  const profile = { ...(args.smoke ? PROFILES.smoke : args.full ? PROFILES.full : PROFILES.quick) };
  if (args.reps) profile.reps = Math.max(1, Number(args.reps));
  if (args.seconds) profile.seconds = Math.max(1, Math.round(Number(args.seconds)));
  if (args.warmup) profile.warmup = Math.max(0, Math.round(Number(args.warmup)));
  const found = tools.check();
  if (!found.wrk) {
    console.error(`wrk is not installed. Install it with:\n  ${tools.INSTALL}`);
    return 2;
  }
  const errors = [];
  const warned = new Set();
  const warn = (msg) => {
    if (!warned.has(msg)) process.stderr.write(`warning: ${msg}\n`);
    warned.add(msg);
    errors.push(`warning: ${msg}`);
  };
  const chosen = pickScenarios(args.smoke ? [SMOKE.scenario] : list(args.only));
  const available = pickContenders(args.smoke ? SMOKE.contenders : list(args.contenders), found, warn);
  if (args.smoke && available.length < SMOKE.contenders.length) {
    console.error('smoke: a contender is unavailable');
    return 1;
  }
  const ctx = {
    profile,
    full: !!args.full,
    smoke: !!args.smoke,
    results: {},
    warn,
    fail: (msg) => {
      process.stderr.write(`error: ${msg}\n`);
      errors.push(`error: ${msg}`);
    },
  };
  // A scenario may name the contenders it makes sense for.
  const plan = chosen.map((s) => {
    const names = typeof s.contenders === 'function' ? s.contenders(ctx) : s.contenders;
    return { s, list: names ? available.filter((c) => names.includes(c.name)) : available };
  });
  const total = plan.reduce((t, p) => t + (p.list.length ? p.s.estimate(ctx, p.list) : 0), 0);
  ctx.progress = new Progress(total);
  process.stderr.write(`${profile.name} suite: ${chosen.map((s) => s.id).join(', ')}; ` +
    `contenders: ${available.map((c) => c.name).join(', ')}; estimated ${fmt(total)}\n`);

  const machine = machineInfo();
  const run = { command: `node bench/run.js ${process.argv.slice(2).join(' ')}`.trim(), profile, machine, scenarios: [], goals: [], errors };
  for (const { s, list: cs } of plan) {
    ctx.progress.begin(s.title);
    const entry = { id: s.id, title: s.title, about: s.about, contenders: cs.map((c) => c.name) };
    if (!cs.length) {
      entry.error = 'no contender available for it';
    } else {
      try {
        Object.assign(entry, await s.run(ctx, cs));
        ctx.results[s.id] = entry;
      } catch (err) {
        entry.error = err.stack;
        ctx.fail(`${s.title}: ${err.message}`);
      }
    }
    run.scenarios.push(entry);
    run.goals.push(...(entry.goals || []));
  }
  run.seconds = ctx.progress.elapsed();
  run.machine.loadavgAfter = os.loadavg().map((x) => Math.round(x * 100) / 100);

  const out = args.out || (args.smoke ? fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-bench-smoke-')) : path.join(__dirname, 'results'));
  const charts = await report.write(run, out, args.json);
  process.stderr.write(`done in ${fmt(run.seconds)}: ${path.join(out, 'latest.md')}, ${charts.length} charts\n`);
  if (args.smoke) {
    const code = smokeVerdict(run, errors);
    if (code === 0 && !args.out) fs.rmSync(out, { recursive: true, force: true });
    return code;
  }
  return errors.some((e) => e.startsWith('error:')) ? 1 : 0;
}

/** The smoke run passes only if every contender produced every sample, without errors. */
function smokeVerdict(run, errors) {
  const s = run.scenarios[0];
  const samples = (s.raw || []).flatMap((g) => Object.values(g.samples).flat());
  const complete = samples.length === SMOKE.contenders.length && samples.every((x) => x && x.wrk.rps > 0);
  const ok = complete && !s.error && errors.length === 0;
  console.log(ok ? 'bench smoke: ok' : `bench smoke: FAILED\n${errors.join('\n')}`);
  return ok ? 0 : 1;
}

// Contender processes must not outlive the harness, whatever ends it.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    contenders.killAll();
    process.exit(130);
  });
}
process.on('exit', () => contenders.killAll());

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err.message);
    process.exit(2);
  },
);
