/**
 * systemd's notify protocol (sd_notify(3)) for Type=notify and Type=notify-reload units:
 * READY=1 once `min` workers are ready, RELOADING=1 and READY=1 around a SIGHUP reload,
 * STOPPING=1 on SIGTERM, STATUS= lines for `systemctl status`, and WATCHDOG=1 keep-alives.
 *
 * The variables are read once and removed from the environment, as LISTEN_FDS is: a worker
 * that inherited NOTIFY_SOCKET could report for the service. An upgrade's new primary gets
 * them back (successorEnv) and announces MAINPID=<its pid> with its READY=1.
 *
 * Watchdog policy: WATCHDOG=1 every WATCHDOG_USEC/2 from a timer on the primary's event loop
 * (a blocked loop sends nothing), and only while at least one worker serves or the primary is
 * stopping (a drain must not trip the watchdog). A pool with no worker left (a crash loop)
 * stops the keep-alives, and systemd restarts the service.
 */
import { loadAddon } from '../shared/binding';
import { describeError, type Logger } from './log';

export interface Notifier {
  /** Sent once `min` workers are ready; mainPid after an upgrade. */
  ready(status: string, mainPid?: number): void;
  reloading(): void;
  stopping(): void;
  status(text: string): void;
  /** Keep-alives while healthy() holds; a no-op without WATCHDOG_USEC. */
  watchdog(healthy: () => boolean): void;
  /** After an upgrade handed over: the new primary speaks for the service from now on. */
  handOver(): void;
  /** What an upgrade's new primary needs back in its environment. */
  successorEnv(): Record<string, string | undefined>;
  /** The format chosen by --config arrives after the notifier is made. */
  setLogger(log: Logger): void;
}

/** CLOCK_MONOTONIC in µs: libuv's hrtime reads that clock, as systemd's MONOTONIC_USEC means. */
function monotonicUsec(): string {
  return (process.hrtime.bigint() / 1000n).toString();
}

export function createNotifier(log: Logger, env: NodeJS.ProcessEnv = process.env, pid = process.pid, upgradedFrom?: number): Notifier {
  const socket = env.NOTIFY_SOCKET;
  const usec = env.WATCHDOG_USEC;
  const watchdogPid = env.WATCHDOG_PID;
  delete env.NOTIFY_SOCKET;
  delete env.WATCHDOG_USEC;
  delete env.WATCHDOG_PID;
  // The watchdog is ours if no pid is named, if it is us, or (after an upgrade) the primary we replace.
  const pidOk = watchdogPid === undefined || Number(watchdogPid) === pid || (upgradedFrom !== undefined && Number(watchdogPid) === upgradedFrom);
  const watchdogUs = usec !== undefined && /^\d+$/.test(usec) && Number(usec) > 0 && pidOk ? Number(usec) : undefined;
  let silent = socket === undefined || socket === '';
  let warned = false;
  let timer: NodeJS.Timeout | undefined;

  const send = (lines: string[]): void => {
    if (silent) return;
    try {
      loadAddon().sdNotify(socket!, lines.join('\n'));
    } catch (err) {
      // systemd gone or the socket misnamed: say so once, never stop serving for it.
      if (!warned) log.error('notify', { socket }, `cannot notify systemd at NOTIFY_SOCKET=${socket}: ${describeError(err)}`);
      warned = true;
    }
  };

  return {
    ready: (status, mainPid) => send([...(mainPid !== undefined ? [`MAINPID=${mainPid}`] : []), 'READY=1', `STATUS=${status}`]),
    reloading: () => send(['RELOADING=1', `MONOTONIC_USEC=${monotonicUsec()}`, 'STATUS=reloading']),
    stopping: () => send(['STOPPING=1', 'STATUS=stopping']),
    status: (text) => send([`STATUS=${text}`]),
    watchdog(healthy) {
      if (watchdogUs === undefined || silent || timer) return;
      timer = setInterval(() => healthy() && send(['WATCHDOG=1']), Math.max(1, Math.floor(watchdogUs / 2000)));
      timer.unref();
    },
    handOver() {
      clearInterval(timer);
      silent = true;
    },
    setLogger: (l) => (log = l),
    successorEnv: () =>
      socket === undefined ? {} : { NOTIFY_SOCKET: socket, WATCHDOG_USEC: watchdogUs === undefined ? undefined : String(watchdogUs) },
  };
}
