'use strict';
// Which configurations keep an idle pool asleep:
//   node bench/idle-audit.js [--settle 15] [--window 6]
// Starts one 2-worker dispatch pool per configuration in this process (default, dynamic size,
// metrics, client-ip routing, PROXY protocol, recycling limits, a control socket, and one that
// holds an idle keep-alive connection), serves each 8 requests, lets them settle (V8's memory
// reducer collects some seconds after the last activity), then counts the context switches of
// every thread of every worker over one window, side by side, and those of this process (all
// the primaries together: accept threads, supervisors, V8's helpers).
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const proc = require('./lib/proc');
const { Dispatcher } = require('..');

const { values: opt } = parseArgs({ options: { settle: { type: 'string', default: '15' }, window: { type: 'string', default: '6' } } });
const app = path.join(__dirname, 'apps', 'hello.js');
const local = { port: 0, host: '127.0.0.1' };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const CONFIGS = {
  default: {},
  'min 1, max 4': { min: 1, max: 4 },
  metrics: { metrics: { port: 0, host: '127.0.0.1' } },
  'client-ip': { route: 'client-ip' },
  proxyProtocol: { proxyProtocol: true },
  limits: { stallTimeout: 1000, maxMemory: 1e9, maxRequestsPerWorker: 100000 },
  control: { control: path.join(os.tmpdir(), `herdless-idle-audit-${process.pid}.sock`) },
  // As behind a load balancer that pools connections: keepAliveTimeout above its idle timeout.
  'keep-alive held': { keepAliveTimeout: 120000 },
};

const get = (port, agent = false) =>
  new Promise((resolve, reject) => {
    http.get({ port, host: '127.0.0.1', agent, headers: agent ? {} : { connection: 'close' } }, (r) => r.resume().on('end', resolve)).on('error', reject);
  });
const proxied = (port) =>
  new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.end('PROXY TCP4 192.0.2.1 127.0.0.1 5000 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    s.resume();
    s.on('close', resolve);
  });

/** Context switches of every thread of `pid` (voluntary + involuntary). */
const switches = (pid) => {
  const s = proc.snapshot(pid).primary;
  return s.voluntary + s.involuntary;
};
const ownSwitches = () => {
  let n = 0;
  for (const tid of fs.readdirSync('/proc/self/task')) {
    const st = fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
    n += Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(st)[1]) + Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(st)[1]);
  }
  return n;
};

(async () => {
  const pools = new Map();
  const agent = new http.Agent({ keepAlive: true });
  try {
    for (const [name, o] of Object.entries(CONFIGS)) pools.set(name, await Dispatcher.start({ app, listen: local, min: 2, max: 2, ...o }));
    for (const [name, d] of pools) for (let i = 0; i < 8; i++) await (name === 'proxyProtocol' ? proxied(d.address().port) : get(d.address().port));
    await get(pools.get('keep-alive held').address().port, agent); // stays open, idle
    await sleep(Number(opt.settle) * 1000);
    const seconds = Number(opt.window);
    const pids = new Map([...pools].map(([name, d]) => [name, d.workers().map((w) => w.pid)]));
    const before = new Map([...pids].map(([name, list]) => [name, list.map(switches)]));
    const own = ownSwitches();
    await sleep(seconds * 1000);
    const ownRate = (ownSwitches() - own) / seconds;
    console.log(`context switches per second over ${seconds} s, after ${opt.settle} s idle:`);
    for (const [name, list] of pids) {
      const rates = list.map((pid, i) => ((switches(pid) - before.get(name)[i]) / seconds).toFixed(2));
      console.log(`  ${name.padEnd(16)} workers ${rates.join(' / ')}`);
    }
    console.log(`  all ${pools.size} primaries together (this process, every thread): ${ownRate.toFixed(2)}`);
  } finally {
    agent.destroy();
    for (const d of pools.values()) await d.close();
  }
})();
