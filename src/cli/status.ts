/** The USR1 status summary: d.stats() as a few readable lines (or one JSON line). */
import type { Dispatcher, DispatchWaitStats } from '../primary/dispatcher';
import type { Logger } from './log';

export function logStatus(d: Dispatcher, log: Logger): void {
  const s = d.stats();
  const x = s.dispatcher;
  const errors = Object.entries(x.acceptErrors).map(([errno, n]) => `${errno} ${n}`).join(', ') || 'none';
  const lines = [
    `status: mode ${s.mode}, ${d.size} workers; accepted ${x.accepted}, handed off ${x.handedOff}, ` +
      `re-dispatched ${x.redispatched}, waiting ${x.waiting}, back-pressure pauses ${x.backpressurePauses}, ` +
      `fd pauses ${x.fdPauses}, accept errors: ${errors}`,
    ...s.workers.map(
      (w) =>
        `  worker ${w.id} pid ${w.pid} ${w.state}: ${w.connectionsOpen} open, ${w.requestsInFlight} in flight, ` +
        `${w.requestsServed} served, ${w.connectionsReceived} received` +
        // Which worker is out of fds (an fd leak in the app): it leaves connections to the others.
        (w.fdRoomStalls > 0 ? `, out of fds ${w.fdRoomStalls} times (${w.connectionsWaiting} left waiting)` : '') +
        (w.rejectedFds > 0 ? `, ${w.rejectedFds} hand-offs lost fds` : ''),
    ),
    ...s.listeners.map((l) => `  listener ${l.address}${l.protocol ? ` (${l.protocol})` : ''}: ${l.queued ?? 'unknown'} queued of ${l.backlog ?? 'unknown'}`),
    ...(s.mode === 'dispatch' ? [dispatchWaitLine(s.dispatchWait)] : []),
    ...(s.proxy.accepted + s.proxy.malformed + s.proxy.timedOut > 0
      ? [`  PROXY headers: ${s.proxy.accepted} read (${s.proxy.local} LOCAL, ${s.proxy.untrusted ?? 0} from peers outside proxyFrom, ignored), ${s.proxy.malformed} malformed, ${s.proxy.timedOut} timed out, ${s.proxy.waiting} awaited now`]
      : []),
  ];
  log.info('status', { size: d.size, stats: s }, lines.join('\n'));
}

/** How long connections waited for a worker: the mean, and the share taken within 1 ms. */
function dispatchWaitLine(w: DispatchWaitStats): string {
  if (w.count === 0) return '  dispatch wait: no connections yet';
  const within1ms = w.buckets.find((b) => b.le === 0.001)?.count ?? 0;
  const mean = (1000 * w.sumSeconds) / w.count;
  return `  dispatch wait: ${w.count} connections, mean ${mean.toFixed(3)} ms, ${((100 * within1ms) / w.count).toFixed(1)}% within 1 ms`;
}
