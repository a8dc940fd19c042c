'use strict';
/**
 * What an operator does to one host in test/hosts/run.js, each step finished only when the
 * host serves again and HAProxy has it UP (`stayUp`), as a rolling procedure needs before it
 * moves on to the next host.
 */
const UPGRADE_WINDOW_MS = 20_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** SIGUSR2 to the serving primary; done when a different primary alone serves and is UP. */
async function upgrade(h, stayUp) {
  const old = h.primary();
  const t0 = Date.now();
  process.kill(old, 'SIGUSR2');
  let seen = [old];
  while (Date.now() - t0 < UPGRADE_WINDOW_MS) {
    await sleep(100);
    const now = h.primaries();
    seen = [...new Set([...seen, ...now])];
    if (now.length === 0) {
      const how = h.started?.pid === old && h.exit ? h.exit : 'exited';
      return { ok: false, note: `USR2 not supported: primary ${old} ${how} and no new primary appeared (a herdless without USR2 upgrades dies of the signal's default action)` };
    }
    if (now.length === 1 && now[0] !== old) {
      await stayUp(h, t0, Math.max(1000, UPGRADE_WINDOW_MS - (Date.now() - t0)));
      return { ok: true, note: `primary ${old} -> ${now[0]} in ${((Date.now() - t0) / 1000).toFixed(1)} s (${h.workersOf(now[0]).length} workers), UP in HAProxy` };
    }
  }
  const now = h.primaries();
  if (now.length === 1 && now[0] === old && seen.length === 1) return { ok: false, note: `USR2 not supported: primary still ${old} after ${UPGRADE_WINDOW_MS / 1000} s and no new one started (signal ignored?)` };
  return { ok: false, note: `upgrade did not finish in ${UPGRADE_WINDOW_MS / 1000} s: primaries now ${now.join(', ') || 'none'}, seen ${seen.join(', ')}` };
}

/** SIGHUP to the primary; done when every worker it had is replaced and it is UP. */
async function reload(h, stayUp) {
  const p = h.primary();
  const before = h.workersOf(p);
  const t0 = Date.now();
  process.kill(p, 'SIGHUP');
  while (Date.now() - t0 < 30_000) {
    await sleep(100);
    const now = h.workersOf(p);
    if (now.length >= before.length && !now.some((w) => before.includes(w))) {
      await stayUp(h, t0, 10_000);
      return { ok: true, note: `workers ${before.join(',')} -> ${now.join(',')} in ${((Date.now() - t0) / 1000).toFixed(1)} s, primary ${p} kept` };
    }
  }
  return { ok: false, note: `reload did not finish in 30 s: workers ${before.join(',')} -> ${h.workersOf(p).join(',')}` };
}

function killAll(h) {
  for (const p of h.everything()) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
}

/** After a failed step: kill what is left of the host and start it again. */
async function restore(h, stayUp) {
  killAll(h);
  const t0 = Date.now();
  while (h.everything().length > 0 && Date.now() - t0 < 5000) await sleep(50);
  h.start();
  await stayUp(h, t0, 30_000);
}

module.exports = { upgrade, reload, restore, killAll };
