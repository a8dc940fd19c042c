'use strict';
/**
 * One host of test/hosts/run.js: a herdless CLI started inside its namespace, leading a
 * process group of its own (setsid), so that "the host dies" is one kill(-pgid). The harness
 * never trusts the pid it started: after a USR2 upgrade the serving primary is another
 * process, so `primaries()` finds it by reading the namespace's pids and their command lines.
 */
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { pidsIn } = require('./net');

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'bin/herdless');
const APP = path.join(__dirname, 'app.js');
// The command line docs/haproxy.cfg is written for, plus a fixed pool and JSON logs.
const ARGS = ['--port', '8080', '--metrics', '0.0.0.0:9464', '--keep-alive-timeout', '65000', '--workers', '2', '--shutdown-timeout', '10000', '--log', 'json'];

function readProc(pid, file) {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return ''; // exited meanwhile
  }
}

class Host {
  constructor({ name, ns, addr }, logDir) {
    this.name = name;
    this.ns = ns;
    this.addr = addr;
    this.logFile = path.join(logDir, `${name}.log`);
    this.healthUrl = `http://${addr}:9464/healthz`;
    this.started = undefined; // the ChildProcess of the last start
    this.exit = undefined; // how that process ended, once it has
  }

  get command() {
    return `ip netns exec ${this.ns} setsid node bin/herdless ${ARGS.join(' ')} test/hosts/app.js`;
  }

  start() {
    const log = fs.openSync(this.logFile, 'a');
    // `ip netns exec` and `setsid` both exec (neither forks here), so the pid is the primary's.
    const child = spawn('ip', ['netns', 'exec', this.ns, 'setsid', process.execPath, BIN, ...ARGS, APP], {
      cwd: ROOT,
      stdio: ['ignore', log, log],
      env: { ...process.env, HOST_NAME: this.name },
    });
    fs.closeSync(log);
    this.started = child;
    this.exit = undefined;
    child.on('exit', (code, signal) => {
      if (this.started === child) this.exit = signal ? `killed by ${signal}` : `exited with status ${code}`;
    });
    return child.pid;
  }

  /** herdless primaries now in the namespace (one, or two while an upgrade hands over). */
  primaries() {
    return pidsIn(this.ns).filter((pid) => readProc(pid, 'cmdline').split('\0').includes(BIN));
  }

  primary() {
    const p = this.primaries();
    if (p.length !== 1) throw new Error(`${this.name}: expected one herdless primary, found ${p.length} (${p.join(', ')})`);
    return p[0];
  }

  workersOf(primary) {
    return pidsIn(this.ns).filter((pid) => /^PPid:\s*(\d+)$/m.exec(readProc(pid, 'status'))?.[1] === String(primary));
  }

  pgid(pid) {
    // Field 5 of /proc/pid/stat, counted after the parenthesised command name.
    return Number(readProc(pid, 'stat').replace(/^.*\) /s, '').split(' ')[2]);
  }

  everything() {
    return pidsIn(this.ns);
  }

  /** Last lines of the host's log, for a failure report. */
  tail(n = 5) {
    try {
      return fs.readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-n);
    } catch {
      return [];
    }
  }
}

module.exports = { Host };
