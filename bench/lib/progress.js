'use strict';
// Progress on stderr: what runs now and an estimate of the time left. The estimate starts
// from each scenario's own guess and is scaled by how far off the guesses have been so far.

const fmt = (s) => {
  s = Math.max(0, Math.round(s));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
};

class Progress {
  constructor(totalEstimate, { quiet = false } = {}) {
    this.total = totalEstimate;
    this.done = 0;
    this.started = Date.now();
    this.quiet = quiet;
    this.scenario = '';
  }

  begin(scenario) {
    this.scenario = scenario;
  }

  elapsed() {
    return (Date.now() - this.started) / 1000;
  }

  left() {
    const remaining = Math.max(0, this.total - this.done);
    // Scale by the observed pace once there is something to go by, within reason: one slow
    // start should not triple the estimate.
    const pace = this.done > 5 ? Math.min(2, Math.max(0.5, this.elapsed() / this.done)) : 1;
    return remaining * pace;
  }

  /** Print what is about to run. */
  note(text) {
    if (this.quiet) return;
    process.stderr.write(`[${fmt(this.elapsed())} elapsed, ~${fmt(this.left())} left] ${this.scenario}: ${text}\n`);
  }

  /** Count estimated seconds as done. */
  advance(seconds) {
    this.done += seconds;
  }

  warn(text) {
    process.stderr.write(`warning: ${text}\n`);
  }
}

module.exports = { Progress, fmt };
