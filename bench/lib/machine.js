'use strict';
// Where the figures came from: results from different machines are not comparable.
const os = require('node:os');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');

// Some tools print their version on stderr (nginx) or exit non-zero doing it (wrk).
const tryRun = (line) => {
  try {
    return execFileSync('bash', ['-c', `${line} 2>&1`], { encoding: 'utf8' }).trim() || null;
  } catch (err) {
    return (err.stdout || '').toString().trim() || null;
  }
};

function machineInfo() {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = (cpuinfo.match(/^model name\s*:\s*(.*)$/m) || [])[1] || os.cpus()[0]?.model || 'unknown';
  return {
    cpuModel: model.trim(),
    cores: os.cpus().length,
    kernel: os.release(),
    node: process.version,
    date: new Date().toISOString(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    // Load before the run: anything else busy on the box skews every figure.
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    wrk: tryRun('wrk -v')?.split('\n')[0] || null,
    nginx: tryRun('nginx -v'),
    herdlessCommit: tryRun(`git -C '${__dirname}/../..' rev-parse --short HEAD`),
  };
}

module.exports = { machineInfo };
