'use strict';
// What the harness needs on the machine, and how to get what is missing.
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const INSTALL = 'sudo apt-get install wrk nginx-light';

const has = (cmd) => {
  try {
    execFileSync('bash', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

/** Why herdless cannot be loaded (not built yet?), or null when it can. */
function herdlessProblem() {
  const lib = process.env.HERDLESS_LIB || path.join(__dirname, '../../lib');
  try {
    const { Dispatcher } = require(lib);
    return typeof Dispatcher?.start === 'function' ? null : `${lib} has no Dispatcher.start`;
  } catch (err) {
    return `cannot load ${lib} (run npm install, or npm run compile): ${err.message.split('\n')[0]}`;
  }
}

function check() {
  return { wrk: has('wrk'), nginx: has('nginx'), herdlessProblem: herdlessProblem() };
}

module.exports = { check, INSTALL };
