'use strict';

/** { 'name{labels}': value } from the Prometheus text format. */
function parsePrometheus(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

module.exports = { parsePrometheus };
