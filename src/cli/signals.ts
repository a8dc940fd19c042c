/**
 * The CLI's signal contract, as gunicorn's: TERM/INT stop gracefully (a second one forces),
 * HUP reloads every worker in turn, TTIN/TTOU add/remove one worker, USR1 prints a status
 * summary, USR2 replaces the primary itself with a new one (Dispatcher#upgrade). Workers
 * ignore SIGINT, so a Ctrl-C sent to the whole terminal process group still drains through
 * the primary instead of killing requests in flight.
 */
import type { Dispatcher, UpgradeOptions } from '../primary/dispatcher';
import { describeError, type Logger } from './log';
import type { Notifier } from './notify';
import { logStatus } from './status';
import { HerdlessError } from '../shared/errors';

export interface SignalOptions {
  /** Graceful stop deadline, ms, after which workers are killed. */
  shutdownTimeout: number;
  /** Runs once the pool is gone (or on a forced stop); must end the process. */
  exit: (code: number) => void;
  notify: Notifier;
  /** The STATUS= line while serving. */
  status: () => string;
  /** What USR2's new primary needs (environment, the metrics socket). */
  upgradeOptions: () => UpgradeOptions;
}

export interface Controls {
  /** Graceful stop; also what the CLI uses on a fatal dispatcher error and `herdless stop`. */
  stop(reason: string, code?: number, timeoutMs?: number): void;
  readonly stopping: boolean;
  /** What TTIN/TTOU do (`delta`) or `herdless scale N` (`to`); resolves with the size reached. */
  resize(spec: { delta: number } | { to: number }, by: string): Promise<{ from: number; asked: number; to: number }>;
  /** What HUP does; resolves when done (rejects if the reload failed or one is under way). */
  reload(by: string): Promise<void>;
  /** What USR2 does; resolves with the new primary's pid once this one has drained. */
  upgrade(by: string): Promise<{ pid: number }>;
}

export function handleSignals(d: Dispatcher, log: Logger, opts: SignalOptions): Controls {
  let stopping = false;
  let reloading = false;
  // Where consecutive TTIN/TTOU aim: d.size lags until the resize is done.
  let wanted: number | undefined;

  // Draining after an upgrade: a TERM/INT meant for the service (Ctrl-C reaches both
  // primaries) must not cut this one's requests; only a second one forces.
  let handedOver = false;
  const stop = (reason: string, code = 0, timeoutMs = opts.shutdownTimeout): void => {
    if (handedOver) {
      handedOver = false;
      log.info('stopping', { reason }, `${reason}: already draining after an upgrade (again to force)`);
      return;
    }
    if (stopping) {
      log.info('force-stop', { reason }, `${reason} again: killing workers and exiting now`);
      for (const w of d.workers()) {
        try {
          process.kill(w.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      opts.exit(code || 1);
      return;
    }
    stopping = true;
    opts.notify.stopping();
    const closed = d.close({ timeout: timeoutMs });
    // Logged after close() has closed the listeners, so the line means "no new connections".
    log.info('stopping', { reason, timeout: timeoutMs }, `${reason}: stopping gracefully (up to ${timeoutMs} ms)`);
    closed.then(
      () => {
        log.info('stopped', { exitCode: code }, 'stopped');
        opts.exit(code);
      },
      (err) => {
        log.error('stopped', { exitCode: 1 }, `close failed: ${describeError(err)}`);
        opts.exit(1);
      },
    );
  };

  const resize = (spec: { delta: number } | { to: number }, signal: string): Promise<{ from: number; asked: number; to: number }> => {
    if (stopping) return Promise.reject(new HerdlessError('ERR_HERDLESS_CLOSED', 'herdless is stopping'));
    const from = d.size;
    const to = 'to' in spec ? spec.to : (wanted ?? d.size) + spec.delta;
    wanted = to;
    return d.resize(to).then(
      (size) => {
        if (wanted === to) wanted = undefined;
        log.info('resized', { signal, requested: to, size }, `${signal}: pool target ${size}${size !== to ? ` (asked ${to}, clamped to min/max)` : ''}`);
        return { from, asked: to, to: size };
      },
      (err) => {
        wanted = undefined;
        log.error('resized', { signal }, `${signal}: resize failed: ${describeError(err)}`);
        throw err;
      },
    );
  };

  const reload = (by = 'SIGHUP'): Promise<void> => {
    if (stopping) return Promise.reject(new HerdlessError('ERR_HERDLESS_CLOSED', 'herdless is stopping'));
    if (reloading) {
      log.info('reload', { skipped: true }, `${by}: a reload is already under way`);
      return Promise.reject(new HerdlessError('ERR_HERDLESS_CONTROL', 'a reload is already under way; wait for it to finish'));
    }
    reloading = true;
    opts.notify.reloading();
    log.info('reload', {}, `${by}: reloading workers one at a time`);
    const done = d.reload();
    done.then(
      () => log.info('reloaded', { size: d.size }, `reload done, ${d.size} workers`),
      (err) => log.error('reloaded', {}, `reload failed: ${describeError(err)}`),
    ).finally(() => {
      reloading = false;
      // Still serving either way; systemd waits for this READY=1 to end the reload.
      if (!stopping) opts.notify.ready(opts.status());
    });
    return done;
  };

  let upgrading = false;
  const upgrade = (by = 'SIGUSR2'): Promise<{ pid: number }> => {
    if (stopping) return Promise.reject(new HerdlessError('ERR_HERDLESS_CLOSED', 'herdless is stopping'));
    if (upgrading) {
      log.info('upgrade', { skipped: true }, `${by}: an upgrade is already under way; ignored`);
      return Promise.reject(new HerdlessError('ERR_HERDLESS_UPGRADE_IN_PROGRESS', 'an upgrade is already under way; wait for it to finish or fail'));
    }
    upgrading = true;
    opts.notify.status('upgrading');
    log.info('upgrade', {}, `${by}: starting a new primary from the same command line`);
    const onUpgraded = ({ pid }: { pid: number }) => {
      // From here on the new primary speaks for the service, and we only drain.
      stopping = true;
      handedOver = true;
      opts.notify.handOver();
      log.info('upgraded', { newPid: pid }, `new primary pid ${pid} is serving; draining this one (up to ${opts.shutdownTimeout} ms) and exiting`);
    };
    d.once('upgraded', onUpgraded);
    const done = d.upgrade({ ...opts.upgradeOptions(), closeTimeout: opts.shutdownTimeout });
    done.then(
      ({ pid }) => {
        log.info('stopped', { exitCode: 0, newPid: pid }, `stopped; pid ${pid} serves now`);
        opts.exit(0);
      },
      (err) => {
        d.off('upgraded', onUpgraded);
        upgrading = false;
        const code = (err as { code?: string }).code;
        // Stopped mid-upgrade: the new primary was killed on purpose, and nothing serves on.
        if (stopping) return log.info('upgrade-failed', { code }, `upgrade abandoned: stopping (${describeError(err)})`);
        log.error('upgrade-failed', { code }, `upgrade failed, still serving: ${describeError(err)}`);
        opts.notify.status(`${opts.status()}; last upgrade failed`);
      },
    );
    return done;
  };

  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Failures are logged where they happen; a signal has nobody to answer.
  const quiet = () => {};
  process.on('SIGHUP', () => reload().catch(quiet));
  process.on('SIGTTIN', () => resize({ delta: +1 }, 'SIGTTIN').catch(quiet));
  process.on('SIGTTOU', () => resize({ delta: -1 }, 'SIGTTOU').catch(quiet));
  // Replaces Node's default SIGUSR1 action (starting the inspector) on purpose.
  process.on('SIGUSR1', () => logStatus(d, log));
  process.on('SIGUSR2', () => upgrade().catch(quiet));

  return {
    stop,
    get stopping() {
      return stopping;
    },
    resize,
    reload,
    upgrade,
  };
}
