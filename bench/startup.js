'use strict';
// Time from starting the server command to its first 200, with 2 workers:
//   cluster            node bench/apps/cluster-main.js 2 bench/apps/listens.js (the app calls listen())
//   herdless           herdless -w 2 bench/apps/listens.js                     (the same file)
//   herdless-handler   herdless -w 2 --port P bench/apps/hello.js              (the app exports a handler)
// Usage: node bench/startup.js [--reps 9] [--workers 2]
// Runs alternate (A B C, B C A, ...) so that drift in machine load hits each alike; prints
// each one's median, min and max in ms, and the ratio of the medians to cluster's. On a
// loaded machine wall time mostly measures the others' load, so it also prints the CPU time
// (user + system) the whole process tree had used by its first 200, from /proc.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { parseArgs } = require('node:util');

const { values: opt } = parseArgs({ options: { reps: { type: 'string', default: '9' }, workers: { type: 'string', default: '2' } } });
const ROOT = path.join(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'herdless');
const LISTENS = path.join(__dirname, 'apps', 'listens.js');
const HANDLER = path.join(__dirname, 'apps', 'hello.js');
const N = opt.workers;

const CONTENDERS = {
  cluster: (port) => [[path.join(__dirname, 'apps', 'cluster-main.js'), N, LISTENS], { PORT: port }],
  herdless: (port) => [[BIN, '-w', N, LISTENS], { PORT: port }],
  'herdless-handler': (port) => [[BIN, '-w', N, '--host', '127.0.0.1', '--port', port, HANDLER], {}],
};

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(String(port)));
    });
  });
}

function ok(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', () => resolve(false));
  });
}

const TICK_MS = 1000 / 100; // USER_HZ: Linux reports utime/stime in 1/100 s

/** CPU ms used so far by every process of process group `pgid`. */
function groupCpuMs(pgid) {
  let ticks = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[2]) === pgid) ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks * TICK_MS;
}

async function once(name) {
  const port = await freePort();
  const [args, env] = CONTENDERS[name](port);
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: 'ignore', detached: true });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  let ms;
  let cpu;
  for (;;) {
    if (await ok(port)) {
      ms = Number(process.hrtime.bigint() - t0) / 1e6;
      cpu = groupCpuMs(child.pid);
      break;
    }
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}) before answering`);
    await new Promise((r) => setTimeout(r, 2));
  }
  process.kill(-child.pid, 'SIGKILL');
  await exited;
  await new Promise((r) => setTimeout(r, 200)); // let the killed group's exits settle
  return { ms, cpu };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function main() {
  const names = Object.keys(CONTENDERS);
  const times = Object.fromEntries(names.map((n) => [n, []]));
  const cpus = Object.fromEntries(names.map((n) => [n, []]));
  const reps = Number(opt.reps);
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(r + i) % names.length];
      const { ms, cpu } = await once(name);
      times[name].push(ms);
      cpus[name].push(cpu);
    }
    process.stderr.write('.');
  }
  process.stderr.write('\n');
  const table = (title, data) => {
    const base = median(data.cluster);
    console.log(title);
    console.log('contender          median     min     max   vs cluster');
    for (const name of names) {
      const t = data[name];
      const m = median(t);
      console.log(`${name.padEnd(17)} ${m.toFixed(0).padStart(7)} ${Math.min(...t).toFixed(0).padStart(7)} ${Math.max(...t).toFixed(0).padStart(7)}   ${(m / base).toFixed(2)}x`);
    }
  };
  table(`wall time from start to the first 200, ${N} workers, ${reps} alternating runs each (ms)`, times);
  table('CPU time of the whole process tree by then (user + system, ms, 10 ms ticks)', cpus);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
