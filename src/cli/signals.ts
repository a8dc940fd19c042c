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
  /** Graceful stop; also what the CLI uses on a fatal dispatcher error. */
  stop(reason: string, code?: number): void;
  readonly stopping: boolean;
}

export function handleSignals(d: Dispatcher, log: Logger, opts: SignalOptions): Controls {
  let stopping = false;
  let reloading = false;
  // Where consecutive TTIN/TTOU aim: d.size lags until the resize is done.
  let wanted: number | undefined;

  // Draining after an upgrade: a TERM/INT meant for the service (Ctrl-C reaches both
  // primaries) must not cut this one's requests; only a second one forces.
  let handedOver = false;
  const stop = (reason: string, code = 0): void => {
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
    const closed = d.close({ timeout: opts.shutdownTimeout });
    // Logged after close() has closed the listeners, so the line means "no new connections".
    log.info('stopping', { reason, timeout: opts.shutdownTimeout }, `${reason}: stopping gracefully (up to ${opts.shutdownTimeout} ms)`);
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

  const resize = (delta: number, signal: string): void => {
    if (stopping) return;
    const to = (wanted ?? d.size) + delta;
    wanted = to;
    d.resize(to).then(
      (size) => {
        if (wanted === to) wanted = undefined;
        log.info('resized', { signal, requested: to, size }, `${signal}: pool target ${size}${size !== to ? ` (asked ${to}, clamped to min/max)` : ''}`);
      },
      (err) => {
        wanted = undefined;
        log.error('resized', { signal }, `${signal}: resize failed: ${describeError(err)}`);
      },
    );
  };

  const reload = (): void => {
    if (stopping) return;
    if (reloading) {
      log.info('reload', { skipped: true }, 'SIGHUP: a reload is already under way');
      return;
    }
    reloading = true;
    opts.notify.reloading();
    log.info('reload', {}, 'SIGHUP: reloading workers one at a time');
    d.reload().then(
      () => log.info('reloaded', { size: d.size }, `reload done, ${d.size} workers`),
      (err) => log.error('reloaded', {}, `reload failed: ${describeError(err)}`),
    ).finally(() => {
      reloading = false;
      // Still serving either way; systemd waits for this READY=1 to end the reload.
      if (!stopping) opts.notify.ready(opts.status());
    });
  };

  let upgrading = false;
  const upgrade = (): void => {
    if (stopping) return;
    if (upgrading) {
      log.info('upgrade', { skipped: true }, 'SIGUSR2: an upgrade is already under way; ignored');
      return;
    }
    upgrading = true;
    opts.notify.status('upgrading');
    log.info('upgrade', {}, 'SIGUSR2: starting a new primary from the same command line');
    const onUpgraded = ({ pid }: { pid: number }) => {
      // From here on the new primary speaks for the service, and we only drain.
      stopping = true;
      handedOver = true;
      opts.notify.handOver();
      log.info('upgraded', { newPid: pid }, `new primary pid ${pid} is serving; draining this one (up to ${opts.shutdownTimeout} ms) and exiting`);
    };
    d.once('upgraded', onUpgraded);
    d.upgrade({ ...opts.upgradeOptions(), closeTimeout: opts.shutdownTimeout }).then(
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
  };

  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', reload);
  process.on('SIGTTIN', () => resize(+1, 'SIGTTIN'));
  process.on('SIGTTOU', () => resize(-1, 'SIGTTOU'));
  // Replaces Node's default SIGUSR1 action (starting the inspector) on purpose.
  process.on('SIGUSR1', () => logStatus(d, log));
  process.on('SIGUSR2', upgrade);

  return {
    stop,
    get stopping() {
      return stopping;
    },
  };
}
