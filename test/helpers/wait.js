'use strict';
// Waiting without guessing: poll a condition with a deadline.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Poll `predicate` (sync or async) every `stepMs` until it returns something truthy, and
 * return that; throws after `timeoutMs` with `what` (default: the predicate's source).
 */
async function waitFor(predicate, timeoutMs = 5000, stepMs = 20, what = String(predicate)) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms: ${what}`);
    await sleep(stepMs);
  }
}

/** Resolves with the first of `emitter`'s `event`, rejects after `timeoutMs`. */
function once(emitter, event, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`no "${event}" within ${timeoutMs} ms`));
    }, timeoutMs);
    function onEvent(value) {
      clearTimeout(timer);
      resolve(value);
    }
    emitter.once(event, onEvent);
  });
}

module.exports = { sleep, waitFor, once };
